"""`caducee directory import` refuses unusable paths with a clear message and status 1,
before anything is read or committed (never a traceback, never an import without its
report)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text

from caducee.cli import main
from mailstore.db import create_db_engine
from tests.directory.conftest import Extract


def _import(config: Path, *args: str) -> int:
    return main(["-c", str(config), "directory", "import", *args])


def _imports(db_url: str) -> int:
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM directory_import")).scalar_one())
    finally:
        engine.dispose()


def test_a_directory_is_not_an_extract(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _import(config, str(tmp_path)) == 1
    _, err = capsys.readouterr()
    assert f"{tmp_path}: is a directory, not an extract file" in err


def test_a_truncated_zip_is_named_as_such(
    config: Path, tmp_path: Path, demo_extract: Extract, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = tmp_path / "Extraction.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(demo_extract.mailbox, demo_extract.mailbox.name)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[:4000])  # an interrupted download
    assert _import(config, str(cut)) == 1
    _, err = capsys.readouterr()
    assert f"{cut}: damaged or truncated zip archive" in err


def test_a_report_path_that_is_a_directory_is_refused_before_importing(
    config: Path, db_url: str, tmp_path: Path, demo_extract: Extract,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The report is written after the commit: an unwritable one used to crash the command
    with a traceback although the import had landed."""
    target = tmp_path / "reports-here"
    target.mkdir()
    assert _import(config, "--report", str(target), str(demo_extract.mailbox)) == 1
    _, err = capsys.readouterr()
    assert f"--report {target}: is a directory" in err
    assert _imports(db_url) == 0
    blocked = tmp_path / "a-file"
    blocked.write_text("x", encoding="utf-8")
    assert _import(config, "--report", str(blocked / "r.txt"), str(demo_extract.mailbox)) == 1
    _, err = capsys.readouterr()
    assert f"--report {blocked / 'r.txt'}: {blocked} is not a directory" in err
    assert _imports(db_url) == 0


def test_a_number_of_workers_out_of_range_is_refused(
    config: Path, demo_extract: Extract, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("-3", "0", "65", "two"):
        with pytest.raises(SystemExit) as exit_:
            _import(config, "--workers", bad, str(demo_extract.mailbox))
        assert exit_.value.code == 2
        assert "argument --workers: " in capsys.readouterr().err
    config.write_text(config.read_text(encoding="utf-8").replace(
        "import_workers = 1", "import_workers = -1"), encoding="utf-8")
    assert _import(config, str(demo_extract.mailbox)) == 2
    assert "key «directory.import_workers»: must be 0 (one per CPU) to 64, got -1" in (
        capsys.readouterr().err)
