"""TLS over a plain asyncio transport with memory BIOs (the IMAP server's).

asyncio's own TLS transport keeps a 256 KiB receive buffer per connection (Python 3.11
``asyncio.sslproto``), which alone would cost 250 MiB for 1,000 idle IMAP connections.
This layer uses :class:`ssl.SSLObject` over two :class:`ssl.MemoryBIO`: the buffers are
OpenSSL's own, released when idle, so an idle TLS connection costs a few KiB
(ARCHITECTURE.md §10). It also makes STARTTLS (RFC 3501 §6.2.1) a matter of wrapping the
connection's reads and writes, without swapping transports.

A memory BIO keeps the largest buffer it ever held (here the server's handshake flight,
~3 KiB), so the SMTP listeners, where every idle connection counts, run OpenSSL on the
socket itself instead (:mod:`smtp_gateway.tls_transport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

#: Bytes written to a memory BIO at a time (one TLS record of plaintext: RFC 8446 §5.1):
#: a BIO's buffer never shrinks, so this bounds what a connection keeps after a transfer.
_BIO_SLICE = 16 * 1024


class TlsError(Exception):
    """The handshake or a record failed: close the connection."""


class TlsLayer:
    __slots__ = ("_close_sent", "_in", "_obj", "_out", "_transport", "closed", "handshake_done")

    def __init__(self, context: ssl.SSLContext, transport: asyncio.BaseTransport) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self._transport = transport
        self.handshake_done = False
        #: The peer sent close_notify, or we did: no more application data either way.
        self.closed = False
        self._close_sent = False

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._transport.write(data)  # type: ignore[attr-defined]

    def receive(self, data: bytes) -> bytes:
        """Feed network bytes; return the plaintext they complete (maybe empty).

        A memory BIO keeps the largest buffer it ever held for as long as the connection
        lives: network bytes go in a slice at a time, each decrypted before the next, so
        a client that once sent a big APPEND does not leave 256 KiB behind."""
        view = memoryview(data)
        chunks: list[bytes] = []
        try:
            while view:
                self._in.write(view[:_BIO_SLICE])
                view = view[_BIO_SLICE:]
                if not self.handshake_done:
                    try:
                        self._obj.do_handshake()
                    except ssl.SSLWantReadError:
                        continue
                    self.handshake_done = True
                self._read_plaintext(chunks)
                if self.closed:
                    break
            return b"".join(chunks)
        except ssl.SSLError as exc:
            raise TlsError(str(exc)) from None
        finally:
            self._flush()

    def _read_plaintext(self, chunks: list[bytes]) -> None:
        while True:
            try:
                chunk = self._obj.read(65536)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                self.closed = True
                return
            if not chunk:  # how SSLObject.read reports the peer's close_notify
                self.closed = True
                return
            chunks.append(chunk)

    def send(self, data: bytes | bytearray) -> None:
        """Encrypt and send; a big buffer goes out in slices, each handed to the
        transport as soon as it is encrypted (the socket sends while we encrypt the rest,
        and the memory BIO never holds more than a slice: see :data:`_BIO_SLICE`)."""
        view = memoryview(data)
        try:
            while view:
                n = self._obj.write(view[:_BIO_SLICE])
                view = view[n:]
                if view:
                    self._flush()
        except ssl.SSLError as exc:
            raise TlsError(str(exc)) from None
        finally:
            self._flush()

    def close(self) -> None:
        """Send close_notify (best effort), also in answer to the peer's: each side sends
        one before closing its write side (RFC 8446 §6.1)."""
        if self._close_sent or not self.handshake_done:
            return
        self._close_sent = self.closed = True
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._obj.unwrap()
        self._flush()

    def peer_certificate(self) -> dict[str, Any] | None:
        """The client certificate if it was verified against the trust anchors."""
        if not self.handshake_done:
            return None
        try:
            cert = self._obj.getpeercert()
        except ValueError:
            return None
        return dict(cert) if cert else None

    def version(self) -> str | None:
        return self._obj.version() if self.handshake_done else None
