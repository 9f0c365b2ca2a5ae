"""A message submitted over SMTP reaches IMAP byte for byte (plus our trace fields), and an
idling IMAP client hears of it (the delivery path notifies the IMAP notifier)."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import time
from collections.abc import Iterator

import pytest

from caducee.tls import server_context
from mailstore.imap.server import ImapServer, start_imap_server
from mailstore.imap.session import ImapSettings
from mailstore.notify import Notifier
from tests.mailstore.imap.harness import Wire
from tests.support.platform import InProcessPlatform, PlatformDir, make_platform_dir

CLAIRE = "claire.martin@demo.mssante.fr"
PAUL = "paul.lefevre@demo.mssante.fr"
PASSWORD = "s3cret-Pa55word"

MESSAGE = (
    f"From: Claire Martin <{CLAIRE}>\r\nTo: Paul Lefevre <{PAUL}>\r\n"
    "Subject: =?UTF-8?Q?Compte_rendu_op=C3=A9ratoire?=\r\n"
    "Date: Tue, 05 Mar 2024 10:00:00 +0100\r\nMessage-ID: <roundtrip-1@demo.mssante.fr>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n"
    "Bonjour,\r\n\r\nL'intervention s'est bien d\u00e9roul\u00e9e.\r\n.leading dot line\r\n"
).encode()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[PlatformDir, InProcessPlatform, ImapServer]
]:
    pdir = make_platform_dir(tmp_path_factory.mktemp("platform"))
    for address in (CLAIRE, PAUL):
        pdir.add_account(address, PASSWORD)
    plat = InProcessPlatform(pdir, services=("submission",)).start()
    assert plat.platform is not None and plat.ctx is not None
    notifier = Notifier()
    plat.platform.delivery.notify = notifier.mailbox_changed  # the lead's wiring does this
    cfg = pdir.config

    async def start() -> ImapServer:
        assert plat.platform is not None and plat.ctx is not None
        return await start_imap_server(
            db=plat.ctx.db, keystore=plat.ctx.keystore,
            authenticator=plat.platform.authenticator, notifier=notifier,
            ssl_context=server_context(cfg.tls.cert, cfg.tls.key, cfg.tls.client_ca),
            listen=[("127.0.0.1", 0)], implicit_tls_listen=[("127.0.0.1", 0)],
            journal=plat.ctx.journal,
            settings=ImapSettings(patient_domain=cfg.domains.patient),
        )

    imap = plat.call(start)
    yield pdir, plat, imap
    plat.call(imap.close)
    plat.call(notifier.close)
    plat.stop()


def test_smtp_to_imap_is_byte_exact_and_wakes_idle(
    platform: tuple[PlatformDir, InProcessPlatform, ImapServer],
) -> None:
    pdir, _, imap = platform
    tls = ssl.create_default_context(cafile=str(pdir.ca))
    idler = Wire.connect(imap.tls_addresses[0][1], tls=tls)
    idler.line()
    idler.cmd(b"L", f"LOGIN {PAUL} {PASSWORD}".encode())
    idler.cmd(b"S", b"SELECT INBOX")
    idler.send(b"I IDLE\r\n")
    assert idler.line() == b"+ idling\r\n"

    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=tls)
        s.login(CLAIRE, PASSWORD)
        start = time.monotonic()
        s.sendmail(CLAIRE, [PAUL], MESSAGE, mail_options=["BODY=8BITMIME"])
    assert idler.line() == b"* 1 EXISTS\r\n"
    assert time.monotonic() - start < 2.0
    idler.send(b"DONE\r\n")
    idler.until(b"I")
    idler.close()

    client = imaplib.IMAP4_SSL("127.0.0.1", imap.tls_addresses[0][1], ssl_context=tls)
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
