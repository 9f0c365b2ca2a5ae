"""The memory-BIO TLS layer without sockets: a real TLS client (an ``ssl.SSLObject``) on
the other side of a transport that records what is written."""

from __future__ import annotations

import os
import ssl

import pytest

from caducee.tls import server_context
from mailstore.imap.tls import _BIO_SLICE, TlsError, TlsLayer
from tests.mailstore.imap import harness

#: A TLS 1.3 record adds its header, the content type and the AEAD tag (RFC 8446 §5.2).
RECORD_OVERHEAD = 5 + 1 + 16


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def take(self) -> bytes:
        data = b"".join(self.writes)
        self.writes.clear()
        return data


class _Pair:
    """A server :class:`TlsLayer` and a client, handshake done."""

    def __init__(self) -> None:
        pki = harness.test_pki()
        self.transport = _Transport()
        self.server = TlsLayer(server_context(pki.server_cert, pki.server_key, pki.ca),
                               self.transport)  # type: ignore[arg-type]
        client_ctx = ssl.create_default_context(cafile=str(pki.ca))
        client_ctx.check_hostname = False
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out)
        for _ in range(10):
            try:
                self.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            finally:
                assert self.server.receive(self.c_out.read()) == b""
                self.c_in.write(self.transport.take())
        assert self.server.handshake_done
        self.c_in.write(self.transport.take())  # session tickets

    def client_reads(self) -> bytes:
        self.c_in.write(self.transport.take())
        out = []
        while True:
            try:
                out.append(self.client.read(1 << 20))
            except ssl.SSLWantReadError:
                return b"".join(out)

    def client_sends(self, data: bytes) -> bytes:
        view = memoryview(data)
        while view:
            view = view[self.client.write(view) :]
        return self.c_out.read()


@pytest.fixture
def pair() -> _Pair:
    return _Pair()


def test_a_big_send_goes_out_one_record_at_a_time(pair: _Pair) -> None:
    data = os.urandom(40 * _BIO_SLICE + 123)
    pair.server.send(bytearray(data))
    assert len(pair.transport.writes) == 41
    assert max(len(w) for w in pair.transport.writes) <= _BIO_SLICE + RECORD_OVERHEAD
    assert pair.client_reads() == data


def test_a_big_receive_is_decrypted_whole(pair: _Pair) -> None:
    data = os.urandom(300_000)
    wire = pair.client_sends(data)
    assert len(wire) > 256 * 1024  # more than asyncio hands over at once
    got = b"".join(pair.server.receive(wire[i : i + 100_000])
                   for i in range(0, len(wire), 100_000))
    assert got == data
    assert pair.server.receive(pair.client_sends(b"a1 NOOP\r\n")) == b"a1 NOOP\r\n"


def test_close_notify_gives_no_data_and_a_forged_record_fails(pair: _Pair) -> None:
    pair.server.send(b"* OK still here\r\n")
    assert pair.client_reads() == b"* OK still here\r\n"
    try:
        pair.client.unwrap()
    except ssl.SSLWantReadError:
        pass  # waits for our close_notify; theirs is out
    assert pair.server.receive(pair.c_out.read()) == b""
    assert pair.server.closed
    other = _Pair()
    with pytest.raises(TlsError):
        other.server.receive(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)


def test_the_peers_close_notify_is_answered_with_ours(pair: _Pair) -> None:
    """RFC 8446 §6.1: each side sends close_notify before closing its write side, also
    after receiving the peer's."""
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.unwrap()  # the client's close_notify goes out; it waits for ours
    assert pair.server.receive(pair.c_out.read()) == b""
    assert pair.server.closed
    pair.server.close()
    pair.server.close()  # harmless when repeated
    pair.c_in.write(pair.transport.take())
    pair.client.unwrap()  # ours arrived: the client's shutdown completes
    assert pair.transport.writes == []


def test_close_sends_close_notify(pair: _Pair) -> None:
    assert pair.server.version() == "TLSv1.3"
    pair.server.close()
    assert pair.server.closed
    pair.c_in.write(pair.transport.take())
    assert pair.client.read(10) == b""  # close_notify: a clean end, not a truncation
