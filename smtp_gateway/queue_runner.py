"""The queue runner: hands queued messages to other operators (ARCHITECTURE.md §2 flow 5).

One loop per process running the ``queue`` service:

1. **claim** the due entries (a lease, :func:`smtp_gateway.queue_store.claim`);
2. **group** them by destination domain, and deliver the groups concurrently (bounded);
3. per domain: **MX lookup** (:mod:`smtp_gateway.mx`), then the hosts by preference; one
   verified STARTTLS session per host carries every message of the group
   (:mod:`smtp_gateway.outbound_client`);
4. **record** each recipient's outcome in one write job with its journal entry: relayed
   (the entry is removed), deferred (4xx, network, DNS: next attempt on the schedule), or
   bounced (5xx, null MX, or expiry after ``max_age``): a DSN (:mod:`smtp_gateway.dsn`) is
   stored in the local sender's INBOX through the one durable path, in the transaction
   that removes the entries. Never a DSN about a DSN or a message with a null sender.
5. **sleep** until the next entry is due, or until :meth:`QueueRunner.wake` — called after
   the commit that queued a new entry. No polling, except a long safety net
   (``max_sleep``) for entries queued or retried by another process.

The schedule (RFC 5321 §4.5.4.1: retry at least 30 minutes apart, give up after 4–5 days;
we start faster, as Postfix does): by default 1 min, 5 min, 15 min, 1 h, then every 2 h,
for 5 days.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection

from audit.events import Action, AuditEvent
from mailstore.db import Database, Tx
from mailstore.keystore import KeyStore
from smtp_gateway import queue_store
from smtp_gateway.delivery import DeliveryAgent, Incoming, JournalLike
from smtp_gateway.dsn import FailedRecipient, build_dsn, is_dsn
from smtp_gateway.mx import DnsPermanentError, DnsTemporaryError, MxHost
from smtp_gateway.outbound_client import (
    ClientSettings,
    HostFailure,
    OutboundConnection,
    OutboundMessage,
    RecipientResult,
    Status,
)
from smtp_gateway.queue_store import Entry
from smtp_gateway.recipients import lookup as lookup_local
from smtp_gateway.trace import find_message_id

log = logging.getLogger(__name__)

ACTOR = "service:queue"

#: 1 min, 5 min, 15 min, 1 h, then every 2 h (the last step repeats).
DEFAULT_SCHEDULE: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 7200.0)


class MxLookup(Protocol):
    async def hosts(self, domain: str) -> list[MxHost]: ...


def _default_owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunnerSettings:
    #: Our host name (DSN ``Reporting-MTA``).
    hostname: str
    #: Seconds to wait after the 1st, 2nd… temporary failure; the last value repeats.
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    #: How long a claimed entry belongs to this node before another may take it.
    lease: timedelta = timedelta(minutes=15)
    #: Destination domains delivered at once.
    concurrency: int = 10
    #: Entries claimed per round.
    batch: int = 100
    #: Longest sleep without a wake-up (entries queued by another process).
    max_sleep: float = 60.0
    owner: str = field(default_factory=_default_owner)


def retry_delay(failures: int, schedule: Sequence[float]) -> timedelta:
    """The wait after the ``failures``-th temporary failure (1-based)."""
    if not schedule:
        raise ValueError("the retry schedule is empty")
    return timedelta(seconds=schedule[min(max(failures, 1), len(schedule)) - 1])


@dataclass
class _Outcome:
    entry: Entry
    result: RecipientResult


class QueueRunner:
    """Claims, delivers and retries queue entries; one per process running ``queue``."""

    def __init__(
        self,
        *,
        db: Database,
        keystore: KeyStore,
        delivery: DeliveryAgent,
        mx: MxLookup,
        client: ClientSettings,
        settings: RunnerSettings,
        journal: JournalLike | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        connect: Callable[[ClientSettings, MxHost], Awaitable[OutboundConnection]] = (
            OutboundConnection.open
        ),
    ) -> None:
        self.db = db
        self.keystore = keystore
        self.delivery = delivery
        self.mx = mx
        self.client = client
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.connect = connect
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Entries claimed in the current round and not yet recorded (released on stop).
        self._in_flight: dict[int, Entry] = {}
        #: Counters (tests, metrics).
        self.relayed = 0
        self.deferred = 0
        self.bounced = 0
        self.rounds = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="queue-runner")

    def wake(self) -> None:
        """Deliver now (safe from any thread: after-commit callbacks of ``write_sync``)."""
        loop = self._loop
        if loop is None:
            self._wake.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody to wake
                loop.call_soon_threadsafe(self._wake.set)

    async def close(self, grace: float = 30.0) -> None:
        """Finish the round in progress (up to ``grace`` seconds), then stop; entries not
        finished are given back, due at once."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = list(self._in_flight.values())
        self._in_flight.clear()
        if left:
            now = self.clock()
            try:
                await self.db.write(lambda tx: queue_store.release(
                    tx.conn, left, at=now, owner=self.settings.owner))
            except Exception:
                log.warning("could not give back %d leased entries; their lease will expire",
                            len(left))

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("queue round failed")
                claimed = 0
                await self._sleep(5.0)
                continue
            if claimed or self._stopping:
                continue
            await self._sleep(await self._delay())

    async def _delay(self) -> float:
        due = await self.db.read(queue_store.next_due)
        if due is None:
            return self.settings.max_sleep
        seconds = (due - self.clock()).total_seconds()
        # Due but not claimable (another node holds it): look again a little later.
        return min(max(seconds, 0.5), self.settings.max_sleep)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    # -- one round -----------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim the due entries and try each once; return how many were claimed."""
        now = self.clock()
        s = self.settings
        entries = await self.db.write(
            lambda tx: queue_store.claim(
                tx.conn, now=now, lease=s.lease, owner=s.owner, limit=s.batch
            )
        )
        self.rounds += 1
        if not entries:
            return 0
        self._in_flight.update({e.id: e for e in entries})
        by_domain: dict[str, list[Entry]] = defaultdict(list)
        for e in entries:
            by_domain[e.domain].append(e)
        limit = asyncio.Semaphore(max(1, s.concurrency))

        async def one(domain: str, group: list[Entry]) -> None:
            async with limit:
                await self._deliver_domain(domain, group)

        await asyncio.gather(*(one(d, g) for d, g in by_domain.items()))
        return len(entries)

    async def _deliver_domain(self, domain: str, entries: list[Entry]) -> None:
        outcomes: list[_Outcome] = []
        try:
            hosts = await self.mx.hosts(domain)
        except DnsPermanentError as exc:
            outcomes = [_Outcome(e, RecipientResult(e.recipient, Status.PERMANENT, 0,
                                                    exc.enhanced, str(exc)))
                        for e in entries]
        except DnsTemporaryError as exc:
            outcomes = [_Outcome(e, RecipientResult(e.recipient, Status.TEMPORARY, 0, "4.4.3",
                                                    f"DNS: {exc}"))
                        for e in entries]
        else:
            outcomes = await self._deliver_to_hosts(hosts, entries)
        await self._record(outcomes)

    async def _deliver_to_hosts(
        self, hosts: list[MxHost], entries: list[Entry]
    ) -> list[_Outcome]:
        by_message: dict[str, list[Entry]] = defaultdict(list)
        for e in entries:
            by_message[e.message_ref].append(e)
        pending = dict(by_message)
        outcomes: list[_Outcome] = []
        last_failure: HostFailure | None = None
        bodies: dict[str, bytes] = {}
        for host in hosts:  # RFC 5321 §5.1: by preference, next host if one fails
            if not pending:
                break
            try:
                conn = await self.connect(self.client, host)
            except HostFailure as exc:
                log.info("outbound host failed: %s", exc)
                last_failure = exc
                continue
            try:
                for ref in list(pending):
                    group = await self._still_leased(pending[ref])
                    if not group:
                        del pending[ref]
                        continue
                    pending[ref] = group
                    if ref not in bodies:
                        bodies[ref] = await self._read_body(ref)
                    first = group[0]
                    results = await conn.send(OutboundMessage(
                        sender=first.sender, recipients=[e.recipient for e in group],
                        raw=bodies[ref], smtputf8=first.smtputf8, eight_bit=first.eight_bit,
                    ))
                    if conn.broken and all(r.status is Status.TEMPORARY and not r.code
                                           for r in results):
                        break  # the session died before answering: try the next host
                    outcomes += _pair(group, results)
                    del pending[ref]
                    if conn.broken:
                        break
            finally:
                await conn.close()
        for group in pending.values():
            for e in group:
                if last_failure is not None and last_failure.permanent:
                    result = RecipientResult(e.recipient, Status.PERMANENT, last_failure.code,
                                             "5.0.0", str(last_failure))
                else:
                    text = str(last_failure) if last_failure else "no host could be reached"
                    result = RecipientResult(e.recipient, Status.TEMPORARY, 0, "4.4.1", text)
                outcomes.append(_Outcome(e, result))
        return outcomes

    async def _still_leased(self, group: list[Entry]) -> list[Entry]:
        """The entries of ``group`` still leased to us, the lease renewed when half spent.

        A round can outlive its lease (a slow peer: ``command_timeout`` is minutes per
        command). Once the lease has run out another node may claim the entries; sending
        them from here as well would deliver them twice (or read a message the other node
        already removed). So before each message, past half the lease, it is renewed in
        the database, and what another node took over is left to it."""
        now = self.clock()
        lease = self.settings.lease
        ends = [self._in_flight[e.id].next_attempt if e.id in self._in_flight else now
                for e in group]
        if all(now < end - lease / 2 for end in ends):
            return group
        ours = await self.db.write(lambda tx: queue_store.renew(
            tx.conn, group, now=now, lease=lease, owner=self.settings.owner))
        kept: list[Entry] = []
        for e in group:
            if e.id in ours:
                self._in_flight[e.id] = replace(e, next_attempt=now + lease)
                kept.append(e)
            else:
                self._in_flight.pop(e.id, None)
                log.warning("lease lost: another node has the entry now",
                            extra={"queue_id": e.queue_id, "entry": e.id})
        return kept

    async def _read_body(self, ref: str) -> bytes:
        def read(conn: Connection) -> bytes:
            return queue_store.read_body(conn, self.keystore, ref)

        return await self.db.read(read)

    # -- recording outcomes ----------------------------------------------------------------

    async def _record(self, outcomes: list[_Outcome]) -> None:
        now = self.clock()
        sent = [o for o in outcomes if o.result.status is Status.SENT]
        deferred: list[_Outcome] = []
        bounced: list[_Outcome] = []
        for o in outcomes:
            if o.result.status is Status.PERMANENT:
                bounced.append(o)
            elif o.result.status is Status.TEMPORARY:
                (bounced if now >= o.entry.expires_at else deferred).append(o)
        schedule = self.settings.schedule

        def job(tx: Tx) -> None:
            queue_store.finish(tx.conn, [o.entry for o in sent])
            for o in deferred:
                wait = retry_delay(o.entry.attempts + 1, schedule)
                queue_store.defer(tx.conn, o.entry, now=now, next_attempt=now + wait,
                                  error=o.result.error, owner=self.settings.owner)
            if self.journal is not None:
                events = [_event(Action.MESSAGE_RELAYED, o, now) for o in sent]
                events += [_event(Action.MESSAGE_DEFERRED, o, now) for o in deferred]
                self.journal.append(tx.conn, events)

        if sent or deferred:
            await self.db.write(job)
        for o in [*sent, *deferred]:
            self._in_flight.pop(o.entry.id, None)
        for o in sent:
            log.info("relayed", extra={"queue_id": o.entry.queue_id,
                                       "remote": o.result.remote_host})
        for o in deferred:
            log.info("deferred: %s", o.result.error, extra={"queue_id": o.entry.queue_id})
        self.relayed += len(sent)
        self.deferred += len(deferred)
        by_message: dict[str, list[_Outcome]] = defaultdict(list)
        for o in bounced:
            by_message[o.entry.message_ref].append(o)
        for group in by_message.values():
            await self._bounce(group, now)

    async def _bounce(self, group: list[_Outcome], now: datetime) -> None:
        """Remove the failed entries of one message, journal it, and tell the sender with a
        DSN in the same transaction (none for a null sender or a DSN)."""
        first = group[0].entry
        entries = [o.entry for o in group]
        expired = {o.entry.id for o in group if o.result.status is Status.TEMPORARY}
        events = [_event(Action.MESSAGE_BOUNCED, o, now) for o in group]

        def finish(tx: Tx) -> None:
            queue_store.finish(tx.conn, entries)
            if self.journal is not None:
                self.journal.append(tx.conn, events)

        local = None
        raw = b""
        if first.sender:
            raw = await self._read_body(first.message_ref)
            if not is_dsn(raw):
                local = await self.db.read(lambda c: lookup_local(c, first.sender))
        if local is None:
            await self.db.write(finish)
        else:
            failed = [_failed_recipient(o, o.entry.id in expired) for o in group]
            dsn = build_dsn(original=raw, sender=first.sender, hostname=self.settings.hostname,
                            arrival=first.created_at, failed=failed, now=now,
                            queue_id=first.queue_id)
            dsn_id = find_message_id(dsn)
            dsn_event = AuditEvent(
                action=Action.DSN_SENT, actor=ACTOR, message_id=dsn_id,
                queue_id=first.queue_id, protocol="queue", at=now,
                object_ids=(("recipient", first.sender),
                            ("original_message_id", first.message_id)),
            )

            def finish_with_dsn(tx: Tx) -> None:
                finish(tx)
                if self.journal is not None:
                    self.journal.append(tx.conn, [dsn_event])

            await self.delivery.deliver(
                Incoming(raw=dsn, mail_from="", recipients=(local,), actor=ACTOR,
                         protocol="queue", sign=False),
                also=finish_with_dsn,
            )
        for e in entries:
            self._in_flight.pop(e.id, None)
        self.bounced += len(entries)
        log.info("bounced %d recipient(s)%s", len(entries), "" if local else " (no DSN)",
                 extra={"queue_id": first.queue_id})


