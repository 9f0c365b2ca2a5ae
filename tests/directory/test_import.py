"""Importing extracts: one transaction, upsert, delta, report, strict mode (both backends)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from benchmarks import gen_extract
from directory.importer import ImportRefused
from tests.directory.conftest import (
    LATER,
    NOW,
    Extract,
    mailbox_line,
    person_line,
    run_import,
    write_mailbox,
    write_person,
)

TABLES = ("practitioner", "practitioner_activity", "directory_mailbox", "directory_doc")


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the directory's tables (the import log aside)."""
    out = {}
    with engine.connect() as conn:
        for t in TABLES:
            rows = conn.execute(text(f"SELECT * FROM {t}")).all()
            out[t] = sorted(tuple(str(v) for v in r) for r in rows)
    return out


def count(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_import_demo_extract(engine: Engine, demo_extract: Extract, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    res = run_import(engine, demo_extract.person, demo_extract.mailbox, report_path=report)
    st = demo_extract.stats
    assert res.errors == 0 and res.warnings == 0
    assert res.lines == st.person_lines + st.mailbox_lines
    assert res.merge.practitioners.added == st.practitioners
    assert res.merge.mailboxes.added == st.mailbox_lines
    assert res.merge.index == "full"
    assert count(engine, "SELECT count(*) FROM practitioner") == st.practitioners
    assert count(engine, "SELECT count(*) FROM directory_mailbox") == st.mailbox_lines
    assert count(engine, "SELECT count(*) FROM practitioner_activity") <= st.person_lines
    text_ = report.read_text(encoding="utf-8")
    assert f"Practitioners: {st.practitioners} added" in text_
    assert "Problems (0 errors" in text_


def test_reimporting_the_same_file_changes_nothing(engine: Engine, demo_extract: Extract) -> None:
    run_import(engine, demo_extract.person, demo_extract.mailbox)
    before = dump(engine)
    res = run_import(engine, demo_extract.person, demo_extract.mailbox, now=LATER)
    assert dump(engine) == before
    m = res.merge
    assert (m.practitioners.added, m.practitioners.changed, m.practitioners.deactivated) == (0, 0, 0)
    assert (m.activities.added, m.activities.changed, m.activities.deactivated) == (0, 0, 0)
    assert (m.mailboxes.added, m.mailboxes.changed, m.mailboxes.deactivated) == (0, 0, 0)
    assert m.index == "none"


def test_each_import_is_logged_once_with_its_summary(
    engine: Engine, demo_extract: Extract
) -> None:
    first = run_import(engine, demo_extract.person, demo_extract.mailbox)
    second = run_import(engine, demo_extract.person, now=LATER)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, started_at, finished_at, actor, files, summary FROM directory_import "
            "ORDER BY id")).all()
    assert [r.id for r in rows] == [first.import_id, second.import_id]
    assert second.import_id > first.import_id
    for row, res, files in ((rows[0], first, 2), (rows[1], second, 1)):
        assert row.started_at is not None and row.finished_at is not None
        assert row.actor == "cli"
        assert len(row.files.splitlines()) == files
        summary = json.loads(row.summary)
        assert summary["lines"] == res.lines
        assert summary["practitioners"]["added"] == res.merge.practitioners.added
    assert json.loads(rows[0].summary)["practitioners"]["added"] == demo_extract.stats.practitioners


def _states(engine: Engine, table: str, key: str, imp: int) -> tuple[set[str], set[str]]:
    """(keys of the inactive rows, keys of the active rows import ``imp`` changed)."""
    with engine.connect() as conn:
        inactive = {r[0] for r in conn.execute(text(
            f"SELECT {key} FROM {table} WHERE active = false"))}
        touched = {r[0] for r in conn.execute(text(
            f"SELECT {key} FROM {table} WHERE changed_import = :i AND active = true"),
            {"i": imp})}
    return inactive, touched


