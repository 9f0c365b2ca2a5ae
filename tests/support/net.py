"""Network helpers for tests: free ports and waiting on conditions with a deadline."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral ports (its outgoing connections' source ports) begin."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Test ports come from below the ephemeral range: the kernel never gives these to an
#: outgoing connection, so a server killed and restarted on its port finds it free (a port
#: from ``bind(0)`` can meanwhile be a PostgreSQL client's source port: EADDRINUSE).
_HIGH = _ephemeral_low()
_LOW = max(1024, _HIGH - 12288)
_given: set[int] = set()


def free_port() -> int:
    """A port no one listens on, outside the ephemeral range, never given twice by this
    process; each pytest-xdist worker draws from its own slice of the range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    span = (_HIGH - _LOW) // count
    low = _LOW + (int(worker) % count if worker.isdigit() else 0) * span
    start = random.randrange(span)
    for i in range(span):
        port = low + (start + i) % span
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {low}..{low + span - 1}")


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


async def async_wait_for(
    cond: Callable[[], Awaitable[object]], timeout: float = 10.0, what: str = "condition"
) -> object:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    def _try() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(_try, timeout, f"{host}:{port} to accept connections")


@contextmanager
def serve_asgi(app: Any, log_level: str = "warning") -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn server on a free loopback port, in a thread;
    yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level=log_level, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
