"""The asyncio shell of one IMAP connection: bytes in and out, nothing else.

A :class:`ImapConnection` feeds received bytes (through :class:`~.tls.TlsLayer` when TLS is
on) to the :class:`~.framing.Framer`, parses each complete command and runs it on the
:class:`~.session.Session` as a task — one at a time, in order (RFC 3501 §5.5 allows
pipelining; we answer in order). While nothing runs, a connection holds no task, no
thread and no database session: an idle connection is a few small objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mailstore.imap import formatter
from mailstore.imap.errors import CommandNo, ParseError
from mailstore.imap.framing import (
    CommandBytes,
    Framer,
    FramingError,
    FramingLimits,
    NeedContinuation,
    RawLine,
)
from mailstore.imap.parser import parse_command, peek_tag_and_name
from mailstore.imap.session import Session, end_idle
from mailstore.imap.state import State
from mailstore.imap.tls import TlsError, TlsLayer

if TYPE_CHECKING:
    from mailstore.imap.server import ImapServer

log = logging.getLogger("mailstore.imap")

#: Stop reading from a client that sends faster than we answer.
_READ_PAUSE = 256 * 1024
#: Wait for the client to read our output beyond this.
_WRITE_HIGH = 256 * 1024
#: Consecutive BAD commands before we hang up (a client that is not speaking IMAP).
MAX_BAD = 20


class ImapConnection(asyncio.Protocol):
    __slots__ = (
        "_bad", "_closing", "_drain", "_idle", "_line_waiter", "_paused", "_task", "_tls",
        "_tls_greeting", "framer", "peer_ip", "server", "session", "transport",
    )

    def __init__(self, server: ImapServer, *, implicit_tls: bool) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer_ip: str | None = None
        settings = server.ctx.settings
        self.framer = Framer(_limits(settings))
        self.session = Session(server.ctx, self)
        self._tls: TlsLayer | None = None
        self._tls_greeting = implicit_tls
        self._task: asyncio.Task[None] | None = None
        self._line_waiter: asyncio.Future[bytes] | None = None
        self._idle = False
        self._closing = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._bad = 0

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else None
        self.server.connections.add(self)
        if self._tls_greeting:
            assert self.server.ctx.ssl_context is not None
            self._tls = TlsLayer(self.server.ctx.ssl_context, transport)
        else:
            self.write(self.session.greeting())

    def data_received(self, data: bytes) -> None:
        self.session.last_activity = time.monotonic()
        if self._tls is not None:
            was_done = self._tls.handshake_done
            try:
                data = self._tls.receive(data)
            except TlsError as exc:
                log.info("IMAP TLS failure from %s: %s", self.peer_ip, exc)
                self._abort()
                return
            if self._tls.handshake_done and not was_done and self._tls_greeting:
                self._tls_greeting = False
                self.write(self.session.greeting())
            if self._tls.closed:
                self.close()
                return
            if not data:
                return
        self.framer.feed(data)
        if self.framer.buffered() > _READ_PAUSE and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._pump()

    def eof_received(self) -> bool | None:
        self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._line_waiter is not None and not self._line_waiter.done():
            self._line_waiter.cancel()
        self.session.deselect()
        self.session.idle_tag = None
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- SessionIO ---------------------------------------------------------------------

    @property
    def tls_active(self) -> bool:
        return self._tls is not None and self._tls.handshake_done

    @property
    def busy(self) -> bool:
        return self._task is not None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The command running now, if any."""
        return self._task

    def write(self, data: bytes | bytearray) -> None:
        if self._closing or self.transport is None or not data:
            return
        if self._tls is not None:
            try:
                self._tls.send(data)
            except TlsError as exc:
                log.info("IMAP TLS write failure to %s: %s", self.peer_ip, exc)
                self._abort()
        else:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            await self._drain

    def start_tls(self) -> None:
        """STARTTLS: drop what the client sent after the command (RFC 3501 §6.2.1 and
        the plaintext command injection of CVE-2011-0411), then wrap the connection."""
        assert self.transport is not None and self.server.ctx.ssl_context is not None
        self.framer = Framer(self.framer.limits)
        self._tls = TlsLayer(self.server.ctx.ssl_context, self.transport)

    def read_line(self) -> asyncio.Future[bytes]:
        loop = asyncio.get_running_loop()
        self.framer.expect_line()
        self._line_waiter = loop.create_future()
        loop.call_soon(self._pump)
        return self._line_waiter

    def enter_idle(self) -> None:
        self.framer.expect_line()
        self._idle = True

    def peer_certificate(self) -> dict[str, Any] | None:
        return self._tls.peer_certificate() if self._tls is not None else None

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._tls is not None:
            self._tls.close()
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def bye(self, text: str) -> None:
        """Say goodbye and close (shutdown, autologout)."""
        self.write(formatter.untagged_status(b"BYE", text))
        self.session.state = State.LOGOUT
        self.close()

    # -- the loop around the framer ------------------------------------------------------

    def _pump(self) -> None:
        while not self._closing:
            if self._task is not None and self._line_waiter is None:
                return
            event = self.framer.next_event()
            if event is None:
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return
            if isinstance(event, RawLine):
                if self._line_waiter is not None:
                    waiter, self._line_waiter = self._line_waiter, None
                    if not waiter.done():
                        waiter.set_result(event.data)
                    continue
                if self._idle:
                    self._idle = False
                    self._start(end_idle(self.session, event.data))
                continue
            if isinstance(event, NeedContinuation):
                self.write(formatter.continuation("Ready for literal data"))
                continue
            if isinstance(event, FramingError):
                self.write(formatter.tagged(event.tag or b"*", event.status, event.text,
                                            event.code))
                if event.fatal:
                    self.bye("Protocol error")
                continue
            assert isinstance(event, CommandBytes)
            self._command(event.data)

    def _command(self, data: bytes) -> None:
        try:
            cmd = parse_command(data, utf8=self.session.utf8)
        except ParseError as exc:
            self._bad += 1
            log.info("IMAP syntax error from %s: %s", self.peer_ip, exc.text)
            self.write(formatter.tagged(exc.tag or b"*", b"BAD", exc.text))
            if self._bad >= MAX_BAD:
                self.bye("Too many invalid commands")
            return
        except CommandNo as exc:  # e.g. BADCHARSET, found while parsing
            tag, _ = peek_tag_and_name(data)
            self.write(formatter.tagged(tag or b"*", b"NO", exc.text, exc.code))
            return
        self._bad = 0
        self._start(self.session.run(cmd))

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.get_running_loop().create_task(coro)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("IMAP command task crashed", exc_info=task.exception())
            self._abort()
            return
        if not self._closing:
            self._pump()


def _limits(settings: Any) -> FramingLimits:
    return FramingLimits(
        max_line=settings.max_line,
        max_literal=settings.max_literal,
        max_append=settings.max_message_size,
    )
