"""TLS for the SMTP listeners on the socket itself (RFC 3207, RFC 8314 §3.3).

An idle TLS connection is mostly OpenSSL's session state; everything around it is ours to
keep small (ARCHITECTURE.md §10). asyncio's ``SSLProtocol`` adds ~7 KiB a connection (its
transport, deques, futures and a 4 KiB read buffer), and an ``ssl.SSLObject`` between two
memory BIOs (:mod:`mailstore.imap.tls`) ~4 KiB more: a memory BIO never gives back the
largest buffer it held, here the server's whole handshake flight. So :class:`TlsTransport`
wraps the connection's socket in an :class:`ssl.SSLSocket` and drives it from the event
loop's readiness callbacks: OpenSSL reads and writes the socket itself, and its buffers
are released whenever they are empty (``SSL_MODE_RELEASE_BUFFERS``, set by Python).

* It takes the socket over from asyncio's TCP transport (:meth:`TlsTransport.take_over`):
  at once for implicit TLS (RFC 8314 §3.3, port 465), or after the ``220`` reply to
  ``STARTTLS`` has gone out in clear (RFC 3207 §4). The TCP transport is dropped without
  closing the connection (the socket lives on in a duplicate descriptor).
* Above, it is the transport aiosmtpd's protocol and its stream reader and writer use:
  it encrypts what they write, applies write flow control (``pause_writing`` /
  ``resume_writing`` at asyncio's default water marks), stops reading when the stream
  reader is full, and answers ``get_extra_info`` as asyncio's TLS transport does
  (``ssl_object``, ``peercert``, ``cipher``…).

Plaintext written before the handshake completes (the implicit-TLS greeting) waits for it;
the ``on_secure`` callback runs when the handshake completes, before any plaintext is
passed up, so the user can forget what it learnt in clear (RFC 3207 §4.2) before the first
protected command. A failed or timed-out handshake closes the connection with a log line
at info level, no traceback: it is the peer's fault. The peer's ``close_notify`` counts as
end of file, answered with ours (RFC 8446 §6.1).

OpenSSL may need to write while reading (a TLS 1.3 KeyUpdate) or read while writing; the
two ``*_wants_*`` flags route the socket's readiness to the operation that waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

log = logging.getLogger("smtp_gateway.smtp")

#: How long a client may take to complete the handshake (asyncio's own default,
#: ``asyncio.constants.SSL_HANDSHAKE_TIMEOUT``).
HANDSHAKE_TIMEOUT = 60.0

#: How long a closing connection may take to send what it still holds before it is cut
#: (asyncio's ``SSL_SHUTDOWN_TIMEOUT``): a peer that stopped reading cannot keep it open.
SHUTDOWN_TIMEOUT = 30.0

#: asyncio's default write water marks (``_FlowControlMixin``).
HIGH_WATER = 64 * 1024
LOW_WATER = HIGH_WATER // 4

#: Plaintext read at a time (one TLS record holds at most 16 KiB: RFC 8446 §5.1).
_READ_SIZE = 64 * 1024

#: Records decrypted per readiness callback before other connections get their turn.
_READS_PER_TURN = 16

#: The TLS facts asyncio's TLS transport gives (``asyncio.sslproto``, ``_extra``).
TLS_KEYS = ("sslcontext", "peercert", "cipher", "compression", "ssl_object")

class TlsFacts(Mapping[str, Any]):
    """A read-only view of a connection's TLS facts under asyncio's keys (:data:`TLS_KEYS`),
    read from the TLS session when asked: the dict asyncio fills at every handshake (a
    cipher tuple, the decoded peer certificate) would cost an idle connection ~0.4 KiB."""

    __slots__ = ("_tls",)

    def __init__(self, tls: TlsTransport) -> None:
        self._tls = tls

    def __getitem__(self, key: str) -> Any:
        if key not in TLS_KEYS:
            raise KeyError(key)
        return self._tls.get_extra_info(key)

    def __iter__(self) -> Iterator[str]:
        return iter(TLS_KEYS)

    def __len__(self) -> int:
        return len(TLS_KEYS)


def _discard_input(fd: int, limit: int = 256 * 1024) -> None:
    """Read and drop what the peer sent that we will not read (the rest of a broken
    handshake, its close_notify): a socket closed with unread input sends a reset, which
    can destroy our last bytes (an alert, our close_notify) before the peer reads them."""
    while limit > 0:
        try:
            data = os.read(fd, min(limit, 65536))
        except OSError:  # nothing more for now (EAGAIN), or the connection is gone
            return
        if not data:
            return
        limit -= len(data)


class _Detached(asyncio.Protocol):
    """The protocol of a TCP transport whose socket a :class:`TlsTransport` took: its
    closing is not the connection's end."""


_DETACHED = _Detached()