def _pair(group: list[Entry], results: list[RecipientResult]) -> list[_Outcome]:
    by_rcpt = {r.recipient: r for r in results}
    return [_Outcome(e, by_rcpt[e.recipient]) for e in group]


def _failed_recipient(o: _Outcome, expired: bool) -> FailedRecipient:
    r = o.result
    if expired:
        return FailedRecipient(
            recipient=o.entry.recipient, status="4.4.7", remote_mta=r.remote_host,
            smtp_reply=r.reply,
            explanation="délai de distribution dépassé (message expired): " + r.error,
            last_attempt=o.entry.last_attempt_at,
        )
    status = r.enhanced if r.enhanced.startswith("5.") else "5.0.0"
    return FailedRecipient(
        recipient=o.entry.recipient, status=status, remote_mta=r.remote_host,
        smtp_reply=r.reply, explanation=r.text, last_attempt=None,
    )


def _event(action: Action, o: _Outcome, now: datetime) -> AuditEvent:
    r = o.result
    ids: list[tuple[str, str]] = [("recipient", o.entry.recipient)]
    if r.remote_host:
        ids.append(("remote_mta", r.remote_host))
    ids.append(("attempt", str(o.entry.attempts + 1)))
    if action is Action.MESSAGE_RELAYED:
        outcome, reason = "ok", None
    elif action is Action.MESSAGE_DEFERRED:
        outcome, reason = "failed", _reason(r)
    else:
        outcome = "refused" if r.status is Status.PERMANENT else "failed"
        reason = _reason(r) if r.status is Status.PERMANENT else "expired"
    return AuditEvent(
        action=action, actor=ACTOR, outcome=outcome, reason=reason,
        message_id=o.entry.message_id, queue_id=o.entry.queue_id, protocol="smtp",
        object_ids=tuple(ids), at=now,
    )


def _reason(r: RecipientResult) -> str:
    """A short, content-free reason: the reply code and enhanced code, or the failure kind."""
    if r.code:
        return f"{r.code} {r.enhanced}".strip()[:64]
    return (r.enhanced or "network")[:64]
