"""Message operations behind IMAP: selection snapshots, flags, expunge, copy/move, loading.

UIDs are allocated from ``mailbox.uidnext`` and never reused (RFC 3501 §2.3.1.1); every
change of flags, every arrival and every expunge takes a new MODSEQ from
``mailbox.highestmodseq`` (RFC 7162 §3.1). One command's changes share one MODSEQ.
Everything here takes a SQLAlchemy ``Connection`` and runs inside ``db.read``/``db.write``.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache as cache_fn
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Select,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    not_,
    or_,
    select,
    true,
    update,
)

from mailstore.crypto import open_sealed
from mailstore.folders import MailboxInfo, drop_orphan_blobs, get_mailbox_by_id, has_flag
from mailstore.keystore import KeyStore
from mailstore.messages import MailboxNotFound, normalise_flags
from mailstore.tables import blob, mailbox, message


@dataclass(frozen=True, slots=True)
class Selection:
    """What SELECT needs (RFC 3501 §6.3.1): UIDs in order, recent UIDs, the first unseen
    message's UID, the keywords in use."""

    info: MailboxInfo
    #: 32-bit UIDs (RFC 3501 §2.3.1.1) in a packed array: 10,000 messages are 40 KB, and
    #: no Python int is made for each.
    uids: array[int]
    recent: list[int]
    first_unseen: int | None
    keywords: list[str]


@dataclass(frozen=True, slots=True)
class FlagChange:
    uid: int
    flags: str
    modseq: int


@dataclass(frozen=True, slots=True)
class MessageRow:
    uid: int
    flags: str
    modseq: int
    internal_date: datetime
    size: int
    blob_id: str
    recent: bool


def uid_condition(uids: Sequence[int]) -> ColumnElement[bool]:
    """``uid`` in ``uids`` (ascending): one BETWEEN for a run of consecutive UIDs, an IN
    list otherwise. SQLite plans an OR of several ranges as a scan of the whole mailbox,
    so only a long list made of few runs (whose IN list could pass the database's limit
    on parameters) takes that form."""
    ranges: list[tuple[int, int]] = []
    for u in uids:
        if ranges and u == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], u)
        else:
            ranges.append((u, u))
    if len(ranges) == 1:
        lo, hi = ranges[0]
        return message.c.uid == lo if lo == hi else message.c.uid.between(lo, hi)
    if len(uids) <= _IN_LIST_MAX or len(ranges) > 64:
        return message.c.uid.in_(list(uids))
    return or_(*(
        message.c.uid == lo if lo == hi else message.c.uid.between(lo, hi) for lo, hi in ranges
    ))


#: UIDs named one by one in an IN list at most, when a few ranges could name them.
_IN_LIST_MAX = 2000


