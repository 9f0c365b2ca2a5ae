"""`kill -9` in the middle of an import leaves the previous directory intact, and the
next import removes the staging files the killed one left."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from benchmarks import gen_extract
from tests.directory.conftest import Extract, run_import
from tests.directory.test_import import dump

ROOT = Path(__file__).resolve().parents[2]


def _wait_for_mark(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=deadline - time.monotonic()):
            line = proc.stdout.readline()
            if line.strip() == "MARK":
                return
            if not line:
                break
    proc.kill()
    raise AssertionError(f"the import never reached its mark: {proc.stderr.read()}")  # type: ignore[union-attr]


@pytest.mark.parametrize("phase", ["index", "read"])
def test_kill_mid_import(
    engine: Engine, db_url: str, demo_extract: Extract, tmp_path: Path, phase: str
) -> None:
    run_import(engine, demo_extract.person, demo_extract.mailbox)
    before = dump(engine)
    later = tmp_path / "PS_LibreAcces_Personne_activite_later.txt"
    gen_extract.derive_delta(demo_extract.person, later, remove=0.2, change=0.2)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.directory.killed_import", db_url, phase, str(work),
         str(later), str(demo_extract.mailbox)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for_mark(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert dump(engine) == before
    [abandoned] = work.glob("caducee-import-*")
    assert any(abandoned.glob("stage-*.db"))

    run_import(engine, demo_extract.person, demo_extract.mailbox, workdir=work)
    assert list(work.iterdir()) == []
    assert dump(engine) == before
    # the database is usable: the same import now goes through
    res = run_import(engine, later, demo_extract.mailbox)
    assert res.merge.practitioners.deactivated > 0
    assert dump(engine) != before


@pytest.mark.parametrize("backend", ["sqlite"])  # the index is built beside the merge there
def test_kill_a_first_import_building_its_index_beside_the_merge(
    engine: Engine, db_url: str, demo_extract: Extract, tmp_path: Path
) -> None:
    """Killed while its helper builds the search index: nothing imported, and the helper
    dies with it (it would otherwise hold the staging files and a core)."""
    import psutil

    before = dump(engine)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.directory.killed_import", db_url, "index:fresh",
         str(work), str(demo_extract.person), str(demo_extract.mailbox)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for_mark(proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # the helper
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
    assert dump(engine) == before
    assert all(not rows for rows in before.values())
    run_import(engine, demo_extract.person, demo_extract.mailbox, workdir=work)
    assert list(work.iterdir()) == []
    assert dump(engine) != before
