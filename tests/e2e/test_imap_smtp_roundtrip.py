"""The platform as `caducee run` wires it (submission + IMAP, one process): a message
submitted over SMTP reaches IMAP byte for byte (plus our trace fields); an idling IMAP
client hears of it within 100 ms of the SMTP 250 (the delivery path feeds the IMAP
notifier, no polling); APPEND applies the configured `[policy]` attachment limits."""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections.abc import Iterator

import pytest

from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import Wire
from tests.support.platform import InProcessPlatform, PlatformDir, configure, make_platform_dir

CLAIRE = "claire.martin@demo.mssante.fr"
PAUL = "paul.lefevre@demo.mssante.fr"
PASSWORD = "s3cret-Pa55word"
#: `[policy] max_attachment_size` for this platform: below corpus.PDF (79 bytes).
ATTACHMENT_LIMIT = 64

MESSAGE = (
    f"From: Claire Martin <{CLAIRE}>\r\nTo: Paul Lefevre <{PAUL}>\r\n"
    "Subject: =?UTF-8?Q?Compte_rendu_op=C3=A9ratoire?=\r\n"
    "Date: Tue, 05 Mar 2024 10:00:00 +0100\r\nMessage-ID: <roundtrip-1@demo.mssante.fr>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n"
    "Bonjour,\r\n\r\nL'intervention s'est bien d\u00e9roul\u00e9e.\r\n.leading dot line\r\n"
).encode()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformDir]:
    pdir = make_platform_dir(tmp_path_factory.mktemp("platform"))
    configure(pdir, "policy", max_attachment_size=ATTACHMENT_LIMIT)
    for address in (CLAIRE, PAUL):
        pdir.add_account(address, PASSWORD)
    plat = InProcessPlatform(pdir, services=("submission", "imap")).start()
    try:
        yield pdir
    finally:
        plat.stop()



def _idle_inbox(pdir: PlatformDir, user: str) -> Wire:
    idler = Wire.connect(pdir.ports["imaps"], tls=pdir.client_tls())
    idler.line()
    assert idler.cmd(b"L", f"LOGIN {user} {PASSWORD}".encode()).startswith(b"L OK")
    idler.cmd(b"S", b"SELECT INBOX")
    idler.send(b"I IDLE\r\n")
    assert idler.line() == b"+ idling\r\n"
    return idler


def test_smtp_to_imap_is_byte_exact_and_wakes_idle_within_100ms(platform: PlatformDir) -> None:
    pdir = platform
    tls = pdir.client_tls()
    idler = _idle_inbox(pdir, PAUL)
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=tls)
        s.login(CLAIRE, PASSWORD)
        arrived = idler.lines_in_background(1)
        s.sendmail(CLAIRE, [PAUL], MESSAGE, mail_options=["BODY=8BITMIME"])
        accepted_at = time.monotonic()  # sendmail returns once it has read DATA's 250
        [(line, exists_at)] = arrived()
    assert line == b"* 1 EXISTS\r\n"
    assert exists_at - accepted_at < 0.1, (
        f"IDLE woke {exists_at - accepted_at:.3f}s after the SMTP 250"
    )
    assert idler.line() == b"* 1 RECENT\r\n"
    idler.send(b"DONE\r\n")
    assert idler.until(b"I") == b"I OK IDLE terminated\r\n"
    idler.close()

    client = imaplib.IMAP4_SSL("127.0.0.1", pdir.ports["imaps"], ssl_context=tls)
    client.login(PAUL, PASSWORD)
    client.select("INBOX")
    _, data = client.fetch("1", "(BODY.PEEK[])")
    answer = data[0]
    assert isinstance(answer, tuple)
    stored = answer[1]
    client.logout()
    assert stored.endswith(MESSAGE)
    added = stored[: -len(MESSAGE)]
    names = [line.split(b":")[0] for line in added.split(b"\r\n") if line and line[:1] not in b" \t"]
    assert names and set(names) <= {b"Received", b"DKIM-Signature", b"Authentication-Results"}
    assert b"Received" in names


def test_append_uses_the_configured_attachment_limits(platform: PlatformDir) -> None:
    """`caducee run` hands `[policy]` limits to IMAP: APPEND refuses an attachment over
    `max_attachment_size` as submission would (the built-in default, 10 MiB, would pass it)."""
    pdir = platform
    client = imaplib.IMAP4_SSL("127.0.0.1", pdir.ports["imaps"], ssl_context=pdir.client_tls())
    client.login(CLAIRE, PASSWORD)
    typ, data = client.append("Drafts", None, None, corpus.WITH_PDF)
    assert typ == "NO"
    assert data[0].startswith(b"[TOOBIG] ")
    assert f"attachment larger than {ATTACHMENT_LIMIT} bytes".encode() in data[0]
    typ, data = client.append("Drafts", None, None, corpus.SIMPLE)
    assert typ == "OK" and data[0].startswith(b"[APPENDUID ")
    client.logout()
