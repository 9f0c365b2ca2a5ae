"""The test harness's ports stay clear of the kernel's ephemeral range, so a server killed
and restarted on its port (tests/e2e/test_durability.py) never finds it taken by some
outgoing connection's source port."""

from __future__ import annotations

import socket

import pytest

from tests.support import net


def test_ports_are_below_the_ephemeral_range_and_never_given_twice() -> None:
    ports = [net.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= p < net._ephemeral_low() for p in ports)
    for port in ports[:5]:  # each one can really be listened on
        with socket.create_server(("127.0.0.1", port)):
            pass


def test_a_port_someone_listens_on_is_never_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        monkeypatch.setattr(net, "_LOW", busy)  # a range of that one port
        monkeypatch.setattr(net, "_HIGH", busy + 1)
        monkeypatch.setattr(net, "_given", set())
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
        with pytest.raises(RuntimeError, match="no free port"):
            net.free_port()
