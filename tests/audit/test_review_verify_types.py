"""SQLite lets a tampered row hold a value of another type than the journal writes (a BLOB
in a text column, text that is not UTF-8, a hash that is not a BLOB). ``verify`` must report
such a row as an edit of that entry, by number — not stop with a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from audit import verify as v
from audit.journal import Journal
from mailstore.db import create_db_engine
from tests.audit.conftest import check, fill

N = 40  # entries; checkpoints every 10 (see the journal fixture)

TAMPERINGS = {
    "blob_actor": "UPDATE audit_entry SET actor = X'41' WHERE seq = :s",
    "blob_object_ids": "UPDATE audit_entry SET object_ids = X'5b5d' WHERE seq = :s",
    "not_utf8": "UPDATE audit_entry SET actor = CAST(X'FF41' AS TEXT) WHERE seq = :s",
    "text_hash": "UPDATE audit_entry SET hash = 'abc' WHERE seq = :s",
    "real_hash": "UPDATE audit_entry SET hash = 2.5 WHERE seq = :s",
}


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """Only SQLite stores a value of another type than its column's."""
    from caducee.dbschema import upgrade

    engine = create_db_engine(f"sqlite:///{tmp_path}/journal.db")
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("seq", [1, 17, N])
@pytest.mark.parametrize("sql", list(TAMPERINGS.values()), ids=list(TAMPERINGS))
def test_a_value_of_the_wrong_type_is_an_edit_of_that_entry(
    sqlite_engine: Engine, journal: Journal, sql: str, seq: int
) -> None:
    fill(sqlite_engine, journal, N)
    with sqlite_engine.begin() as conn:
        conn.execute(text(sql), {"s": seq})
    report = check(sqlite_engine, journal)
    assert not report.ok
    assert report.first_problem is not None
    assert (report.first_problem.kind, report.first_problem.seq) == (v.EDITED, seq)
    assert report.entries == N and report.last_seq == N
    # the rest of the chain is still followed: nothing is reported at other entries (a
    # changed last hash also differs from the signed checkpoint at that entry)
    assert {p.seq for p in report.problems} == {seq}


def test_entries_before_the_bad_value_in_the_same_batch_are_checked(
    sqlite_engine: Engine, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database stops at the bad row in the middle of a batch: the entries of that
    batch before it, and every entry after it, are still checked."""
    monkeypatch.setattr(v, "_FETCH", 7)
    fill(sqlite_engine, journal, N)
    with sqlite_engine.begin() as conn:
        conn.execute(text("UPDATE audit_entry SET actor = 'x@evil' WHERE seq = 10"))
        conn.execute(text(TAMPERINGS["blob_actor"]), {"s": 18})
        conn.execute(text("UPDATE audit_entry SET outcome = 'failed' WHERE seq = 33"))
    report = check(sqlite_engine, journal)
    assert [(p.kind, p.seq) for p in report.problems] == [
        (v.EDITED, 10), (v.EDITED, 18), (v.EDITED, 33)
    ]
    assert report.entries == N


def test_cli_names_the_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``caducee audit verify`` exits 1 and names the entry (no traceback)."""
    from caducee.cli import main

    root = tmp_path
    assert main(["init", str(root / "inst"), "--port-base", "0"]) == 0
    conf = root / "inst" / "caducee.toml"
    for domain in ("a", "b", "c"):
        assert main(["-c", str(conf), "trust", "add", f"{domain}.example.mssante.fr"]) == 0
    assert main(["-c", str(conf), "audit", "checkpoint"]) == 0
    engine = create_db_engine(f"sqlite:///{root / 'inst' / 'caducee.db'}")
    with engine.begin() as conn:
        conn.execute(text(TAMPERINGS["blob_actor"]), {"s": 2})
    engine.dispose()
    capsys.readouterr()
    assert main(["-c", str(conf), "audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "JOURNAL ALTÉRÉ : première anomalie à l'entrée 2 (modification)" in out
