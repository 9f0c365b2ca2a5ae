"""The SMTP listeners' TLS transport without sockets: bytes in, bytes out.

A real TLS client (an ``ssl.SSLObject`` over memory BIOs) speaks to a
:class:`TlsTransport` whose TCP transport below records what it is asked to do and whose
protocol above records what it is told.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.smtp import Session

from caducee.tls import server_context
from smtp_gateway.smtp_edge import certificate_names, peer_certificate, ssl_info
from smtp_gateway.tls_transport import TLS_KEYS, TlsTransport
from tests.mailstore.imap import harness

PEER = ("192.0.2.7", 40000)


class Tcp(asyncio.Transport):
    """The TCP transport below: records writes and what the TLS transport asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.protocol: asyncio.BaseProtocol | None = None
        self.reading = True
        self.closed = False
        self.aborted = asyncio.Event()
        self.buffered = 0  # bytes the socket could not send yet

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return PEER if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed and not self.aborted.is_set()
        self.out += data

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closed or self.aborted.is_set()

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted.set()

    def get_write_buffer_size(self) -> int:
        return self.buffered


class App(asyncio.Protocol):
    """The protocol above (aiosmtpd's, in the listeners): records every event in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def data(self) -> bytes:
        return b"".join(e[1] for e in self.events if isinstance(e, tuple) and e[0] == "data")


class Wire:
    """A client, a TLS transport and what lies around it."""

    def __init__(self, *, client_cert: bool = False, handshake_timeout: float = 60.0) -> None:
        pki = harness.test_pki()
        self.context = server_context(pki.server_cert, pki.server_key, pki.ca)
        self.tcp = Tcp()
        self.app = App()
        self.tls = TlsTransport(self.context, self.tcp, self.app, self._secure,
                                handshake_timeout=handshake_timeout)
        client_ctx = ssl.create_default_context(cafile=str(pki.ca))
        client_ctx.check_hostname = False
        if client_cert:
            client_ctx.load_cert_chain(pki.client_cert, pki.client_key)
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out)

    def _secure(self) -> None:
        self.app.events.append("secure")

    def handshake(self, *, then: bytes = b"") -> None:
        """Complete the handshake; ``then`` rides with the client's Finished."""
        for _ in range(10):
            try:
                self.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.tls.data_received(self.c_out.read())
                self.c_in.write(self.tcp.take())
        if then:
            self.client.write(then)
        self.tls.data_received(self.c_out.read())
        assert self.tls.secure
        self.c_in.write(self.tcp.take())  # session tickets, anything written since

    def client_sends(self, data: bytes) -> None:
        self.client.write(data)
        self.tls.data_received(self.c_out.read())

    def client_reads(self) -> bytes:
        self.c_in.write(self.tcp.take())
        out: list[bytes] = []
        while True:
            try:
                chunk = self.client.read(1 << 16)
            except ssl.SSLWantReadError:
                return b"".join(out)
            if not chunk:  # close_notify
                return b"".join(out)
            out.append(chunk)


async def test_implicit_tls_greeting_waits_for_the_handshake() -> None:
    """RFC 8314 §3.3: the greeting aiosmtpd writes at once goes out encrypted, after the
    handshake; nothing is passed up before it completes."""
    wire = Wire()
    wire.tls.write(b"220 mail.test ESMTP\r\n")
    try:
        wire.client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    wire.tls.data_received(wire.c_out.read())  # ClientHello
    assert not wire.tls.secure and wire.app.events == []
    assert b"220 mail.test" not in wire.tcp.out  # the server's flight only
    wire.c_in.write(wire.tcp.take())
    wire.handshake()
    assert wire.app.events == ["secure"]
    assert wire.client_reads() == b"220 mail.test ESMTP\r\n"


async def test_on_secure_runs_before_the_first_protected_bytes() -> None:
    """The user forgets the clear-text session (RFC 3207 §4.2) before any command the client
    sent right behind its Finished is passed up."""
    wire = Wire()
    wire.handshake(then=b"EHLO client.test\r\n")
    assert wire.app.events == ["secure", ("data", b"EHLO client.test\r\n")]


