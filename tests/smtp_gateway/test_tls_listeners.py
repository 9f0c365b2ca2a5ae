"""The SMTP listeners' TLS over real sockets: STARTTLS (RFC 3207) and implicit TLS
(RFC 8314 §3.3) on :func:`start_smtp_service`, driven by asyncio stream clients.

The handler only records what the session looked like when MAIL arrived: the listeners'
TLS machinery, not the submission or MTA rules (tests/e2e/ cover those), is under test.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from smtp_gateway.smtp_edge import peer_certificate, ssl_info
from smtp_gateway.smtp_server import SmtpService, start_smtp_service
from tests.mailstore.imap import harness
from tests.mailstore.imap.harness import client_tls
from tests.support.net import async_wait_for


@dataclass
class Seen:
    host_name: str | None
    cert: dict[str, Any] | None
    tls: tuple[str, str] | None
    #: ``session.ssl`` as aiosmtpd handlers see it (asyncio's keys), None in clear.
    session_ssl: dict[str, Any] | None


@dataclass
class Recorder:
    """An aiosmtpd handler that accepts everything and records the session."""

    mails: list[Seen] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.mails.append(Seen(session.host_name, peer_certificate(server, session),
                               ssl_info(server), dict(session.ssl) if session.ssl else None))
        envelope.mail_from = address
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.contents.append(bytes(envelope.content))
        return "250 2.0.0 OK queued"


class Client:
    """Just enough SMTP client: replies as lists of lines."""

    #: Every client of the running test, closed by the ``start`` fixture at the end.
    opened: ClassVar[list[Client]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        Client.opened.append(self)

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None,
            limit=1 << 20,
        )
        client = cls(reader, writer)
        assert (await client.reply())[0].startswith(b"220 mail.test")
        return client

    async def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "the server closed the connection"
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return lines

    async def cmd(self, line: str) -> list[bytes]:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def starttls(self, ctx: ssl.SSLContext) -> None:
        assert await self.cmd("STARTTLS") == [b"220 2.0.0 Ready to start TLS"]
        await self.writer.start_tls(ctx, server_hostname="localhost")

    @classmethod
    async def secured(cls, port: int) -> Client:
        """Connected, greeted, through STARTTLS and greeted again: an idle secure session
        (the second EHLO's reply shows the server completed the handshake too)."""
        client = await cls.connect(port)
        await client.cmd("EHLO client.test")
        await client.starttls(client_tls())
        await client.cmd("EHLO client.test")
        return client

    async def rest(self) -> bytes:
        """Everything until the server closes."""
        return await asyncio.wait_for(self.reader.read(), 10)

    def close(self) -> None:
        self.writer.close()


Start = Callable[..., Coroutine[Any, Any, SmtpService]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start a service on free ports (ports[0] STARTTLS, ports[1] implicit TLS)."""
    services: list[SmtpService] = []

    async def _start(handler: Any, *, auth: bool = False, idle_timeout: float = 300.0,
                     max_message_size: int = 1 << 20) -> SmtpService:
        service = await start_smtp_service(
            "test", handler, hostname="mail.test",
            tls_context=harness.server_tls(),
            starttls=[("127.0.0.1", 0)], implicit=[("127.0.0.1", 0)],
            max_message_size=max_message_size, idle_timeout=idle_timeout, auth=auth,
        )
        services.append(service)
        return service

    yield _start
    for client in Client.opened:
        client.writer.transport.abort()
    Client.opened.clear()
    for service in services:
        await service.close(grace=1.0)


# -- STARTTLS (RFC 3207) -------------------------------------------------------------------


@pytest.mark.parametrize("auth", [True, False], ids=["submission", "mta"])
async def test_starttls_discards_pipelined_plaintext(start: Start, auth: bool) -> None:
    """RFC 3207 §6 and CVE-2011-0411: commands sent in clear behind STARTTLS must not run
    inside the TLS session."""
    handler = Recorder()
    service = await start(handler, auth=auth)
    c = await Client.connect(service.ports[0])
    c.writer.write(b"EHLO client.test\r\nSTARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\n"
                   b"RSET\r\nHELO injected\r\n")
    assert (await c.reply())[-1] == b"250 HELP"
    assert await c.reply() == [b"220 2.0.0 Ready to start TLS"]
    await c.writer.start_tls(client_tls(), server_hostname="localhost")
    c.writer.write(b"NOOP\r\nQUIT\r\n")
    assert await c.rest() == b"250 2.0.0 OK\r\n221 2.0.0 Bye\r\n"
    assert handler.mails == []


async def test_the_session_starts_afresh_after_starttls(start: Start) -> None:
    """RFC 3207 §4.2: the EHLO said in clear is forgotten; STARTTLS is no longer offered,
    neither by EHLO nor HELP, and a second one is refused."""
    handler = Recorder()
    service = await start(handler)
    c = await Client.connect(service.ports[0])
    assert b"250-STARTTLS" in await c.cmd("EHLO before.test")
    assert b"STARTTLS" in (await c.cmd("HELP"))[0]
    await c.starttls(client_tls())
    assert await c.cmd("MAIL FROM:<a@peer.test>") == [b"503 5.5.1 send HELO first"]
    ehlo = await c.cmd("EHLO after.test")
    assert b"250-STARTTLS" not in ehlo and ehlo[-1] == b"250 HELP"
    assert b"STARTTLS" not in (await c.cmd("HELP"))[0]
    assert await c.cmd("STARTTLS") == [
        b"503 5.5.1 Bad sequence of commands: TLS already active"]
    assert await c.cmd("MAIL FROM:<a@peer.test>") == [b"250 2.1.0 Sender OK"]
    [seen] = handler.mails
    assert seen.host_name == "after.test"
    assert seen.tls is not None and seen.tls[0] == "TLSv1.3"
    assert seen.cert is None
    assert seen.session_ssl is not None
    assert set(seen.session_ssl) == {"sslcontext", "peercert", "cipher", "compression",
                                     "ssl_object"}
    assert seen.session_ssl["ssl_object"].version() == "TLSv1.3"
    assert seen.session_ssl["cipher"][0] == seen.tls[1]
    c.close()


@dataclass
class Refusing(Recorder):
    """A handler whose ``handle_STARTTLS`` hook refuses the TLS session."""

    told: list[bool] = field(default_factory=list)

    def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
        self.told.append(session.ssl is not None and session.host_name is None)
        return False


async def test_the_starttls_hook_may_refuse_the_session(start: Start) -> None:
    """aiosmtpd's STARTTLS hook runs once secure, on the fresh session; refused, every
    command but QUIT gets 554."""
    handler = Refusing()
    service = await start(handler)
    c = await Client.connect(service.ports[0])
    await c.cmd("EHLO client.test")
    await c.starttls(client_tls())
    assert (await c.cmd("EHLO client.test"))[0].startswith(b"554 5.0.0 Command refused")
    assert handler.told == [True]
    assert (await c.cmd("MAIL FROM:<a@peer.test>"))[0].startswith(b"554 ")
    assert await c.cmd("QUIT") == [b"221 2.0.0 Bye"]
    assert handler.mails == []


async def test_auth_only_after_starttls(start: Start) -> None:
    """ARCHITECTURE.md §5: no AUTH before TLS (not advertised, 530), then offered."""
    service = await start(Recorder(), auth=True)
    c = await Client.connect(service.ports[0])
    ehlo = await c.cmd("EHLO client.test")
    assert not any(line.startswith(b"250-AUTH") for line in ehlo)
    assert await c.cmd("AUTH PLAIN AGEAYg==") == [
        b"530 5.7.0 Must issue a STARTTLS command first"]
    await c.starttls(client_tls())
    ehlo = await c.cmd("EHLO client.test")
    assert b"250-AUTH LOGIN PLAIN" in ehlo
    c.close()


async def test_the_client_certificate_reaches_the_handler(start: Start) -> None:
    """Mutual TLS after STARTTLS, as the MTA sees its peers."""
    handler = Recorder()
    service = await start(handler)
    c = await Client.connect(service.ports[0])
    await c.cmd("EHLO mx.peer.test")
    await c.starttls(client_tls(with_cert=True))
    await c.cmd("EHLO mx.peer.test")
    assert (await c.cmd("MAIL FROM:<a@peer.test>"))[0].startswith(b"250")
    [seen] = handler.mails
    assert seen.cert is not None
    subject = {k: v for rdn in seen.cert["subject"] for k, v in rdn}
    assert subject["serialNumber"] == harness.CLIENT_ID
    c.close()


async def test_a_failed_handshake_closes_the_connection_cleanly(
    start: Start, caplog: pytest.LogCaptureFixture,
) -> None:
    """Plaintext after the 220: the connection is closed, logged at info, no traceback
    (the autouse crash detector fails the test on one); the listener serves on."""
    service = await start(Recorder())
    c = await Client.connect(service.ports[0])
    await c.cmd("EHLO client.test")
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        assert await c.cmd("STARTTLS") == [b"220 2.0.0 Ready to start TLS"]
        c.writer.write(b"MAIL FROM:<evil@attacker.test>\r\n")
        rest = await c.rest()
    assert rest[:1] in (b"", b"\x15")  # at most a TLS alert record, no SMTP reply
    assert "SMTP TLS handshake failure" in caplog.text
    await async_wait_for(_no_connections(service), what="the connection to go")
    again = await Client.connect(service.ports[0])
    assert await again.cmd("NOOP") == [b"250 2.0.0 OK"]
    again.close()


async def test_credentials_sent_as_a_command_are_not_logged(
    start: Start, caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that sends its AUTH response although the AUTH was refused: the line is an
    unknown command to the server, and aiosmtpd logs its first word at WARNING — here the
    client's credentials. Only a plausible command name is logged."""
    service = await start(Recorder(), auth=True)
    c = await Client.connect(service.ports[1], client_tls())
    await c.cmd("EHLO client.test")
    secret = "AHVzZXJAY2FkdWNlZS50ZXN0AHMzY3JldC1wYXNzd29yZA=="  # \0user\0password
    # (aiosmtpd logs every line at INFO: caducee.logsetup keeps its logger at WARNING)
    with caplog.at_level(logging.WARNING):
        assert (await c.cmd("AUTH CRAM-MD5"))[0].startswith(b"504 ")
        assert (await c.cmd(secret))[0].startswith(b"500 ")
        assert (await c.cmd("XYZZY"))[0].startswith(b"500 ")
    c.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret.upper() not in logged and secret not in logged
    assert "unrecognised: <48 characters, not shown>" in logged
    assert "unrecognised: XYZZY" in logged


async def _reset(port: int, *, starttls: bool) -> None:
    """Connect, (say STARTTLS and read the 220,) then leave with a reset."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if starttls:
            await asyncio.wait_for(reader.readline(), 10)  # the greeting
            writer.write(b"STARTTLS\r\n")
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 ")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        writer.transport.abort()


async def test_clients_that_leave_before_or_during_tls_cost_nothing(
    start: Start, caplog: pytest.LogCaptureFixture,
) -> None:
    """A reset right after connecting (465) or right after the 220 to STARTTLS (587), at
    any point of the handshake: no crash logged, no connection left, the listener serves
    on."""
    service = await start(Recorder())
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            await _reset(service.ports[1], starttls=False)
            await _reset(service.ports[0], starttls=True)
        await async_wait_for(_no_connections(service), what="the connections to go")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    again = await Client.connect(service.ports[1], client_tls())
    assert await again.cmd("NOOP") == [b"250 2.0.0 OK"]
    again.close()


# -- implicit TLS (RFC 8314 §3.3) ----------------------------------------------------------


async def test_implicit_tls_from_the_first_byte(start: Start) -> None:
    handler = Recorder()
    service = await start(handler, auth=True)
    c = await Client.connect(service.ports[1], client_tls())
    ehlo = await c.cmd("EHLO client.test")
    assert b"250-AUTH LOGIN PLAIN" in ehlo and b"250-STARTTLS" not in ehlo
    assert b"STARTTLS" not in (await c.cmd("HELP"))[0]
    assert await c.cmd("STARTTLS") == [
        b"503 5.5.1 Bad sequence of commands: TLS already active"]
    c.close()


async def test_implicit_tls_session_facts(start: Start) -> None:
    handler = Recorder()
    service = await start(handler)
    c = await Client.connect(service.ports[1], client_tls(with_cert=True))
    await c.cmd("EHLO mx.peer.test")
    assert (await c.cmd("MAIL FROM:<a@peer.test>"))[0].startswith(b"250")
    [seen] = handler.mails
    assert seen.tls is not None and seen.tls[0] == "TLSv1.3"
    assert seen.cert is not None
    assert seen.session_ssl is not None and seen.session_ssl["peercert"] == seen.cert
    c.close()


async def test_plaintext_on_the_implicit_tls_port_is_refused(start: Start) -> None:
    service = await start(Recorder())
    reader, writer = await asyncio.open_connection("127.0.0.1", service.ports[1])
    writer.write(b"EHLO client.test\r\n")
    rest = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert rest[:1] in (b"", b"\x15")  # at most a TLS alert record, never a greeting


# -- data, timeouts, end of connection ----------------------------------------------------------


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
async def test_a_large_message_crosses_the_tls_reader_intact(
    start: Start, implicit: bool,
) -> None:
    """DATA is read in blocks through the stream reader above the TLS transport, which
    pauses and resumes the socket as it fills and drains."""
    handler = Recorder()
    service = await start(handler, max_message_size=4 << 20)
    if implicit:
        c = await Client.connect(service.ports[1], client_tls())
    else:
        c = await Client.connect(service.ports[0])
        await c.cmd("EHLO client.test")
        await c.starttls(client_tls())
    await c.cmd("EHLO client.test")
    line = b"x" * 76 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * 30_000  # ~2.3 MiB
    c.writer.write(b"MAIL FROM:<a@peer.test>\r\nRCPT TO:<b@mail.test>\r\nDATA\r\n")
    assert [await c.reply() for _ in range(3)] == [
        [b"250 2.1.0 Sender OK"], [b"250 2.1.5 Recipient OK"],
        [b"354 End data with <CR><LF>.<CR><LF>"]]
    c.writer.write(body + b".\r\nNOOP\r\n")
    assert await c.reply() == [b"250 2.0.0 OK queued"]
    assert await c.reply() == [b"250 2.0.0 OK"]
    assert handler.contents == [body]
    c.close()


async def test_pipelined_replies_keep_their_order(start: Start) -> None:
    """RFC 2920 §3.2: replies held back while commands wait in the input go out in the
    order of the commands, also beside one the listener answers itself (AUTH on the MTA)."""
    service = await start(Recorder(), auth=False)
    c = await Client.connect(service.ports[1], client_tls())
    c.writer.write(b"NOOP\r\nAUTH PLAIN AGEAYg==\r\nNOOP\r\nQUIT\r\n")
    assert await c.rest() == (
        b"250 2.0.0 OK\r\n502 5.5.1 AUTH not available on this service\r\n"
        b"250 2.0.0 OK\r\n221 2.0.0 Bye\r\n"
    )


async def test_replies_held_before_a_closing_reply_are_sent(start: Start) -> None:
    """aiosmtpd closes the connection after too many unrecognised commands: the client
    still hears every reply, pipelined or not, the last one included."""
    service = await start(Recorder())
    c = await Client.connect(service.ports[1], client_tls())
    await c.cmd("EHLO client.test")
    c.writer.write(b"XYZZY\r\n" * 7)
    rest = await c.rest()
    assert rest.count(b'500 5.5.2 command "XYZZY" not recognized\r\n') == 4
    assert rest.endswith(b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n")


async def test_the_idle_timeout_closes_a_tls_connection(start: Start) -> None:
    service = await start(Recorder(), idle_timeout=0.5)
    c = await Client.secured(service.ports[0])
    assert await c.rest() == b""  # close_notify, then the end of the connection
    await async_wait_for(_no_connections(service), what="the connection to go")


async def test_shutdown_says_goodbye_over_tls(start: Start) -> None:
    """SmtpService.close: an idle client hears 421 (RFC 5321 §3.8), encrypted."""
    service = await start(Recorder())
    c = await Client.secured(service.ports[0])
    await service.close(grace=1.0)
    assert await c.rest() == b"421 4.3.2 Service shutting down, try again later\r\n"
    await async_wait_for(_no_connections(service), what="the connection to go")


async def test_a_client_that_goes_away_releases_its_connection(start: Start) -> None:
    service = await start(Recorder())
    c = await Client.secured(service.ports[0])
    assert len(service.connections) == 1
    c.writer.transport.abort()  # no close_notify, no QUIT
    await async_wait_for(_no_connections(service), what="the connection to go")


async def test_connections_keep_no_instance_dict(start: Start) -> None:
    """Every attribute of a connection has a slot (smtp_server._CONNECTION_SLOTS): a
    new attribute in aiosmtpd or asyncio would silently bring back a per-connection dict."""
    service = await start(Recorder(), auth=True)
    c = await Client.secured(service.ports[0])
    await c.cmd("AUTH PLAIN AGEAYg==")
    [conn] = service.connections
    assert dict(vars(conn)) == {}
    c.close()


def _no_connections(service: SmtpService) -> Callable[[], Coroutine[Any, Any, bool]]:
    async def check() -> bool:
        return not service.connections

    return check
