"""Tampering is detected and located by verify, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text, update

from audit import verify as v
from audit.canonical import FIELDS, chain
from audit.journal import Journal, read_head
from audit.tables import audit_checkpoint, audit_entry, audit_head
from tests.audit.conftest import check, fill

N = 40  # entries; checkpoints every 10 (see the journal fixture)


def _renumber(conn: Connection, from_seq: int, delta: int) -> None:
    """Shift ``seq >= from_seq`` by ``delta`` (through negatives: no transient clash)."""
    conn.execute(text("UPDATE audit_entry SET seq = -(seq + :d) WHERE seq >= :f"),
                 {"d": delta, "f": from_seq})
    conn.execute(text("UPDATE audit_entry SET seq = -seq WHERE seq < 0"))


def _row(conn: Connection, seq: int) -> dict[str, Any]:
    r = conn.execute(select(audit_entry).where(audit_entry.c.seq == seq)).mappings().one()
    return dict(r)


def _values(row: dict[str, Any], seq: int) -> tuple[Any, ...]:
    return (seq, *[row[f] for f in FIELDS[1:]])


def _kinds(report: v.VerifyReport) -> list[tuple[str, int]]:
    return sorted(((p.kind, p.seq) for p in report.problems), key=lambda kp: kp[1])


def test_clean_journal_verifies(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    report = check(engine, journal)
    assert report.ok, report.problems
    assert report.entries == N and report.first_seq == 1 and report.last_seq == N
    assert report.last_checkpoint_seq == N
    assert report.checkpoints == 4  # each in the database and in the file
    assert report.unsigned_tail == 0


def test_edited_field_is_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(update(audit_entry).where(audit_entry.c.seq == 17).values(actor="x@evil"))
    report = check(engine, journal)
    assert _kinds(report) == [(v.EDITED, 17)]


def test_edited_hash_column_is_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(update(audit_entry).where(audit_entry.c.seq == 8).values(hash=bytes(32)))
    assert _kinds(check(engine, journal)) == [(v.EDITED, 8)]


def test_edit_with_recomputed_chain_fails_at_next_checkpoint(
    engine: Engine, journal: Journal
) -> None:
    """An attacker who re-hashes the whole chain after an edit is caught by the signature."""
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(update(audit_entry).where(audit_entry.c.seq == 13).values(outcome="failed"))
        prev = bytes(_row(conn, 12)["hash"])
        for seq in range(13, N + 1):
            prev = chain(prev, _values(_row(conn, seq), seq))
            conn.execute(update(audit_entry).where(audit_entry.c.seq == seq).values(hash=prev))
        conn.execute(update(audit_head).values(hash=prev))
    report = check(engine, journal)
    assert not report.ok
    assert report.first_problem is not None
    assert report.first_problem.kind == v.CHECKPOINT_MISMATCH
    assert report.first_problem.seq == 20  # the first signed checkpoint after the edit


def test_deleted_entry_is_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(delete(audit_entry).where(audit_entry.c.seq == 23))
    assert _kinds(check(engine, journal)) == [(v.MISSING, 23)]


def test_deleted_and_renumbered_is_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(delete(audit_entry).where(audit_entry.c.seq == 23))
        _renumber(conn, 24, -1)
    report = check(engine, journal)
    assert report.first_problem == v.Problem(
        v.MISSING, 23, report.first_problem.detail if report.first_problem else ""
    )
    assert [k for k, _ in _kinds(report)] == [v.MISSING]


def test_inserted_entry_is_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        forged = _row(conn, 15) | {"actor": "intrus@evil.example", "message_id": "<forged@x>"}
        _renumber(conn, 15, +1)
        prev = bytes(_row(conn, 14)["hash"])
        forged["hash"] = chain(prev, _values(forged, 15))  # a well-formed link, even
        conn.execute(audit_entry.insert().values(**forged))
    report = check(engine, journal)
    assert _kinds(report) == [(v.INSERTED, 15)]


def test_inserted_entry_with_bogus_hash_is_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        forged = _row(conn, 31) | {"actor": "intrus@evil.example", "hash": b"\x01" * 32}
        _renumber(conn, 31, +1)
        conn.execute(audit_entry.insert().values(**forged))
    assert _kinds(check(engine, journal)) == [(v.INSERTED, 31)]


def test_swapped_entries_are_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entry SET seq = -1 WHERE seq = 12"))
        conn.execute(text("UPDATE audit_entry SET seq = 12 WHERE seq = 13"))
        conn.execute(text("UPDATE audit_entry SET seq = 13 WHERE seq = -1"))
    assert _kinds(check(engine, journal)) == [(v.SWAPPED, 12)]


def test_swapped_contents_are_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    fields = [f for f in FIELDS if f != "seq"]
    with engine.begin() as conn:
        a, b = _row(conn, 26), _row(conn, 27)
        conn.execute(update(audit_entry).where(audit_entry.c.seq == 26)
                     .values(**{f: b[f] for f in fields}))
        conn.execute(update(audit_entry).where(audit_entry.c.seq == 27)
                     .values(**{f: a[f] for f in fields}))
    assert _kinds(check(engine, journal)) == [(v.SWAPPED, 26)]


def test_far_swap_is_located(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entry SET seq = -1 WHERE seq = 5"))
        conn.execute(text("UPDATE audit_entry SET seq = 5 WHERE seq = 9"))
        conn.execute(text("UPDATE audit_entry SET seq = 9 WHERE seq = -1"))
    report = check(engine, journal)
    assert report.first_problem is not None and report.first_problem.seq == 5
    assert {p.seq for p in report.problems} <= {5, 6, 9, 10}


def test_dropped_tail_is_detected_by_the_checkpoint_file(
    engine: Engine, journal: Journal
) -> None:
    """The attacker deletes the tail, its checkpoints, and fixes the head: the file remains."""
    fill(engine, journal, N)
    with engine.begin() as conn:
        keep = _row(conn, 33)
        conn.execute(delete(audit_entry).where(audit_entry.c.seq > 33))
        conn.execute(delete(audit_checkpoint).where(audit_checkpoint.c.seq > 33))
        conn.execute(update(audit_head).values(seq=33, hash=keep["hash"], checkpoint_seq=30))
    report = check(engine, journal)
    assert report.first_problem is not None
    assert (report.first_problem.kind, report.first_problem.seq) == (v.TRUNCATED, 34)
    assert (v.CHECKPOINT_DELETED, 40) in _kinds(report)
    # without the file, this attack is only visible as "no checkpoint for 3 entries"
    alone = check(engine, journal, with_file=False)
    assert alone.ok and alone.unsigned_tail == 3


def test_dropped_tail_is_detected_by_the_database_checkpoint(
    engine: Engine, journal: Journal
) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(delete(audit_entry).where(audit_entry.c.seq > 35))
    report = check(engine, journal, with_file=False)
    assert _kinds(report) == [(v.TRUNCATED, 36)]


def test_forged_checkpoint_is_reported(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, N)
    with engine.begin() as conn:
        conn.execute(update(audit_checkpoint).where(audit_checkpoint.c.seq == 20)
                     .values(hash=bytes(32)))
    report = check(engine, journal, with_file=False)
    assert _kinds(report) == [(v.BAD_SIGNATURE, 20)]


def test_rolled_back_savepoint_leaves_no_gap(engine: Engine, journal: Journal) -> None:
    """The group-commit writer runs each job in a SAVEPOINT; a failed job rolls back alone."""
    from tests.audit.conftest import event

    with engine.connect() as conn, conn.begin():
        for i in range(6):
            sp = conn.begin_nested()
            journal.append(conn, [event(i), event(100 + i)])
            if i % 2:
                sp.rollback()
            else:
                sp.commit()
    report = check(engine, journal)
    assert report.ok, report.problems
    assert report.entries == 6 and report.last_seq == 6
    with engine.connect() as conn:
        head = read_head(conn)
        seqs = conn.execute(select(audit_entry.c.seq).order_by(audit_entry.c.seq)).scalars()
        assert list(seqs) == [1, 2, 3, 4, 5, 6]
    assert head is not None and head.seq == 6


def test_disabled_journal_appends_nothing(engine: Engine, tmp_path: Path) -> None:
    from tests.audit.conftest import event

    off = Journal(None, enabled=False)
    with engine.begin() as conn:
        off.append(conn, [event(1)])
        assert conn.execute(select(audit_entry.c.seq)).first() is None
