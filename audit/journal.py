"""The journal: appends chained entries inside the caller's transaction.

The chain head (last sequence number, its hash, the last checkpoint) lives in the single
``audit_head`` row, updated in the same transaction — and savepoint — as the entries: a
rolled-back savepoint rolls the head back with its entries, so no gap and no broken link
is ever left behind. Updating that row also serialises appenders of every process (row
lock on PostgreSQL, the write lock on SQLite): one gap-free order.

Hot path (:meth:`Journal.append`): the journal remembers the head it last wrote and
tries a *compare-and-set* — "set the head to the new one where it is still the one I
remember" — together with the insert of the new entries: one round trip on PostgreSQL (a
data-modifying CTE), two statements on SQLite. When the head moved (another process
appended, or a savepoint holding our last append was rolled back), nothing is written and
the slow path runs: lock and read the head, hash, insert, update. Correctness never rests
on the remembered head, only speed.

Entries are not signed one by one: every ``checkpoint_every`` entries the append also
signs the new head (one Ed25519 signature, ≈ 50 µs) into ``audit_checkpoint``;
:meth:`Journal.checkpoint` does the same on demand (periodically, from the runner).
Signed checkpoints are copied to the append-only file by
:meth:`Journal.sync_checkpoint_file`, *after* they commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import Connection, bindparam, insert, select, update

from audit import checkpoints
from audit.canonical import GENESIS, chain, clean, encode_object_ids, format_at
from audit.events import OUTCOMES, AuditEvent
from audit.keys import key_ring
from audit.tables import HEAD_ID, audit_checkpoint, audit_entry, audit_head

_h = audit_head.c

_LOCK_HEAD = (
    update(audit_head)
    .where(_h.id == HEAD_ID)
    .values(seq=_h.seq + bindparam("n"))
    .returning(_h.seq, _h.hash, _h.checkpoint_seq)
)
_SET_HASH = update(audit_head).where(_h.id == HEAD_ID).values(hash=bindparam("h"))
_SET_HASH_CP = (
    update(audit_head)
    .where(_h.id == HEAD_ID)
    .values(hash=bindparam("h"), checkpoint_seq=bindparam("cp"))
)
_INSERT = insert(audit_entry)
_ENTRY_COLUMNS = (
    "seq", "at", "action", "actor", "outcome", "reason", "message_id", "document_id",
    "queue_id", "patient_ins", "client_ip", "protocol", "object_ids", "hash",
)
_PG_ROW = (
    "(%s::bigint,%s::text,%s::text,%s::text,%s::text,%s::text,%s::text,%s::text,%s::text,"
    "%s::text,%s::text,%s::text,%s::text,%s::bytea)"
)
# Constant column names; every value is a bound parameter.
_PG_CAS = (
    "WITH h AS (UPDATE audit_head SET seq = %s, hash = %s, checkpoint_seq = %s "  # noqa: S608
    "WHERE id = 1 AND seq = %s AND hash = %s AND checkpoint_seq = %s RETURNING 1) "
    "INSERT INTO audit_entry (" + ", ".join(_ENTRY_COLUMNS) + ") "
    "SELECT * FROM (VALUES {rows}) AS v WHERE EXISTS (SELECT 1 FROM h)"
)
_pg_sql_cache: dict[int, str] = {}
#: Above this many entries in one append, one multi-row statement costs PostgreSQL more to
#: plan than the slow path's three statements (bulk imports, benchmarks).
_PG_CAS_MAX = 64
#: After a compare-and-set miss, this many appends go straight to the slow path.
_CAS_BACKOFF = 16
_SQLITE_CAS = (
    "UPDATE audit_head SET seq = ?, hash = ?, checkpoint_seq = ? "
    "WHERE id = 1 AND seq = ? AND hash = ? AND checkpoint_seq = ?"
)
_SQLITE_INSERT = (
    "INSERT INTO audit_entry (" + ", ".join(_ENTRY_COLUMNS) + ") "
    "VALUES (" + ", ".join("?" * len(_ENTRY_COLUMNS)) + ")"
)


def _pg_cas_sql(n: int) -> str:
    sql = _pg_sql_cache.get(n)
    if sql is None:
        sql = _PG_CAS.format(rows=",".join([_PG_ROW] * n))
        _pg_sql_cache[n] = sql
    return sql


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: bytes
    checkpoint_seq: int
    pruned_through: int


def _utcnow() -> datetime:
    return datetime.now(UTC)


def ensure_head(conn: Connection) -> None:
    """Create the head row if it is missing (the migration creates it)."""
    if conn.execute(select(_h.id).where(_h.id == HEAD_ID)).first() is None:
        conn.execute(
            insert(audit_head).values(
                id=HEAD_ID, seq=0, hash=GENESIS, checkpoint_seq=0, pruned_through=0
            )
        )


def read_head(conn: Connection) -> Head | None:
    row = conn.execute(
        select(_h.seq, _h.hash, _h.checkpoint_seq, _h.pruned_through).where(_h.id == HEAD_ID)
    ).first()
    if row is None:
        return None
    return Head(int(row[0]), bytes(row[1]), int(row[2]), int(row[3]))


def lock_head(conn: Connection) -> Head:
    """Lock the head row for the rest of the transaction and return it."""
    row = conn.execute(_LOCK_HEAD, {"n": 0}).first()
    if row is None:
        ensure_head(conn)
        row = conn.execute(_LOCK_HEAD, {"n": 0}).one()
    ptr = conn.execute(select(_h.pruned_through).where(_h.id == HEAD_ID)).scalar_one()
    return Head(int(row[0]), bytes(row[1]), int(row[2]), int(ptr))


class Journal:
    """Appends :class:`AuditEvent` s to the chained journal and signs checkpoints.

    ``signing_key`` signs checkpoints (``None``: the chain is kept but nothing is signed);
    ``enabled=False`` makes :meth:`append` a no-op (the "journal off" benchmark);
    ``checkpoint_every`` entries trigger a signed checkpoint inside :meth:`append`;
    ``checkpoint_file`` is the append-only mirror of checkpoints outside the database.
    """

    def __init__(
        self,
        signing_key: Ed25519PrivateKey | None,
        *,
        enabled: bool = True,
        checkpoint_every: int = 1000,
        checkpoint_file: Path | None = None,
        extra_verify_keys: Sequence[Ed25519PublicKey] = (),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.signing_key = signing_key
        self.enabled = enabled
        self.checkpoint_every = checkpoint_every
        self.checkpoint_file = Path(checkpoint_file) if checkpoint_file else None
        self.clock = clock
        pubs = list(extra_verify_keys)
        if signing_key is not None:
            pubs.insert(0, signing_key.public_key())
        #: Public keys (by key id) that verify this journal's checkpoints.
        self.verify_keys: dict[str, Ed25519PublicKey] = key_ring(pubs)
        #: The head as this journal last wrote it: (seq, hash, checkpoint_seq). A hint only.
        self._head: tuple[int, bytes, int] | None = None
        #: Appends left before the compare-and-set is tried again after a miss.
        self._cas_backoff = 0
        #: Counters (metrics, tests): fast-path hits, misses, slow-path appends.
        self.cas_hits = 0
        self.cas_misses = 0
        self.slow_appends = 0
        self._file_sigs: set[bytes] | None = None
        self._file_synced_id = 0

    # -- the hot path ------------------------------------------------------------------------

    def append(self, conn: Connection, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` inside the caller's transaction (same commit as what they record).

        Safe with several processes writing to one PostgreSQL: the head row orders them,
        gap-free. Raises :class:`ValueError` on an event with an unknown outcome.
        """
        if not self.enabled or not events:
            return
        n = len(events)
        now = format_at(self.clock())
        every = self.checkpoint_every
        signing = self.signing_key is not None
        remembered = self._head
        if self._cas_backoff:
            # Another writer moved the head recently (several nodes on one PostgreSQL):
            # a compare-and-set would likely miss and cost a round trip before the slow path.
            self._cas_backoff -= 1
            remembered = None
        if remembered is not None and (n <= _PG_CAS_MAX or conn.dialect.name != "postgresql"):
            old_seq, old_hash, old_cp = remembered
            rows, new_hash = self._rows(events, old_seq, old_hash, now)
            last = old_seq + n
            cp_due = signing and last - old_cp >= every
            new_cp = last if cp_due else old_cp
            if self._compare_and_set(conn, remembered, (last, new_hash, new_cp), rows):
                if cp_due:
                    self._sign_checkpoint(conn, last, new_hash, now)
                self._head = (last, new_hash, new_cp)
                self.cas_hits += 1
                return
            self.cas_misses += 1
            self._cas_backoff = _CAS_BACKOFF
        # slow path: the head moved (or is unknown): lock it, read it, then write
        self.slow_appends += 1
        row = conn.execute(_LOCK_HEAD, {"n": n}).first()
        if row is None:
            ensure_head(conn)
            row = conn.execute(_LOCK_HEAD, {"n": n}).one()
        last, prev, cp_seq = int(row[0]), bytes(row[1]), int(row[2])
        rows, new_hash = self._rows(events, last - n, prev, now)
        conn.execute(_INSERT, rows)
        if signing and last - cp_seq >= every:
            self._sign_checkpoint(conn, last, new_hash, now)
            cp_seq = last
        conn.execute(_SET_HASH_CP, {"h": new_hash, "cp": cp_seq})
        self._head = (last, new_hash, cp_seq)

    def _rows(
        self, events: Sequence[AuditEvent], seq: int, prev: bytes, now: str
    ) -> tuple[list[dict[str, Any]], bytes]:
        rows: list[dict[str, Any]] = []
        for ev in events:
            if ev.outcome not in OUTCOMES:
                raise ValueError(f"audit event outcome must be one of {sorted(OUTCOMES)}")
            seq += 1
            at = now if ev.at is None else format_at(ev.at)
            objs = encode_object_ids(ev.object_ids) if ev.object_ids else "[]"
            values = (
                seq, at, str(ev.action), clean(ev.actor), ev.outcome, clean(ev.reason),
                clean(ev.message_id), clean(ev.document_id), clean(ev.queue_id),
                clean(ev.patient_ins), clean(ev.client_ip), clean(ev.protocol), clean(objs),
            )
            prev = chain(prev, values)
            rows.append(dict(zip(_ENTRY_COLUMNS, (*values, prev), strict=True)))
        return rows, prev

    def _compare_and_set(
        self,
        conn: Connection,
        old: tuple[int, bytes, int],
        new: tuple[int, bytes, int],
        rows: list[dict[str, Any]],
    ) -> bool:
        """Write ``rows`` and move the head from ``old`` to ``new``, if it is still ``old``.

        Runs on the DB-API cursor of the caller's connection — inside its transaction and
        savepoint — to skip SQLAlchemy's per-statement overhead on this hot path.
        """
        if not conn.in_transaction():
            return False  # let the slow path's first statement begin the transaction
        raw: Any = conn.connection.driver_connection
        cur = raw.cursor()
        try:
            if conn.dialect.name == "postgresql":
                params: list[Any] = [new[0], new[1], new[2], old[0], old[1], old[2]]
                for r in rows:
                    params.extend(r[c] for c in _ENTRY_COLUMNS)
                cur.execute(_pg_cas_sql(len(rows)), params)
                return bool(cur.rowcount == len(rows))
            cur.execute(_SQLITE_CAS, (new[0], new[1], new[2], old[0], old[1], old[2]))
            if cur.rowcount != 1:
                return False
            cur.executemany(_SQLITE_INSERT, [tuple(r[c] for c in _ENTRY_COLUMNS) for r in rows])
            return True
        finally:
            cur.close()

    def _sign_checkpoint(self, conn: Connection, seq: int, hash_: bytes, at: str) -> None:
        assert self.signing_key is not None
        checkpoints.store(
            conn, checkpoints.sign(self.signing_key, seq, hash_, at, checkpoints.PERIODIC)
        )

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(
        self, conn: Connection, kind: str = checkpoints.PERIODIC, *, force: bool = False
    ) -> checkpoints.Checkpoint | None:
        """Sign the current head (in the caller's transaction) if entries were appended
        since the last checkpoint, or always when ``force``. Call it periodically (the
        runner, every few minutes) so that a quiet journal's tail is signed too."""
        if self.signing_key is None:
            return None
        head = lock_head(conn)
        if head.seq == 0 or (head.seq == head.checkpoint_seq and not force):
            return None
        at = format_at(self.clock())
        cp = checkpoints.sign(self.signing_key, head.seq, head.hash, at, kind)
        checkpoints.store(conn, cp)
        conn.execute(_SET_HASH_CP, {"h": head.hash, "cp": head.seq})
        return cp

    def sync_checkpoint_file(self, conn: Connection) -> int:
        """Copy committed, validly signed checkpoints missing from the file into it.

        Run it on a connection that sees only committed data (a read connection, after
        the commit that created checkpoints). Returns how many lines were appended.
        """
        if self.checkpoint_file is None:
            return 0
        if self._file_sigs is None:
            self._file_sigs = {
                line.checkpoint.signature
                for line in checkpoints.read_file(self.checkpoint_file)
                if line.checkpoint is not None
            }
        c = audit_checkpoint.c
        rows = conn.execute(
            select(c.id, c.seq, c.hash, c.at, c.kind, c.key_id, c.signature)
            .where(c.id > self._file_synced_id)
            .order_by(c.id)
        ).all()
        new: list[checkpoints.Checkpoint] = []
        for r in rows:
            cp = checkpoints.Checkpoint(r[1], bytes(r[2]), r[3], r[4], r[5], bytes(r[6]))
            if cp.signature in self._file_sigs:
                continue
            if not checkpoints.signature_ok(cp, self.verify_keys):
                continue  # never copy a forged checkpoint; verify reports it
            new.append(cp)
        checkpoints.append_file(self.checkpoint_file, new)
        self._file_sigs.update(cp.signature for cp in new)
        if rows:
            self._file_synced_id = int(rows[-1][0])
        return len(new)
