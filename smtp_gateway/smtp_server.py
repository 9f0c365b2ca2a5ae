"""The asyncio SMTP listeners: aiosmtpd's protocol with our replies, TLS modes and shutdown.

* Port 587 style (RFC 6409 + RFC 3207): STARTTLS required before anything but EHLO,
  STARTTLS, NOOP, RSET, QUIT; AUTH only after TLS.
* Port 465 style (RFC 8314 §3.3): implicit TLS, AUTH allowed at once.
* Port 25 style (the MTA, RFC 5321 + RFC 3207): STARTTLS required before MAIL, no AUTH
  (``502``), the client certificate requested for mutual TLS.
* TLS is :class:`~smtp_gateway.tls_transport.TlsTransport` (OpenSSL on the socket
  itself, not asyncio's ``SSLProtocol``), started at the first byte on implicit-TLS
  listeners and by :meth:`CaduceeSMTP.smtp_STARTTLS` otherwise, which keeps aiosmtpd's
  STARTTLS semantics: ``220`` in clear, plaintext pipelined after the command discarded, a
  fresh session once secure (RFC 3207 §4.2).
* Idle connections are kept small (ARCHITECTURE.md §10: ~20 KiB with TLS, four fifths of
  it OpenSSL's own state): per-listener tables instead of aiosmtpd's per-connection ones,
  slots instead of an instance dict.
* Every reply gets its enhanced status code (RFC 2034) in one place, :meth:`push`.
* Replies to pipelined commands are sent together (RFC 2920 §3.2: the server may buffer
  replies while more commands are waiting in its input, and must flush before it would
  wait for input): one TLS record and one ``send`` for ``MAIL``/``RCPT``/``DATA`` instead
  of three.
* Envelope paths in the common form ``<local@domain>`` (RFC 5321 §4.1.2) are parsed with
  one regular expression; anything else goes to aiosmtpd's full parser.
* Graceful stop: stop accepting, let transactions in DATA finish, answer the others
  ``421 4.3.2`` and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, AnyStr, ClassVar

from aiosmtpd.smtp import MISSING, SMTP, syntax

from smtp_gateway import replies
from smtp_gateway.data_reader import LINE_LIMIT, DataAssembler
from smtp_gateway.tls_transport import TlsTransport

log = logging.getLogger(__name__)


class _LoginDataNoise(logging.Filter):
    """aiosmtpd sets its own deprecated ``Session.login_data`` at every successful AUTH and
    warns about it each time."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


class _UnknownCommandRedaction(logging.Filter):
    """aiosmtpd logs the first word of an unrecognised command at WARNING. A client that
    sends its AUTH response after the server refused the AUTH (pipelined, RFC 4954 §4)
    makes that word its base64 credentials: only the name of a plausible command is
    logged (SMTP verbs are short letters), anything else as its length."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "%r unrecognised: %s" and isinstance(record.args, tuple):
            peer, word = record.args
            if not (isinstance(word, str) and len(word) <= 12 and word.isalpha()):
                record.args = (peer, f"<{len(str(word))} characters, not shown>")
        return True


logging.getLogger("mail.log").addFilter(_LoginDataNoise())
logging.getLogger("mail.log").addFilter(_UnknownCommandRedaction())

#: How much of the DATA body is taken from the reader at a time.
_DATA_BLOCK = 64 * 1024

#: Replies never held back: the client waits for them before anything else (220 before
#: the TLS handshake, 334 AUTH challenges), or the connection may close right after them
#: (221, 421, aiosmtpd's 502 after too many unrecognised commands): a held reply would
#: be lost with the connection, and so would the replies held before it.
_SEND_AT_ONCE = frozenset({b"220", b"221", b"334", b"421", b"502"})

#: RFC 5321 §4.1.2 ``Path`` without source route, ASCII ``Dot-string`` local part and a
#: plain ``Domain``; the rest of the line (ESMTP parameters) is group 2.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SIMPLE_PATH = re.compile(rf"\s*<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>(.*)\Z", re.S)


def _is_utf8(text: str) -> bool:
    """Did ``text`` come from valid UTF-8 (no lone surrogate from "surrogateescape")?"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ascii_reply(text: str) -> str:
    """``text`` in ASCII: accents dropped (``é`` → ``e``), anything else as ``?``."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(
        c if c.isascii() else "?" for c in folded if not unicodedata.combining(c)
    )


class _Commands(Mapping[str, Any]):
    """aiosmtpd's ``_smtp_methods`` (command name → bound ``smtp_*`` method), bound on use."""

    __slots__ = ("_owner",)
    _names: ClassVar[dict[type, dict[str, str]]] = {}

    def __init__(self, owner: SMTP) -> None:
        self._owner = owner

    def _table(self) -> dict[str, str]:
        cls = type(self._owner)
        table = self._names.get(cls)
        if table is None:
            table = {m[len("smtp_") :]: m for m in dir(cls) if m.startswith("smtp_")}
            self._names[cls] = table
        return table

    def __getitem__(self, command: str) -> Any:
        return getattr(self._owner, self._table()[command])

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


