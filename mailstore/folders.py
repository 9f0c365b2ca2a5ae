"""Mailboxes of one account: list, create, delete, rename, subscribe, status.

IMAP semantics (RFC 3501 §6.3, RFC 9051 §6.3): the hierarchy separator is ``/``; ``INBOX``
is case-insensitive and can be neither deleted nor really renamed (renaming it moves its
messages, §6.3.5); CREATE makes the missing superior names (§6.3.3); DELETE of a mailbox
with inferior names removes its messages and leaves the name as ``\\Noselect`` (§6.3.4);
a re-created mailbox gets a strictly greater UIDVALIDITY (§2.3.1.1), also within the same
second (:mod:`mailstore.imap_tables`). Functions take a SQLAlchemy ``Connection``: callers
run them inside ``db.read``/``db.write``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    case,
    delete,
    func,
    insert,
    not_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from mailstore.imap_tables import mailbox_uidvalidity
from mailstore.messages import MailboxNotFound
from mailstore.tables import blob, mailbox, message

SEPARATOR = "/"
MAX_NAME = 500
MAX_DEPTH = 20
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


class MailboxError(Exception):
    """A mailbox operation was refused; ``code`` is the IMAP response code (RFC 5530)."""

    code = "CANNOT"


class MailboxExists(MailboxError):
    code = "ALREADYEXISTS"


class InvalidName(MailboxError):
    code = "CANNOT"


class HasChildren(MailboxError):
    code = "INUSE"


class NoSuchMailbox(MailboxError):
    code = "NONEXISTENT"


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool


_COLUMNS = (
    mailbox.c.id, mailbox.c.name, mailbox.c.special_use, mailbox.c.uidvalidity,
    mailbox.c.uidnext, mailbox.c.highestmodseq, mailbox.c.subscribed,
)


def _info(row: object) -> MailboxInfo:
    m = row._mapping  # type: ignore[attr-defined]
    return MailboxInfo(
        int(m["id"]), m["name"], m["special_use"], int(m["uidvalidity"]), int(m["uidnext"]),
        int(m["highestmodseq"]), bool(m["subscribed"]),
    )


def canonical_name(name: str) -> str:
    """``inbox`` → ``INBOX`` (also as a hierarchy root: ``inbox/x`` → ``INBOX/x``)."""
    head, sep, rest = name.partition(SEPARATOR)
    if head.upper() == "INBOX":
        return "INBOX" + sep + rest
    return name


def check_name(name: str) -> str:
    """Validate a name to create; return its canonical form (trailing separator dropped)."""
    name = canonical_name(name.rstrip(SEPARATOR) if name != SEPARATOR else name)
    if not name or name.startswith(SEPARATOR):
        raise InvalidName("a mailbox name cannot be empty or start with /")
    if len(name) > MAX_NAME:
        raise InvalidName(f"a mailbox name is limited to {MAX_NAME} characters")
    parts = name.split(SEPARATOR)
    if len(parts) > MAX_DEPTH:
        raise InvalidName(f"mailboxes nest at most {MAX_DEPTH} levels deep")
    if any(not p for p in parts):
        raise InvalidName("a mailbox name cannot contain //")
    if any(ch in name for ch in "*%") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise InvalidName("a mailbox name cannot contain *, % or control characters")
    return name


def list_mailboxes(conn: Connection, account_id: int) -> list[MailboxInfo]:
    rows = conn.execute(
        select(*_COLUMNS).where(mailbox.c.account_id == account_id).order_by(mailbox.c.name)
    )
    return [_info(r) for r in rows]


def get_mailbox(conn: Connection, account_id: int, name: str) -> MailboxInfo | None:
    row = conn.execute(
        select(*_COLUMNS).where(
            mailbox.c.account_id == account_id, mailbox.c.name == canonical_name(name)
        )
    ).first()
    return _info(row) if row else None


def get_mailbox_by_id(conn: Connection, mailbox_id: int) -> MailboxInfo | None:
    row = conn.execute(select(*_COLUMNS).where(mailbox.c.id == mailbox_id)).first()
    return _info(row) if row else None


def require_mailbox(conn: Connection, account_id: int, name: str) -> MailboxInfo:
    found = get_mailbox(conn, account_id, name)
    if found is None:
        raise MailboxNotFound(f"no mailbox {name}")
    return found


def _next_uidvalidity(conn: Connection, account_id: int) -> int:
    """Seconds since the epoch, or more than any UIDVALIDITY the account's mailboxes have or
    had before a DELETE (RFC 3501 §2.3.1.1): a re-created name never gets its old value."""
    highest = conn.execute(
        select(func.max(mailbox.c.uidvalidity)).where(mailbox.c.account_id == account_id)
    ).scalar()
    deleted = conn.execute(
        select(mailbox_uidvalidity.c.highest_deleted).where(
            mailbox_uidvalidity.c.account_id == account_id
        )
    ).scalar()
    return max(int(time.time()), int(highest or 0) + 1, int(deleted or 0) + 1) & 0xFFFFFFFF or 1


def _remember_deleted(conn: Connection, account_id: int, uidvalidity: int) -> None:
    """Keep the UIDVALIDITY of a mailbox being deleted, for :func:`_next_uidvalidity`."""
    known = conn.execute(
        select(mailbox_uidvalidity.c.highest_deleted).where(
            mailbox_uidvalidity.c.account_id == account_id
        )
    ).scalar()
    if known is None:
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(mailbox_uidvalidity).values(
                        account_id=account_id, highest_deleted=uidvalidity
                    )
                )
            return
        except IntegrityError:  # another node inserted it meanwhile: raise it below
            pass
    conn.execute(
        update(mailbox_uidvalidity)
        .where(
            mailbox_uidvalidity.c.account_id == account_id,
            mailbox_uidvalidity.c.highest_deleted < uidvalidity,
        )
        .values(highest_deleted=uidvalidity)
    )


def create_mailbox(
    conn: Connection, account_id: int, name: str, special_use: str | None = None
) -> MailboxInfo:
    """RFC 3501 §6.3.3; superior names are created too; RFC 6154 §3 special use."""
    name = check_name(name)
    if special_use is not None and special_use not in SPECIAL_USES:
        raise MailboxError(f"unknown special use {special_use}")
    if get_mailbox(conn, account_id, name) is not None:
        raise MailboxExists(f"mailbox {name} already exists")
    parts = name.split(SEPARATOR)
    for depth in range(1, len(parts)):
        parent = SEPARATOR.join(parts[:depth])
        if get_mailbox(conn, account_id, parent) is None:
            _insert(conn, account_id, parent, None)
    return _insert(conn, account_id, name, special_use)


def _insert(conn: Connection, account_id: int, name: str, special_use: str | None) -> MailboxInfo:
    conn.execute(
        insert(mailbox).values(
            account_id=account_id, name=name, special_use=special_use,
            uidvalidity=_next_uidvalidity(conn, account_id), uidnext=1, highestmodseq=1,
            subscribed=True,
        )
    )
    found = get_mailbox(conn, account_id, name)
    assert found is not None
    return found


def children(conn: Connection, account_id: int, name: str) -> list[MailboxInfo]:
    prefix = name + SEPARATOR
    return [m for m in list_mailboxes(conn, account_id) if m.name.startswith(prefix)]


def delete_mailbox(conn: Connection, account_id: int, name: str) -> MailboxInfo:
    """RFC 3501 §6.3.4: the mailbox and its messages go. INBOX cannot be deleted.

    A mailbox with inferior names loses its messages and its row, and the name stays in the
    hierarchy as ``\\Noselect`` (LIST shows it so, :mod:`mailstore.imap.listing`) until its
    last inferior goes or CREATE makes it a mailbox again (with a new UIDVALIDITY). Deleting
    such a ``\\Noselect`` name while it still has inferiors is an error (§6.3.4).
    """
    name = canonical_name(name)
    if name == "INBOX":
        raise MailboxError("INBOX cannot be deleted")
    box = get_mailbox(conn, account_id, name)
    if box is None:
        if children(conn, account_id, name):
            raise HasChildren(f"{name} is \\Noselect and has sub-mailboxes: delete them first")
        raise NoSuchMailbox(f"no mailbox {name}")
    _remember_deleted(conn, account_id, box.uidvalidity)
    blob_ids = [
        r[0] for r in conn.execute(
            select(message.c.blob_id).where(message.c.mailbox_id == box.id).distinct()
        )
    ]
    conn.execute(delete(message).where(message.c.mailbox_id == box.id))
    conn.execute(delete(mailbox).where(mailbox.c.id == box.id))
    drop_orphan_blobs(conn, blob_ids)
    return box


def rename_mailbox(conn: Connection, account_id: int, old: str, new: str) -> list[int]:
    """RFC 3501 §6.3.5: renames the mailbox and its children; returns affected mailbox ids.

    Renaming INBOX moves its messages into a new mailbox and leaves INBOX empty.
    """
    old = canonical_name(old)
    new = check_name(new)
    box = get_mailbox(conn, account_id, old)
    if box is None:
        raise NoSuchMailbox(f"no mailbox {old}")
    if get_mailbox(conn, account_id, new) is not None:
        raise MailboxExists(f"mailbox {new} already exists")
    # §6.3.5: the inferiors of INBOX stay where they are, so INBOX may move among them.
    if old != "INBOX" and new.startswith(old + SEPARATOR):
        raise InvalidName("a mailbox cannot be moved inside itself")
    moved = [box] if old == "INBOX" else [box, *children(conn, account_id, old)]
    renamed = {m.id: new + m.name[len(old):] for m in moved}
    # §6.3.5: renaming to an existing name is an error, and so is an inferior landing on
    # one (the target may be a \Noselect name whose inferiors still exist).
    targets = set(renamed.values())
    for m in list_mailboxes(conn, account_id):
        if m.id not in renamed and m.name in targets:
            raise MailboxExists(f"mailbox {m.name} already exists")
    parts = new.split(SEPARATOR)
    for depth in range(1, len(parts)):
        parent = SEPARATOR.join(parts[:depth])
        if get_mailbox(conn, account_id, parent) is None:
            _insert(conn, account_id, parent, None)
    if old == "INBOX":
        target = _insert(conn, account_id, new, None)
        conn.execute(
            update(mailbox).where(mailbox.c.id == target.id).values(
                uidnext=box.uidnext, highestmodseq=box.highestmodseq
            )
        )
        conn.execute(
            update(message).where(message.c.mailbox_id == box.id).values(mailbox_id=target.id)
        )
        conn.execute(
            update(mailbox).where(mailbox.c.id == box.id).values(
                highestmodseq=mailbox.c.highestmodseq + 1
            )
        )
        return [box.id, target.id]
    # Two steps: an inferior may take the old name of another one (``A/B`` → ``A`` moves
    # ``A/B/B/x`` to ``A/B/x`` and ``A/B/x`` to ``A/x``), and the unique name index is
    # checked row by row. Control characters never occur in a real name (check_name).
    for mailbox_id in renamed:
        conn.execute(
            update(mailbox).where(mailbox.c.id == mailbox_id).values(name=f"\x01{mailbox_id}")
        )
    for mailbox_id, name in renamed.items():
        conn.execute(update(mailbox).where(mailbox.c.id == mailbox_id).values(name=name))
    return list(renamed)


def set_subscribed(conn: Connection, account_id: int, name: str, subscribed: bool) -> None:
    """RFC 3501 §6.3.6-7 (subscriptions live on existing mailboxes only)."""
    box = get_mailbox(conn, account_id, name)
    if box is None:
        raise NoSuchMailbox(f"no mailbox {name}")
    conn.execute(update(mailbox).where(mailbox.c.id == box.id).values(subscribed=subscribed))


def has_flag(flag: str) -> ColumnElement[bool]:
    """A SQL condition: the message's flags contain ``flag`` (flags are space-separated)."""
    padded = " " + message.c.flags + " "
    return padded.contains(" " + flag + " ", autoescape=True)