def driver_rows(conn: Connection, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
    """The rows of ``statement`` as the database driver's own tuples, unconverted (the
    caller knows its columns need no conversion, or applies it). Thousands of rows then
    cost no Row object each, and tuples of plain values are soon untracked by the garbage
    collector (Row objects alive across a collection are promoted and, thousands per
    command, bring on full collections of the whole heap)."""
    result = conn.execute(statement, params)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


_IN_BOX = message.c.mailbox_id == bindparam("mailbox")
# Built once: SELECT runs them on every mailbox open.
_SELECT_UIDS = select(message.c.uid).where(_IN_BOX).order_by(message.c.uid)
_SELECT_RECENT = (
    select(message.c.uid).where(_IN_BOX, message.c.recent == true()).order_by(message.c.uid)
)
_SELECT_FIRST_UNSEEN = select(func.min(message.c.uid)).where(_IN_BOX, not_(has_flag("\\Seen")))
_SELECT_FLAG_SETS = select(message.c.flags).where(_IN_BOX).distinct()  # few distinct sets


def load_selection(conn: Connection, mailbox_id: int, info: MailboxInfo | None = None) -> Selection:
    """The mailbox row first (``info`` when the caller just read it), then its messages (a
    message committed in between is then reported by the next MODSEQ check instead of
    being missed)."""
    if info is None:
        info = get_mailbox_by_id(conn, mailbox_id)
    if info is None:
        raise MailboxNotFound(f"mailbox {mailbox_id} does not exist")
    params = {"mailbox": info.id}
    uids = array("I")
    result = conn.execute(_SELECT_UIDS, params)
    try:  # from the driver into the array a block at a time: nothing big in between
        while block := result.cursor.fetchmany(2048):
            uids.extend([r[0] for r in block])
    finally:
        result.close()
    recent = [r[0] for r in driver_rows(conn, _SELECT_RECENT, params)]
    first_unseen = conn.execute(_SELECT_FIRST_UNSEEN, params).scalar()
    keywords: set[str] = set()
    for (flags,) in driver_rows(conn, _SELECT_FLAG_SETS, params):
        keywords.update(f for f in flags.split() if not f.startswith("\\"))
    return Selection(
        info, uids, recent, int(first_unseen) if first_unseen is not None else None,
        sorted(keywords),
    )


def claim_recent(conn: Connection, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
    """Take the \\Recent flags (RFC 3501 §2.3.2): the first session to see a message gets it."""
    cond = and_(message.c.mailbox_id == mailbox_id, message.c.recent == true())
    if uids is not None:
        if not uids:
            return []
        cond = and_(cond, uid_condition(uids))
    rows = conn.execute(update(message).where(cond).values(recent=false()).returning(message.c.uid))
    return sorted(int(r[0]) for r in rows)


def mailbox_counters(conn: Connection, mailbox_id: int) -> tuple[int, int] | None:
    """``(uidnext, highestmodseq)``, or ``None`` if the mailbox is gone."""
    row = conn.execute(
        select(mailbox.c.uidnext, mailbox.c.highestmodseq).where(mailbox.c.id == mailbox_id)
    ).first()
    return (int(row[0]), int(row[1])) if row else None


def changes_since(conn: Connection, mailbox_id: int, modseq: int) -> list[FlagChange]:
    """Messages whose MODSEQ is above ``modseq`` (new or with changed flags), by UID."""
    rows = conn.execute(
        select(message.c.uid, message.c.flags, message.c.modseq)
        .where(message.c.mailbox_id == mailbox_id, message.c.modseq > modseq)
        .order_by(message.c.uid)
    )
    return [FlagChange(int(r[0]), r[1], int(r[2])) for r in rows]


def count_up_to(conn: Connection, mailbox_id: int, max_uid: int) -> int:
    return int(
        conn.execute(
            select(func.count()).where(message.c.mailbox_id == mailbox_id, message.c.uid <= max_uid)
        ).scalar_one()
    )


def uids_up_to(conn: Connection, mailbox_id: int, max_uid: int) -> list[int]:
    return [
        int(r[0]) for r in conn.execute(
            select(message.c.uid)
            .where(message.c.mailbox_id == mailbox_id, message.c.uid <= max_uid)
            .order_by(message.c.uid)
        )
    ]


def _bump(conn: Connection, mailbox_id: int, uids: int = 0) -> tuple[int, int]:
    """Allocate ``uids`` UIDs and one MODSEQ; return ``(first uid, modseq)``."""
    row = conn.execute(
        update(mailbox)
        .where(mailbox.c.id == mailbox_id)
        .values(uidnext=mailbox.c.uidnext + uids, highestmodseq=mailbox.c.highestmodseq + 1)
        .returning(mailbox.c.uidnext, mailbox.c.highestmodseq)
    ).first()
    if row is None:
        raise MailboxNotFound(f"mailbox {mailbox_id} does not exist")
    return int(row[0]) - uids, int(row[1])


def apply_flags(current: str, mode: str, flags: Iterable[str]) -> str:
    """New flag string for STORE ``mode`` (``+``, ``-`` or replace), \\Recent excluded."""
    have = set(current.split())
    given = {f for f in flags if f != "\\Recent"}
    if mode == "+":
        have |= given
    elif mode == "-":
        have -= given
    else:
        have = given
    return normalise_flags(have)


@dataclass(frozen=True, slots=True)
class StoreResult:
    changed: list[FlagChange]
    #: Messages left alone because they changed after UNCHANGEDSINCE (RFC 7162 §3.1.3).
    modified: list[int]
    #: Current state of every message the command named (for FETCH responses).
    current: dict[int, FlagChange]


def store_flags(
    conn: Connection,
    mailbox_id: int,
    uids: Sequence[int],
    mode: str,
    flags: Iterable[str],
    unchangedsince: int | None = None,
) -> StoreResult:
    """STORE (RFC 3501 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3)."""
    flags = list(flags)
    if not uids:
        return StoreResult([], [], {})
    rows = conn.execute(
        select(message.c.id, message.c.uid, message.c.flags, message.c.modseq)
        .where(message.c.mailbox_id == mailbox_id, uid_condition(uids))
    ).all()
    updates: list[dict[str, Any]] = []
    modified: list[int] = []
    current: dict[int, FlagChange] = {}
    for mid, uid, old, modseq in rows:
        if unchangedsince is not None and modseq > unchangedsince:
            modified.append(int(uid))
            current[int(uid)] = FlagChange(int(uid), old, int(modseq))
            continue
        new = apply_flags(old, mode, flags)
        if new == old:
            current[int(uid)] = FlagChange(int(uid), old, int(modseq))
            continue
        updates.append({"mid": mid, "uid": int(uid), "nf": new})
    changed: list[FlagChange] = []
    if updates:
        _, modseq = _bump(conn, mailbox_id)
        conn.execute(
            update(message)
            .where(message.c.id == bindparam("mid"))
            .values(flags=bindparam("nf"), modseq=modseq),
            [{"mid": u["mid"], "nf": u["nf"]} for u in updates],
        )
        for u in updates:
            ch = FlagChange(u["uid"], u["nf"], modseq)
            changed.append(ch)
            current[u["uid"]] = ch
    return StoreResult(sorted(changed, key=lambda c: c.uid), sorted(modified), current)


def expunge(
    conn: Connection, mailbox_id: int, uids: Sequence[int] | None = None
) -> list[int]:
    """Remove the messages flagged \\Deleted (among ``uids`` for UID EXPUNGE, RFC 4315 §2.1)."""

    cond = and_(message.c.mailbox_id == mailbox_id, has_flag("\\Deleted"))
    if uids is not None:
        if not uids:
            return []
        cond = and_(cond, uid_condition(uids))
    rows = conn.execute(select(message.c.uid, message.c.blob_id).where(cond)).all()
    if not rows:
        return []
    gone = sorted(int(r[0]) for r in rows)
    conn.execute(delete(message).where(message.c.mailbox_id == mailbox_id, uid_condition(gone)))
    _bump(conn, mailbox_id)
    drop_orphan_blobs(conn, [r[1] for r in rows])
    return gone


@dataclass(frozen=True, slots=True)
class CopyResult:
    source_uids: list[int]
    target_uids: list[int]
    uidvalidity: int


def copy_messages(
    conn: Connection, source_id: int, uids: Sequence[int], target: MailboxInfo, *, move: bool
) -> CopyResult:
    """COPY (RFC 3501 §6.4.7) / MOVE (RFC 6851 §3): same blobs, new UIDs, flags kept."""
    rows = conn.execute(
        select(
            message.c.uid, message.c.flags, message.c.internal_date, message.c.size,
            message.c.blob_id,
        )
        .where(message.c.mailbox_id == source_id, uid_condition(uids))
        .order_by(message.c.uid)
    ).all() if uids else []
    if not rows:
        return CopyResult([], [], target.uidvalidity)
    first_uid, modseq = _bump(conn, target.id, len(rows))
    conn.execute(
        insert(message),
        [
            {
                "mailbox_id": target.id, "uid": first_uid + i, "modseq": modseq,
                "flags": r[1], "internal_date": r[2], "size": r[3], "blob_id": r[4],
                "recent": True,
            }
            for i, r in enumerate(rows)
        ],
    )
    src = [int(r[0]) for r in rows]
    if move:
        conn.execute(delete(message).where(message.c.mailbox_id == source_id, uid_condition(src)))
        _bump(conn, source_id)
    return CopyResult(src, [first_uid + i for i in range(len(rows))], target.uidvalidity)


def message_rows(conn: Connection, mailbox_id: int, uids: Sequence[int]) -> list[MessageRow]:
    if not uids:
        return []
    rows = conn.execute(
        select(
            message.c.uid, message.c.flags, message.c.modseq, message.c.internal_date,
            message.c.size, message.c.blob_id, message.c.recent,
        )
        .where(message.c.mailbox_id == mailbox_id, uid_condition(uids))
        .order_by(message.c.uid)
    )
    return [_row(r) for r in rows]


def _row(r: Any) -> MessageRow:
    return MessageRow(int(r[0]), r[1], int(r[2]), r[3], int(r[4]), r[5], bool(r[6]))


@dataclass(slots=True)
class Loaded:
    """A message row with its decrypted index and/or bytes, as FETCH and SEARCH need."""

    row: MessageRow
    meta: dict[str, Any] | None = None
    body: bytes | None = None


#: Stands for an internal date that was not asked for.
_NO_DATE = datetime(1970, 1, 1, tzinfo=UTC)


def blob_aad(purpose: str, blob_id: str, account_id: int) -> bytes:
    """:func:`mailstore.crypto.aad_for` for a blob row, without the generic join (hot path;
    a test checks that both give the same bytes)."""
    return f"caducee/{purpose}/v1|{blob_id}|{account_id}".encode()


@cache_fn
def _statement(dates: bool, meta: bool, body: bool) -> Select[Any]:
    """The message query for :func:`load_messages`, built once per column set (statement
    construction is most of the cost of a one-message FETCH)."""
    cols: list[Any] = [
        message.c.uid, message.c.flags, message.c.modseq, message.c.size, message.c.blob_id,
        message.c.recent,
    ]
    if dates:
        cols.append(message.c.internal_date)
    if meta:
        cols.append(blob.c.meta)
    if body:
        cols.append(blob.c.body)
    q = select(*cols).where(message.c.mailbox_id == bindparam("mailbox"))
    if meta or body:
        q = q.join(blob, blob.c.id == message.c.blob_id)
    return q.order_by(message.c.uid)


@cache_fn
def _range_statement(dates: bool, meta: bool, body: bool) -> Select[Any]:
    return _statement(dates, meta, body).where(
        message.c.uid.between(bindparam("lo"), bindparam("hi"))
    )


def _since(q: Select[Any], changedsince: int | None, params: dict[str, Any]) -> Select[Any]:
    """CHANGEDSINCE (RFC 7162 §3.1.4.1) as a condition only when asked: an always-true
    ``modseq > 0`` makes SQLite's planner scan the whole mailbox by its MODSEQ index
    instead of looking the UIDs up."""
    if changedsince is None:
        return q
    params["since"] = changedsince
    return q.where(message.c.modseq > bindparam("since"))


#: The columns :func:`fetch_rows` can return, by name.
FETCH_COLUMNS: dict[str, Any] = {
    "uid": message.c.uid, "flags": message.c.flags, "blob_id": message.c.blob_id,
    "modseq": message.c.modseq, "size": message.c.size,
    "internal_date": message.c.internal_date, "meta": blob.c.meta, "body": blob.c.body,
}


#: UIDs given as one range (``lo``, ``hi``) or as a list (``uids``, expanded at execution).
_UID_FORMS: dict[str, ColumnElement[bool]] = {
    "range": message.c.uid.between(bindparam("lo"), bindparam("hi")),
    "list": message.c.uid.in_(bindparam("uids", expanding=True)),
}


def _uid_params(uids: Sequence[int], params: dict[str, Any]) -> str | None:
    """Which prebuilt UID condition names ``uids`` (ascending), its values put in
    ``params``; ``None`` for a set too big for a list (:func:`uid_condition` then)."""
    if uids[-1] - uids[0] + 1 == len(uids):
        params.update(lo=uids[0], hi=uids[-1])
        return "range"
    if len(uids) <= _IN_LIST_MAX:
        params["uids"] = list(uids)
        return "list"
    return None


def _build_fetch_statement(columns: tuple[str, ...], uids: ColumnElement[bool]) -> Select[Any]:
    q = select(*(FETCH_COLUMNS[c] for c in columns)).where(
        message.c.mailbox_id == bindparam("mailbox"), uids
    )
    if "meta" in columns or "body" in columns:
        q = q.join(blob, blob.c.id == message.c.blob_id)
    return q.order_by(message.c.uid)


@cache_fn
def _fetch_statement(columns: tuple[str, ...], form: str) -> Select[Any]:
    """The statement of :func:`fetch_rows`, built once per column set and UID form:
    nothing is built per call, its compiled form is reused."""
    return _build_fetch_statement(columns, _UID_FORMS[form])


def fetch_rows(
    conn: Connection,
    mailbox_id: int,
    uids: Sequence[int],
    columns: tuple[str, ...],
    changedsince: int | None = None,
) -> Sequence[Any]:
    """The rows (tuples of ``columns``, names of :data:`FETCH_COLUMNS`) of ``uids``
    (ascending) by UID, sealed columns still sealed: FETCH's hot path, which reads only
    the columns its items need and builds no object per message."""
    if not uids:
        return []
    params: dict[str, Any] = {"mailbox": mailbox_id}
    form = _uid_params(uids, params)
    if form is not None:
        q = _fetch_statement(columns, form)
    else:  # a huge set: built for this call
        q = _build_fetch_statement(columns, uid_condition(uids))
    rows = driver_rows(conn, _since(q, changedsince, params), params)
    for i, process in _processors(columns, conn.dialect):
        rows = [(*r[:i], process(r[i]), *r[i + 1 :]) for r in rows]
    return rows


_PROCESSORS: dict[tuple[tuple[str, ...], str], list[tuple[int, Callable[[Any], Any]]]] = {}


def _processors(
    columns: tuple[str, ...], dialect: Dialect
) -> list[tuple[int, Callable[[Any], Any]]]:
    """The result conversions SQLAlchemy would apply to ``columns`` on ``dialect`` (only
    DATETIME on SQLite, stored as text), by column index."""
    key = (columns, dialect.name)
    found = _PROCESSORS.get(key)
    if found is None:
        found = []
        for i, c in enumerate(columns):
            column_type = FETCH_COLUMNS[c].type
            process = column_type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                found.append((i, process))
        _PROCESSORS[key] = found
    return found


def unflagged(conn: Connection, mailbox_id: int, uids: Sequence[int], flag: str) -> list[int]:
    """Which of ``uids`` lack ``flag`` (FETCH BODY[] writes \\Seen only where missing)."""
    if not uids:
        return []
    params: dict[str, Any] = {"mailbox": mailbox_id}
    form = _uid_params(uids, params)
    rows = conn.execute(
        select(message.c.uid).where(
            message.c.mailbox_id == bindparam("mailbox"),
            _UID_FORMS[form] if form is not None else uid_condition(uids),
            not_(has_flag(flag)),
        ).order_by(message.c.uid),
        params,
    ).all()
    return [int(r[0]) for r in rows]


def sealed_metas(conn: Connection, blob_ids: Sequence[str]) -> list[tuple[str, bytes]]:
    """``(blob id, sealed index)`` of ``blob_ids`` (structure cache misses)."""
    out: list[tuple[str, bytes]] = []
    for i in range(0, len(blob_ids), 500):
        out += [
            (r[0], r[1]) for r in conn.execute(
                select(blob.c.id, blob.c.meta).where(blob.c.id.in_(blob_ids[i : i + 500]))
            ).all()
        ]
    return out


def load_messages(
    conn: Connection,
    keystore: KeyStore,
    account_id: int,
    mailbox_id: int,
    uids: Sequence[int],
    *,
    meta: bool,
    body: bool,
    changedsince: int | None = None,
    dates: bool = True,
) -> list[Loaded]:
    """Rows for ``uids`` (ascending) with their blob decrypted as asked (the general
    path of FETCH, and SEARCH). ``dates=False`` skips the internal date (its conversion
    is a noticeable part of a big FETCH)."""
    if not uids:
        return []
    params: dict[str, Any] = {"mailbox": mailbox_id}
    if uids[-1] - uids[0] + 1 == len(uids):  # one range (FETCH 1:*, UID FETCH n): prebuilt
        q = _range_statement(dates, meta, body)
        params.update(lo=uids[0], hi=uids[-1])
    else:
        q = _statement(dates, meta, body).where(uid_condition(uids))
    cipher = keystore.cipher(conn, account_id) if (meta or body) else None
    out: list[Loaded] = []
    r: Any
    for r in conn.execute(_since(q, changedsince, params), params).all():
        blob_id = r[4]
        row = MessageRow(
            int(r[0]), r[1], int(r[2]), r[6] if dates else _NO_DATE, int(r[3]), blob_id,
            bool(r[5]),
        )
        item = Loaded(row)
        k = 7 if dates else 6
        if meta:
            assert cipher is not None
            item.meta = orjson.loads(
                open_sealed(cipher, blob_aad("blob-meta", blob_id, account_id), r[k],
                            what=f"message index {blob_id}")
            )
            k += 1
        if body:
            assert cipher is not None
            item.body = open_sealed(cipher, blob_aad("blob-body", blob_id, account_id), r[k],
                                    what=f"message blob {blob_id}")
        out.append(item)
    return out
