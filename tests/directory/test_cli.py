"""`caducee directory …` end to end (in process, and one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from caducee.cli import main
from tests.directory.conftest import Extract, person_line, write_person


def cli(config: Path, *args: str) -> int:
    return main(["-c", str(config), "directory", *args])


def test_import_search_and_manage(
    config: Path, demo_extract: Extract, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(config, "import", str(demo_extract.person), str(demo_extract.mailbox)) == 0
    out, err = capsys.readouterr()
    assert "Practitioners: " in out and "report: " in out
    assert "merging into the directory" in err
    reports = list((config.parent / "reports").glob("directory-import-*.txt"))
    assert len(reports) == 1

    assert cli(config, "search", "le", "fevre", "--profession", "10") == 0
    out, _ = capsys.readouterr()
    assert "paul.lefevre@demo.mssante.fr" in out and "Médecin" in out

    assert cli(config, "search", "--address", "pharmacie.centrale", "--json") == 0
    out, _ = capsys.readouterr()
    (hit,) = json.loads(out)["results"]
    assert hit["name"] == "PHARMACIE CENTRALE" and hit["kind"] == "mailbox"

    assert cli(config, "add", "mailbox", "secretariat@demo.mssante.fr", "--type", "ORG",
               "--structure", "CABINET DEMO", "--red-list") == 0
    assert cli(config, "edit", "paul.lefevre@demo.mssante.fr", "--red-list") == 0
    assert cli(config, "search", "--address", "paul.lefevre") == 0
    out, _ = capsys.readouterr()
    assert "Aucun résultat" in out

    assert cli(config, "edit", "claire.martin@demo.mssante.fr", "--last-name", "MARTIN-DURAND") == 0
    assert cli(config, "show", "claire.martin@demo.mssante.fr", "--json") == 0
    out, _ = capsys.readouterr()
    shown = json.loads(out[out.index("{"):])
    assert shown["overrides"]["last_name"]["value"] == "MARTIN-DURAND"
    assert shown["overrides"]["last_name"]["by"].startswith("cli")

    assert cli(config, "deactivate", "claire.martin@demo.mssante.fr") == 0
    assert cli(config, "show", "claire.martin@demo.mssante.fr") == 0
    out, _ = capsys.readouterr()
    assert "state: inactive" in out and "manual active = «False»" in out
    assert cli(config, "reactivate", "claire.martin@demo.mssante.fr") == 0

    assert cli(config, "edit", "nobody@demo.mssante.fr", "--service", "x") == 1
    _, err = capsys.readouterr()
    assert "Boîte inconnue" in err
    assert cli(config, "search") == 1
    _, err = capsys.readouterr()
    assert "Précisez au moins un critère" in err


def test_refused_import_exits_1(config: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("a|b|\n", encoding="utf-8")
    assert cli(config, "import", "--strict", str(bad)) == 1
    _, err = capsys.readouterr()
    assert "import refused, nothing changed" in err and "bad.txt:1" in err


def test_entry_point(config: Path, demo_extract: Extract) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "caducee", "-c", str(config), "directory", "import",
         str(demo_extract.mailbox), "--report", str(config.parent / "r.txt")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "Mailboxes: " in r.stdout
    assert (config.parent / "r.txt").exists()


def test_strict_import_refuses_a_bad_data_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_person(tmp_path / "PS1.txt", [person_line()])
    assert cli(config, "import", str(first)) == 0
    capsys.readouterr()
    other = {"Identifiant PP": "15000000024", "Identification nationale PP": "815000000024"}
    bad = write_person(tmp_path / "PS.txt", [
        person_line(**other), person_line(**{**other, "Code profession": "77"})])
    assert cli(config, "import", "--strict", str(bad)) == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[-2:] == [
        f"caducee: import refused, nothing changed: {bad}:3: column «Code profession»: "
        "unknown profession code (77)",
        f"report: {err.split('report: ')[1].strip()}",
    ]
    assert "Traceback" not in err and out == ""
    assert cli(config, "show", "15000000024") == 1  # nothing changed: not even line 2
    assert "Praticien inconnu" in capsys.readouterr().err
    assert cli(config, "show", "15000000016") == 0

    # a strict import is strict about check digits too; the default mode only warns
    luhn = write_person(tmp_path / "PS3.txt", [person_line(**{
        "Identifiant PP": "15000000017", "Identification nationale PP": "815000000017"})])
    assert cli(config, "import", "--strict", str(luhn)) == 1
    assert "RPPS check digit is wrong (Luhn) (15000000017)" in capsys.readouterr().err
    # (it lists someone else: the one practitioner of the directory leaves it)
    assert cli(config, "import", "--allow-deactivation", str(luhn)) == 0
    out, _ = capsys.readouterr()
    assert "warning: " in out and "Practitioners: 1 added" in out


def test_manage_a_practitioner(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(config, "add", "practitioner", "19999900012", "--last-name", "MARTIN",
               "--first-name", "Claire", "--civility", "Docteur", "--civility-code", "DR",
               "--profession", "10", "--specialty-code", "SM54", "--specialty",
               "Médecine générale", "--town", "Lyon", "--postcode", "69002",
               "--departement", "69") == 0
    out, _ = capsys.readouterr()
    assert out.strip() == "added practitioner 819999900012: Docteur Claire MARTIN (Médecin)"
    assert cli(config, "add", "practitioner", "19999900012", "--last-name", "X",
               "--profession", "10") == 1
    assert "existe déjà" in capsys.readouterr().err

    assert cli(config, "edit", "19999900012", "--last-name", "MARTIN-DURAND",
               "--profession", "60", "--town", "Villeurbanne", "--postcode", "69100") == 0
    out, _ = capsys.readouterr()
    assert out.strip() == "819999900012: updated (Docteur Claire MARTIN-DURAND)"
    assert cli(config, "edit", "19999900012", "--service", "x") == 1
    assert "not a mailbox: cannot change service" in capsys.readouterr().err
    assert cli(config, "edit", "a@demo.mssante.fr", "--town", "x") == 1
    assert "not a practitioner: cannot change town" in capsys.readouterr().err
    assert cli(config, "edit", "19999900012", "--postcode", "691") == 1
    assert "Code postal invalide" in capsys.readouterr().err

    assert cli(config, "search", "--town", "villeurbanne", "--json") == 0
    (hit,) = json.loads(capsys.readouterr().out)["results"]
    assert hit["national_id"] == "819999900012" and hit["professions"] == ["Infirmier"]

    assert cli(config, "show", "19999900012", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["overrides"]["town"]["value"] == "Villeurbanne"
    assert shown["overrides"]["profession"]["by"].startswith("cli")
    assert shown["activities"][0]["activity"]["site"]["postcode"] == "69100"

    assert cli(config, "deactivate", "19999900012") == 0
    assert cli(config, "show", "19999900012") == 0
    out, _ = capsys.readouterr()
    assert "state: inactive since " in out and "manual active = «False»" in out
    assert "activity (active): Infirmier, Médecine générale" in out
    assert cli(config, "search", "--town", "villeurbanne", "--json") == 0
    assert json.loads(capsys.readouterr().out)["results"] == []

    assert cli(config, "reactivate", "19999900012") == 0
    assert cli(config, "edit", "19999900012", "--reset", "town", "--reset", "postcode") == 0
    assert cli(config, "show", "19999900012") == 0
    out, _ = capsys.readouterr()
    assert "state: active;" in out and "Lyon" in out and "manual town" not in out
    assert cli(config, "show", "19999900020") == 1
    assert "Praticien inconnu" in capsys.readouterr().err


def test_a_reader_that_leaves_early_gets_no_traceback(
    config: Path, demo_extract: Extract
) -> None:
    """``caducee directory search … | head -1``: the output meets a closed pipe (closed
    here before the command starts, so that it does whatever the output's size)."""
    assert cli(config, "import", str(demo_extract.person), str(demo_extract.mailbox)) == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "caducee", "-c", str(config), "directory", "search",
             "--json", "lefevre"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )
    finally:
        os.close(write_end)
    assert r.returncode == 141, r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr
