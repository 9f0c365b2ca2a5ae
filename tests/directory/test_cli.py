"""`caducee directory …` end to end (in process, and one real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from caducee.cli import main
from tests.directory.conftest import Extract


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "caducee.toml"
    path.write_text(
        '[server]\nhostname = "mx.caducee.test"\ndata_dir = "data"\n'
        '[domains]\nprofessional = ["demo.mssante.fr"]\n'
        f'[database]\nurl = "{db_url}"\n'
        '[directory]\nreport_dir = "reports"\nimport_workers = 1\n',
        encoding="utf-8",
    )
    return path


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
