"""Greeting, STARTTLS, LOGIN/AUTHENTICATE, states and bad syntax over real sockets."""

from __future__ import annotations

import asyncio
import base64
import imaplib
from typing import Any

import pytest
from sqlalchemy import func, select

from mailstore.accounts import Account, set_state
from mailstore.imap.commands import Append
from mailstore.imap.session import Session
from mailstore.imap.state import State
from mailstore.tables import message
from tests.mailstore.imap.harness import CLIENT_ID, ImapHarness, Wire

PASSWORD = "secret-password"


def test_plain_port_requires_starttls_then_logs_in(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = Wire.connect(imap_server.port)
    greeting = w.line()
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b"STARTTLS" in greeting and b"LOGINDISABLED" in greeting
    assert b"AUTH=PLAIN" not in greeting
    reply = w.cmd(b"a1", b"LOGIN claire@chu.test " + PASSWORD.encode())
    assert reply == b"a1 NO [PRIVACYREQUIRED] Use STARTTLS or port 993 first\r\n"
    reply = w.cmd(b"a2", b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0claire@chu.test\0x"))
    assert reply.startswith(b"a2 NO [PRIVACYREQUIRED]")
    assert w.cmd(b"a3", b"STARTTLS") == b"a3 OK Begin TLS negotiation now\r\n"
    w.starttls(imap_server.client_ssl())
    caps = w.cmd(b"a4", b"CAPABILITY")
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
    reply = w.cmd(b"a5", b"LOGIN claire@chu.test " + PASSWORD.encode())
    assert reply.startswith(b"a5 OK [CAPABILITY IMAP4rev1 ") and b"IDLE" in reply
    assert w.cmd(b"a6", b"STARTTLS").startswith(b"a6 BAD")
    w.close()


def test_commands_pipelined_after_starttls_are_discarded(imap_server: ImapHarness) -> None:
    """Plaintext command injection (CVE-2011-0411 class): nothing sent before the
    handshake may be executed after it."""
    w = Wire.connect(imap_server.port)
    w.line()
    w.send(b"a1 STARTTLS\r\nevil CAPABILITY\r\n")
    assert w.until(b"a1") == b"a1 OK Begin TLS negotiation now\r\n"
    w.starttls(imap_server.client_ssl())
    reply = w.cmd(b"a2", b"NOOP")
    assert b"evil" not in reply and reply == b"a2 OK NOOP completed\r\n"
    w.close()


def test_login_failures_patients_and_disabled_accounts(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.create_account(
        "279035121518989@patient.test", PASSWORD, kind="patient", ins="279035121518989"
    )
    imap_server.create_account("gone@chu.test", PASSWORD)
    imap_server.db.write_sync(lambda tx: set_state(tx.conn, "gone@chu.test", "disabled"))
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl())
    w.line()
    assert w.cmd(b"a1", b"LOGIN claire@chu.test wrong-password") == (
        b"a1 NO [AUTHENTICATIONFAILED] Authentication failed: wrong user name or password\r\n"
    )
    assert w.cmd(b"a2", b"LOGIN nobody@chu.test whatever").startswith(
        b"a2 NO [AUTHENTICATIONFAILED]"
    )
    reply = w.cmd(b"a3", b"LOGIN 279035121518989@patient.test " + PASSWORD.encode())
    assert reply.startswith(b"a3 NO [AUTHORIZATIONFAILED] Les comptes patients")
    assert w.cmd(b"a4", b"LOGIN gone@chu.test " + PASSWORD.encode()).startswith(
        b"a4 NO [AUTHORIZATIONFAILED] This account is disabled"
    )
    assert w.cmd(b"a5", b"SELECT INBOX").startswith(b"a5 BAD")
    assert w.cmd(b"a6", b"LOGIN claire@chu.test " + PASSWORD.encode()).startswith(b"a6 OK")
    assert w.cmd(b"a7", b"LOGIN claire@chu.test " + PASSWORD.encode()) == (
        b"a7 BAD LOGIN is only valid before authentication\r\n"
    )
    w.close()


def test_authenticate_plain_with_and_without_initial_response(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    creds = base64.b64encode(b"\0claire@chu.test\0" + PASSWORD.encode())
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl())
    w.line()
    w.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert w.line() == b"+ \r\n"
    w.send(b"*\r\n")
    assert w.until(b"a1") == b"a1 BAD authentication cancelled\r\n"
    w.send(b"a2 AUTHENTICATE PLAIN\r\n")
    assert w.line() == b"+ \r\n"
    w.send(b"not base64!\r\n")
    assert w.until(b"a2").startswith(b"a2 BAD")
    assert w.cmd(b"a3", b"AUTHENTICATE PLAIN " + creds).startswith(b"a3 OK [CAPABILITY")
    w.close()
    client = imap_server.imaps()
    client.authenticate("PLAIN", lambda _: b"\0claire@chu.test\0" + PASSWORD.encode())
    assert client.state == "AUTH"
    client.logout()


def test_authenticate_external_with_a_client_certificate(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD, cert_subject=CLIENT_ID)
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl())
    assert b"AUTH=EXTERNAL" not in w.line()
    assert w.cmd(b"a1", b"AUTHENTICATE EXTERNAL =").startswith(b"a1 NO [AUTHENTICATIONFAILED]")
    w.close()
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl(with_cert=True))
    assert b"AUTH=EXTERNAL" in w.line()
    reply = w.cmd(b"a1", b"AUTHENTICATE EXTERNAL " + base64.b64encode(b"other@chu.test"))
    assert reply.startswith(b"a1 NO [AUTHORIZATIONFAILED]")
    assert w.cmd(b"a2", b"AUTHENTICATE EXTERNAL =").startswith(b"a2 OK")
    assert w.cmd(b"a3", b"SELECT INBOX").endswith(b"a3 OK [READ-WRITE] SELECT completed\r\n")
    w.close()


