"""An export of a pruned journal re-checks on its own (``check_export``): the first entry
left by the prune has no predecessor row any more, so its ``prev`` comes from the signed
prune checkpoint, which the export carries, as ``verify`` anchors the chain on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from audit import prune
from audit.export import check_export, export
from audit.journal import Journal
from tests.audit.conftest import fill

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the StepClock's origin: append k happens at T0 + k min


def _prune_first_20(engine: Engine, journal: Journal) -> None:
    fill(engine, journal, 40)  # 8 appends of 5 entries, at T0+1min … T0+8min
    with engine.connect() as conn:
        plan = prune.plan_prune(conn, T0 + timedelta(minutes=4, seconds=30),
                                journal.verify_keys, journal.checkpoint_file)
    with engine.begin() as conn:
        assert prune.apply_prune(conn, journal, plan, "cli:test").boundary == 20
    with engine.connect() as conn:
        journal.sync_checkpoint_file(conn)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_of_a_pruned_journal_checks(
    engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    _prune_first_20(engine, journal)
    out = tmp_path / "all.jsonl"
    with engine.connect() as conn:
        result = export(conn, out, journal_key=journal.signing_key.public_key()
                        if journal.signing_key else None)
    assert (result.first_seq, result.entries) == (21, 21)
    check = check_export(out, journal.verify_keys)
    assert check.ok, check.problems
    lines = _lines(out)
    first = next(d for d in lines if d["type"] == "entry")
    anchor = next(d for d in lines if d["type"] == "checkpoint" and d["seq"] == 20)
    assert anchor["kind"] == "prune" and first["prev"] == anchor["hash"]


def test_forged_prev_after_a_prune_is_reported(
    engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    """A first entry whose ``prev`` is not the prune checkpoint's hash does not check."""
    _prune_first_20(engine, journal)
    out = tmp_path / "all.jsonl"
    with engine.connect() as conn:
        export(conn, out)
    lines = _lines(out)
    for d in lines:
        if d["type"] == "entry" and d["seq"] == 21:
            d["prev"] = "00" * 32
    out.write_text("".join(json.dumps(d) + "\n" for d in lines), encoding="utf-8")
    check = check_export(out, journal.verify_keys)
    assert any("21" in p for p in check.problems), check.problems


def test_period_export_does_not_take_an_ordinary_checkpoint_as_anchor(
    engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    """An export starting after the first entry gets its ``prev`` from the entry before,
    as before; a prune checkpoint is only used where no entry precedes."""
    fill(engine, journal, 40)
    out = tmp_path / "part.jsonl"
    with engine.connect() as conn:
        result = export(conn, out, since=T0 + timedelta(minutes=3, seconds=30))
    assert result.first_seq == 16
    assert check_export(out, journal.verify_keys).ok
