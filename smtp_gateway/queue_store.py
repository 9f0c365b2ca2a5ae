"""The outbound queue's storage: enqueue, claim with a lease, defer, finish (ARCHITECTURE.md §4).

Every function takes a SQLAlchemy :class:`~sqlalchemy.Connection`; callers run them inside
``db.write`` (changes) or ``db.read`` (listing). The same code runs on SQLite and PostgreSQL.

**Encryption.** A queued message is encrypted with the data key of the local account that
sent it (the sending professional or patient: only local senders ever queue, since the MTA
never relays), through :class:`~mailstore.keystore.KeyStore`, with associated data naming
the queue row and the account (``caducee/queue-body/v1|<ref>|<account>``). So a master-key
rotation re-wraps the queue's keys with every other data key, a ciphertext moved to another
row does not open, and the database never holds the bytes in clear.

**Claiming.** :func:`claim` takes due entries and leases them: their ``next_attempt`` moves
to the end of the lease and ``lease_owner`` names the node. On PostgreSQL the rows are
selected ``FOR UPDATE SKIP LOCKED``, so concurrent nodes never take the same entry; SQLite
has one writer, which serialises claims. A node that dies mid-delivery leaves the lease to
expire, and the entry is due again: nothing acknowledged is lost. (A peer that accepted the
message just before the crash will get it twice: the duplicate that RFC 5321 §6.1 accepts
over a loss.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update

from mailstore.crypto import aad_for, open_sealed, seal
from mailstore.keystore import KeyStore
from mailstore.queue_tables import ACTIVE, QUEUED, queue_entry, queue_message, utc


@dataclass(frozen=True, slots=True)
class Entry:
    """One remote recipient of one queued message (no content)."""

    id: int
    message_ref: str
    queue_id: str
    message_id: str
    sender: str
    account_id: int
    recipient: str
    domain: str
    state: str
    attempts: int
    next_attempt: datetime
    expires_at: datetime
    created_at: datetime
    size: int
    smtputf8: bool
    eight_bit: bool
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    lease_owner: str | None = None


def body_aad(ref: str, account_id: int) -> bytes:
    return aad_for("queue-body", ref, account_id)


def _needs_smtputf8(sender: str, recipients: Iterable[str], raw: bytes) -> bool:
    """Non-ASCII addresses or header fields need SMTPUTF8 from the next hop (RFC 6531 §3.4)."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[:end]
    return not sender.isascii() or any(not r.isascii() for r in recipients) or not head.isascii()


def _has_8bit_body(raw: bytes) -> bool:
    end = raw.find(b"\r\n\r\n")
    return end >= 0 and not raw[end:].isascii()


def enqueue(
    conn: Connection,
    keystore: KeyStore,
    *,
    account_id: int,
    sender: str,
    recipients: Sequence[str],
    raw: bytes,
    queue_id: str,
    message_id: str,
    now: datetime,
    max_age: timedelta,
) -> list[int]:
    """Queue ``raw`` once for its remote ``recipients``; return the new entry ids."""
    if not recipients:
        return []
    ref = secrets.token_hex(16)
    cipher = keystore.cipher(conn, account_id)
    conn.execute(
        insert(queue_message).values(
            id=ref,
            queue_id=queue_id,
            message_id=message_id,
            sender=sender,
            account_id=account_id,
            size=len(raw),
            body=seal(cipher, body_aad(ref, account_id), raw),
            smtputf8=_needs_smtputf8(sender, recipients, raw),
            eight_bit=_has_8bit_body(raw),
            created_at=now,
        )
    )
    ids = []
    for rcpt in recipients:
        domain = rcpt.rpartition("@")[2].lower()
        row = conn.execute(
            insert(queue_entry)
            .values(
                message_ref=ref,
                recipient=rcpt,
                domain=domain,
                state=QUEUED,
                attempts=0,
                next_attempt=now,
                expires_at=now + max_age,
                created_at=now,
            )
            .returning(queue_entry.c.id)
        ).scalar_one()
        ids.append(int(row))
    return ids


_COLUMNS = (
    queue_entry.c.id,
    queue_entry.c.message_ref,
    queue_message.c.queue_id,
    queue_message.c.message_id,
    queue_message.c.sender,
    queue_message.c.account_id,
    queue_entry.c.recipient,
    queue_entry.c.domain,
    queue_entry.c.state,
    queue_entry.c.attempts,
    queue_entry.c.next_attempt,
    queue_entry.c.expires_at,
    queue_entry.c.created_at,
    queue_message.c.size,
    queue_message.c.smtputf8,
    queue_message.c.eight_bit,
    queue_entry.c.last_error,
    queue_entry.c.last_attempt_at,
    queue_entry.c.lease_owner,
)


def _select() -> Select[Any]:
    return select(*_COLUMNS).select_from(
        queue_entry.join(queue_message, queue_message.c.id == queue_entry.c.message_ref)
    )


def _entry(row: object) -> Entry:
    m = row._mapping  # type: ignore[attr-defined]
    return Entry(
        id=m["id"],
        message_ref=m["message_ref"],
        queue_id=m["queue_id"],
        message_id=m["message_id"],
        sender=m["sender"],
        account_id=m["account_id"],
        recipient=m["recipient"],
        domain=m["domain"],
        state=m["state"],
        attempts=m["attempts"],
        next_attempt=utc(m["next_attempt"]),
        expires_at=utc(m["expires_at"]),
        created_at=utc(m["created_at"]),
        size=m["size"],
        smtputf8=bool(m["smtputf8"]),
        eight_bit=bool(m["eight_bit"]),
        last_error=m["last_error"],
        last_attempt_at=utc(m["last_attempt_at"]) if m["last_attempt_at"] else None,
        lease_owner=m["lease_owner"],
    )