class TlsTransport(asyncio.Transport):
    """The TLS transport of one SMTP connection (see the module's docstring)."""

    __slots__ = (
        "_app", "_buffer", "_closing", "_fd", "_loop", "_lost", "_on_secure", "_peername",
        "_pending", "_read_paused", "_read_wants_write", "_reading", "_secure", "_sock",
        "_timer", "_write_paused", "_write_wants_read", "_writing",
    )

    shutdown_timeout: ClassVar[float] = SHUTDOWN_TIMEOUT

    def __init__(
        self,
        context: ssl.SSLContext,
        sock: socket.socket,
        app: asyncio.Protocol,
        on_secure: Callable[[], None] | None = None,
        *,
        peername: Any = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        # No super().__init__(): get_extra_info is ours, so no per-connection ``_extra``.
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        try:
            sock.getpeername()  # the peer may be gone already (ENOTCONN after a reset)
            self._sock: ssl.SSLSocket = context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        except OSError:
            sock.close()
            raise
        self._fd = self._sock.fileno()
        self._app = app
        self._on_secure = on_secure
        self._peername = peername
        #: Plaintext written before the handshake completed (only ever the implicit-TLS
        #: greeting: no command can arrive before the handshake); None once secure.
        self._pending: list[bytes] | None = []
        #: Ciphertext-to-be that OpenSSL could not send yet (retried as is: SSL_write).
        self._buffer = bytearray()
        self._secure = self._closing = self._lost = False
        self._read_paused = self._write_paused = False
        self._read_wants_write = self._write_wants_read = False
        self._reading = self._writing = False  # registered with the event loop
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            handshake_timeout, self._handshake_timeout
        )
        # The handshake starts from the event loop, never in here: a fast client's whole
        # flight may already be waiting, and ``on_secure`` must not run before the caller
        # holds this transport.
        self._want_read(self._handshake)

    @classmethod
    def take_over(
        cls,
        context: ssl.SSLContext,
        plain: asyncio.Transport,
        app: asyncio.Protocol,
        on_secure: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> TlsTransport:
        """Start TLS on the connection of asyncio's TCP transport ``plain``, which must
        have sent all it was given; ``plain`` is dropped, the connection stays open.

        Raises :class:`OSError` if the peer is already gone; ``plain`` is dropped all the
        same and its protocol is not told."""
        assert not plain.get_write_buffer_size(), "the clear-text reply is not out yet"
        raw = plain.get_extra_info("socket")
        sock = socket.socket(raw.family, raw.type, raw.proto, os.dup(raw.fileno()))
        peername = plain.get_extra_info("peername")
        plain.set_protocol(_DETACHED)
        plain.abort()  # closes asyncio's descriptor only: ours keeps the connection
        return cls(context, sock, app, on_secure, peername=peername, **kwargs)

    # -- state ---------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        """The handshake completed."""
        return self._secure

    def tls_info(self) -> TlsFacts:
        """What asyncio's TLS transport keeps in its ``_extra`` once the handshake is done
        (aiosmtpd's ``session.ssl``), read on demand."""
        return TlsFacts(self)

    def peer_certificate(self) -> dict[str, Any] | None:
        """The client certificate if it was verified against the trust anchors."""
        if not self._secure or self._lost:  # no session yet, or the socket is closed
            return None
        try:
            cert = self._sock.getpeercert()
        except OSError:  # the connection broke under us (ENOTCONN)
            return None
        return dict(cert) if cert else None

    # -- the transport above -------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sock = self._sock
        if name == "ssl_object":
            return sock
        if name == "sslcontext":
            return sock.context
        if name == "peercert":
            return self.peer_certificate()
        if name == "cipher":
            return sock.cipher() if self._secure else default
        if name == "compression":
            return sock.compression() if self._secure else default
        if name == "peername":
            return self._peername
        if name == "sockname":
            with contextlib.suppress(OSError):
                return sock.getsockname()
            return default
        if name == "socket":
            return sock
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if self._pending is not None:
            self._pending.append(bytes(data))
            return
        if not self._buffer and not self._write_wants_read:
            sent = self._send(data)
            if sent is None or sent == len(data):
                return
        else:
            sent = 0
        self._buffer += memoryview(data)[sent:]
        if not self._write_wants_read and not self._writing:
            self._want_write()
        if not self._write_paused and len(self._buffer) > HIGH_WATER:
            self._write_paused = True
            self._app.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # TLS has close_notify, not a half close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot half-close a connection")

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send close_notify (RFC 8446 §6.1) once what is buffered has gone out, and close;
        a peer that does not read gets :attr:`shutdown_timeout` to take it."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if not self._write_wants_read:
            self._stop_reading()
        if not self._secure:  # nothing protected was said: no close_notify to send
            self._force_close(None)
        elif not self._buffer:
            self._shutdown()
        else:
            self._timer = self._loop.call_later(self.shutdown_timeout, self._shutdown_timeout)

    def abort(self) -> None:
        self._force_close(None)

    def pause_reading(self) -> None:
        self._read_paused = True
        if self._secure and not self._write_wants_read:
            self._stop_reading()

    def resume_reading(self) -> None:
        if not self._read_paused:
            return
        self._read_paused = False
        if self._secure and not self._closing and not self._read_wants_write:
            self._want_read(self._read_ready)
            # Records OpenSSL already decrypted raise no readiness on the socket.
            self._loop.call_soon(self._read_ready)

    def is_reading(self) -> bool:
        return not self._read_paused and not self._closing

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return LOW_WATER, HIGH_WATER

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        raise NotImplementedError("the SMTP listeners use asyncio's default water marks")

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app

    # -- the handshake -------------------------------------------------------------------

    def _handshake(self) -> None:
        if self._closing:
            return
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._stop_writing()
            self._want_read(self._handshake)
            return
        except ssl.SSLWantWriteError:
            self._stop_reading()
            self._want_write(self._handshake)
            return
        except OSError as exc:
            self._fail(exc)
            return
        self._stop_writing()
        self._secured()

    def _secured(self) -> None:
        self._secure = True
        self._cancel_timer()
        callback, self._on_secure = self._on_secure, None
        if callback is not None:
            callback()
        if self._closing:
            return
        pending, self._pending = self._pending, None
        if pending:
            self.write(b"".join(pending))
        if self._read_paused or self._closing:
            self._stop_reading()
        else:
            self._want_read(self._read_ready)
            # A command sent with the client's Finished may already be decrypted.
            self._loop.call_soon(self._read_ready)

    # -- reading and writing ---------------------------------------------------------------

    def _read_ready(self) -> None:
        if self._write_wants_read:
            self._write_wants_read = False
            self._write_ready()
            if self._closing:
                return
        if self._read_paused and not self._write_wants_read:
            self._stop_reading()  # registered for the writer's sake only
        for _ in range(_READS_PER_TURN):
            if self._read_paused or self._closing or self._read_wants_write:
                return
            try:
                data = self._sock.recv(_READ_SIZE)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return
            except ssl.SSLWantWriteError:
                self._read_wants_write = True
                self._stop_reading()
                self._want_write()
                return
            except OSError as exc:  # a TLS alert or bad record (SSLError), or the socket
                self._fail(exc)
                return
            if not data:  # the peer's close_notify, or TCP end of file (a truncation)
                self._app.eof_received()
                self.close()
                return
            self._app.data_received(data)
        if self._sock.pending():  # decrypted records raise no readiness on the socket
            self._loop.call_soon(self._read_ready)

    def _send(self, data: bytes | bytearray | memoryview) -> int | None:
        """Hand ``data`` to OpenSSL: how much of it went out, or None if the connection
        broke. After a "want", OpenSSL must be given the same bytes again (more may
        follow them), which :attr:`_buffer` keeps."""
        try:
            return self._sock.send(data)
        except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return 0
        except ssl.SSLWantReadError:
            self._write_wants_read = True
            self._want_read(self._read_ready)
            return 0
        except OSError as exc:
            self._fail(exc)
            return None

    def _write_ready(self) -> None:
        if self._read_wants_write:
            self._read_wants_write = False
            if not self._read_paused and not self._closing:
                self._want_read(self._read_ready)
                self._loop.call_soon(self._read_ready)
        if self._buffer and not self._write_wants_read:
            sent = self._send(self._buffer)
            if sent is None:
                return
            del self._buffer[:sent]
        if self._write_paused and len(self._buffer) <= LOW_WATER:
            self._write_paused = False
            self._app.resume_writing()
        if self._buffer and not self._write_wants_read:
            if not self._writing:
                self._want_write()
            return
        self._stop_writing()
        if not self._buffer and self._closing and not self._lost:
            self._shutdown()

    # -- event-loop registration -------------------------------------------------------------

    def _want_read(self, callback: Callable[[], None]) -> None:
        self._loop.add_reader(self._fd, callback)
        self._reading = True

    def _want_write(self, callback: Callable[[], None] | None = None) -> None:
        self._loop.add_writer(self._fd, callback or self._write_ready)
        self._writing = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _stop_writing(self) -> None:
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    # -- the end -----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Send close_notify (best effort, also in answer to the peer's: each side sends
        one before closing, RFC 8446 §6.1) and close."""
        with contextlib.suppress(OSError, ValueError):
            self._sock.unwrap()  # writes close_notify; does not wait for the peer's
        self._force_close(None)

    def _force_close(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = self._closing = True
        self._cancel_timer()
        self._stop_reading()
        self._stop_writing()
        self._buffer.clear()
        self._on_secure = None
        _discard_input(self._fd)
        self._sock.close()
        self._loop.call_soon(self._app.connection_lost, exc)

    def _fail(self, exc: Exception) -> None:
        """The peer broke TLS or the connection: log without a traceback and close. An
        alert OpenSSL has for the peer was written to the socket as it failed."""
        if self._lost:
            return
        if not isinstance(exc, ssl.SSLError):
            self._force_close(exc)
            return
        log.info("SMTP TLS %s failure from %s: %s",
                 "record" if self._secure else "handshake", self._peername, exc)
        self._force_close(None)  # logged: not the protocol's concern

    def _shutdown_timeout(self) -> None:
        self._timer = None
        log.info("SMTP TLS peer %s does not read: connection cut", self._peername)
        self._force_close(None)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._secure or self._closing:
            return
        log.info("SMTP TLS handshake timeout from %s", self._peername)
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