def _last_names(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {nat: raw.split("|")[7] for nat, raw in conn.execute(text(
            "SELECT national_id, raw FROM practitioner"))}


def test_delta_marks_exactly_the_removed_and_changed(
    engine: Engine, tmp_path: Path
) -> None:
    """A later extract, 1 % removed and 1 % changed, of both files (issue 6, must hold)."""
    person, mailbox, stats = gen_extract.generate(
        tmp_path / "v1", person_lines=1500, mailbox_lines=1000, seed=3
    )
    first = run_import(engine, person, mailbox)
    names_before = _last_names(engine)
    later = tmp_path / "PS_LibreAcces_Personne_activite_v2.txt"
    later_boxes = tmp_path / "Extraction_Correspondance_MSSante_v2.txt"
    people = gen_extract.derive_delta(person, later, remove=0.01, change=0.01)
    boxes = gen_extract.derive_mailbox_delta(mailbox, later_boxes, remove=0.01, change=0.01)
    # every kind of change is exercised: a person field, an activity field, both for mailboxes
    assert people.removed and people.renamed and people.changed - people.renamed
    assert boxes.removed and boxes.renamed and boxes.changed - boxes.renamed
    res = run_import(engine, later, later_boxes, now=LATER)
    imp = res.import_id
    assert imp == first.import_id + 1
    m = res.merge
    assert (m.practitioners.added, m.practitioners.changed, m.practitioners.deactivated) == (
        0, len(people.changed), len(people.removed))
    assert (m.mailboxes.added, m.mailboxes.changed, m.mailboxes.deactivated) == (
        0, len(boxes.changed), len(boxes.removed))
    # each practitioner with a changed activity: its old activity retired, the new one added
    assert m.activities.added == len(people.changed - people.renamed)

    inactive, touched = _states(engine, "practitioner", "national_id", imp)
    assert inactive == people.removed
    assert touched == people.changed
    names_after = _last_names(engine)
    assert {n for n in names_after if names_after[n] != names_before[n]} == people.renamed
    inactive, touched = _states(engine, "directory_mailbox", "address", imp)
    assert inactive == boxes.removed
    assert touched == boxes.changed
    with engine.connect() as conn:
        dated = conn.execute(text(
            "SELECT (SELECT count(*) FROM practitioner WHERE inactive_since IS NOT NULL) + "
            "(SELECT count(*) FROM directory_mailbox WHERE inactive_since IS NOT NULL)"
        )).scalar_one()
    assert dated == len(people.removed) + len(boxes.removed)  # kept, with a date
    assert count(engine, "SELECT count(*) FROM practitioner") == stats.practitioners
    assert count(engine, "SELECT count(*) FROM directory_mailbox") == stats.mailbox_lines

    # entries back in a later extract are active again
    back = run_import(engine, person, mailbox, now=LATER)
    assert back.merge.practitioners.changed == len(people.removed) + len(people.changed)
    assert back.merge.mailboxes.changed == len(boxes.removed) + len(boxes.changed)
    assert count(engine, "SELECT count(*) FROM practitioner WHERE active = false") == 0
    assert count(engine, "SELECT count(*) FROM directory_mailbox WHERE active = false") == 0


def test_bad_lines_are_skipped_counted_and_reported(engine: Engine, tmp_path: Path) -> None:
    good2 = person_line(**{"Identifiant PP": "15000000024", "Identification nationale PP":
                           "815000000024", "Nom d'exercice": "MARTIN"})
    path = write_person(tmp_path / "PS.txt", [
        person_line(), person_line(**{"Code profession": "77"}), good2,
    ])
    report = tmp_path / "r.txt"
    res = run_import(engine, path, report_path=report)
    assert res.errors == 1 and res.files[0].rejected == 1
    assert res.merge.practitioners.added == 2
    assert f"{path}:3: column «Code profession»: unknown profession code (77)" in (
        report.read_text(encoding="utf-8"))


def test_strict_refuses_the_whole_import(engine: Engine, tmp_path: Path,
                                         demo_extract: Extract) -> None:
    run_import(engine, demo_extract.person)
    before = dump(engine)
    path = write_person(tmp_path / "PS.txt", [person_line(), person_line(**{
        "Identifiant PP": "15000000017", "Identification nationale PP": "815000000017"})])
    report = tmp_path / "refused.txt"
    with pytest.raises(ImportRefused) as exc:  # strict: a wrong check digit is an error too
        run_import(engine, path, strict=True, report_path=report)
    assert str(exc.value) == (
        f"{path}:3: column «Identifiant PP»: RPPS check digit is wrong (Luhn) (15000000017)")
    assert "REFUSED" in report.read_text(encoding="utf-8")
    assert dump(engine) == before
    # the same file without --strict imports the good line; lenient mode warns only
    assert run_import(engine, path, lenient_identifiers=False).merge.practitioners.added == 1
    res = run_import(engine, path)
    assert res.warnings == 1 and res.merge.practitioners.added == 1


def test_latin1_bom_zip_and_header_variant(engine: Engine, tmp_path: Path) -> None:
    latin = write_person(tmp_path / "latin.txt", [person_line()], encoding="latin-1")
    res = run_import(engine, latin)
    assert res.files[0].encoding == "latin-1"
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT raw FROM practitioner")).scalar_one()
    assert "LEFÈVRE|Hélène" in raw

    person, mailbox, _ = gen_extract.generate(
        tmp_path / "g", person_lines=60, mailbox_lines=20, seed=5, bom=True, header_variant=True
    )
    archive = gen_extract.zip_extracts([person, mailbox], tmp_path / "extraction.zip")
    res = run_import(engine, archive)
    assert {f.kind.value for f in res.files} == {"person", "mailbox"}
    assert all(f.label.startswith(f"{archive}!") for f in res.files)
    assert all(f.encoding == "utf-8 (BOM)" for f in res.files)
    assert res.errors == 0 and res.merge.mailboxes.added == 20


def test_invalid_utf8_after_utf8_is_an_error_on_that_line(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "PS.txt"
    write_person(path, [person_line()])
    with path.open("ab") as f:
        f.write(person_line(**{"Identifiant PP": "15000000024", "Identification nationale PP":
                               "815000000024"}).encode("latin-1") + b"\n")
    res = run_import(engine, path)
    assert res.errors == 1
    assert str(res.first_issues[0]) == f"{path}:3: column «-»: not valid UTF-8 (byte 0xc8)"


def test_header_problems_refuse_the_file(engine: Engine, tmp_path: Path) -> None:
    bad = tmp_path / "x.txt"
    bad.write_text("Nom|Prénom|\nA|B|\n", encoding="utf-8")
    with pytest.raises(ImportRefused, match=r"x.txt:1: column «Nom»: not an Annuaire"):
        run_import(engine, bad)
    zipped = tmp_path / "empty.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("readme.md", "nothing")
    from directory.reader import SourceError

    with pytest.raises(SourceError, match=r"no \.txt extract"):
        run_import(engine, zipped)


def test_repeated_mailbox_addresses_keep_the_first(engine: Engine, tmp_path: Path) -> None:
    path = write_mailbox(tmp_path / "BAL.txt", [
        mailbox_line(), mailbox_line(**{"Nom d'exercice": "AUTRE"}),
    ])
    res = run_import(engine, path)
    assert res.errors == 1 and res.merge.mailboxes.added == 1
    assert str(res.first_issues[0]) == (
        f"{path}:3: column «Adresse BAL»: mailbox listed twice (first at line 2): this line "
        "is skipped (helene.lefevre@medecin.mssante.fr)")


def test_parallel_staging_gives_the_same_directory(
    engine: Engine, tmp_path: Path, db_url: str
) -> None:
    person, mailbox, stats = gen_extract.generate(
        tmp_path / "g", person_lines=3000, mailbox_lines=800, seed=11
    )
    res = run_import(engine, person, mailbox, workers=2, min_chunk=64 * 1024)
    assert res.merge.practitioners.added == stats.practitioners
    assert res.merge.mailboxes.added == stats.mailbox_lines
    parallel = dump(engine)
    from mailstore.db import create_db_engine

    # a second database, imported by one process: identical rows
    other_url = db_url
    if db_url.startswith("sqlite"):
        other_url = f"sqlite:///{tmp_path / 'serial.db'}"
    else:
        pytest.skip("compared on SQLite only (one fresh PostgreSQL database per test)")
    from caducee.dbschema import upgrade

    other = create_db_engine(other_url)
    try:
        upgrade(other)
        run_import(other, person, mailbox, workers=1)
        assert dump(other) == parallel
    finally:
        other.dispose()


def test_unsorted_file_keeps_the_first_occurrence(engine: Engine, tmp_path: Path) -> None:
    other = {"Identifiant PP": "15000000024", "Identification nationale PP": "815000000024",
             "Nom d'exercice": "MARTIN"}
    path = write_person(tmp_path / "PS.txt", [
        person_line(), person_line(**other),
        person_line(**{"Prénom d'exercice": "Hélèna", "Code postal (coord. structure)": "69003"}),
    ])
    res = run_import(engine, path, now=NOW)
    assert res.merge.practitioners.added == 2 and res.merge.practitioners.changed == 0
    assert res.merge.activities.added == 3
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT raw FROM practitioner WHERE id = 815000000016")).scalar()
    assert str(raw).split("|")[8] == "Hélène"
    # and so on every import of the same file: nothing changes (the second record, unlike
    # the stored one, once won every second import)
    for _ in range(2):
        again = run_import(engine, path, now=LATER)
        assert again.merge.practitioners.changed == 0 and again.merge.index == "none"
        with engine.connect() as conn:
            raw = conn.execute(
                text("SELECT raw FROM practitioner WHERE id = 815000000016")).scalar()
        assert str(raw).split("|")[8] == "Hélène"
