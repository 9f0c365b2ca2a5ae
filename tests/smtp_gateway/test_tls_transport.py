"""The SMTP listeners' TLS transport over a real loopback TCP connection.

The server end is a :class:`TlsTransport`, its protocol above recording every event; the
client end is a raw socket the test drives byte by byte through a TLS client (an
``ssl.SSLObject`` over memory BIOs), so a test can send what no TLS library would: a
forged record, clear text where a ClientHello belongs, a truncation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.smtp import Session

from smtp_gateway.smtp_edge import certificate_names, peer_certificate, ssl_info
from smtp_gateway.tls_transport import HIGH_WATER, TLS_KEYS, TlsTransport
from tests.mailstore.imap import harness
from tests.support.net import async_wait_for

DEADLINE = 10.0


def client_tls(*, with_cert: bool = False) -> ssl.SSLContext:
    """The test client's context, without the host name check: its connections name no
    server (memory BIOs, or a socket wrapped without ``server_hostname``)."""
    ctx = harness.client_tls(with_cert=with_cert)
    ctx.check_hostname = False
    return ctx


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Both ends of a loopback TCP connection (server, client), non-blocking."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for s in (server, client):
        s.setblocking(False)
    return server, client


class App(asyncio.Protocol):
    """The protocol above (aiosmtpd's, in the listeners): records every event in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Event()

    def record(self, event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    def data_received(self, data: bytes) -> None:
        self.record(("data", data))

    def eof_received(self) -> bool | None:
        self.record("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.record(("lost", exc))

    def pause_writing(self) -> None:
        self.record("pause_writing")

    def resume_writing(self) -> None:
        self.record("resume_writing")

    def data(self) -> bytes:
        return b"".join(e[1] for e in self.events if isinstance(e, tuple) and e[0] == "data")

    @property
    def lost(self) -> bool:
        return any(isinstance(e, tuple) and e[0] == "lost" for e in self.events)

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not done():
                self._changed.clear()
                await self._changed.wait()


class Wire:
    """A TLS transport on the server end, a hand-driven TLS client on the other."""

    def __init__(self, *, client_cert: bool = False, handshake_timeout: float = 60.0,
                 transport: type[TlsTransport] = TlsTransport) -> None:
        self.loop = asyncio.get_running_loop()
        self.context = harness.server_tls()
        server, self.sock = tcp_pair()
        self.app = App()
        self.tls = transport(self.context, server, self.app, self._secure,
                             peername=server.getpeername(), handshake_timeout=handshake_timeout)
        client_ctx = client_tls(with_cert=client_cert)
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out)
        self.alert: str | None = None  # the TLS alert the client received, if any

    def _secure(self) -> None:
        self.app.record("secure")

    async def send_raw(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def flush(self) -> None:
        """Send what the TLS client wrote."""
        data = self.c_out.read()
        if data:
            await self.send_raw(data)

    async def receive(self) -> bytes:
        """The next bytes from the server, fed to the TLS client (b"" at end of file)."""
        async with asyncio.timeout(DEADLINE):
            try:
                data = await self.loop.sock_recv(self.sock, 1 << 16)
            except ConnectionResetError:  # closed with our bytes unread: the end all the same
                data = b""
        if data:
            self.c_in.write(data)
        return data

    async def handshake(self, *, then: bytes = b"") -> None:
        """Complete the handshake; ``then`` rides with the client's Finished."""
        while True:
            try:
                self.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                assert await self.receive(), "the server closed during the handshake"
        if then:
            self.client.write(then)
        await self.flush()
        await self.app.until(lambda: self.tls.secure)

    async def client_sends(self, data: bytes) -> None:
        self.client.write(data)
        await self.flush()

    def _decrypt(self) -> tuple[bytes, bool]:
        out: list[bytes] = []
        while True:
            try:
                chunk = self.client.read(1 << 16)
            except ssl.SSLWantReadError:
                return b"".join(out), False
            except ssl.SSLZeroReturnError:
                return b"".join(out), True
            except ssl.SSLError as exc:  # an alert
                self.alert = exc.reason
                return b"".join(out), False
            if not chunk:  # close_notify
                return b"".join(out), True
            out.append(chunk)

    async def client_reads(self, size: int) -> bytes:
        """``size`` bytes of plaintext from the server."""
        got = bytearray()
        while len(got) < size:
            data, closed = self._decrypt()
            got += data
            if len(got) >= size or closed:
                break
            assert await self.receive(), "end of file before the expected plaintext"
        return bytes(got)

    async def client_reads_to_close(self) -> tuple[bytes, bool]:
        """Plaintext until the server's close_notify (True) or TCP end of file (False)."""
        got = bytearray()
        while True:
            data, closed = self._decrypt()
            got += data
            if closed:
                return bytes(got), True
            if self.alert is not None or not await self.receive():
                return bytes(got), False

    def close(self) -> None:
        self.sock.close()
        self.tls.abort()  # idempotent: also ends a close() still draining


@pytest.fixture
async def wires() -> Any:
    made: list[Wire] = []

    def make(**kwargs: Any) -> Wire:
        made.append(Wire(**kwargs))
        return made[-1]

    yield make
    for wire in made:
        wire.close()


async def test_implicit_tls_greeting_waits_for_the_handshake(wires: Any) -> None:
    """RFC 8314 §3.3: the greeting aiosmtpd writes at once goes out encrypted, after the
    handshake; nothing is passed up before it completes."""
    wire = wires()
    wire.tls.write(b"220 mail.test ESMTP\r\n")
    with pytest.raises(ssl.SSLWantReadError):
        wire.client.do_handshake()
    await wire.flush()  # ClientHello
    flight = await wire.receive()
    assert b"220 mail.test" not in flight
    assert not wire.tls.secure and wire.app.events == []
    await wire.handshake()
    assert wire.app.events == ["secure"]
    assert await wire.client_reads(21) == b"220 mail.test ESMTP\r\n"


async def test_on_secure_runs_before_the_first_protected_bytes(wires: Any) -> None:
    """The user forgets the clear-text session (RFC 3207 §4.2) before any command the client
    sent right behind its Finished is passed up."""
    wire = wires()
    await wire.handshake(then=b"EHLO client.test\r\n")
    await wire.app.until(lambda: len(wire.app.events) == 2)
    assert wire.app.events == ["secure", ("data", b"EHLO client.test\r\n")]


async def test_plaintext_both_ways_and_the_tls_facts(wires: Any) -> None:
    wire = wires()
    await wire.handshake()
    await wire.client_sends(b"NOOP\r\n")
    await wire.app.until(lambda: wire.app.data() == b"NOOP\r\n")
    wire.tls.write(b"250 2.0.0 OK\r\n")
    wire.tls.writelines([b"250-a\r\n", b"250 b\r\n"])
    assert await wire.client_reads(28) == b"250 2.0.0 OK\r\n250-a\r\n250 b\r\n"
    tls = wire.tls
    assert tls.get_extra_info("ssl_object").version() == "TLSv1.3"
    assert tls.get_extra_info("sslcontext") is wire.context
    assert tls.get_extra_info("cipher")[1] == "TLSv1.3"
    assert tls.get_extra_info("peercert") is None  # no client certificate
    assert tls.get_extra_info("peername") == wire.sock.getsockname()
    assert tls.get_extra_info("sockname") == wire.sock.getpeername()
    assert tls.get_extra_info("nothing", "dflt") == "dflt"
    facts = tls.tls_info()  # aiosmtpd's session.ssl
    assert set(facts) == set(TLS_KEYS) and len(facts) == len(TLS_KEYS)
    assert facts["ssl_object"] is tls.get_extra_info("ssl_object")
    assert facts.get("cipher") == tls.get_extra_info("cipher")
    with pytest.raises(KeyError):
        facts["socket"]
    server = SimpleNamespace(transport=tls)
    assert ssl_info(server) == ("TLSv1.3", tls.get_extra_info("cipher")[0])


async def test_the_verified_client_certificate_reaches_the_handlers(wires: Any) -> None:
    """AUTH EXTERNAL and the MTA's mutual TLS read it through smtp_edge."""
    wire = wires(client_cert=True)
    await wire.handshake()
    session = Session(asyncio.get_running_loop())
    session.ssl = wire.tls.tls_info()
    cert = peer_certificate(SimpleNamespace(transport=wire.tls), session)
    assert cert is not None
    subject = {k: v for rdn in cert["subject"] for k, v in rdn}
    assert subject["serialNumber"] == harness.CLIENT_ID
    assert certificate_names(cert) == ["Claire Martin"]
    assert wire.tls.get_extra_info("peercert") == cert


async def test_a_failed_handshake_closes_without_a_traceback(
    wires: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """Plaintext where a ClientHello should be (a client that did not wait for the 220, or
    commands injected after STARTTLS): logged at info, the connection closed, nothing
    passed up."""
    wire = wires()
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        await wire.send_raw(b"MAIL FROM:<evil@attacker.test>\r\n" * 4)
        await wire.app.until(lambda: wire.app.lost)
    assert wire.app.events == [("lost", None)]
    assert wire.tls.is_closing()
    _, closed = await wire.client_reads_to_close()
    assert not closed  # an alert at most, then the end of the connection
    [record] = [r for r in caplog.records if r.name == "smtp_gateway.smtp"]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "handshake failure" in record.getMessage() and "127.0.0.1" in record.getMessage()


async def test_a_forged_record_after_the_handshake_closes(
    wires: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    wire = wires()
    await wire.handshake()
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        await wire.send_raw(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        await wire.app.until(lambda: wire.app.lost)
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert "record failure" in caplog.text
    assert wire.app.events == ["secure", ("lost", None)]


async def test_the_peers_close_notify_is_end_of_file_and_is_answered(wires: Any) -> None:
    """RFC 8446 §6.1: the peer's close_notify ends the input; we answer with ours."""
    wire = wires()
    await wire.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        wire.client.unwrap()  # writes the client's close_notify, waits for ours
    await wire.flush()
    await wire.app.until(lambda: wire.app.lost)
    assert wire.app.events == ["secure", "eof", ("lost", None)]
    while True:
        try:
            wire.client.unwrap()  # our close_notify arrived: the client's shutdown completes
            break
        except ssl.SSLWantReadError:
            assert await wire.receive(), "no close_notify before the end of the connection"


async def test_close_sends_what_is_buffered_then_close_notify(wires: Any) -> None:
    wire = wires()
    await wire.handshake()
    wire.tls.write(b"421 4.3.2 Service shutting down\r\n")
    wire.tls.close()
    assert wire.tls.is_closing()
    wire.tls.write(b"250 too late\r\n")  # dropped
    wire.tls.close()  # twice is harmless
    data, closed = await wire.client_reads_to_close()
    assert data == b"421 4.3.2 Service shutting down\r\n"
    assert closed  # our close_notify, not a truncation
    await wire.app.until(lambda: wire.app.lost)


class QuickShutdown(TlsTransport):
    shutdown_timeout = 0.05


async def test_a_peer_that_stops_reading_cannot_hold_a_closing_connection(
    wires: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """As asyncio's SSL transport does: what cannot be sent within the shutdown timeout
    is dropped with the connection."""
    wire = wires(transport=QuickShutdown)
    await wire.handshake()
    while not wire.tls.get_write_buffer_size():  # until the socket is full
        wire.tls.write(b"x" * 65536)
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        wire.tls.close()
        await wire.app.until(lambda: wire.app.lost)
    assert "does not read" in caplog.text


async def test_a_closing_connection_that_drains_is_not_cut(
    wires: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """Everything written before close() arrives, then close_notify, however slowly the
    client reads."""
    wire = wires()
    await wire.handshake()
    chunk = bytes(range(256)) * 256
    payload = bytearray()
    while not wire.tls.get_write_buffer_size():  # until the socket is full
        wire.tls.write(chunk)
        payload += chunk
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        wire.tls.close()
        data, closed = await wire.client_reads_to_close()
        await wire.app.until(lambda: wire.app.lost)
    assert data == payload and closed
    assert "does not read" not in caplog.text
    assert wire.tls._timer is None  # the shutdown timer went with the connection


async def test_close_before_the_handshake_sends_no_close_notify(wires: Any) -> None:
    wire = wires()
    wire.tls.write(b"220 greeting\r\n")
    wire.tls.close()
    assert await wire.receive() == b""  # the end, with not a byte before it
    await wire.app.until(lambda: wire.app.lost)


async def test_write_flow_control_pauses_and_resumes_the_protocol(wires: Any) -> None:
    wire = wires()
    await wire.handshake()
    payload = b"y" * (4 * HIGH_WATER)
    while "pause_writing" not in wire.app.events:  # the client does not read
        wire.tls.write(payload)
    assert wire.tls.get_write_buffer_size() > HIGH_WATER
    assert "resume_writing" not in wire.app.events
    reader = asyncio.create_task(wire.client_reads_to_close())
    await wire.app.until(lambda: "resume_writing" in wire.app.events)
    wire.tls.close()
    data, closed = await reader
    assert closed and data and set(data) == {ord("y")}
    assert not wire.tls.can_write_eof()
    with pytest.raises(NotImplementedError):
        wire.tls.write_eof()


async def test_paused_reading_holds_the_input_until_resumed(wires: Any) -> None:
    wire = wires()
    await wire.handshake()
    wire.tls.pause_reading()  # the stream reader is full
    assert not wire.tls.is_reading()
    await wire.client_sends(b"NOOP\r\n")
    wire.tls.write(b"250 ping\r\n")  # a round trip: the NOOP reached the server's socket
    assert await wire.client_reads(10) == b"250 ping\r\n"
    assert wire.app.data() == b""
    wire.tls.resume_reading()
    assert wire.tls.is_reading()
    await wire.app.until(lambda: wire.app.data() == b"NOOP\r\n")


async def test_the_handshake_proceeds_even_if_reading_was_paused(wires: Any) -> None:
    """After STARTTLS the stream reader may have paused reading (a client that pipelined
    a lot): the handshake does not wait for the reader, the commands do."""
    wire = wires()
    wire.tls.pause_reading()
    await wire.handshake(then=b"EHLO x\r\n")
    assert wire.app.events == ["secure"]
    wire.tls.resume_reading()
    await wire.app.until(lambda: wire.app.data() == b"EHLO x\r\n")


async def test_a_client_that_never_completes_the_handshake_is_cut_off(
    wires: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        wire = wires(handshake_timeout=0.05)
        await wire.app.until(lambda: wire.app.lost)
    assert "handshake timeout" in caplog.text
    assert wire.app.events == [("lost", None)]


async def test_no_timeout_once_secure(wires: Any) -> None:
    wire = wires(handshake_timeout=0.05)
    await wire.handshake()
    assert wire.tls._timer is None  # cancelled, and gone from the transport
    await asyncio.sleep(0.2)  # past the handshake timeout
    await wire.client_sends(b"NOOP\r\n")
    await wire.app.until(lambda: wire.app.data() == b"NOOP\r\n")
    assert not wire.app.lost


async def test_tcp_end_of_file_is_the_end_of_the_input(wires: Any) -> None:
    """A TCP end of file without close_notify (a truncation, RFC 8446 §6.1) ends the input
    all the same, and the connection: OpenSSL answers the truncation with an alert."""
    wire = wires()
    await wire.handshake()
    wire.sock.shutdown(socket.SHUT_WR)
    await wire.app.until(lambda: wire.app.lost)
    assert wire.app.events == ["secure", "eof", ("lost", None)]
    data, closed = await wire.client_reads_to_close()
    assert data == b"" and not closed
    assert wire.alert == "TLSV1_ALERT_DECODE_ERROR"


async def test_a_connection_lost_during_the_handshake_never_calls_on_secure(
    wires: Any,
) -> None:
    wire = wires()
    with pytest.raises(ssl.SSLWantReadError):
        wire.client.do_handshake()
    await wire.flush()
    await wire.receive()
    wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wire.sock.close()  # a reset
    await wire.app.until(lambda: wire.app.lost)
    assert "secure" not in wire.app.events and not wire.tls.secure
    assert wire.tls._on_secure is None


class Plain(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def test_take_over_starts_tls_on_an_asyncio_connection() -> None:
    """STARTTLS (RFC 3207 §4): the ``220`` goes out in clear on asyncio's TCP transport,
    then TLS takes the same connection; asyncio's transport goes without closing it, and
    its protocol is not told the connection was lost."""
    loop = asyncio.get_running_loop()
    server_sock, client_sock = tcp_pair()
    plain_protocol = Plain()
    plain, _ = await loop.connect_accepted_socket(lambda: plain_protocol, server_sock)
    plain.write(b"220 2.0.0 Ready to start TLS\r\n")
    app = App()
    tls = TlsTransport.take_over(harness.server_tls(),
                                 plain, app, lambda: app.record("secure"))
    assert plain.is_closing()
    assert tls.get_extra_info("peername") == client_sock.getsockname()
    client_sock.settimeout(DEADLINE)
    client_ctx = client_tls()

    def client() -> bytes:
        assert client_sock.recv(100) == b"220 2.0.0 Ready to start TLS\r\n"
        with client_ctx.wrap_socket(client_sock) as secure:
            secure.sendall(b"EHLO x\r\n")
            return secure.recv(100)

    try:
        talk = asyncio.create_task(asyncio.to_thread(client))
        await app.until(lambda: app.data() == b"EHLO x\r\n")
        tls.write(b"250 mail.test\r\n")
        assert await asyncio.wait_for(talk, DEADLINE) == b"250 mail.test\r\n"
        assert not plain_protocol.lost
        tls.close()
        await app.until(lambda: app.lost)
    finally:
        tls.abort()
        client_sock.close()


async def test_take_over_of_a_connection_the_client_already_reset() -> None:
    """The client left between the 220 (or the accept) and the start of TLS: the take-over
    raises ``OSError`` for the caller to end the session, and drops asyncio's transport
    without telling its protocol; no descriptor is left open."""
    loop = asyncio.get_running_loop()
    server_sock, client_sock = tcp_pair()
    plain_protocol = Plain()
    plain, _ = await loop.connect_accepted_socket(lambda: plain_protocol, server_sock)
    plain.pause_reading()
    raw = plain.get_extra_info("socket")
    client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client_sock.close()

    async def reset_seen() -> bool:
        try:
            raw.getpeername()
        except OSError:
            return True
        return False

    await async_wait_for(reset_seen, what="the reset to reach the server's socket")
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        TlsTransport.take_over(harness.server_tls(),
                               plain, App())
    assert plain.is_closing()
    assert len(os.listdir("/proc/self/fd")) == open_before  # our duplicate is closed

    async def asyncio_closed() -> bool:
        return bool(raw.fileno() == -1)

    await async_wait_for(asyncio_closed, what="asyncio to close its descriptor")
    assert not plain_protocol.lost


async def test_the_handshake_starts_from_the_event_loop_not_the_constructor() -> None:
    """A fast client's flight can be complete before OpenSSL's first call returns (seen
    under load: ClientHello, then the client's Finished read in the same call), so the
    constructor must not start the handshake: ``on_secure`` would run before the caller
    holds the transport."""
    server, client = tcp_pair()
    client_ctx = client_tls()
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client_ctx.wrap_bio(c_in, c_out)
    with pytest.raises(ssl.SSLWantReadError):
        tls_client.do_handshake()
    hello = c_out.read()
    client.sendall(hello)
    peek = socket.socket(fileno=os.dup(server.fileno()))
    tls: TlsTransport | None = None
    try:
        async def hello_arrived() -> bool:
            try:
                return len(peek.recv(len(hello), socket.MSG_PEEK)) == len(hello)
            except BlockingIOError:
                return False

        await async_wait_for(hello_arrived, what="the ClientHello in the server's socket")
        app = App()
        tls = TlsTransport(harness.server_tls(), server,
                           app, lambda: app.record("secure"))
        assert peek.recv(len(hello), socket.MSG_PEEK) == hello  # not read yet
        assert not tls.secure and app.events == []
        await async_wait_for(lambda: _unread(peek), what="the event loop to read it")
    finally:
        peek.close()
        client.close()
        if tls is not None:
            tls.abort()
        else:
            server.close()


async def _unread(peek: socket.socket) -> bool:
    try:
        peek.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    return False


async def test_the_tls_facts_stay_readable_after_the_connection_is_gone(wires: Any) -> None:
    """A handler may read the session's TLS facts after the client left mid-transaction."""
    wire = wires(client_cert=True)
    await wire.handshake()
    facts = wire.tls.tls_info()
    session = Session(asyncio.get_running_loop())
    session.ssl = facts
    server = SimpleNamespace(transport=wire.tls)
    assert facts["peercert"] is not None and peer_certificate(server, session) is not None
    wire.tls.abort()
    await wire.app.until(lambda: wire.app.lost)
    assert facts["peercert"] is None and facts["cipher"] is None
    assert peer_certificate(server, session) is None
    assert ssl_info(server) == ("TLS", "unknown")
    assert wire.tls.get_extra_info("sockname") is None
    assert wire.tls.get_extra_info("peername") == wire.sock.getsockname()