def test_bad_syntax_gets_a_reason_and_the_connection_survives(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl())
    w.line()
    assert w.cmd(b"a1", b"FROB") == b"a1 BAD unknown command FROB\r\n"
    assert w.cmd(b"a2", b"LOGIN onlyuser") == b"a2 BAD missing argument\r\n"
    assert w.cmd(b"a3", b"FETCH 1 FLAGS") == (
        b"a3 BAD FETCH needs an authenticated connection: log in first\r\n"
    )
    w.send(b"+bad\r\n")
    assert w.line() == b"* BAD missing or invalid tag\r\n"
    w.cmd(b"a4", b"LOGIN claire@chu.test " + PASSWORD.encode())
    assert w.cmd(b"a5", b"FETCH 1 FLAGS") == (
        b"a5 BAD FETCH needs a selected mailbox: SELECT one first\r\n"
    )
    w.cmd(b"a6", b"SELECT INBOX")
    assert w.cmd(b"a7", b"FETCH 1 FLAGS") == (
        b"a7 BAD invalid message sequence number (no such message)\r\n"
    )
    assert w.cmd(b"a8", b'SEARCH CHARSET KOI8-R ALL') == (
        b"a8 NO [BADCHARSET (US-ASCII UTF-8)] charset KOI8-R is not supported\r\n"
    )
    assert w.cmd(b"a9", b"STORE 1 FLAGZ (\\Seen)").startswith(b"a9 BAD expected FLAGS")
    assert w.cmd(b"b1", b"NOOP") == b"b1 OK NOOP completed\r\n"
    w.close()


def test_too_many_bad_commands_end_the_connection(imap_server: ImapHarness) -> None:
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl())
    w.line()
    w.send(b"x FROB\r\n" * 25)
    assert w.closed()
    assert b"* BYE Too many invalid commands" in w.buf
    w.close()


def test_literal_limits(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl())
    w.line()
    w.cmd(b"a0", b"LOGIN claire@chu.test " + PASSWORD.encode())
    limit = imap_server.settings.max_message_size
    assert w.cmd(b"a1", b"APPEND INBOX {%d}" % (limit + 1)) == (
        b"a1 NO [TOOBIG] message too large (limit %d octets)\r\n" % limit
    )
    big = imap_server.settings.max_literal + 1
    w.send(b"a2 LOGIN {%d+}\r\n" % big + b"x" * big + b" y\r\n")
    assert w.until(b"a2").startswith(b"a2 BAD literal too large")
    assert w.cmd(b"a3", b"NOOP") == b"a3 OK NOOP completed\r\n"
    w.send(b"a4 " + b"X" * (imap_server.settings.max_line + 10) + b"\r\n")
    assert w.closed()
    assert b"BAD line too long" in w.buf and b"* BYE" in w.buf
    w.close()