def status(conn: Connection, box: MailboxInfo, items: Iterable[str]) -> dict[str, int]:
    """STATUS values (RFC 3501 §6.3.10, RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ, RFC 9051 DELETED)."""
    wanted = set(items)
    out: dict[str, int] = {}
    if wanted & {"MESSAGES", "RECENT", "UNSEEN", "SIZE", "DELETED"}:
        row = conn.execute(
            select(
                func.count(),
                func.sum(message.c.size),
                func.sum(_as_int(message.c.recent)),
                func.sum(_as_int(not_(has_flag("\\Seen")))),
                func.sum(_as_int(has_flag("\\Deleted"))),
            ).where(message.c.mailbox_id == box.id)
        ).one()
        values = {
            "MESSAGES": row[0], "SIZE": row[1], "RECENT": row[2], "UNSEEN": row[3],
            "DELETED": row[4],
        }
        out.update({k: int(v or 0) for k, v in values.items() if k in wanted})
    if "UIDNEXT" in wanted:
        out["UIDNEXT"] = box.uidnext
    if "UIDVALIDITY" in wanted:
        out["UIDVALIDITY"] = box.uidvalidity
    if "HIGHESTMODSEQ" in wanted:
        out["HIGHESTMODSEQ"] = box.highestmodseq
    return out


def _as_int(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return case((cond, 1), else_=0).cast(Integer)


def drop_orphan_blobs(conn: Connection, blob_ids: Iterable[str]) -> int:
    """Delete blobs no message references any more (copies share blobs); return how many.

    A blob still referenced elsewhere (e.g. by an outbound queue entry with a foreign key)
    is kept: the delete runs in a savepoint and a refusal is ignored.
    """
    ids = list(set(blob_ids))
    if not ids:
        return 0
    removed = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        still = {
            r[0] for r in conn.execute(
                select(message.c.blob_id).where(message.c.blob_id.in_(chunk)).distinct()
            )
        }
        orphans = [b for b in chunk if b not in still]
        if not orphans:
            continue
        try:
            with conn.begin_nested():
                removed += conn.execute(delete(blob).where(blob.c.id.in_(orphans))).rowcount
        except IntegrityError:  # referenced by another package's table: keep it
            continue
    return removed

