"""The IMAP listeners: STARTTLS ports (143) and implicit-TLS ports (993, RFC 8314 §3.3).

:func:`start_imap_server` returns an :class:`ImapServer` whose :meth:`~ImapServer.close`
stops accepting, lets running commands finish (up to a grace period) and says ``BYE`` to
every client. One sweeper task applies the autologout timers (RFC 3501 §5.4) to all
connections, so idle connections need no timer of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Iterable
from typing import Any

from mailstore.auth import Authenticator
from mailstore.db import Database
from mailstore.imap.connection import ImapConnection
from mailstore.imap.session import ImapContext, ImapSettings, Journal
from mailstore.imap.state import State
from mailstore.imap_cache import StructureCache
from mailstore.keystore import KeyStore
from mailstore.notify import Notifier

log = logging.getLogger("mailstore.imap")


def _host_port(item: Any) -> tuple[str, int]:
    if hasattr(item, "host") and hasattr(item, "port"):
        return str(item.host), int(item.port)
    host, port = item
    return str(host), int(port)


class ImapServer:
    def __init__(self, ctx: ImapContext) -> None:
        self.ctx = ctx
        self.connections: set[ImapConnection] = set()
        self._servers: list[tuple[asyncio.Server, bool]] = []
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of the STARTTLS / plain listeners."""
        return self._bound(tls=False)

    @property
    def tls_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of the implicit-TLS listeners."""
        return self._bound(tls=True)

    def _bound(self, *, tls: bool) -> list[tuple[str, int]]:
        out = []
        for server, implicit in self._servers:
            if implicit == tls:
                for sock in server.sockets:
                    name = sock.getsockname()
                    out.append((str(name[0]), int(name[1])))
        return out

    async def _listen(self, host: str, port: int, *, implicit_tls: bool) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: ImapConnection(self, implicit_tls=implicit_tls), host, port,
            reuse_address=True, backlog=1024,
        )
        self._servers.append((server, implicit_tls))
        log.info("IMAP listening on %s:%d%s", host, port, " (TLS)" if implicit_tls else "")

    def _start_sweeper(self) -> None:
        s = self.ctx.settings
        period = max(0.2, min(30.0, min(s.preauth_timeout, s.autologout) / 4))
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(period))

    async def _sweep(self, period: float) -> None:
        settings = self.ctx.settings
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                session = conn.session
                limit = (
                    settings.preauth_timeout
                    if session.state is State.NOT_AUTHENTICATED
                    else settings.autologout
                )
                if not conn.busy and now - session.last_activity > limit:
                    log.info("IMAP autologout of %s", conn.peer_ip)
                    conn.bye("Autologout: idle for too long")

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, let running commands finish, say BYE, close everything."""
        for server, _ in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        running = [c.task for c in self.connections if c.task is not None]
        if running:
            await asyncio.wait(running, timeout=grace)
        for conn in list(self.connections):
            conn.bye("Server shutting down")
        for server, _ in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=grace)


async def start_imap_server(
    *,
    db: Database,
    keystore: KeyStore,
    authenticator: Authenticator,
    notifier: Notifier,
    ssl_context: ssl.SSLContext | None,
    listen: Iterable[Any] = (),
    implicit_tls_listen: Iterable[Any] = (),
    journal: Journal | None = None,
    settings: ImapSettings | None = None,
) -> ImapServer:
    """Start the IMAP listeners; ``listen`` / ``implicit_tls_listen`` hold ``(host, port)``
    pairs or :class:`caducee.config.Listen` values (port 0 picks a free port)."""
    if notifier._loop is None:
        await notifier.start(db.engine.url.render_as_string(hide_password=False))
    settings = settings or ImapSettings()
    ctx = ImapContext(
        db=db, keystore=keystore, authenticator=authenticator, notifier=notifier,
        settings=settings, ssl_context=ssl_context, journal=journal,
        cache=StructureCache(settings.structure_cache),
    )
    server = ImapServer(ctx)
    implicit = [_host_port(x) for x in implicit_tls_listen]
    if implicit and ssl_context is None:
        raise ValueError("implicit-TLS IMAP listeners need an SSL context")
    for host, port in [_host_port(x) for x in listen]:
        await server._listen(host, port, implicit_tls=False)
    for host, port in implicit:
        await server._listen(host, port, implicit_tls=True)
    server._start_sweeper()
    return server
