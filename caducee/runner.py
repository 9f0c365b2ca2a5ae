"""`caducee run`: start the configured services in one asyncio process, stop them cleanly.

On SIGTERM or SIGINT: stop accepting, let in-flight transactions commit, close the
connections with the protocol's goodbye, flush the database writer, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from audit.events import Action, AuditEvent
from caducee.config import Config
from caducee.context import Context
from caducee.tls import server_context, tune_asyncio_tls
from mailstore.auth import Authenticator, RateLimiter
from mailstore.db import Tx
from mailstore.notify import Notifier
from policy.attachments import AttachmentLimits
from policy.decision import Reason
from smtp_gateway.delivery import DeliveryAgent
from smtp_gateway.dkim_sign import DkimSigner
from smtp_gateway.patient_send import PatientSender
from smtp_gateway.policy_gate import PolicyGate
from smtp_gateway.recipients import RecipientResolver

if TYPE_CHECKING:
    from smtp_gateway.mx import DnsSettings
    from smtp_gateway.queue_runner import QueueRunner
    from smtp_gateway.smtp_server import SmtpService

# Each service's modules are imported when the service starts (below), so a node running
# only some services (``caducee run --services submission``) does not load the others'
# libraries (Starlette and uvicorn, dnspython and dkimpy, the IMAP server): measured,
# that is a third of an idle submission node's memory.

log = logging.getLogger("caducee.run")

ALL_SERVICES = ("submission", "imap", "web", "mta", "queue")


class Service(Protocol):
    async def close(self, grace: float = ...) -> None: ...


@dataclass
class Platform:
    """The running services of one process, and the shared objects they use."""

    ctx: Context
    authenticator: Authenticator
    delivery: DeliveryAgent
    patient_sender: PatientSender
    services: dict[str, Service] = field(default_factory=dict)
    ports: dict[str, list[int]] = field(default_factory=dict)

    notifier: Notifier | None = None

    async def close(self) -> None:
        grace = self.ctx.config.server.shutdown_grace
        last = self.services.pop("audit-checkpoints", None)
        await asyncio.gather(*(s.close(grace) for s in self.services.values()))
        if last is not None:  # sign the journal's head once everything else is done
            await last.close(grace)
        if self.notifier is not None:
            await self.notifier.close()
        self.authenticator.close()


def _signers(ctx: Context) -> dict[str, DkimSigner]:
    cfg = ctx.config
    if not cfg.dkim.enabled:
        return {}
    return {
        domain: DkimSigner.from_pem_file(cfg.dkim.key_file, domain, cfg.dkim.selector)
        for domain in [*cfg.domains.professional, cfg.domains.patient]
    }


def attachment_limits(cfg: Config) -> AttachmentLimits:
    p = cfg.policy
    return AttachmentLimits(
        max_message_size=p.max_message_size,
        max_attachment_size=p.max_attachment_size,
        zip_max_members=p.zip_max_members,
        zip_max_total_size=p.zip_max_total_size,
        zip_max_ratio=p.zip_max_ratio,
    )


@dataclass
class _Stoppable:
    stop: Callable[[], Awaitable[None]]

    async def close(self, grace: float = 0.0) -> None:
        await self.stop()


def journal_sink(ctx: Context) -> Callable[[AuditEvent], None]:
    """Append one event in its own (group-committed) write job, without waiting for it.

    With the journal off (``[audit] enabled = false``), no write job is submitted at all.
    """
    if not ctx.journal.enabled:
        return _discard

    def sink(event: AuditEvent) -> None:
        fut = asyncio.ensure_future(
            ctx.db.write(lambda tx: ctx.journal.append(tx.conn, [event]))
        )
        fut.add_done_callback(_log_failure)

    return sink


class RefusalRecorder(Protocol):
    def __call__(
        self, actor: str, ip: str | None, reason: Reason, detail: str, *,
        sender: str | None = None, recipient: str | None = None,
    ) -> None: ...


def refusal_recorder(sink: Callable[[AuditEvent], None], protocol: str) -> RefusalRecorder:
    """An edge's ``on_refusal``: one ``message.refused`` entry with the reason code and, when
    the edge passes them, the envelope addresses concerned (identifiers). The reply
    ``detail`` is never journaled: it may name an attachment (DOMAIN.md §8)."""

    def on_refusal(
        actor: str, ip: str | None, reason: Reason, detail: str, *,
        sender: str | None = None, recipient: str | None = None,
    ) -> None:
        objects = tuple(
            (kind, (value or "<>")[:320])
            for kind, value in (("sender", sender), ("recipient", recipient))
            if value is not None
        )
        sink(AuditEvent(action=Action.MESSAGE_REFUSED, actor=actor, outcome="refused",
                        reason=str(reason), client_ip=ip, protocol=protocol,
                        object_ids=objects))

    return on_refusal


def _discard(event: AuditEvent) -> None:
    return None


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("journal append failed", exc_info=fut.exception())


async def start_platform(ctx: Context, services: tuple[str, ...] = ALL_SERVICES) -> Platform:
    cfg = ctx.config
    tune_asyncio_tls()
    ctx.db.start()
    limiter = RateLimiter(
        max_failures=cfg.auth.max_failures,
        window=cfg.auth.window_seconds,
        lockout=cfg.auth.lockout_seconds,
    )
    authenticator = Authenticator(
        ctx.db,
        limiter=limiter,
        cache_seconds=cfg.auth.cache_seconds,
        max_concurrent_hashes=cfg.auth.max_concurrent_hashes,
    )
    notifier = Notifier()
    await notifier.start(cfg.database_url)
    delivery = DeliveryAgent(
        db=ctx.db,
        keystore=ctx.keystore,
        hostname=cfg.server.hostname,
        signers=_signers(ctx),
        journal=ctx.journal,
        notify=notifier.mailbox_changed,
        queue_max_age=timedelta(days=cfg.outbound.max_age_days),
    )
    resolver = RecipientResolver(ctx.db)
    gate = PolicyGate(
        ctx.db,
        professional_domains=cfg.domains.professional,
        patient_domain=cfg.domains.patient,
        limits=attachment_limits(cfg),
    )
    await gate.start()
    expiry = cfg.policy.permission_expiry_days
    patient_sender = PatientSender(
        db=ctx.db, delivery=delivery, trust_space=lambda: gate.space,
        patient_domain=cfg.domains.patient, hostname=cfg.server.hostname,
        limits=attachment_limits(cfg), expiry=timedelta(days=expiry) if expiry else None,
    )
    platform = Platform(ctx, authenticator, delivery, patient_sender, notifier=notifier)
    tls = server_context(cfg.tls.cert, cfg.tls.key, cfg.tls.client_ca)
    sink = journal_sink(ctx)

    on_refusal = refusal_recorder(sink, "smtp")

    platform.services["policy"] = gate
    if cfg.policy.trust_sources:
        from mailstore.trust_refresh import TrustListRefresher

        refresher = TrustListRefresher(
            ctx.db, cfg.policy.trust_sources, period=cfg.policy.trust_refresh_seconds,
            base_dir=cfg.path.parent, ca_file=cfg.policy.trust_ca_file,
            on_change=gate.set_trusted, journal=ctx.journal,
        )
        refresher.start()
        platform.services["trust-refresh"] = _Stoppable(refresher.stop)

    if "submission" in services:
        from smtp_gateway.smtp_server import start_submission
        from smtp_gateway.submission import SubmissionHandler, SubmissionSettings

        handler = SubmissionHandler(
            settings=SubmissionSettings(
                hostname=cfg.server.hostname,
                local_domains=frozenset([*cfg.domains.professional, cfg.domains.patient]),
                max_message_size=cfg.policy.max_message_size,
                max_recipients=cfg.submission.max_recipients,
            ),
            authenticator=authenticator,
            resolver=resolver,
            delivery=delivery,
            gate=gate,
            on_refusal=on_refusal,
            on_login=sink,
        )
        smtp = await start_submission(
            handler,
            hostname=cfg.server.hostname,
            tls_context=tls,
            starttls=[(a.host, a.port) for a in cfg.submission.listen],
            implicit=[(a.host, a.port) for a in cfg.submission.implicit_tls_listen],
            max_message_size=cfg.policy.max_message_size,
            idle_timeout=cfg.submission.idle_timeout,
        )
        platform.services["submission"] = smtp
        platform.ports["submission"] = smtp.ports
    if "imap" in services:
        from mailstore.imap.server import start_imap_server
        from mailstore.imap.session import ImapSettings

        imap = await start_imap_server(
            db=ctx.db, keystore=ctx.keystore, authenticator=authenticator, notifier=notifier,
            ssl_context=tls, listen=cfg.imap.listen,
            implicit_tls_listen=cfg.imap.implicit_tls_listen,
            journal=ctx.journal if ctx.journal.enabled else None,
            settings=ImapSettings.from_section(
                cfg.imap, hostname=cfg.server.hostname, patient_domain=cfg.domains.patient,
                submission_max=cfg.policy.max_message_size,
                attachment_limits=attachment_limits(cfg),
            ),
        )
        platform.services["imap"] = imap
        platform.ports["imap"] = [p for _, p in imap.addresses + imap.tls_addresses]
    if "web" in services:
        from webmail.server import create_app, start_web

        web = await start_web(
            create_app(ctx.db.engine, authenticator,
                       journal=sink if ctx.journal.enabled else None),
            listen=[(a.host, a.port) for a in cfg.web.listen], ssl_context=tls,
        )
        platform.services["web"] = web
        platform.ports["web"] = web.ports
    if "mta" in services:
        mta = await start_mta_service(ctx, gate, resolver, delivery, tls, sink)
        platform.services["mta"] = mta
        platform.ports["mta"] = mta.ports
    if "queue" in services:
        platform.services["queue"] = start_queue_service(ctx, delivery)
    platform.services["audit-checkpoints"] = JournalCheckpointer(
        ctx, cfg.audit.checkpoint_seconds
    ).start()
    return platform


class JournalCheckpointer:
    """Signs the journal's head now and then, and mirrors the signed checkpoints into the
    append-only file outside the database (docs/audit.md), so a quiet journal's tail is
    signed too; once more at shutdown."""

    def __init__(self, ctx: Context, period: float) -> None:
        self.ctx = ctx
        self.period = period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> JournalCheckpointer:
        if self.ctx.journal.signing_key is not None and self.period > 0:
            self._task = asyncio.create_task(self._loop(), name="audit-checkpoints")
        return self

    async def checkpoint(self) -> None:
        journal = self.ctx.journal
        await self.ctx.db.write(lambda tx: journal.checkpoint(tx.conn))
        await self.ctx.db.read(journal.sync_checkpoint_file)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.checkpoint()
            except Exception:
                log.exception("signing a journal checkpoint failed; will retry")

    async def close(self, grace: float = 0.0) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self.checkpoint()
        except Exception:
            log.exception("final journal checkpoint failed")


def _dns(cfg: Config) -> DnsSettings:
    from smtp_gateway.mx import DnsSettings

    return DnsSettings(tuple(cfg.outbound.dns_nameservers), cfg.outbound.dns_port)


async def start_mta_service(
    ctx: Context, gate: PolicyGate, resolver: RecipientResolver, delivery: DeliveryAgent,
    tls: ssl.SSLContext, sink: Callable[[AuditEvent], None],
) -> SmtpService:
    """The port-25 listener for other operators (smtp_gateway/mta.py)."""
    from smtp_gateway.dkim_verify import DkimVerifier
    from smtp_gateway.mta import MtaHandler, MtaSettings, start_mta

    cfg = ctx.config

    on_refusal = refusal_recorder(sink, "mta")

    handler = MtaHandler(
        settings=MtaSettings(
            hostname=cfg.server.hostname,
            local_domains=frozenset([*cfg.domains.professional, cfg.domains.patient]),
            max_message_size=cfg.policy.max_message_size,
            max_recipients=cfg.mta.max_recipients,
            require_peer_identity=(cfg.mta.require_client_certificate
                                   or cfg.policy.require_peer_identity),
            require_dkim=cfg.mta.require_dkim,
        ),
        resolver=resolver, delivery=delivery, gate=gate,
        verifier=DkimVerifier(_dns(cfg)), on_refusal=on_refusal,
    )
    return await start_mta(
        handler, hostname=cfg.server.hostname, tls_context=tls,
        listen=[(a.host, a.port) for a in cfg.mta.listen],
        max_message_size=cfg.policy.max_message_size, idle_timeout=cfg.mta.idle_timeout,
    )


def start_queue_service(ctx: Context, delivery: DeliveryAgent) -> QueueRunner:
    """The outbound queue runner (smtp_gateway/queue_runner.py), woken by new entries."""
    from smtp_gateway.mx import MxResolver
    from smtp_gateway.outbound_client import ClientSettings, client_tls_context
    from smtp_gateway.queue_runner import QueueRunner, RunnerSettings

    cfg = ctx.config
    out = cfg.outbound
    client = ClientSettings(
        hostname=cfg.server.hostname,
        tls_context=client_tls_context(out.tls_ca_file or cfg.tls.client_ca,
                                       cfg.tls.cert, cfg.tls.key),
        port=out.smtp_port, connect_timeout=out.connect_timeout,
        command_timeout=out.command_timeout,
    )
    runner = QueueRunner(
        db=ctx.db, keystore=ctx.keystore, delivery=delivery, mx=MxResolver(_dns(cfg)),
        client=client, journal=ctx.journal,
        settings=RunnerSettings(
            hostname=cfg.server.hostname, schedule=tuple(out.retry_schedule),
            lease=timedelta(seconds=out.lease_seconds), concurrency=out.concurrency,
        ),
    )
    delivery.on_queued = runner.wake
    runner.start()
    return runner


async def serve(
    ctx: Context,
    services: tuple[str, ...] = ALL_SERVICES,
    on_ready: Callable[[Platform], Awaitable[None] | None] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    platform = await start_platform(ctx, services)
    log.info("ready", extra={"services": ",".join(platform.services), **{
        f"{name}_ports": ",".join(map(str, ports)) for name, ports in platform.ports.items()
    }})
    if on_ready is not None:
        result = on_ready(platform)
        if result is not None:
            await result
    await stop.wait()
    log.info("stopping: finishing in-flight transactions")
    await platform.close()
    await ctx.db.write(lambda tx: _noop(tx))  # flush: every queued write committed
    log.info("stopped", extra={"commits": ctx.db.commits, "jobs": ctx.db.jobs_committed})
    return 0


def _noop(tx: Tx) -> None:
    return None
