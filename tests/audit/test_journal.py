"""Appending, reading back, checkpoints and their file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select

from audit import checkpoints
from audit import verify as v
from audit.entries import query
from audit.events import Action, AuditEvent
from audit.journal import Journal, read_head
from audit.tables import audit_checkpoint
from tests.audit.conftest import check, event, fill


def test_events_round_trip(engine: Engine, journal: Journal) -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    ev = AuditEvent(
        Action.MESSAGE_DELIVERED, "service:smtp-submission", reason=None,
        message_id="<a@b>", document_id="doc-7", queue_id="Q1", patient_ins="255081416802538",
        client_ip="2001:db8::1", protocol="smtp",
        object_ids=(("mailbox_uid", "12/345"), ("recipient", "patient@x")), at=at,
    )
    with engine.begin() as conn:
        journal.append(conn, [ev, AuditEvent(Action.LOGIN_SUCCEEDED, "a@b.example")])
    with engine.connect() as conn:
        got = query(conn)
    assert [g.seq for g in got] == [1, 2]
    assert got[0].event == ev
    assert got[1].event.at is not None and got[1].event.outcome == "ok"


def test_unknown_outcome_is_refused(engine: Engine, journal: Journal) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="outcome"):
        journal.append(conn, [AuditEvent(Action.LOGIN_FAILED, "x", outcome="maybe")])


def test_periodic_checkpoint_signs_a_quiet_tail(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, 13)  # a checkpoint at 10; 11..13 unsigned
    assert check(engine, journal).unsigned_tail == 3
    with engine.begin() as conn:
        cp = journal.checkpoint(conn)
    assert cp is not None and cp.seq == 13
    with engine.begin() as conn:
        assert journal.checkpoint(conn) is None  # nothing new since
    with engine.connect() as conn:
        assert journal.sync_checkpoint_file(conn) == 1
        assert journal.sync_checkpoint_file(conn) == 0
        head = read_head(conn)
    assert head is not None and head.checkpoint_seq == 13
    report = check(engine, journal)
    assert report.ok and report.unsigned_tail == 0 and report.last_checkpoint_seq == 13


def test_file_sync_skips_uncommitted_and_forged(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, 10)
    with engine.begin() as conn:
        conn.execute(audit_checkpoint.insert().values(
            seq=10, hash=bytes(32), at="2026-01-01T00:00:00.000000Z", kind="manual",
            key_id="0000000000000000", signature=bytes(64)))
    with engine.connect() as conn:
        assert journal.sync_checkpoint_file(conn) == 0  # forged: not copied
    assert journal.checkpoint_file is not None
    lines = list(checkpoints.read_file(journal.checkpoint_file))
    assert [ln.checkpoint.seq for ln in lines if ln.checkpoint] == [10]
    report = check(engine, journal)
    assert [(p.kind, p.seq) for p in report.problems] == [(v.BAD_SIGNATURE, 10)]


def test_torn_last_line_is_a_warning_and_a_bad_line_a_problem(
    engine: Engine, journal: Journal
) -> None:
    fill(engine, journal, 20)
    assert journal.checkpoint_file is not None
    with journal.checkpoint_file.open("a") as f:
        f.write('{"seq": 30, "hash"')  # a crash in the middle of a write
    report = check(engine, journal)
    assert report.ok and any("incomplète" in w for w in report.warnings)
    with journal.checkpoint_file.open("a") as f:
        f.write("\n" + checkpoints.Checkpoint(
            20, bytes(32), "2026-01-01T00:00:00.000000Z", "periodic", "x", bytes(64)
        ).to_json() + "\n")
    report = check(engine, journal)
    assert {p.kind for p in report.problems} == {v.BAD_SIGNATURE}


def test_journal_without_key_chains_but_does_not_sign(engine: Engine) -> None:
    unsigned = Journal(None, checkpoint_every=2)
    with engine.begin() as conn:
        unsigned.append(conn, [event(i) for i in range(5)])
        assert unsigned.checkpoint(conn) is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_checkpoint)).scalar() == 0
        report = v.verify(conn, {})
    assert report.ok and report.entries == 5 and report.unsigned_tail == 5


def test_unusual_characters_verify_on_both_backends(engine: Engine, journal: Journal) -> None:
    """The database builds the canonical text in verify: it must agree with Python's."""
    odd = ['Hélène "Dupont" \\ <é@x>', "tab\there\x01\x1f\x7f", "😀\u2028\u2029\ufeff", "a\udcffb"]
    with engine.begin() as conn:
        journal.append(conn, [
            AuditEvent(Action.LOGIN_FAILED, actor=o, reason=o, message_id=o,
                       object_ids=(("k\"ey", o),), outcome="refused")
            for o in odd
        ])
    report = check(engine, journal)
    assert report.ok, report.problems
    with engine.connect() as conn:
        got = query(conn)
    assert got[0].event.actor == odd[0] and got[3].event.actor == "a?b"


