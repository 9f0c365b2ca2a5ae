"""Failed logins are rate-limited with one limiter across protocols (ARCHITECTURE.md §5,
issue 5): failures over SMTP submission lock the same client address (and account) out of
IMAP, and the other way round. The platform runs as `caducee run` wires it (submission +
IMAP in one process). The limiter is per process: nodes sharing a database do not share it
(docs/rfc-index.md)."""

from __future__ import annotations

import base64
import smtplib
import socket
from collections.abc import Iterator

import pytest

from tests.mailstore.imap.harness import Wire
from tests.support.platform import InProcessPlatform, PlatformDir, configure, make_platform_dir

PASSWORD = "s3cret-Pa55word"
CLAIRE = "claire.martin@demo.mssante.fr"
PAUL = "paul.lefevre@demo.mssante.fr"
ANNE = "anne.roux@demo.mssante.fr"
MAX_FAILURES = 3

# Every loopback address reaches the 127.0.0.1 listeners; each scenario comes from its own.
SMTP_THEN_IMAP, IMAP_THEN_SMTP, BYSTANDER, ACCOUNT_A, ACCOUNT_B = (
    "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6",
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformDir]:
    pdir = make_platform_dir(tmp_path_factory.mktemp("platform"))
    configure(pdir, "auth", max_failures=MAX_FAILURES, window_seconds=600.0,
              lockout_seconds=600.0)
    for address in (CLAIRE, PAUL, ANNE):
        pdir.add_account(address, PASSWORD)
    plat = InProcessPlatform(pdir, services=("submission", "imap")).start()
    try:
        yield pdir
    finally:
        plat.stop()



def _smtp_auth(pdir: PlatformDir, source: str, user: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN over STARTTLS from ``source``: the reply, as the server gave it."""
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30,
                      source_address=(source, 0)) as s:
        s.starttls(context=pdir.client_tls())
        s.ehlo()
        creds = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, text = s.docmd("AUTH", "PLAIN " + creds)
        if code != 421:  # after 421 the server has closed the connection
            s.quit()
        return code, text


def _imap_login(pdir: PlatformDir, source: str, user: str, password: str) -> bytes:
    """One LOGIN over implicit TLS from ``source``: the tagged reply."""
    sock = socket.create_connection(
        ("127.0.0.1", pdir.ports["imaps"]), timeout=30, source_address=(source, 0)
    )
    w = Wire(pdir.client_tls().wrap_socket(sock, server_hostname="127.0.0.1"))
    try:
        w.line()
        return w.cmd(b"a1", f"LOGIN {user} {password}".encode())
    finally:
        w.close()


def test_smtp_failures_lock_the_address_out_of_imap(platform: PlatformDir) -> None:
    for n in range(MAX_FAILURES):
        code, text = _smtp_auth(platform, SMTP_THEN_IMAP, f"nobody{n}@demo.mssante.fr", "wrong")
        assert (code, text[:5]) == (535, b"5.7.8"), text
    # Right password, another account: the address is what is locked.
    assert _imap_login(platform, SMTP_THEN_IMAP, CLAIRE, PASSWORD) == (
        b"a1 NO [UNAVAILABLE] Too many failed attempts, try again later\r\n"
    )
    assert _imap_login(platform, BYSTANDER, CLAIRE, PASSWORD).startswith(b"a1 OK ")


def test_imap_failures_lock_the_address_out_of_smtp(platform: PlatformDir) -> None:
    for n in range(MAX_FAILURES):
        reply = _imap_login(platform, IMAP_THEN_SMTP, f"nobody{n}@demo.mssante.fr", "wrong")
        assert reply.startswith(b"a1 NO [AUTHENTICATIONFAILED] "), reply
    code, text = _smtp_auth(platform, IMAP_THEN_SMTP, PAUL, PASSWORD)
    assert (code, text) == (421, b"4.7.0 Too many attempts, try later")
    assert _smtp_auth(platform, BYSTANDER, PAUL, PASSWORD)[0] == 235


def test_smtp_failures_on_an_account_lock_it_out_of_imap_from_anywhere(
    platform: PlatformDir,
) -> None:
    for _ in range(MAX_FAILURES):
        assert _smtp_auth(platform, ACCOUNT_A, ANNE, "wrong password")[0] == 535
    assert _imap_login(platform, ACCOUNT_B, ANNE, PASSWORD).startswith(b"a1 NO [UNAVAILABLE]")
