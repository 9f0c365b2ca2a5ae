"""Regressions found by a review of the SMTP edge, over real sockets against the running
platform (submission and the MTA): envelope paths that are not UTF-8, and the message
size of RFC 1870 at the limit."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from tests.support.platform import InProcessPlatform, PlatformDir, configure, make_platform_dir

CLAIRE = "claire.martin@demo.mssante.fr"
PAUL = "paul.lefevre@demo.mssante.fr"
PASSWORD = "review-Pa55word"
OTHER = "other.example"
#: Small enough to send a message of exactly the limit quickly (the minimum is 1,024).
MAX_SIZE = 4096


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformDir]:
    pdir = make_platform_dir(tmp_path_factory.mktemp("smtp-review"))
    configure(pdir, "policy", max_message_size=MAX_SIZE)
    for address in (CLAIRE, PAUL):
        pdir.add_account(address, PASSWORD)
    pdir.trust(OTHER)
    plat = InProcessPlatform(pdir).start()
    yield pdir
    plat.stop()


def submission(pdir: PlatformDir) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30)
    s.starttls(context=pdir.client_tls())
    s.ehlo("client.test")
    s.login(CLAIRE, PASSWORD)
    return s


def mta(pdir: PlatformDir) -> smtplib.SMTP:
    """Another operator of the trust space: STARTTLS with a verified client certificate."""
    s = smtplib.SMTP("127.0.0.1", pdir.ports["mta"], timeout=30)
    s.starttls(context=pdir.operator_tls([f"mx.{OTHER}"]))
    s.ehlo(f"mx.{OTHER}")
    return s


def raw_command(s: smtplib.SMTP, line: bytes) -> tuple[int, bytes]:
    """Send octets smtplib would refuse to encode (not UTF-8) and read the reply."""
    assert s.sock is not None
    s.sock.sendall(line + b"\r\n")
    return s.getreply()


# -- envelope paths that are not UTF-8 -----------------------------------------------------


def test_submission_path_not_utf8_is_malformed_not_our_fault(live: PlatformDir) -> None:
    """aiosmtpd hands such octets on as lone surrogates: they used to crash the recipient
    rules (UnicodeEncodeError), answered 451 4.3.0 with a logged traceback, so a client
    retried for days. RFC 6531 §3.3: a path is ASCII or UTF-8; this one is malformed."""
    with submission(live) as s:
        assert s.docmd("MAIL", f"FROM:<{CLAIRE}>")[0] == 250
        code, text = raw_command(s, b"RCPT TO:<j\xffrome@" + OTHER.encode() + b">")
        assert (code, text[:5]) == (553, b"5.1.3")
        assert s.docmd("RCPT", f"TO:<{PAUL}>")[0] == 250  # the transaction goes on
        assert s.docmd("RSET")[0] == 250
        code, text = raw_command(s, b"MAIL FROM:<cl\xe9aire@demo.mssante.fr>")
        assert (code, text[:5]) == (553, b"5.1.3")


def test_mta_path_not_utf8_is_malformed_not_our_fault(live: PlatformDir) -> None:
    with mta(live) as s:
        code, text = raw_command(s, b"MAIL FROM:<dr\xff@" + OTHER.encode() + b">")
        assert (code, text[:5]) == (553, b"5.1.3")
        assert s.docmd("MAIL", f"FROM:<dr.peer@{OTHER}>")[0] == 250
        code, text = raw_command(s, b"RCPT TO:<cl\xffaire@demo.mssante.fr>")
        assert (code, text[:5]) == (553, b"5.1.3")
        assert s.docmd("RCPT", f"TO:<{CLAIRE}>")[0] == 250


# -- RFC 1870 message size ---------------------------------------------------------------------


def exact_message(size: int) -> bytes:
    """A message of ``size`` octets whose body lines begin with a period (each is sent with
    a second period, RFC 5321 §4.5.2, which is not part of the size: RFC 1870 §3)."""
    head = f"From: {CLAIRE}\r\nTo: {PAUL}\r\nSubject: size\r\n\r\n".encode()
    line = b".line of a report\r\n"
    body = line * ((size - len(head) - 3) // len(line))
    rest = size - len(head) - len(body)  # at least 3: a last line "x…" and its CRLF
    return head + body + b"x" * (rest - 2) + b"\r\n"


def test_message_of_exactly_the_size_limit_with_leading_periods_is_accepted(
    live: PlatformDir,
) -> None:
    message = exact_message(MAX_SIZE)
    assert len(message) == MAX_SIZE and message.count(b"\r\n.") > 100
    with submission(live) as s:
        assert s.has_extn("size") and int(s.esmtp_features["size"]) == MAX_SIZE
        # smtplib declares SIZE= and doubles the leading periods; the server must count
        # the message, not the octets on the wire (which would exceed the limit).
        assert s.sendmail(CLAIRE, [PAUL], message) == {}
        too_big = exact_message(MAX_SIZE + 1)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            s.sendmail(CLAIRE, [PAUL], too_big)  # refused at MAIL (its SIZE=)
        assert refused.value.smtp_code == 552
        assert s.docmd("MAIL", f"FROM:<{CLAIRE}>")[0] == 250  # no SIZE= declared
        assert s.docmd("RCPT", f"TO:<{PAUL}>")[0] == 250
        code, text = s.data(too_big)
        assert (code, text[:5]) == (552, b"5.3.4")