@dataclass
class SharedTables:
    """What aiosmtpd builds for every connection although it is the same for all the
    connections of one listener: its handler hooks (bound methods of the one handler) and,
    when the handler implements every mechanism, the AUTH mechanisms."""

    hooks: dict[str, Any] | None = None
    auth: dict[str, Any] | None = None


#: The AUTH mechanisms of a listener without AUTH (the MTA): none (never modified).
_NO_MECHANISMS: dict[str, Any] = {}

#: Every attribute aiosmtpd's ``SMTP``, asyncio's ``StreamReaderProtocol`` and we set on a
#: connection, as slots: an instance dict of 54 keys costs ~1.6 KiB per connection, the
#: slots 8 bytes each. An attribute missing here still works (it goes to the instance
#: dict); tests/smtp_gateway/test_tls_listeners.py checks that none is missing.
_CONNECTION_SLOTS = (
    # asyncio.streams.FlowControlMixin and StreamReaderProtocol
    "_loop", "_paused", "_drain_waiters", "_connection_lost", "_stream_reader_wr",
    "_source_traceback", "_strong_reader", "_reject_connection", "_stream_writer", "_task",
    "_transport", "_client_connected_cb", "_over_ssl", "_closed",
    # aiosmtpd.smtp.SMTP
    "__ident__", "loop", "event_handler", "data_size_limit", "enable_SMTPUTF8",
    "_decode_data", "hostname", "tls_context", "require_starttls", "_timeout_duration",
    "_timeout_handle", "_tls_handshake_okay", "_tls_protocol", "_original_transport",
    "session", "envelope", "transport", "_handler_coroutine", "_auth_require_tls",
    "_proxy_timeout", "_authenticator", "_auth_callback", "_auth_required", "_auth_methods",
    "_handle_hooks", "_ehlo_hook_ver", "_smtp_methods", "_enforce_call_limit",
    "_call_limit_base", "_call_limit_default", "_reader", "_writer",
    # CaduceeSMTP
    "implicit_tls", "allow_auth", "_registry", "_in_ehlo", "_held", "_flush_scheduled",
    "busy", "on_idle",
)


