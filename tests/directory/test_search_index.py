"""The search documents after an incremental refresh are those of a full rebuild, in the same
order (both backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from directory import search, search_index
from directory.search import Query
from tests.directory.conftest import (
    LATER,
    mailbox_line,
    run_import,
    write_mailbox,
    write_person,
)
from tests.directory.test_search import practitioner, rpps

BASE = [practitioner(i, "DURAND", f"Prénom{chr(65 + i % 26)}{chr(65 + i // 26)}")
        for i in range(100)]


def _docs(engine: Engine) -> list[tuple[str, int, frozenset[str]]]:
    """The documents in position order (their terms as token sets: FTS sees no order)."""
    with engine.connect() as conn:
        return [(str(k), int(r), frozenset(str(t).split())) for k, r, t in conn.execute(
            text("SELECT kind, ref_id, terms FROM directory_doc ORDER BY pos"))]


def _in_key_order(engine: Engine) -> bool:
    with engine.connect() as conn:
        by_pos = conn.execute(text("SELECT pos FROM directory_doc ORDER BY pos")).all()
        by_key = conn.execute(text("SELECT pos FROM directory_doc ORDER BY sort_key")).all()
    return by_pos == by_key


def _fts_intact(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO directory_fts(directory_fts) VALUES ('integrity-check')")


def _found(engine: Engine, typed: str) -> list[str]:
    with engine.connect() as conn:
        return [h.name for h in search.search(conn, Query(text=typed, per_page=100)).hits]


def test_an_incremental_refresh_equals_a_full_rebuild(engine: Engine, tmp_path: Path) -> None:
    run_import(engine, write_person(tmp_path / "v1.txt", BASE))
    # six new practitioners in one gap (between «durand prenombb» and «durand prenombc»),
    # one before every document, one after, a renamed one and a removed one
    new = [practitioner(200 + i, "DURAND", f"PrénomBB{chr(65 + i)}") for i in range(6)]
    new += [practitioner(300, "AARON", "Ada"), practitioner(301, "ZOLA", "Zoé")]
    later = [*BASE[:10], practitioner(10, "DUPONT", "Renée"), *BASE[12:], *new]
    res = run_import(engine, write_person(tmp_path / "v2.txt", later), now=LATER)
    assert res.merge.index == "incremental"
    assert (res.merge.practitioners.added, res.merge.practitioners.changed,
            res.merge.practitioners.deactivated) == (8, 1, 1)
    patched = _docs(engine)
    assert _in_key_order(engine)
    _fts_intact(engine)
    assert _found(engine, "durand prénombb") == [
        "Docteur PrénomBB DURAND", *(f"Docteur PrénomBB{chr(65 + i)} DURAND" for i in range(6))]
    with engine.begin() as conn:
        search_index.rebuild(conn)
    assert _docs(engine) == patched


def test_a_gap_too_narrow_renumbers_every_document(engine: Engine, tmp_path: Path) -> None:
    run_import(engine, write_person(tmp_path / "v1.txt", BASE))
    with engine.begin() as conn:  # positions 1, 2, 3…: no room left between neighbours
        conn.execute(text("UPDATE directory_doc SET pos = pos / :gap"),
                     {"gap": search_index.GAP})
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("INSERT INTO directory_fts(directory_fts) VALUES ('rebuild')")
    extra = practitioner(200, "DURAND", "PrénomBBA")
    res = run_import(engine, write_person(tmp_path / "v2.txt", [*BASE, extra]), now=LATER)
    assert res.merge.index == "full"
    with engine.connect() as conn:
        positions = [int(p) for (p,) in conn.execute(
            text("SELECT pos FROM directory_doc ORDER BY pos"))]
    assert positions == [search_index.GAP * (i + 1) for i in range(len(BASE) + 1)]
    assert _in_key_order(engine)
    _fts_intact(engine)
    assert "Docteur PrénomBBA DURAND" in _found(engine, "durand prénombb")


def test_a_personal_mailbox_moving_to_another_practitioner_leaves_the_first(
    engine: Engine, tmp_path: Path
) -> None:
    people = write_person(tmp_path / "PS.txt", BASE)
    a, b = rpps(1), rpps(2)  # BASE[1] and BASE[2]

    def box(r: str) -> str:
        return mailbox_line(**{"Adresse BAL": "cabinet.durand@demo.mssante.fr",
                               "Identifiant PP": r, "Identification nationale PP": "8" + r,
                               "Nom d'exercice": "DURAND"})

    run_import(engine, people, write_mailbox(tmp_path / "BAL1.txt", [box(a)]))
    with engine.connect() as conn:
        hits = search.search(conn, Query(address="cabinet.durand")).hits
    assert [h.national_id for h in hits] == ["8" + a]
    res = run_import(engine, people, write_mailbox(tmp_path / "BAL2.txt", [box(b)]), now=LATER)
    assert res.merge.index == "incremental" and res.merge.mailboxes.changed == 1
    with engine.connect() as conn:
        hits = search.search(conn, Query(address="cabinet.durand")).hits
    assert [h.national_id for h in hits] == ["8" + b]
    patched = _docs(engine)
    if engine.dialect.name == "sqlite":  # the patch merged back into one FTS5 segment
        with engine.connect() as conn:
            assert search_index._fts_segments(conn) == 1
        _fts_intact(engine)
    with engine.begin() as conn:
        search_index.rebuild(conn)
    assert _docs(engine) == patched


def test_a_document_that_did_not_change_keeps_its_place(engine: Engine, tmp_path: Path) -> None:
    """A practitioner changed outside its search terms (a phone number) is not re-indexed."""
    run_import(engine, write_person(tmp_path / "v1.txt", BASE))

    def index_state() -> tuple[list[Any], list[Any]]:
        with engine.connect() as conn:
            docs = list(conn.execute(text("SELECT * FROM directory_doc ORDER BY pos")))
            fts = list(conn.execute(text("SELECT id, block FROM directory_fts_data ORDER BY id"))
                       ) if engine.dialect.name == "sqlite" else []
        return docs, fts

    before = index_state()
    first = f"Prénom{chr(65 + 5)}{chr(65)}"  # BASE[5]'s
    new_phone = practitioner(5, "DURAND", first, **{"Téléphone (coord. structure)": "0102"})
    later = [*BASE[:5], new_phone, *BASE[6:]]
    res = run_import(engine, write_person(tmp_path / "v2.txt", later), now=LATER)
    assert res.merge.practitioners.changed == 1 and res.merge.index == "incremental"
    assert index_state() == before


def test_a_full_rebuild_leaves_fts5_merging_as_it_was(engine: Engine, tmp_path: Path) -> None:
    """The rebuild turns FTS5's incremental merges off and merges once; the defaults
    come back for the small updates that follow."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's GIN index has no such settings")
    run_import(engine, write_person(tmp_path / "v1.txt", BASE))
    with engine.connect() as conn:
        config: dict[str, int] = dict(conn.exec_driver_sql(
            "SELECT k, v FROM directory_fts_config WHERE k IN ('automerge', 'crisismerge')"
        ).all())
    assert config == {"automerge": search_index.FTS_AUTOMERGE,
                      "crisismerge": search_index.FTS_CRISISMERGE}
    _fts_intact(engine)
    assert len(_found(engine, "durand")) == len(BASE)
