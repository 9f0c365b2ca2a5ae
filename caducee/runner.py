"""`caducee run`: start the configured services in one asyncio process, stop them cleanly.

On SIGTERM or SIGINT: stop accepting, let in-flight transactions commit, close the
connections with the protocol's goodbye, flush the database writer, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from audit.events import Action, AuditEvent
from caducee.config import Config
from caducee.context import Context
from caducee.tls import server_context, tune_asyncio_tls
from mailstore.auth import Authenticator, AuthStatus, RateLimiter
from mailstore.db import Tx
from mailstore.trust_refresh import TrustListRefresher
from policy.attachments import AttachmentLimits
from policy.decision import Reason
from smtp_gateway.delivery import DeliveryAgent
from smtp_gateway.dkim_sign import DkimSigner
from smtp_gateway.patient_send import PatientSender
from smtp_gateway.policy_gate import PolicyGate
from smtp_gateway.recipients import RecipientResolver
from smtp_gateway.smtp_server import start_submission
from smtp_gateway.submission import SubmissionHandler, SubmissionSettings

log = logging.getLogger("caducee.run")

ALL_SERVICES = ("submission",)


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

    async def close(self) -> None:
        grace = self.ctx.config.server.shutdown_grace
        await asyncio.gather(*(s.close(grace) for s in self.services.values()))
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
    """Append one event in its own (group-committed) write job, without waiting for it."""

    def sink(event: AuditEvent) -> None:
        fut = asyncio.ensure_future(
            ctx.db.write(lambda tx: ctx.journal.append(tx.conn, [event]))
        )
        fut.add_done_callback(_log_failure)

    return sink


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
    delivery = DeliveryAgent(
        db=ctx.db,
        keystore=ctx.keystore,
        hostname=cfg.server.hostname,
        signers=_signers(ctx),
        journal=ctx.journal,
    )
    resolver = RecipientResolver(ctx.db)
    expiry = cfg.policy.permission_expiry_days
    patient_sender = PatientSender(
        db=ctx.db, delivery=delivery, resolver=resolver, patient_domain=cfg.domains.patient,
        hostname=cfg.server.hostname, limits=attachment_limits(cfg),
        expiry=timedelta(days=expiry) if expiry else None,
    )
    platform = Platform(ctx, authenticator, delivery, patient_sender)
    tls = server_context(cfg.tls.cert, cfg.tls.key, cfg.tls.client_ca)
    sink = journal_sink(ctx)

    def on_refusal(actor: str, ip: str | None, reason: Reason, detail: str) -> None:
        sink(AuditEvent(action=Action.MESSAGE_REFUSED, actor=actor, outcome="refused",
                        reason=str(reason), client_ip=ip, protocol="smtp"))

    def on_login(who: str, ip: str | None, status: AuthStatus) -> None:
        ok = status is AuthStatus.OK
        sink(AuditEvent(
            action=Action.LOGIN_SUCCEEDED if ok else Action.LOGIN_FAILED, actor=who,
            outcome="ok" if ok else "refused", reason=None if ok else str(status),
            client_ip=ip, protocol="smtp",
        ))

    gate = PolicyGate(
        ctx.db,
        professional_domains=cfg.domains.professional,
        patient_domain=cfg.domains.patient,
        limits=attachment_limits(cfg),
    )
    await gate.start()
    platform.services["policy"] = gate
    if cfg.policy.trust_sources:
        refresher = TrustListRefresher(
            ctx.db, cfg.policy.trust_sources, period=cfg.policy.trust_refresh_seconds,
            base_dir=cfg.path.parent, ca_file=cfg.policy.trust_ca_file,
            on_change=gate.set_trusted,
        )
        refresher.start()
        platform.services["trust-refresh"] = _Stoppable(refresher.stop)

    if "submission" in services:
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
            on_login=on_login,
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
    return platform


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
    log.info("stopped")
    return 0


def _noop(tx: Tx) -> None:
    return None
