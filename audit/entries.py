"""Reading entries back as :class:`AuditEvent` s (for ``show``, exports and the patient view)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, select

from audit.canonical import decode_object_ids, format_at, parse_at
from audit.events import AuditEvent
from audit.tables import audit_entry

_e = audit_entry.c
_COLUMNS = (
    _e.seq, _e.at, _e.action, _e.actor, _e.outcome, _e.reason, _e.message_id, _e.document_id,
    _e.queue_id, _e.patient_ins, _e.client_ip, _e.protocol, _e.object_ids, _e.hash,
)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    event: AuditEvent  # ``at`` is always set
    hash: bytes

    @property
    def at(self) -> datetime:
        assert self.event.at is not None
        return self.event.at


def from_row(r: Sequence[Any]) -> StoredEntry:
    ev = AuditEvent(
        action=r[2], actor=r[3], outcome=r[4], reason=r[5], message_id=r[6],
        document_id=r[7], queue_id=r[8], patient_ins=r[9], client_ip=r[10], protocol=r[11],
        object_ids=decode_object_ids(r[12]), at=parse_at(r[1]),
    )
    return StoredEntry(int(r[0]), ev, bytes(r[13]))


def build_query(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    patient_ins: str | None = None,
    actor: str | None = None,
    actions: Sequence[str] | None = None,
    from_seq: int | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> Select[Any]:
    """Entries with ``since <= at < until`` and the other filters, in ``seq`` order."""
    q = select(*_COLUMNS)
    if since is not None:
        q = q.where(_e.at >= format_at(since))
    if until is not None:
        q = q.where(_e.at < format_at(until))
    if patient_ins is not None:
        q = q.where(_e.patient_ins == patient_ins)
    if actor is not None:
        q = q.where(_e.actor == actor)
    if actions:
        q = q.where(_e.action.in_([str(a) for a in actions]))
    if from_seq is not None:
        q = q.where(_e.seq >= from_seq)
    q = q.order_by(_e.seq.desc() if newest_first else _e.seq)
    if limit is not None:
        q = q.limit(limit)
    return q


def query(conn: Connection, **filters: Any) -> list[StoredEntry]:
    """See :func:`build_query` for the filters."""
    return [from_row(r) for r in conn.execute(build_query(**filters))]


def stream(conn: Connection, batch: int = 5000, **filters: Any) -> Iterator[StoredEntry]:
    """Like :func:`query`, without holding every row in memory (server-side cursor on PG)."""
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(
        build_query(**filters)
    )
    for r in result:
        yield from_row(r)
