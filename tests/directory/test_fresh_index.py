"""A first import's search index, built beside the merge (SQLite): the same documents, in the
same positions, and a sound full-text index, as the rebuild after the merge gives."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from benchmarks import gen_extract
from caducee.dbschema import upgrade
from directory import fresh_index, search, staging
from directory.importer import ImportResult
from mailstore.db import create_db_engine
from tests.directory.conftest import mailbox_line, person_line, run_import
from tests.directory.test_search_index import _fts_intact

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # built on SQLite only

OTHER = {"Identifiant PP": "15000000024", "Identification nationale PP": "815000000024",
         "Nom d'exercice": "MARTIN", "Prénom d'exercice": "Zoé"}
#: An RPPS the person file does not list.
UNKNOWN = {"Identifiant PP": "15000000032", "Identification nationale PP": "815000000032",
           "Adresse BAL": "paul.inconnu@medecin.mssante.fr", "Nom d'exercice": "INCONNU",
           "Prénom d'exercice": "Paul"}
QUERIES: list[dict[str, Any]] = [
    {"text": "lefevre"}, {"text": "martin"}, {"text": "mar"}, {"text": "inconnu"},
    {"profession": "10", "page": 2}, {"town": "lyon"}, {"address": "helene"},
    {"mailbox_type": "org"}, {"text": "zoe"},
]


def _extract(tmp: Path) -> list[Path]:
    """Generated extracts (multi-activity practitioners, all kinds of mailbox), and the
    cases the merge decides by its first-occurrence rules: a practitioner listed in two
    runs of lines with different records, an activity line repeated, an address listed
    twice, a personal mailbox of a practitioner the directory does not know."""
    person, mailbox, _ = gen_extract.generate(tmp, person_lines=3000, mailbox_lines=800,
                                              seed=5)
    with person.open("a", encoding="utf-8") as f:
        f.write("\n".join([
            person_line(), person_line(**OTHER), person_line(**OTHER),
            person_line(**{"Prénom d'exercice": "Hélèna",
                           "Code postal (coord. structure)": "69003"}),
        ]) + "\n")
    with mailbox.open("a", encoding="utf-8") as f:
        f.write("\n".join([
            mailbox_line(), mailbox_line(**{"Nom d'exercice": "AUTRE"}),
            mailbox_line(**UNKNOWN),
            mailbox_line(**{"Type de BAL": "ORG", "Adresse BAL": "secretariat@clinique.fr",
                            "Type Identifiant PP": "", "Identifiant PP": "",
                            "Identification nationale PP": "", "Nom d'exercice": "",
                            "Prénom d'exercice": ""}),
        ]) + "\n")
    return [person, mailbox]


def _docs(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT pos, kind, ref_id, sort_key, terms FROM directory_doc ORDER BY pos"))]


def _results(engine: Engine) -> list[list[dict[str, object]]]:
    with engine.connect() as conn:
        return [[h.as_json() for h in search.search(conn, search.Query(**q)).hits]
                for q in QUERIES]


@pytest.fixture
def classic(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'classic.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _import(engine: Engine, files: list[Path], **options: Any) -> ImportResult:
    return run_import(engine, *files, workers=2, min_chunk=64 * 1024, **options)


def test_same_documents_and_index_as_the_rebuild(
    engine: Engine, classic: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _extract(tmp_path / "x")
    started: list[Path] = []
    real_start = fresh_index.start

    def start(workdir: Path, staged: staging.Staged) -> fresh_index.Helper:
        started.append(workdir)
        return real_start(workdir, staged)

    monkeypatch.setattr(fresh_index, "start", start)
    beside = _import(engine, files, fresh_index=True)
    assert len(started) == 1
    rebuilt = _import(classic, files, fresh_index=False)
    assert len(started) == 1
    assert beside.merge.index == rebuilt.merge.index == "full"
    assert beside.merge.documents == rebuilt.merge.documents > 3000 // 3
    assert _docs(engine) == _docs(classic)
    _fts_intact(engine)
    assert _results(engine) == _results(classic)
    assert any(r for r in _results(engine))
    # the cases of the first-occurrence rules are in it
    with engine.connect() as conn:
        kinds: dict[str, str] = dict(conn.execute(text(
            "SELECT m.address, d.kind FROM directory_mailbox m JOIN directory_doc d "
            "ON d.kind = 'm' AND d.ref_id = m.id")).all())
    assert UNKNOWN["Adresse BAL"] in kinds and "secretariat@clinique.fr" in kinds
    assert "helene.lefevre@medecin.mssante.fr" not in kinds  # in Hélène's document
    # a later import is not a first one: patched after the merge, as always
    monkeypatch.setattr(fresh_index, "start", None)
    again = _import(engine, files, fresh_index=True)
    assert again.merge.index == "none"
    assert _docs(engine) == _docs(classic)
    _fts_intact(engine)


@pytest.mark.parametrize("kind", ["person", "mailbox"])
def test_one_kind_of_file(engine: Engine, classic: Engine, tmp_path: Path, kind: str) -> None:
    files = _extract(tmp_path / "x")
    files = files[:1] if kind == "person" else files[1:]
    _import(engine, files, fresh_index=True)
    _import(classic, files, fresh_index=False)
    assert _docs(engine) == _docs(classic) != []
    _fts_intact(engine)


def test_a_failed_helper_leaves_the_rebuild_to_the_import(
    engine: Engine, classic: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The helper really fails (its staging files are not where it looks): the import
    rebuilds the index after the merge, and logs why."""
    files = _extract(tmp_path / "x")

    def start(workdir: Path, staged: staging.Staged) -> fresh_index.Helper:
        gone = [dataclasses.replace(j, db_path=workdir / f"gone-{j.index}.db")
                for j in staged.jobs]
        return fresh_index.Helper(workdir, gone)

    monkeypatch.setattr(fresh_index, "start", start)
    with caplog.at_level(logging.WARNING, logger="directory.fresh_index"):
        res = _import(engine, files, fresh_index=True)
    assert "building the search index beside the merge failed" in caplog.text
    _import(classic, files, fresh_index=False)
    assert res.merge.index == "full"
    assert _docs(engine) == _docs(classic)
    _fts_intact(engine)


