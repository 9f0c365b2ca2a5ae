"""Imports that would empty the directory by accident are refused, and nothing changes.

An extract cut short (an interrupted download, a file holding only its header) lists
fewer entries than the directory holds; imported, it would retire the rest, and the
professionals whose mailboxes it lacks could no longer send. Both backends.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from caducee.cli import main
from caducee.config import DirectorySection
from directory.importer import DEFAULT_MAX_DEACTIVATION, ImportRefused
from tests.directory.conftest import (
    mailbox_line,
    person_line,
    run_import,
    write_config,
    write_mailbox,
    write_person,
)


def _rpps(n: int) -> str:
    """A valid RPPS (Luhn key) from a number."""
    body = f"1{n:09d}"
    for key in "0123456789":
        digits = [int(c) for c in body + key]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
                    for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return body + key
    raise AssertionError("unreachable")


def _people(path: Path, numbers: range) -> Path:
    return write_person(path, [person_line(**{
        "Identifiant PP": _rpps(n), "Identification nationale PP": "8" + _rpps(n),
        "Nom d'exercice": f"NOM{n}"}) for n in numbers])


def _boxes(path: Path, numbers: range) -> Path:
    return write_mailbox(path, [mailbox_line(**{
        "Adresse BAL": f"dr{n}@medecin.mssante.fr", "Identifiant PP": _rpps(n),
        "Identification nationale PP": "8" + _rpps(n), "Nom d'exercice": f"NOM{n}"})
        for n in numbers])


def _state(engine: Engine) -> tuple[int, int, int, int]:
    """(active practitioners, active mailboxes, imports logged, rows in all)."""
    with engine.connect() as conn:
        return (
            int(conn.execute(text("SELECT count(*) FROM practitioner WHERE active = true"))
                .scalar_one()),
            int(conn.execute(text(
                "SELECT count(*) FROM directory_mailbox WHERE active = true")).scalar_one()),
            int(conn.execute(text("SELECT count(*) FROM directory_import")).scalar_one()),
            int(conn.execute(text("SELECT count(*) FROM practitioner")).scalar_one()),
        )


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> Engine:
    run_import(engine, _people(tmp_path / "PS0.txt", range(40)),
               _boxes(tmp_path / "BAL0.txt", range(40)))
    assert _state(engine) == (40, 40, 1, 40)
    return engine


def test_an_extract_without_a_valid_line_is_refused(loaded: Engine, tmp_path: Path) -> None:
    header_only = write_person(tmp_path / "PS1.txt", [])
    report = tmp_path / "report.txt"
    with pytest.raises(ImportRefused, match=r"PS1\.txt:1: column «-»: the extract holds no "
                       r"valid line \(0 read, 0 rejected\)"):
        run_import(loaded, header_only, report_path=report)
    assert "REFUSED: nothing was imported" in report.read_text(encoding="utf-8")
    all_bad = write_mailbox(tmp_path / "BAL1.txt", [
        mailbox_line(**{"Adresse BAL": f"x{n}@medecin.mssante.fr", "Type de BAL": "XYZ"})
        for n in range(3)])
    with pytest.raises(ImportRefused, match=r"holds no valid line \(3 read, 3 rejected\)"):
        run_import(loaded, all_bad)
    assert _state(loaded) == (40, 40, 1, 40)


def test_an_import_deactivating_too_much_is_refused_unless_allowed(
    loaded: Engine, tmp_path: Path
) -> None:
    assert DEFAULT_MAX_DEACTIVATION == 0.10
    # the CLI's default is the library's (the configuration module keeps to the stdlib)
    assert DirectorySection().max_deactivation == DEFAULT_MAX_DEACTIVATION
    # 5 of 40 practitioners (12.5 %) missing: a truncated file?
    cut = _people(tmp_path / "PS1.txt", range(35))
    report = tmp_path / "report.txt"
    with pytest.raises(ImportRefused, match=(
            r"PS1\.txt:1: column «-»: this extract would deactivate 5 of the 40 practitioners "
            r"listed \(12%\), more than the 10% allowed")):
        run_import(loaded, cut, max_deactivation=DEFAULT_MAX_DEACTIVATION, report_path=report)
    assert "REFUSED: nothing was imported" in report.read_text(encoding="utf-8")
    assert _state(loaded) == (40, 40, 1, 40)  # rolled back: nothing deactivated, no log row
    # the same for mailboxes, alone in their file
    with pytest.raises(ImportRefused, match="would deactivate 20 of the 40 mailboxes"):
        run_import(loaded, _boxes(tmp_path / "BAL1.txt", range(20)),
                   max_deactivation=DEFAULT_MAX_DEACTIVATION)
    assert _state(loaded) == (40, 40, 1, 40)
    # within the limit (4 of 40, 10 %), it lands; so does the refused one once allowed
    res = run_import(loaded, _people(tmp_path / "PS2.txt", range(36)),
                     max_deactivation=DEFAULT_MAX_DEACTIVATION)
    assert res.merge.practitioners.deactivated == 4
    assert _state(loaded) == (36, 40, 2, 40)
    res = run_import(loaded, cut, max_deactivation=None)
    assert res.merge.practitioners.deactivated == 1
    assert _state(loaded) == (35, 40, 3, 40)


def test_the_cli_names_the_limit_and_how_to_accept_it(
    db_url: str, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "caducee.toml", db_url, "max_deactivation = 0.5\n")

    def cli(*args: str) -> int:
        return main(["-c", str(config), "directory", "import", *args])

    assert cli(str(_people(tmp_path / "PS0.txt", range(10)))) == 0
    half = _people(tmp_path / "PS1.txt", range(4))  # 6 of 10 missing: over 0.5
    capsys.readouterr()
    assert cli(str(half)) == 1
    err = capsys.readouterr().err
    assert ("import refused, nothing changed: " in err
            and "would deactivate 6 of the 10 practitioners listed (60%), more than the 50% "
            "allowed: is it complete? (to accept it: --allow-deactivation" in err)
    assert _state(engine)[0] == 10
    assert cli(str(_people(tmp_path / "PS2.txt", range(5)))) == 0  # 5 of 10: at the limit
    assert _state(engine)[0] == 5
    assert cli("--allow-deactivation", str(half)) == 0
    assert _state(engine)[0] == 4
    empty = write_person(tmp_path / "PS3.txt", [])
    assert cli("--allow-deactivation", str(empty)) == 1  # never an empty extract
    assert "the extract holds no valid line" in capsys.readouterr().err
    config.write_text(config.read_text(encoding="utf-8").replace("0.5", "0"),
                      encoding="utf-8")
    assert cli(str(half)) == 2  # a configuration error
    assert (f"{config}:11: key «directory.max_deactivation»: must be a share above 0"
            in capsys.readouterr().err)
