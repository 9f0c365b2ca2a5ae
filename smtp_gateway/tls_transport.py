"""TLS for the SMTP listeners without asyncio's ``SSLProtocol`` (RFC 3207, RFC 8314 §3.3).

asyncio's TLS machinery costs an idle connection about 7 KiB on top of OpenSSL's own state
(measured: 37 → 30 KiB per idle SMTP connection after STARTTLS): the ``SSLProtocol`` and
its ``_SSLProtocolTransport``, their deques and futures, the 4 KiB read buffer
(:func:`caducee.tls.tune_asyncio_tls`) (ARCHITECTURE.md §10). :class:`TlsTransport` is one
small object in their place, over :class:`mailstore.imap.tls.TlsLayer` (an
``ssl.SSLObject`` between two memory BIOs, the IMAP server's TLS core):

* below, it is the *protocol* of the TCP transport: it decrypts what arrives and passes
  the plaintext up;
* above, it is the *transport* aiosmtpd's protocol and its stream reader and writer use:
  it encrypts what they write, forwards flow control both ways (the TCP transport's
  ``pause_writing``/``resume_writing`` to the protocol, the stream reader's
  ``pause_reading``/``resume_reading`` to the socket), and answers ``get_extra_info``
  as asyncio's TLS transport does (``ssl_object``, ``peercert``, ``cipher``…).

Its user decides when TLS starts: at once for implicit TLS (RFC 8314 §3.3, port 465), or
after the ``220`` reply to ``STARTTLS`` has gone out in clear (RFC 3207 §4). Plaintext
written before the handshake completes (the implicit-TLS greeting) waits for it; the
``on_secure`` callback runs when the handshake completes, before any plaintext is passed
up, so the user can forget what it learnt in clear (RFC 3207 §4.2) before the first
protected command. A failed or timed-out handshake closes the connection with a log line
at info level, no traceback: it is the peer's fault. The peer's ``close_notify`` counts as
end of file, answered with ours (RFC 8446 §6.1).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from mailstore.imap.tls import TlsError, TlsLayer

log = logging.getLogger("smtp_gateway.smtp")

#: How long a client may take to complete the handshake (asyncio's own default,
#: ``asyncio.constants.SSL_HANDSHAKE_TIMEOUT``).
HANDSHAKE_TIMEOUT = 60.0

#: How long a closing connection may take to send what it still holds before it is cut
#: (asyncio's ``SSL_SHUTDOWN_TIMEOUT``): a peer that stopped reading cannot keep it open.
SHUTDOWN_TIMEOUT = 30.0


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


class TlsTransport(asyncio.Transport, asyncio.Protocol):
    """The TLS transport of one SMTP connection (see the module's docstring)."""

    __slots__ = ("_app", "_closing", "_layer", "_on_secure", "_pending", "_plain", "_timer")

    shutdown_timeout: ClassVar[float] = SHUTDOWN_TIMEOUT

    def __init__(
        self,
        context: ssl.SSLContext,
        plain: asyncio.Transport,
        app: asyncio.Protocol,
        on_secure: Callable[[], None] | None = None,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        # No super().__init__(): get_extra_info is ours, so no per-connection ``_extra``.
        self._plain = plain
        self._app = app
        self._layer = TlsLayer(context, plain)
        self._on_secure = on_secure
        #: Plaintext written before the handshake completed (only ever the implicit-TLS
        #: greeting: no command can arrive before the handshake); None once secure.
        self._pending: list[bytes] | None = []
        self._closing = False
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            handshake_timeout, self._handshake_timeout
        )
        plain.set_protocol(self)
        # The handshake must proceed even if the stream reader above had paused reading.
        plain.resume_reading()

    # -- state ---------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        """The handshake completed."""
        return self._layer.handshake_done

    def tls_info(self) -> TlsFacts:
        """What asyncio's TLS transport keeps in its ``_extra`` once the handshake is done
        (aiosmtpd's ``session.ssl``), read on demand."""
        return TlsFacts(self)

    # -- the transport above -------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        obj = self._layer.ssl_object
        if name == "ssl_object":
            return obj
        if name == "sslcontext":
            return obj.context
        if name == "peercert":
            return self._layer.peer_certificate()
        if name == "cipher":
            return obj.cipher() if self.secure else default
        if name == "compression":
            return obj.compression() if self.secure else default
        return self._plain.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if self._pending is not None:
            self._pending.append(bytes(data))
            return
        self._send(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # TLS has close_notify, not a half close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot half-close a connection")

    def is_closing(self) -> bool:
        return self._closing or self._plain.is_closing()

    def close(self) -> None:
        """Send close_notify (RFC 8446 §6.1) and close once the socket has sent it all."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if self.secure:
            self._layer.close()
        self._close_plain()

    def abort(self) -> None:
        self._closing = True
        self._cancel_timer()
        self._plain.abort()

    def pause_reading(self) -> None:
        self._plain.pause_reading()

    def resume_reading(self) -> None:
        self._plain.resume_reading()

    def is_reading(self) -> bool:
        return self._plain.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._plain.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._plain.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._plain.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app

    # -- the protocol below --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        layer = self._layer
        was_secure = layer.handshake_done
        try:
            plaintext = layer.receive(data)
        except TlsError as exc:
            self._fail(exc)
            return
        if layer.handshake_done and not was_secure:
            self._secured()
        if plaintext and not self._closing:
            self._app.data_received(plaintext)
        if layer.closed and not self._closing:  # the peer's close_notify: end of file
            self._app.eof_received()
            self.close()

    def eof_received(self) -> bool | None:
        """TCP end of file without close_notify (a truncation, RFC 8446 §6.1): the end of
        the input all the same, and we close our side."""
        if not self._closing:
            self._app.eof_received()
            self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        self._on_secure = None
        self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        self._app.pause_writing()

    def resume_writing(self) -> None:
        self._app.resume_writing()

    # -- inside --------------------------------------------------------------------------

    def _secured(self) -> None:
        self._cancel_timer()
        callback, self._on_secure = self._on_secure, None
        if callback is not None:
            callback()
        pending, self._pending = self._pending, None
        if pending and not self._closing:
            self._send(b"".join(pending))

    def _send(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._layer.send(data)
        except TlsError as exc:
            self._fail(exc)

    def _fail(self, exc: TlsError) -> None:
        """The peer broke TLS: log without a traceback and close. During the handshake the
        alert OpenSSL wrote goes out first; afterwards the connection is simply dropped."""
        secure = self.secure
        log.info("SMTP TLS %s failure from %s: %s", "record" if secure else "handshake",
                 self._plain.get_extra_info("peername"), exc)
        self._closing = True
        self._cancel_timer()
        if secure:
            self._plain.abort()
        else:
            self._close_plain()

    def _close_plain(self) -> None:
        """Close the TCP transport once it has sent what it holds, within
        :attr:`shutdown_timeout`."""
        self._plain.close()
        if self._plain.get_write_buffer_size():
            self._timer = asyncio.get_running_loop().call_later(
                self.shutdown_timeout, self._shutdown_timeout
            )

    def _shutdown_timeout(self) -> None:
        self._timer = None
        log.info("SMTP TLS peer %s does not read: connection cut",
                 self._plain.get_extra_info("peername"))
        self._plain.abort()

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.secure or self._closing:
            return
        log.info("SMTP TLS handshake timeout from %s", self._plain.get_extra_info("peername"))
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
