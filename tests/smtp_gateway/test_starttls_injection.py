"""Regression test for plaintext command injection after STARTTLS (RFC 3207 §6,
CVE-2011-0411) on the platform's real listeners: submission (587) and the MTA (25).

The client pipelines commands behind STARTTLS in the same TCP segment; the server must
answer the STARTTLS in clear and then forget them: inside TLS, only what the client sends
after the handshake is answered.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.support.platform import InProcessPlatform, PlatformDir, make_platform_dir

CLAIRE = "claire.martin@demo.mssante.fr"
READY = b"220 2.0.0 Ready to start TLS\r\n"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformDir]:
    """The real listeners, on SQLite: nothing here is stored, whatever the backend."""
    pdir = make_platform_dir(tmp_path_factory.mktemp("platform"))
    pdir.add_account(CLAIRE, "s3cret-Pa55word")
    plat = InProcessPlatform(pdir, services=("submission", "mta")).start()
    yield pdir
    plat.stop()


def _read_until(sock: socket.socket | ssl.SSLSocket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _read_all(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("service", ["submission", "mta"])
def test_commands_pipelined_after_starttls_are_discarded(live: PlatformDir, service: str) -> None:
    with socket.create_connection(("127.0.0.1", live.ports[service]), timeout=15) as sock:
        assert _read_until(sock, b"\r\n").startswith(b"220 ")
        # Behind STARTTLS, the injection: it would run inside the TLS session if kept.
        injected = f"MAIL FROM:<{CLAIRE}>\r\nRCPT TO:<{CLAIRE}>\r\nHELO injected.test\r\n"
        sock.sendall(b"EHLO client.test\r\nSTARTTLS\r\n" + injected.encode())
        clear = _read_until(sock, READY)
        assert clear.endswith(b"250 HELP\r\n" + READY), clear  # nothing answered after it
        with live.client_tls().wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"NOOP\r\nMAIL FROM:<x@y.test>\r\nQUIT\r\n")
            # The injected HELO was not taken: MAIL finds no greeting.
            assert _read_all(tls) == (
                b"250 2.0.0 OK\r\n503 5.5.1 send HELO first\r\n221 2.0.0 Bye\r\n"
            )
