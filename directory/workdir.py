"""The import's working directory: staging databases and issue files, gone afterwards.

An import that ends, well or badly, removes its directory. One that is killed (SIGKILL,
power loss) cannot, and a national extract's staging files weigh hundreds of MiB. So each
directory holds a ``.lock`` file that its import keeps locked (``flock``) while it runs;
the next import removes every sibling directory whose lock it can take: its owner is gone.

The lock file is created and locked under a temporary name, then renamed into place, so
no other import ever sees an unlocked ``.lock`` in a live directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "caducee-import-"
LOCK = ".lock"


@dataclass(frozen=True)
class WorkDir:
    path: Path
    lock_fd: int

    def close(self) -> None:
        """Remove the directory, then release its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self.lock_fd)


def _try_lock(path: Path) -> int | None:
    """A descriptor holding ``path``'s lock, or ``None`` when another process holds it.

    The temp directory may be shared: never follow a link, never block on a FIFO.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_abandoned(base: Path) -> list[Path]:
    """Remove the import directories in ``base`` whose import is no longer running."""
    removed: list[Path] = []
    for d in base.glob(PREFIX + "*"):
        try:
            st = d.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue  # another user's, or a link: not ours to remove
        fd = _try_lock(d / LOCK)
        if fd is None:
            continue  # running, or not ours to judge (no lock file)
        try:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        finally:
            os.close(fd)
    return removed


def open_workdir(base: Path | None) -> WorkDir:
    """A new, locked import directory in ``base`` (default: the temp directory), after
    removing the ones killed imports left there."""
    root = Path(base) if base is not None else Path(tempfile.gettempdir())
    remove_abandoned(root)
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    pending = path / f"{LOCK}.{os.getpid()}"
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pending.rename(path / LOCK)
    return WorkDir(path, fd)
