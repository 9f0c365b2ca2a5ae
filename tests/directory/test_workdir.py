"""The import's working directory: locked while in use, removed after, or by the next
import when its import was killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from directory.workdir import LOCK, PREFIX, open_workdir, remove_abandoned


def test_open_then_close(tmp_path: Path) -> None:
    work = open_workdir(tmp_path)
    assert work.path.parent == tmp_path and work.path.name.startswith(PREFIX)
    assert [p.name for p in work.path.iterdir()] == [LOCK]
    (work.path / "stage-0.db").write_bytes(b"x")
    work.close()
    assert list(tmp_path.iterdir()) == []


def test_a_running_import_keeps_its_directory(tmp_path: Path) -> None:
    running = open_workdir(tmp_path)
    other = open_workdir(tmp_path)  # a second import sweeps, and must spare the first
    assert running.path.is_dir() and other.path.is_dir()
    assert remove_abandoned(tmp_path) == []
    running.close()
    other.close()


def test_a_killed_import_s_directory_is_removed(tmp_path: Path) -> None:
    # a process makes a directory, then dies without cleaning up (its lock dies with it)
    script = (
        "import sys; from pathlib import Path; from directory.workdir import open_workdir; "
        "w = open_workdir(Path(sys.argv[1])); (w.path / 'stage-0.db').write_bytes(b'x'); "
        "print(w.path)"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).parents[2])
    left = Path(out.stdout.strip())
    assert (left / "stage-0.db").exists()
    work = open_workdir(tmp_path)
    assert not left.exists()
    assert list(tmp_path.iterdir()) == [work.path]
    work.close()


def test_directories_without_a_lock_are_not_ours_to_judge(tmp_path: Path) -> None:
    foreign = tmp_path / (PREFIX + "manual")
    foreign.mkdir()
    (tmp_path / "unrelated").mkdir()
    assert remove_abandoned(tmp_path) == []
    assert foreign.is_dir() and (tmp_path / "unrelated").is_dir()


def test_links_are_never_followed(tmp_path: Path) -> None:
    """In a shared temp directory, a planted link is neither followed nor removed."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / LOCK).write_bytes(b"")
    (target / "precious").write_bytes(b"x")
    base = tmp_path / "tmp"
    base.mkdir()
    (base / (PREFIX + "link")).symlink_to(target)  # the whole directory is a link
    planted = base / (PREFIX + "planted")
    planted.mkdir()
    (planted / LOCK).symlink_to(target / LOCK)  # its lock file is a link
    assert remove_abandoned(base) == []
    assert (target / "precious").exists() and planted.is_dir()
