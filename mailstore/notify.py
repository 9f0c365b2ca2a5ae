"""Mailbox change notifications: in-process for IDLE, PostgreSQL LISTEN/NOTIFY across nodes.

ARCHITECTURE.md §4 and §10: a delivery (SMTP, APPEND, COPY...) calls
:meth:`Notifier.mailbox_changed` after its commit; every IMAP connection that has that
mailbox selected is woken at once — no polling loop. With PostgreSQL, the change is also
published with ``NOTIFY`` (coalesced: one statement carries every mailbox changed since
the last one) and each other node's listener dispatches it to its own connections. A node
ignores its own notifications (it has already dispatched them).

Subscribers are plain callbacks ``callback(mailbox_id)`` run on the event loop; they must
be quick (an IMAP session only marks itself dirty and maybe schedules a refresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "caducee_mailbox"
#: NOTIFY payloads must stay under 8000 bytes.
_MAX_PAYLOAD = 7000


class Subscription:
    """Returned by :meth:`Notifier.subscribe`; :meth:`cancel` it when done."""

    __slots__ = ("_notifier", "callback", "mailbox_id")

    def __init__(self, notifier: Notifier, mailbox_id: int, callback: Callable[[int], None]):
        self._notifier = notifier
        self.mailbox_id = mailbox_id
        self.callback = callback

    def cancel(self) -> None:
        subs = self._notifier._subs.get(self.mailbox_id)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self._notifier._subs[self.mailbox_id]


class Notifier:
    def __init__(self) -> None:
        self._subs: dict[int, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.node_id = secrets.token_hex(6)
        self._bridge: _PgBridge | None = None
        #: Counters (tests, metrics).
        self.local_events = 0
        self.remote_events = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, database_url: str | None = None) -> None:
        """Bind to the running loop; with a PostgreSQL URL, also listen to other nodes."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if database_url and make_url(database_url).get_backend_name() == "postgresql":
            self._bridge = _PgBridge(self, database_url)
            await self._bridge.start()

    async def close(self) -> None:
        if self._bridge is not None:
            await self._bridge.close()
            self._bridge = None

    # -- subscribing and publishing ---------------------------------------------------------

    def subscribe(self, mailbox_id: int, callback: Callable[[int], None]) -> Subscription:
        sub = Subscription(self, mailbox_id, callback)
        self._subs.setdefault(mailbox_id, set()).add(sub)
        return sub

    def subscribers(self, mailbox_id: int) -> int:
        return len(self._subs.get(mailbox_id, ()))

    def mailbox_changed(self, mailbox_id: int) -> None:
        """A mailbox changed (after commit). Safe to call from any thread."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody to wake
                loop.call_soon_threadsafe(self.mailbox_changed, mailbox_id)
            return
        self.local_events += 1
        self._dispatch(mailbox_id)
        if self._bridge is not None:
            self._bridge.publish(mailbox_id)

    def _dispatch(self, mailbox_id: int) -> None:
        for sub in list(self._subs.get(mailbox_id, ())):
            try:
                sub.callback(mailbox_id)
            except Exception:
                log.exception("mailbox change subscriber failed")


class _PgBridge:
    """LISTEN on one connection, NOTIFY (coalesced) on another."""

    def __init__(self, notifier: Notifier, url: str) -> None:
        self.notifier = notifier
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._pending: set[int] = set()
        self._listen_conn: Any = None
        self._send_conn: Any = None
        self._task: asyncio.Task[None] | None = None
        #: The running flush, if any: the loop keeps only a weak reference to a task, so an
        #: unreferenced one may be collected mid-flight; close() cancels it.
        self._flush_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="pg-listen")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def close(self) -> None:
        self._stop.set()
        for task in (self._flush_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for conn in (self._listen_conn, self._send_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    def publish(self, mailbox_id: int) -> None:
        self._pending.add(mailbox_id)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        import psycopg

        try:
            while self._pending:
                ids = sorted(self._pending)
                self._pending.clear()
                payloads: list[str] = []
                current = self.notifier.node_id + ":"
                for mid in ids:
                    piece = f"{mid},"
                    if len(current) + len(piece) > _MAX_PAYLOAD:
                        payloads.append(current.rstrip(","))
                        current = self.notifier.node_id + ":"
                    current += piece
                payloads.append(current.rstrip(","))
                if self._send_conn is None or self._send_conn.closed:
                    self._send_conn = await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True
                    )
                for payload in payloads:
                    await self._send_conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
        except Exception as exc:  # other nodes catch up on their next command
            log.warning("could not publish mailbox changes to other nodes: %s", exc)
            self._send_conn = None

    async def _listen_forever(self) -> None:
        import psycopg

        delay = 0.1
        while not self._stop.is_set():
            try:
                self._listen_conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                )
                await self._listen_conn.execute(f"LISTEN {CHANNEL}")
                self._ready.set()
                delay = 0.1
                async for note in self._listen_conn.notifies():
                    self._received(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect with a back-off
                if self._stop.is_set():
                    return
                log.warning("mailbox change listener lost its connection: %s", exc)
                self._ready.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _received(self, payload: str) -> None:
        node, _, ids = payload.partition(":")
        if node == self.notifier.node_id:
            return
        for text in ids.split(","):
            if text.isdigit():
                self.notifier.remote_events += 1
                self.notifier._dispatch(int(text))