async def test_plaintext_both_ways_and_the_tls_facts() -> None:
    wire = Wire()
    wire.handshake()
    wire.client_sends(b"NOOP\r\n")
    wire.tls.write(b"250 2.0.0 OK\r\n")
    wire.tls.writelines([b"250-a\r\n", b"250 b\r\n"])
    assert wire.app.data() == b"NOOP\r\n"
    assert wire.client_reads() == b"250 2.0.0 OK\r\n250-a\r\n250 b\r\n"
    tls = wire.tls
    assert tls.get_extra_info("ssl_object").version() == "TLSv1.3"
    assert tls.get_extra_info("sslcontext") is wire.context
    assert tls.get_extra_info("cipher")[1] == "TLSv1.3"
    assert tls.get_extra_info("peercert") is None  # no client certificate
    assert tls.get_extra_info("peername") == PEER  # from the TCP transport
    assert tls.get_extra_info("nothing", "dflt") == "dflt"
    facts = tls.tls_info()  # aiosmtpd's session.ssl
    assert set(facts) == set(TLS_KEYS) and len(facts) == len(TLS_KEYS)
    assert facts["ssl_object"] is tls.get_extra_info("ssl_object")
    assert facts.get("cipher") == tls.get_extra_info("cipher")
    with pytest.raises(KeyError):
        facts["socket"]
    server = SimpleNamespace(transport=tls)
    assert ssl_info(server) == ("TLSv1.3", tls.get_extra_info("cipher")[0])


async def test_the_verified_client_certificate_reaches_the_handlers() -> None:
    """AUTH EXTERNAL and the MTA's mutual TLS read it through smtp_edge."""
    wire = Wire(client_cert=True)
    wire.handshake()
    session = Session(asyncio.get_running_loop())
    session.ssl = wire.tls.tls_info()  # type: ignore[assignment]
    cert = peer_certificate(SimpleNamespace(transport=wire.tls), session)
    assert cert is not None
    subject = {k: v for rdn in cert["subject"] for k, v in rdn}
    assert subject["serialNumber"] == harness.CLIENT_ID
    assert certificate_names(cert) == ["Claire Martin"]
    assert wire.tls.get_extra_info("peercert") == cert


async def test_a_failed_handshake_closes_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Plaintext where a ClientHello should be (a client that did not wait for the 220, or
    commands injected after STARTTLS): logged at info, the connection closed (so the alert,
    if any, goes out), nothing passed up."""
    wire = Wire()
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        wire.tls.data_received(b"MAIL FROM:<evil@attacker.test>\r\n" * 4)
    assert wire.tcp.closed and not wire.tcp.aborted.is_set()
    assert wire.app.events == []
    assert wire.tls.is_closing()
    wire.tls.data_received(b"RCPT TO:<victim@x.test>\r\n")  # ignored once closing
    assert wire.app.events == []
    [record] = [r for r in caplog.records if r.name == "smtp_gateway.smtp"]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "handshake failure" in record.getMessage() and "192.0.2.7" in record.getMessage()


async def test_a_forged_record_after_the_handshake_aborts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wire = Wire()
    wire.handshake()
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        wire.tls.data_received(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
    assert wire.tcp.aborted.is_set()
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert "record failure" in caplog.text
    assert wire.app.events == ["secure"]


async def test_the_peers_close_notify_is_end_of_file_and_is_answered() -> None:
    """RFC 8446 §6.1: the peer's close_notify ends the input; we answer with ours."""
    wire = Wire()
    wire.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        wire.client.unwrap()  # sends the client's close_notify, waits for ours
    wire.tls.data_received(wire.c_out.read())
    assert wire.app.events == ["secure", "eof"]
    assert wire.tcp.closed
    wire.c_in.write(wire.tcp.take())
    wire.client.unwrap()  # our close_notify arrived: the client's shutdown completes


async def test_close_sends_close_notify_and_later_writes_are_dropped() -> None:
    wire = Wire()
    wire.handshake()
    wire.tls.write(b"421 4.3.2 Service shutting down\r\n")
    wire.tls.close()
    assert wire.tcp.closed and wire.tls.is_closing()
    wire.tls.write(b"250 too late\r\n")
    wire.tls.close()  # twice is harmless
    assert wire.client_reads() == b"421 4.3.2 Service shutting down\r\n"
    assert wire.client.read(100) == b""  # our close_notify, not a truncation