def claim(
    conn: Connection, *, now: datetime, lease: timedelta, owner: str, limit: int = 100
) -> list[Entry]:
    """Lease up to ``limit`` due entries to ``owner`` until ``now + lease``; return them.

    A due entry is a queued one whose next attempt has come, or an active one whose lease
    ran out (its node died). PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer.
    """
    ids = list(
        conn.execute(
            select(queue_entry.c.id)
            .where(queue_entry.c.next_attempt <= now)
            .order_by(queue_entry.c.next_attempt, queue_entry.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if not ids:
        return []
    conn.execute(
        update(queue_entry)
        .where(queue_entry.c.id.in_(ids))
        .values(state=ACTIVE, next_attempt=now + lease, lease_owner=owner)
    )
    rows = conn.execute(_select().where(queue_entry.c.id.in_(ids)).order_by(queue_entry.c.id))
    return [_entry(r) for r in rows]


def renew(
    conn: Connection, entries: Sequence[Entry], *, now: datetime, lease: timedelta, owner: str
) -> set[int]:
    """Extend ``owner``'s lease on ``entries`` to ``now + lease``; return the ids still
    leased to ``owner``. An entry missing from the result was finished or taken over by
    another node after our lease ran out: it is no longer ours to deliver."""
    if not entries:
        return set()
    rows = conn.execute(
        update(queue_entry)
        .where(
            queue_entry.c.id.in_([e.id for e in entries]),
            queue_entry.c.state == ACTIVE,
            queue_entry.c.lease_owner == owner,
        )
        .values(next_attempt=now + lease)
        .returning(queue_entry.c.id)
    )
    return {int(i) for i in rows.scalars()}


def read_body(conn: Connection, keystore: KeyStore, ref: str) -> bytes:
    """The decrypted bytes of a queued message (:class:`DecryptionError` if tampered)."""
    row = conn.execute(
        select(queue_message.c.account_id, queue_message.c.body).where(queue_message.c.id == ref)
    ).one()
    cipher = keystore.cipher(conn, row.account_id)
    return open_sealed(
        cipher, body_aad(ref, row.account_id), row.body, what=f"queued message {ref}"
    )


def _drop_orphans(conn: Connection, refs: Iterable[str]) -> None:
    for ref in set(refs):
        left = conn.execute(
            select(func.count()).select_from(queue_entry).where(queue_entry.c.message_ref == ref)
        ).scalar_one()
        if not left:
            conn.execute(delete(queue_message).where(queue_message.c.id == ref))


def finish(conn: Connection, entries: Sequence[Entry]) -> None:
    """Remove entries that reached a final state (relayed or bounced), and their message
    once no recipient is left. The journal keeps the trace."""
    if not entries:
        return
    conn.execute(delete(queue_entry).where(queue_entry.c.id.in_([e.id for e in entries])))
    _drop_orphans(conn, (e.message_ref for e in entries))


def defer(
    conn: Connection, entry: Entry, *, now: datetime, next_attempt: datetime, error: str,
    owner: str,
) -> None:
    """Record a temporary failure and release ``owner``'s lease until ``next_attempt``;
    a lease another node has taken over meanwhile is left alone."""
    conn.execute(
        update(queue_entry)
        .where(queue_entry.c.id == entry.id, queue_entry.c.lease_owner == owner)
        .values(
            state=QUEUED,
            attempts=queue_entry.c.attempts + 1,
            next_attempt=next_attempt,
            last_error=error[:1000],
            last_attempt_at=now,
            lease_owner=None,
        )
    )


def release(
    conn: Connection, entries: Sequence[Entry], *, at: datetime, owner: str
) -> None:
    """Give ``owner``'s leased entries back untried (shutdown): due again at ``at``; those
    another node has taken over meanwhile are left alone."""
    if entries:
        conn.execute(
            update(queue_entry)
            .where(queue_entry.c.id.in_([e.id for e in entries]),
                   queue_entry.c.lease_owner == owner)
            .values(state=QUEUED, next_attempt=at, lease_owner=None)
        )


def next_due(conn: Connection) -> datetime | None:
    """When the earliest entry is due (a lease end counts), or None if the queue is empty."""
    value = conn.execute(select(func.min(queue_entry.c.next_attempt))).scalar()
    return utc(value) if value is not None else None


def list_entries(conn: Connection, *, limit: int = 1000) -> list[Entry]:
    rows = conn.execute(_select().order_by(queue_entry.c.next_attempt, queue_entry.c.id)
                        .limit(limit))
    return [_entry(r) for r in rows]


def get_entry(conn: Connection, entry_id: int) -> Entry | None:
    row = conn.execute(_select().where(queue_entry.c.id == entry_id)).first()
    return _entry(row) if row is not None else None


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(queue_entry)).scalar_one())


def make_due(conn: Connection, *, now: datetime, entry_ids: Sequence[int] | None = None) -> int:
    """Retry now: the given waiting entries (all waiting entries when ``None``); leased
    entries are left to their node. Return how many were changed."""
    stmt = update(queue_entry).where(queue_entry.c.state == QUEUED)
    if entry_ids is not None:
        stmt = stmt.where(queue_entry.c.id.in_(list(entry_ids)))
    result = conn.execute(stmt.values(next_attempt=now))
    return int(result.rowcount or 0)