class CaduceeSMTP(SMTP):  # type: ignore[misc,unused-ignore]
    """aiosmtpd's SMTP protocol with enhanced codes, our texts, our TLS layer and
    connection tracking.

    aiosmtpd decides "is TLS on?" by the truth of ``_tls_protocol`` (EHLO's STARTTLS and
    AUTH lines, the ``530`` before STARTTLS, AUTH's ``538``): it holds our
    :class:`TlsTransport` from the moment TLS starts.
    """

    __slots__ = _CONNECTION_SLOTS

    line_length_limit = LINE_LIMIT

    def __init__(
        self,
        handler: Any,
        *,
        implicit_tls: bool,
        registry: set[CaduceeSMTP],
        allow_auth: bool = True,
        shared: SharedTables | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.implicit_tls = implicit_tls
        self.allow_auth = allow_auth
        self._registry = registry
        # aiosmtpd keeps a dict of bound command methods per connection (~3.5 KiB); one
        # shared table of names, bound on use, keeps idle connections small.
        self._smtp_methods = _Commands(self)  # type: ignore[assignment]
        if shared is not None:
            self._share_tables(shared)
        # asyncio's write-flow-control waiters: a deque costs ~600 bytes even when empty
        # (it is only appended to, removed from and iterated: a list does the same).
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._in_ehlo = False
        #: Replies held back while pipelined commands wait in the input (RFC 2920 §3.2).
        self._held: list[bytes] = []
        self._flush_scheduled = False
        self.busy = False
        #: Called when a transaction ends (graceful shutdown waits on it).
        self.on_idle: Callable[[], None] | None = None

    def _share_tables(self, shared: SharedTables) -> None:
        if shared.hooks is None:
            shared.hooks = self._handle_hooks
        self._handle_hooks = shared.hooks
        if not self.allow_auth:
            self._auth_methods = _NO_MECHANISMS
        elif not any(m.is_builtin for m in self._auth_methods.values()):
            # Only the handler's methods (aiosmtpd's own are bound to this connection).
            if shared.auth is None:
                shared.auth = self._auth_methods
            self._auth_methods = shared.auth

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.implicit_tls:
            # RFC 8314 §3.3: TLS from the first byte; the greeting waits for the handshake.
            assert isinstance(transport, asyncio.Transport) and self.tls_context is not None
            try:
                tls = TlsTransport.take_over(self.tls_context, transport, self,
                                             self._tls_established)
            except OSError as exc:  # the client left at once: no session to start
                log.info("SMTP client %s gone before TLS: %s",
                         transport.get_extra_info("peername"), exc)
                return
            self._tls_protocol = tls  # type: ignore[assignment]
            transport = tls
        super().connection_made(transport)
        self._registry.add(self)

    def _utf8_replies(self) -> bool:
        """May a reply carry UTF-8? Reply text is US-ASCII (RFC 5321 §4.2, ``textstring``)
        unless the transaction declared SMTPUTF8 (RFC 6531 §3.7): other clients may not
        decode it (a refused attachment's name, an address, all come from the message)."""
        return bool(self.enable_SMTPUTF8 and self.envelope is not None
                    and self.envelope.smtp_utf8)

    def connection_lost(self, error: Exception | None) -> None:
        self._registry.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            if not self._in_ehlo:
                status = replies.enhance(status)  # type: ignore[assignment,unused-ignore]
            if not status.isascii() and not self._utf8_replies():
                status = _ascii_reply(status)  # type: ignore[assignment,unused-ignore]
            line = status.encode("utf-8") + b"\r\n"
        else:
            line = bytes(status) + b"\r\n"
        self._held.append(line)
        # A continuation line ("250-") is always followed by more; other replies wait only
        # while another complete command is already in our input buffer.
        if line[3:4] == b"-" or (line[:3] not in _SEND_AT_ONCE and self._input_pending()):
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush)
            return
        self._flush()
        if self._writer is not None:
            await self._writer.drain()

    def _input_pending(self) -> bool:
        """Is a complete command line already buffered (the client pipelines)?"""
        buffer = getattr(self._reader, "_buffer", None)
        return buffer is not None and b"\n" in buffer

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._held:
            return
        data = b"".join(self._held)
        self._held.clear()
        if self._writer is not None and self.transport is not None:
            self._writer.write(data)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """RFC 5321 §4.1.2 paths: the common ``<local@domain>`` without aiosmtpd's general
        header parser (which builds a class on every call); the rest goes to it."""
        match = _SIMPLE_PATH.match(arg)
        if match is None:
            address, rest = super()._getaddr(arg)
            if address is not None and not _is_utf8(address):
                # aiosmtpd decodes arguments with "surrogateescape": octets that are not
                # UTF-8 reach us as lone surrogates, which every later encode() refuses.
                # RFC 6531 §3.3: a mailbox is ASCII, or UTF-8 with SMTPUTF8; anything else
                # is a malformed path (553 5.1.3, RFC 3463 §3.2), not our fault (451).
                return None, None
            return address, rest
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, match.group(2)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    @property
    def _starttls_offered(self) -> bool:
        """STARTTLS is offered (and listed by HELP) until TLS is on (RFC 3207 §4.2)."""
        return self.tls_context is not None and not self._tls_protocol

    @syntax("STARTTLS", when="_starttls_offered")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """RFC 3207 §4: the ``220`` goes out in clear, then the handshake on this connection.

        Whatever the client sent after the command and before the handshake is discarded
        (RFC 3207 §6, plaintext command injection: CVE-2011-0411); the session starts
        afresh once secure (:meth:`_tls_established`). A failed handshake closes the
        connection (:class:`TlsTransport` logs it); this task then ends cancelled, as on
        any lost connection.
        """
        if arg:
            await self.push("501 Syntax: STARTTLS")
            return
        if self._tls_protocol:
            await self.push(replies.R503_BAD_SEQUENCE.line("TLS already active"))
            return
        if not self.tls_context:
            await self.push("454 TLS not available")
            return
        await self.push("220 Ready to start TLS")  # never held back: see _SEND_AT_ONCE
        plain = self.transport
        if not isinstance(plain, asyncio.Transport) or plain.is_closing():
            return
        # Not a byte more in clear (RFC 3207 §6: what the client sent after the command is
        # dropped below); the ClientHello waits in the socket for TLS.
        plain.pause_reading()
        if plain.get_write_buffer_size():  # the socket was full: wait until the 220 is out
            plain.set_write_buffer_limits(high=0)
            await self._writer.drain()
        secured: asyncio.Future[None] = self.loop.create_future()

        def on_secure() -> None:
            self._tls_established()
            if not secured.done():
                secured.set_result(None)

        try:
            tls = TlsTransport.take_over(self.tls_context, plain, self, on_secure)
        except OSError as exc:  # the client left after the 220
            log.info("SMTP client %s gone before TLS: %s", plain.get_extra_info("peername"), exc)
            self.connection_lost(exc)
            return
        self._tls_protocol = tls  # type: ignore[assignment]
        self.transport = tls
        # What aiosmtpd does when it switches transports (private attributes of asyncio's
        # streams, as in aiosmtpd's own connection_made).
        reader: Any = self._reader
        writer: Any = self._writer
        reader._transport = writer._transport = tls
        # From here on every byte goes through TLS: what was read in clear after the
        # command is dropped (a TLS client sends nothing before the 220).
        reader._buffer.clear()
        reader._paused = False  # TlsTransport reads from here on
        await secured

    def _tls_established(self) -> None:
        """The handshake completed; no protected command has been read yet.

        After STARTTLS this does what aiosmtpd's ``connection_made`` does when asyncio's
        TLS layer calls it a second time: the client's EHLO, AUTH and envelope from the
        clear-text part are forgotten (RFC 3207 §4.2: a new ``Session``, a new envelope),
        the idle timer restarts, ``session.ssl`` holds the TLS facts, and the handler's
        ``handle_STARTTLS`` hook may refuse the connection (``554`` to all but QUIT).
        """
        tls = self.transport
        assert isinstance(tls, TlsTransport)
        if not self.implicit_tls:
            self._set_rset_state()  # type: ignore[no-untyped-call]
            self.session = self._create_session()
            self.session.peer = tls.get_extra_info("peername")
            self._reset_timeout()
        assert self.session is not None
        # A read-only Mapping rather than asyncio's dict: aiosmtpd only tests it against
        # None, our handlers read it with .get() (smtp_edge.peer_certificate).
        self.session.ssl = tls.tls_info()  # type: ignore[assignment]
        if not self.implicit_tls:
            hook = self._handle_hooks.get("STARTTLS")
            self._tls_handshake_okay = (
                True if hook is None else hook(self, self.session, self.envelope)
            )

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.allow_auth:  # the MTA: other operators authenticate by certificate
            await self.push("502 5.5.1 AUTH not available on this service")
            return
        await super().smtp_AUTH(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self.busy = True
        try:
            await self._data(arg)
        finally:
            self.busy = False
            if self.on_idle is not None:
                self.on_idle()

    async def _data(self, arg: str) -> None:
        """RFC 5321 §4.1.1.4 DATA, reading the body in blocks (:mod:`.data_reader`) rather
        than aiosmtpd's line-at-a-time loop; the replies and their order are aiosmtpd's."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        assembler = DataAssembler(self.data_size_limit or 0, LINE_LIMIT)
        try:
            while True:
                block = await self._reader.read(_DATA_BLOCK)
                if not block:  # the peer went away in the middle of the data
                    self._writer.close()
                    return
                # RFC 5321 §4.5.3.2.6: the timeout runs per data block, not per message.
                self._reset_timeout()
                if assembler.feed(block):
                    break
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        if assembler.leftover:
            # Commands pipelined after the final dot (RFC 2920 §3.1) go back in front of
            # whatever the reader has buffered since (aiosmtpd edits this buffer too).
            self._reader._buffer[0:0] = assembler.leftover  # type: ignore[attr-defined]
        content = assembler.result()
        if isinstance(content, str):
            status: Any = content
        else:
            self.envelope.content = content
            self.envelope.original_content = content
            status = await self._call_handler_hook("DATA")
        # The reply goes out before the envelope is reset (the next command is read only
        # after this returns): whether it may carry UTF-8 is the transaction's to say.
        await self.push("250 OK" if status is MISSING else status)
        self._set_post_data_state()  # type: ignore[no-untyped-call]

    async def say_goodbye(self) -> None:
        """Shutdown: tell an idle client to come back later and close (RFC 5321 §3.8)."""
        if self.transport is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.push(replies.R421_SHUTTING_DOWN.line())
        if self.transport is not None:
            self.transport.close()


@dataclass
class SmtpService:
    """The running listeners of one SMTP service and their connections."""

    name: str
    servers: list[asyncio.AbstractServer] = field(default_factory=list)
    connections: set[CaduceeSMTP] = field(default_factory=set)

    @property
    def ports(self) -> list[int]:
        out = []
        for srv in self.servers:
            for sock in getattr(srv, "sockets", ()):
                out.append(int(sock.getsockname()[1]))
        return out

    async def close(self, grace: float = 30.0) -> None:
        for srv in self.servers:
            srv.close()
        drained = asyncio.Event()

        def check() -> None:
            if not any(c.busy for c in self.connections):
                drained.set()

        for c in self.connections:
            c.on_idle = check
        check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), grace)  # in-flight DATA commits first
        await asyncio.gather(
            *(c.say_goodbye() for c in list(self.connections) if not c.busy),
            return_exceptions=True,
        )
        for srv in self.servers:
            await srv.wait_closed()


async def start_submission(
    handler: Any,
    *,
    hostname: str,
    tls_context: ssl.SSLContext,
    starttls: Sequence[tuple[str, int]],
    implicit: Sequence[tuple[str, int]],
    max_message_size: int,
    idle_timeout: float = 300.0,
) -> SmtpService:
    """Listen for submission on STARTTLS and implicit-TLS addresses."""
    return await start_smtp_service(
        "submission", handler, hostname=hostname, tls_context=tls_context,
        starttls=starttls, implicit=implicit, max_message_size=max_message_size,
        idle_timeout=idle_timeout, auth=True,
    )


async def start_smtp_service(
    name: str,
    handler: Any,
    *,
    hostname: str,
    tls_context: ssl.SSLContext,
    starttls: Sequence[tuple[str, int]],
    implicit: Sequence[tuple[str, int]] = (),
    max_message_size: int,
    idle_timeout: float = 300.0,
    auth: bool = True,
) -> SmtpService:
    """Listen on STARTTLS (and implicit-TLS) addresses; ``auth=False`` for the MTA."""
    service = SmtpService(name)
    loop = asyncio.get_running_loop()
    shared = SharedTables()

    def factory(implicit_tls: bool) -> Callable[[], CaduceeSMTP]:
        def make() -> CaduceeSMTP:
            return CaduceeSMTP(
                handler,
                implicit_tls=implicit_tls,
                registry=service.connections,
                allow_auth=auth,
                shared=shared,
                hostname=hostname,
                ident="Caducée ESMTP",
                data_size_limit=max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                tls_context=tls_context,
                require_starttls=not implicit_tls,
                auth_required=auth,
                auth_require_tls=True,  # implicit TLS is on before any command
                timeout=idle_timeout,
                command_call_limit={"AUTH": 20, "STARTTLS": 2, "*": 1_000_000},
                loop=loop,
            )

        return make

    for host, port in starttls:
        service.servers.append(await loop.create_server(factory(False), host, port))
    for host, port in implicit:
        service.servers.append(await loop.create_server(factory(True), host, port))
    log.info("%s listening", name, extra={"ports": service.ports})
    return service