def test_two_writers_alternating_stay_gap_free(engine: Engine, signing_key: object) -> None:
    """Two journals (as two processes) interleave: each one's remembered head goes stale."""
    a = Journal(signing_key, checkpoint_every=7)  # type: ignore[arg-type]
    b = Journal(signing_key, checkpoint_every=7)  # type: ignore[arg-type]
    for i in range(30):
        with engine.begin() as conn:
            (a if i % 3 else b).append(conn, [event(i), event(i + 1000)])
    with engine.connect() as conn:
        report = v.verify(conn, a.verify_keys)
        head = read_head(conn)
    assert report.ok and report.entries == 60 and head is not None and head.seq == 60
    assert report.last_checkpoint_seq >= 54


def test_missing_checkpoint_file_is_a_problem_only_when_checkpoints_exist(
    engine: Engine, journal: Journal
) -> None:
    fill(engine, journal, 8)  # below checkpoint_every: nothing signed, no file yet
    assert journal.checkpoint_file is not None and not journal.checkpoint_file.exists()
    report = check(engine, journal)
    assert report.ok and any("n'existe pas" in w for w in report.warnings)

    fill(engine, journal, 8, start=8)  # a checkpoint at 13 (the append crossing 10)
    journal.checkpoint_file.unlink()
    report = check(engine, journal)
    assert [(p.kind, p.seq) for p in report.problems] == [(v.CHECKPOINT_FILE_MISSING, 13)]
    with engine.connect() as conn:
        allowed = v.verify(conn, journal.verify_keys, journal.checkpoint_file,
                           allow_missing_file=True)
    assert allowed.ok and any("n'existe pas" in w for w in allowed.warnings)


def test_compare_and_set_backs_off_after_a_miss(db_url: str) -> None:
    """Two writers on one database: the one whose remembered head went stale misses once,
    then takes the locked path for a while instead of missing on every append."""
    from audit.events import Action, AuditEvent
    from audit.journal import _CAS_BACKOFF, Journal
    from mailstore.db import create_db_engine

    engine = create_db_engine(db_url)
    a, b = Journal(None), Journal(None)

    def append(j: Journal, i: int) -> None:
        with engine.begin() as conn:
            j.append(conn, [AuditEvent(Action.MESSAGE_ACCEPTED, "service:t", queue_id=str(i))])

    append(a, 0)
    append(a, 1)
    assert (a.cas_hits, a.cas_misses) == (1, 0)
    append(b, 2)  # moves the head under a
    append(a, 3)
    assert a.cas_misses == 1
    for i in range(_CAS_BACKOFF):
        append(a, 4 + i)
    assert a.cas_misses == 1 and a.cas_hits == 1  # backed off: no attempt in between
    append(a, 100)
    assert a.cas_hits == 2  # the head is a's own again: the fast path is back
    engine.dispose()