def test_imaplib_session_any_state_commands(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    client = imap_server.imaps()
    typ, data = client.noop()
    assert typ == "OK"
    typ, data = client.xatom("ID", '("name" "pytest")')
    assert typ == "OK"
    assert client.untagged_responses.get("ID") == [b'("name" "Caducee" "vendor" "Caducee")']
    client.login("claire@chu.test", PASSWORD)
    typ, data = client.namespace()
    assert data == [b'(("" "/")) NIL NIL']
    typ, data = client.enable("CONDSTORE")
    assert typ == "OK" and client.untagged_responses.get("ENABLED") == [b"CONDSTORE"]
    with pytest.raises(imaplib.IMAP4.error):
        client.login("claire@chu.test", PASSWORD)
    assert client.logout()[0] == "BYE"


def test_failed_logins_are_rate_limited(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = Wire.connect(imap_server.tls_port, tls=imap_server.client_ssl())
    w.line()
    for i in range(10):
        assert w.cmd(b"f%d" % i, b"LOGIN claire@chu.test wrong-password").startswith(
            b"f%d NO [AUTHENTICATIONFAILED]" % i
        )
    assert w.cmd(b"r", b"LOGIN claire@chu.test " + PASSWORD.encode()) == (
        b"r NO [UNAVAILABLE] Too many failed attempts, try again later\r\n"
    )
    w.close()


def test_settings_from_the_configuration_section() -> None:
    from caducee.config import ImapSection
    from mailstore.imap.session import ImapSettings

    settings = ImapSettings.from_section(
        ImapSection(autologout=3600.0), hostname="mail.test", patient_domain="patient.test",
        submission_max=1000,
    )
    assert settings.autologout == 3600.0 and settings.max_message_size == 1000
    assert settings.patient_domain == "patient.test" and not settings.allow_plaintext_auth


class _RecordingIO:
    """The connection side of a :class:`Session` (the asyncio shell's part), recording
    what the session writes: lets a test hand the session an account LOGIN never gives."""

    peer_ip: str | None = "192.0.2.7"
    tls_active = True

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes | bytearray) -> None:
        self.out += data

    async def drain(self) -> None:
        return None

    def start_tls(self) -> None:
        raise AssertionError("not on this connection")

    def read_line(self) -> asyncio.Future[bytes]:
        raise AssertionError("not on this connection")

    def enter_idle(self) -> None:
        raise AssertionError("not on this connection")

    def peer_certificate(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        return None


def test_a_patient_cannot_plant_a_message(imap_server: ImapHarness) -> None:
    """Second guard behind the login refusal: were a patient session ever authenticated,
    APPEND (a forged "received" message in their mailbox) is still refused."""
    patient = imap_server.create_account(
        "279035121518989@patient.test", PASSWORD, kind="patient", ins="279035121518989"
    )
    doctor = imap_server.create_account("claire@chu.test", PASSWORD)
    assert imap_server.server is not None
    ctx = imap_server.server.ctx
    raw = b"From: Dr Claire Martin <claire@chu.test>\r\nSubject: Resultats\r\n\r\nTout va bien.\r\n"

    def run_append(account: Account, tag: bytes) -> bytes:
        io = _RecordingIO()
        session = Session(ctx, io)
        session.account, session.state = account, State.AUTHENTICATED
        imap_server.call(session.run(Append(tag, "APPEND", mailbox="INBOX", message=raw)))
        return bytes(io.out)

    assert run_append(patient, b"p1") == (
        b"p1 NO [NOPERM] Un compte patient ne peut pas deposer de message en IMAP: "
        b"ecrivez depuis la messagerie web\r\n"
    )
    box = imap_server.mailbox_id(patient)
    count = imap_server.db.read_sync(
        lambda conn: conn.execute(
            select(func.count()).select_from(message).where(message.c.mailbox_id == box)
        ).scalar()
    )
    assert count == 0
    # The same session set-up with a professional appends (the guard is the only difference).
    assert run_append(doctor, b"d1").startswith(b"d1 OK [APPENDUID ")