class QuickShutdown(TlsTransport):
    shutdown_timeout = 0.05


async def test_a_peer_that_stops_reading_cannot_hold_a_closing_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As asyncio's SSL transport does: what cannot be sent within the shutdown timeout
    is dropped with the connection."""
    pki = harness.test_pki()
    tcp = Tcp()
    tls = QuickShutdown(server_context(pki.server_cert, pki.server_key, pki.ca), tcp, App())
    tcp.buffered = 300_000  # the peer stopped reading
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        tls.close()
        assert tcp.closed and not tcp.aborted.is_set()
        await asyncio.wait_for(tcp.aborted.wait(), 10)
    assert "does not read" in caplog.text


async def test_a_closing_connection_that_drains_is_not_cut() -> None:
    pki = harness.test_pki()
    tcp = Tcp()
    tls = QuickShutdown(server_context(pki.server_cert, pki.server_key, pki.ca), tcp, App())
    tcp.buffered = 10
    tls.close()
    tls.connection_lost(None)  # the socket sent it all and closed
    assert tls._timer is None
    await asyncio.sleep(0.2)  # past the shutdown timeout
    assert not tcp.aborted.is_set()


async def test_close_before_the_handshake_sends_no_close_notify() -> None:
    wire = Wire()
    wire.tls.write(b"220 greeting\r\n")
    wire.tls.close()
    assert wire.tcp.closed and wire.tcp.out == b""


async def test_flow_control_is_forwarded_both_ways() -> None:
    wire = Wire()
    wire.handshake()
    wire.tls.pause_reading()  # the stream reader is full
    assert not wire.tcp.is_reading() and not wire.tls.is_reading()
    wire.tls.resume_reading()
    assert wire.tcp.is_reading() and wire.tls.is_reading()
    wire.tls.pause_writing()  # the socket's buffer is full: the writer's drain() waits
    wire.tls.resume_writing()
    assert wire.app.events[-2:] == ["pause_writing", "resume_writing"]
    wire.tcp.buffered = 1234
    assert wire.tls.get_write_buffer_size() == 1234
    assert not wire.tls.can_write_eof()
    with pytest.raises(NotImplementedError):
        wire.tls.write_eof()


async def test_the_handshake_proceeds_even_if_reading_was_paused() -> None:
    """After STARTTLS the stream reader may have paused the socket (a client that
    pipelined a lot): the handshake must not wait for the reader."""
    pki = harness.test_pki()
    tcp = Tcp()
    tcp.reading = False
    TlsTransport(server_context(pki.server_cert, pki.server_key, pki.ca), tcp, App())
    assert tcp.reading and isinstance(tcp.protocol, TlsTransport)


async def test_a_client_that_never_completes_the_handshake_is_cut_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="smtp_gateway.smtp"):
        wire = Wire(handshake_timeout=0.05)
        await asyncio.wait_for(wire.tcp.aborted.wait(), 10)
    assert "handshake timeout" in caplog.text
    assert wire.app.events == []


async def test_no_timeout_once_secure() -> None:
    wire = Wire(handshake_timeout=0.05)
    wire.handshake()
    # The timer was cancelled: it is gone from the transport.
    assert wire.tls._timer is None
    await asyncio.sleep(0.2)  # past the handshake timeout
    wire.client_sends(b"NOOP\r\n")
    assert not wire.tcp.aborted.is_set()


async def test_tcp_eof_and_connection_lost_reach_the_protocol() -> None:
    wire = Wire()
    wire.handshake()
    assert wire.tls.eof_received() is False  # the TCP transport closes itself
    assert wire.tcp.closed
    wire.c_in.write(wire.tcp.take())
    assert wire.client.read(10) == b""  # our close_notify
    wire.tls.connection_lost(None)
    assert wire.app.events == ["secure", "eof", ("lost", None)]
    assert wire.tls.is_closing()


async def test_a_connection_lost_during_the_handshake_never_calls_on_secure() -> None:
    wire = Wire()
    wire.tls.connection_lost(ConnectionResetError())
    assert wire.tls._on_secure is None
    assert [e[0] for e in wire.app.events] == ["lost"]
