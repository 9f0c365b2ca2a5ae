"""Retention: prune removes old entries behind a signed checkpoint; what remains verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, update

from audit import prune
from audit import verify as v
from audit.events import Action
from audit.journal import Journal
from audit.tables import audit_entry
from tests.audit.conftest import check, fill

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the StepClock's origin: append k happens at T0 + k min


def _prune(engine: Engine, journal: Journal, before: datetime) -> prune.PruneResult:
    with engine.connect() as conn:
        plan = prune.plan_prune(conn, before, journal.verify_keys, journal.checkpoint_file)
    with engine.begin() as conn:
        result = prune.apply_prune(conn, journal, plan, "cli:test")
    with engine.connect() as conn:
        journal.sync_checkpoint_file(conn)
    return result


def test_prune_keeps_a_verifiable_journal(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, 40)  # 8 appends of 5 entries, at T0+1min … T0+8min
    result = _prune(engine, journal, T0 + timedelta(minutes=4, seconds=30))
    assert (result.removed, result.boundary) == (20, 20)
    report = check(engine, journal)
    assert report.ok, report.problems
    assert report.first_seq == 21 and report.last_seq == 41  # + the prune's own entry
    with engine.connect() as conn:
        last = conn.execute(select(audit_entry.c.action).where(audit_entry.c.seq == 41)).scalar()
        assert last == Action.AUDIT_PRUNED
    # nothing older than the boundary: a second prune at the same date removes nothing
    assert _prune(engine, journal, T0 + timedelta(minutes=4, seconds=30)).removed == 0


def test_deleting_old_entries_is_not_a_prune(engine: Engine, journal: Journal) -> None:
    """Deleting up to a regular checkpoint (not a signed prune) is reported as missing."""
    fill(engine, journal, 40)
    with engine.begin() as conn:
        conn.execute(delete(audit_entry).where(audit_entry.c.seq <= 10))
    report = check(engine, journal)
    assert [(p.kind, p.seq) for p in report.problems] == [(v.MISSING, 1)]


def test_deleting_past_a_prune_is_detected(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, 40)
    _prune(engine, journal, T0 + timedelta(minutes=2, seconds=30))  # removes 1..10
    with engine.begin() as conn:
        conn.execute(delete(audit_entry).where(audit_entry.c.seq <= 14))
    report = check(engine, journal)
    assert [(p.kind, p.seq) for p in report.problems] == [(v.MISSING, 11)]


def test_prune_refuses_a_journal_that_does_not_verify(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, 40)
    with engine.begin() as conn:
        conn.execute(update(audit_entry).where(audit_entry.c.seq == 3).values(outcome="failed"))
    with engine.connect() as conn, pytest.raises(prune.PruneRefused) as info:
        prune.plan_prune(conn, T0 + timedelta(minutes=6), journal.verify_keys,
                         journal.checkpoint_file)
    assert info.value.report is not None and not info.value.report.ok
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_entry)).scalar() == 40


def test_prune_refuses_when_the_checkpoint_file_is_gone(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, 40)
    assert journal.checkpoint_file is not None
    journal.checkpoint_file.unlink()
    with engine.connect() as conn, pytest.raises(prune.PruneRefused) as info:
        prune.plan_prune(conn, T0 + timedelta(minutes=6), journal.verify_keys,
                         journal.checkpoint_file)
    assert info.value.report is not None
    assert [p.kind for p in info.value.report.problems] == [v.CHECKPOINT_FILE_MISSING]