def test_an_index_that_fails_is_built_by_the_import(
    engine: Engine, classic: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = _extract(tmp_path / "x")

    def index(self: fresh_index.Helper) -> None:
        raise RuntimeError("the helper's index is lost")

    monkeypatch.setattr(fresh_index.Helper, "index", index)
    with caplog.at_level(logging.WARNING, logger="directory.fresh_index"):
        _import(engine, files, fresh_index=True)
    assert "indexing the documents beside the merge failed" in caplog.text
    _import(classic, files, fresh_index=False)
    assert _docs(engine) == _docs(classic)
    _fts_intact(engine)
    assert _results(engine) == _results(classic)


def test_the_helper_has_ended_once_its_index_is_in(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper's memory is given back before the import sorts the documents' keys (the
    two together would exceed the import's memory budget at national size)."""
    files = _extract(tmp_path / "x")
    ended: list[int | None] = []
    real_index = fresh_index.Helper.index

    def index(self: fresh_index.Helper) -> None:
        real_index(self)
        ended.append(self.exitcode)

    monkeypatch.setattr(fresh_index.Helper, "index", index)
    assert _import(engine, files, fresh_index=True).merge.index == "full"
    assert ended == [0]
    _fts_intact(engine)


def test_small_extracts_need_no_helper(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _extract(tmp_path / "x")
    monkeypatch.setattr(fresh_index, "start", None)  # would fail if called
    assert _import(engine, files).merge.index == "full"
    assert sum(p.stat().st_size for p in files) < fresh_index.MIN_BYTES
