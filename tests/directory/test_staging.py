"""Parallel staging: byte ranges read by several processes give the answers of one reader.

A large file is cut into ranges parsed in parallel (:mod:`directory.staging`); these tests
check that what a range cannot know alone — its line numbers, the file's encoding, the
first error of a strict import — is still right.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from benchmarks import gen_extract
from directory import stage_worker, staging
from directory.formats import PERSON_COLUMNS
from directory.importer import ImportRefused
from directory.issues import Issue, Severity
from directory.reader import sources
from tests.directory.conftest import NOW, person_line, run_import, write_person
from tests.directory.test_import import dump

CHUNK = 64 * 1024
PROFESSION = PERSON_COLUMNS.index("Code profession")


def _plan(path: Path, workdir: Path, *, strict: bool = True) -> list[stage_worker.Job]:
    workdir.mkdir(exist_ok=True)
    opts = staging.StageOptions(lenient=True, strict=strict, workdir=workdir, workers=2,
                                min_chunk=CHUNK)
    return staging.plan(sources(path), opts)


def _rewrite_line_at(path: Path, offset: int, change: dict[int, str]) -> int:
    """Replace fields of the line starting at byte ``offset`` (same length); its number."""
    data = path.read_bytes()
    end = data.index(b"\n", offset)
    fields = data[offset:end].decode("utf-8").split("|")
    for col, value in change.items():
        assert len(value.encode()) == len(fields[col].encode())
        fields[col] = value
    path.write_bytes(data[:offset] + "|".join(fields).encode("utf-8") + data[end:])
    return data.count(b"\n", 0, offset) + 1


@pytest.fixture
def big_person(tmp_path: Path) -> Path:
    """A person file large enough to be cut into several ranges."""
    person, _, _ = gen_extract.generate(tmp_path / "g", person_lines=3000, mailbox_lines=0,
                                        seed=11)
    return person


def test_strict_parallel_import_names_the_error_of_the_second_range(
    engine: Engine, big_person: Path, tmp_path: Path
) -> None:
    jobs = _plan(big_person, tmp_path / "probe")
    assert len(jobs) >= 3
    line = _rewrite_line_at(big_person, jobs[1].start, {PROFESSION: "77"})
    assert [j.start for j in _plan(big_person, tmp_path / "probe")] == [j.start for j in jobs]
    seed = write_person(tmp_path / "seed.txt", [person_line()])
    run_import(engine, seed)
    before = dump(engine)
    report = tmp_path / "report.txt"
    with pytest.raises(ImportRefused) as exc:
        run_import(engine, big_person, strict=True, workers=2, min_chunk=CHUNK,
                   report_path=report, now=NOW)
    assert str(exc.value) == (
        f"{big_person}:{line}: column «Code profession»: unknown profession code (77)")
    assert "REFUSED" in report.read_text(encoding="utf-8")
    assert dump(engine) == before


def test_strict_parallel_import_reports_the_first_error_in_file_order(
    engine: Engine, big_person: Path, tmp_path: Path
) -> None:
    jobs = _plan(big_person, tmp_path / "probe")
    first = _rewrite_line_at(big_person, jobs[1].start, {PROFESSION: "77"})
    _rewrite_line_at(big_person, jobs[-1].start, {PROFESSION: "78"})
    with pytest.raises(ImportRefused) as exc:
        run_import(engine, big_person, strict=True, workers=2, min_chunk=CHUNK)
    assert exc.value.issue.line == first and exc.value.issue.value == "77"


def test_collect_pairs_results_with_their_jobs(big_person: Path, tmp_path: Path) -> None:
    """A refusal in the second range is numbered from the file's start, whatever order the
    results come in; the ranges after it may be missing (cancelled)."""
    jobs = _plan(big_person, tmp_path / "work")
    assert len(jobs) >= 3
    line = _rewrite_line_at(big_person, jobs[1].start, {PROFESSION: "77"})
    # the first range and the refusing second one ran; the third did not (cancelled)
    results = [stage_worker.run(jobs[1]), stage_worker.run(jobs[0])]
    assert results[0].refused
    seen: list[Issue] = []
    with pytest.raises(ImportRefused) as exc:
        staging.collect(jobs, results, seen.append)
    assert exc.value.issue.line == line
    assert [i.line for i in seen] == [line]


def test_non_strict_parallel_collect_numbers_every_range(
    big_person: Path, tmp_path: Path
) -> None:
    jobs = _plan(big_person, tmp_path / "work", strict=False)
    lines = [_rewrite_line_at(big_person, j.start, {PROFESSION: "77"}) for j in jobs[1:]]
    results = staging.run(jobs, staging.StageOptions(
        lenient=True, strict=False, workdir=tmp_path / "work", workers=2, min_chunk=CHUNK))
    seen: list[Issue] = []
    staged = staging.collect(jobs, list(reversed(results)), seen.append)
    assert [i.line for i in seen] == lines
    assert [r.index for r in staged.results] == [j.index for j in jobs]


def test_encoding_is_decided_once_per_file(engine: Engine, big_person: Path,
                                           tmp_path: Path) -> None:
    """A UTF-8 file whose second range starts with a bad line is not read as Latin-1."""
    jobs = _plan(big_person, tmp_path / "probe")
    data = big_person.read_bytes()
    start = jobs[1].start
    end = data.index(b"\n", start)
    bad = data[start:end].decode("utf-8").split("|")
    bad[7] = "HÉLÈNE"  # encoded below in Latin-1: not valid UTF-8
    big_person.write_bytes(data[:start] + "|".join(bad).encode("latin-1") + data[end:])
    line = data.count(b"\n", 0, start) + 1
    assert _plan(big_person, tmp_path / "probe")[1].start == start
    res = run_import(engine, big_person, workers=2, min_chunk=CHUNK)
    assert len(res.files) == 1 and res.files[0].encoding == "utf-8"
    assert res.errors == 1
    assert str(res.first_issues[0]).startswith(f"{big_person}:{line}: column «-»: not valid UTF-8")
    with engine.connect() as conn:
        mojibake = conn.execute(text(
            "SELECT count(*) FROM practitioner WHERE raw LIKE :m"), {"m": "%Ã%"}).scalar_one()
        accented = conn.execute(text(
            "SELECT count(*) FROM practitioner WHERE raw LIKE :e"), {"e": "%é%"}).scalar_one()
    assert mojibake == 0 and accented > 0


def test_latin1_file_inside_a_zip(engine: Engine, tmp_path: Path) -> None:
    person, mailbox, stats = gen_extract.generate(
        tmp_path / "g", person_lines=80, mailbox_lines=30, seed=9, encoding="latin-1")
    archive = gen_extract.zip_extracts([person, mailbox], tmp_path / "extraction.zip")
    with zipfile.ZipFile(archive) as zf:
        assert b"\xe9" in zf.read(person.name)  # «é» in Latin-1
    res = run_import(engine, archive)
    assert [f.encoding for f in res.files] == ["latin-1", "latin-1"]
    assert res.errors == 0 and res.merge.practitioners.added == stats.practitioners
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT raw FROM practitioner"))]
    assert any("é" in n for n in names) and not any("Ã" in n for n in names)


def test_unknown_header_columns_are_reported_once(engine: Engine, tmp_path: Path) -> None:
    header = "|".join([*PERSON_COLUMNS, "Colonne future"]) + "|"
    lines = [person_line()[:-1] + "|x|",
             person_line(**{"Identifiant PP": "15000000024",
                            "Identification nationale PP": "815000000024"})[:-1] + "|y|"]
    path = tmp_path / "PS.txt"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    report = tmp_path / "report.txt"
    res = run_import(engine, path, report_path=report, strict=True)
    assert res.merge.practitioners.added == 2
    assert res.warnings == 1 and res.errors == 0
    (issue,) = res.first_issues
    assert issue.severity is Severity.WARNING
    assert str(issue) == (
        f"{path}:1: column «Colonne future»: unknown column, its values are ignored")
    assert f"warning: {issue}" in report.read_text(encoding="utf-8")


def test_jobs_are_of_about_the_same_parsing_cost(tmp_path: Path) -> None:
    """About four jobs a worker; a mailbox byte costs twice a person byte to parse."""
    person, mailbox, _ = gen_extract.generate(tmp_path / "g", person_lines=3000,
                                              mailbox_lines=2000, seed=5)
    opts = staging.StageOptions(lenient=True, strict=False, workdir=tmp_path, workers=2,
                                min_chunk=16 * 1024)
    jobs = staging.plan(sources(person) + sources(mailbox), opts)
    assert len(jobs) == 4 * opts.workers
    costs = [((j.end or j.source.size) - j.start) * staging.PARSE_COST[j.header.kind]
             for j in jobs]
    assert max(costs) < 2 * min(costs)
    assert {j.header.kind for j in jobs} == set(staging.PARSE_COST)
