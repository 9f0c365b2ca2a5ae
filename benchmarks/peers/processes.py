"""Process trees of the peers we start: stop them completely, and measure their memory."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants (empty if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process exited; return those still alive after ``timeout``."""
    _gone, alive = psutil.wait_procs(list(procs), timeout=timeout)
    return list(alive)


def stop_tree(procs: list[psutil.Process], timeout: float = 10.0) -> None:
    """After a graceful stop was requested: wait for ``procs``, then SIGKILL what is left."""
    alive = wait_gone(procs, timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    alive = wait_gone(alive, 5.0)
    if alive:
        raise RuntimeError(f"processes survived SIGKILL: {[p.pid for p in alive]}")


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid`` and wait for its whole tree to go."""
    procs = tree(pid)
    if not procs:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    stop_tree(procs, timeout)


def cpu_seconds(procs: Iterable[psutil.Process]) -> dict[int, float]:
    """User + system CPU seconds of each process, by PID."""
    out: dict[int, float] = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def rss_bytes(procs: Iterable[psutil.Process]) -> int:
    """Sum of the resident set sizes (counts shared pages once per process)."""
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def pss_bytes(procs: Iterable[psutil.Process]) -> int:
    """Sum of the proportional set sizes: shared pages split between their users.

    The fair measure for a forking server (Dovecot: one process per connection).
    """
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_full_info().pss
    return total


def wait_until(cond: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``cond`` until it returns something true; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
