"""Attachments the rules once let through, end to end (defect review): submitted over SMTP
to a professional and a patient, and appended over IMAP.

Each message carries an executable (or a script, or an HTML page) in a form that
``email`` did not decode as mail clients do — a transfer encoding with a trailing space,
base64 with one character too many, an encoded ``message/rfc822`` part — or under a second
file name. Each must be refused ``554 5.6.0`` at DATA (``NO [CANNOT]`` at APPEND), and
nothing reaches a mailbox.
"""

from __future__ import annotations

import base64
import imaplib
import smtplib
from collections.abc import Iterator

import pytest

from tests.policy import corpus as c
from tests.support.platform import InProcessPlatform, PlatformDir, make_platform_dir

DR_MARTIN = "claire.martin@demo.mssante.fr"
DR_LEFEVRE = "paul.lefevre@demo.mssante.fr"
INS = "279035121518989"
PATIENT = f"{INS}@patient.demo.mssante.fr"
PASSWORD = "policy-review-pw-1"




def _message(part_headers: bytes, body: bytes) -> bytes:
    return c.raw_message(part_headers, body, sender=DR_MARTIN, to=f"{DR_LEFEVRE}, {PATIENT}")


_FORWARDED = (
    b"From: x@autre.mssante.fr\r\nSubject: i\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: application/octet-stream; name="a.exe"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + c.exe_base64() + b"\r\n"
)

#: (case, message, words of the 554 reply)
CASES: list[tuple[str, bytes, str]] = [
    ("encoding with a trailing space", _message(
        b'Content-Type: application/octet-stream; name="scan.bin"\r\n'
        b"Content-Transfer-Encoding: base64 \r\n", c.exe_base64()),
     "scan.bin: executable"),
    ("encoding with a comment", _message(
        b'Content-Type: application/octet-stream; name="scan.bin"\r\n'
        b"Content-Transfer-Encoding: base64 (x)\r\n", c.exe_base64()),
     "scan.bin: Content-Transfer-Encoding"),
    ("base64 with one character too many", _message(
        b'Content-Type: application/octet-stream; name="scan.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n", c.exe_base64() + b"A"),
     "scan.bin: base64 content that cannot be decoded"),
    ("encoded forwarded message", _message(
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n",
        base64.encodebytes(_FORWARDED).replace(b"\n", b"\r\n")),
     "encoded message/rfc822 part"),
    ("dangerous name in name=", _message(
        b'Content-Type: text/plain; name="nettoyage.bat"\r\n'
        b'Content-Disposition: attachment; filename="notes.txt"\r\n',
        b'rd /s /q "%USERPROFILE%\\Documents"\r\n'),
     "nettoyage.bat: file name extension .bat not accepted"),
    ("html page after a line of text", _message(
        b'Content-Type: text/plain; name="compte-rendu.html"\r\n'
        b'Content-Disposition: attachment; filename="compte-rendu.html"\r\n',
        b"Bonjour,\n<html><body><script>fetch('https://evil.example/')</script></body></html>\n"),
     "compte-rendu.html: file name extension .html not accepted"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformDir]:
    pdir = make_platform_dir(tmp_path_factory.mktemp("policy-review"))
    for address in (DR_MARTIN, DR_LEFEVRE):
        pdir.add_account(address, PASSWORD)
    pdir.add_patient(INS)
    plat = InProcessPlatform(pdir).start()
    yield pdir
    plat.stop()


def _inbox_count(pdir: PlatformDir, address: str) -> int:
    with imaplib.IMAP4("127.0.0.1", pdir.ports["imap"]) as client:
        client.starttls(ssl_context=pdir.client_tls())
        client.login(address, PASSWORD)
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK" and data[0] is not None
        return int(data[0])


def _patient_inbox_count(pdir: PlatformDir) -> int:
    from sqlalchemy import func, select

    from mailstore.tables import account, mailbox, message

    ctx = pdir.context()
    try:
        return int(ctx.db.read_sync(lambda conn: conn.execute(
            select(func.count()).select_from(message.join(mailbox).join(account))
            .where(account.c.address == PATIENT, mailbox.c.name == "INBOX")
        ).scalar_one()))
    finally:
        ctx.close()


@pytest.mark.parametrize(("case", "raw", "words"), CASES, ids=[case[0] for case in CASES])
def test_submission_refuses_the_hidden_attachment(
    live: PlatformDir, case: str, raw: bytes, words: str
) -> None:
    pdir = live
    before = (_inbox_count(pdir, DR_LEFEVRE), _patient_inbox_count(pdir))
    with smtplib.SMTP("127.0.0.1", pdir.ports["submission"], timeout=30) as s:
        s.starttls(context=pdir.client_tls())
        s.login(DR_MARTIN, PASSWORD)
        assert s.docmd("MAIL", f"FROM:<{DR_MARTIN}>")[0] == 250
        assert s.docmd("RCPT", f"TO:<{DR_LEFEVRE}>")[0] == 250
        assert s.docmd("RCPT", f"TO:<{PATIENT}>")[0] == 250
        code, text = s.data(raw)
    assert code == 554, (case, code, text)
    assert text.startswith(b"5.6.0 Attachment type not accepted: "), text
    assert words.encode() in text, text
    assert (_inbox_count(pdir, DR_LEFEVRE), _patient_inbox_count(pdir)) == before


@pytest.mark.parametrize(("case", "raw", "words"), CASES, ids=[case[0] for case in CASES])
def test_append_refuses_the_hidden_attachment(
    live: PlatformDir, case: str, raw: bytes, words: str
) -> None:
    pdir = live
    with imaplib.IMAP4("127.0.0.1", pdir.ports["imap"]) as client:
        client.starttls(ssl_context=pdir.client_tls())
        client.login(DR_MARTIN, PASSWORD)
        typ, data = client.append("Sent", None, None, raw)
        assert typ == "NO", (case, data)
        assert data[0].startswith(b"[CANNOT] "), data
        assert words.encode() in data[0], data


def test_a_refusal_naming_a_non_ascii_file_stays_ascii_without_smtputf8(
    live: PlatformDir,
) -> None:
    """The refused file's name goes into the 554 text: UTF-8 only to a client that declared
    SMTPUTF8 (RFC 5321 §4.2, RFC 6531 §3.7), accents folded for the others."""
    raw = _message(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sultat%E2%98%85.exe\r\n"
        b"Content-Transfer-Encoding: base64\r\n", c.exe_base64())
    for smtputf8, expected in ((False, b"resultat?.exe"),
                               (True, "résultat★.exe".encode())):
        with smtplib.SMTP("127.0.0.1", live.ports["submission"], timeout=30) as s:
            s.starttls(context=live.client_tls())
            s.login(DR_MARTIN, PASSWORD)
            options = " SMTPUTF8" if smtputf8 else ""
            assert s.docmd("MAIL", f"FROM:<{DR_MARTIN}>{options}")[0] == 250
            assert s.docmd("RCPT", f"TO:<{DR_LEFEVRE}>")[0] == 250
            s.putcmd("DATA")
            assert s.getreply()[0] == 354
            s.send(raw.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
            code, text = s.getreply()
        assert code == 554, text
        assert expected in text and text.startswith(b"5.6.0 Attachment type not accepted: ")
        assert smtputf8 or text.isascii()
