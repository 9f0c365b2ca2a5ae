"""The MTA listener: mail from the other operators of the trust space (ARCHITECTURE.md §2
flow 2; port 25, demo port base+25).

aiosmtpd with the submission service's protocol class (:class:`CaduceeSMTP`), configured
for server-to-server mail:

* STARTTLS required before MAIL (RFC 3207 §4: ``530 5.7.0``); no AUTH (``502``): operators
  are identified by their **client certificate** (mutual TLS, DOMAIN.md §1), requested at
  the handshake, verified against the trust anchors and, by default, required.
* ``MAIL FROM``: the sender's domain must be trusted, never one of ours, and the names of
  the peer's certificate must be in the trust space
  (:func:`policy.recipients.check_inbound_origin`).
* ``RCPT TO``: local recipients only (``550 5.1.1`` unknown, ``554 5.7.1`` relay denied).
  A patient receives only from a sender the directory lists as a referenced professional
  (DOMAIN.md §5), and that message opens the conversation as one from submission does.
* ``DATA``: the shared checks (:func:`smtp_gateway.smtp_edge.check_data`); every ``From:``
  and ``Sender:`` address (RFC 5322 §3.6.2) must be in a trusted domain and not in one of
  ours (:func:`policy.inbound.check_header_origin`: ``550 5.7.1`` / ``553 5.7.1``); then
  every DKIM signature is verified (:mod:`smtp_gateway.dkim_verify`), and without a passing
  signature aligned with each ``From:`` domain (:func:`policy.inbound.check_dkim_alignment`,
  RFC 7489 §3.1.1 relaxed, siblings excluded) the message is refused ``550 5.7.20``
  (RFC 7372 §3.1; configurable); attachments are checked by content; an
  ``Authentication-Results`` field (RFC 8601) and a ``Received`` field are prepended; then
  the one durable path, ``250`` after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from directory import lookup as directory_lookup
from policy import inbound as inbound_rules
from policy import recipients as recipient_rules
from policy.decision import Reason
from policy.directory_facts import DirectoryEntry
from policy.patients import grants_permission
from smtp_gateway import replies
from smtp_gateway.delivery import DeliveryAgent, Incoming, LocalRecipient
from smtp_gateway.dkim_verify import DkimVerifier, strip_forged
from smtp_gateway.policy_gate import PolicyGate, header_addresses_by_field
from smtp_gateway.recipients import RecipientResolver
from smtp_gateway.smtp_edge import (
    RefusalHook,
    certificate_names,
    check_data,
    client_ip,
    exception_reply,
    peer_certificate,
    ssl_info,
)
from smtp_gateway.smtp_server import SmtpService, start_smtp_service
from smtp_gateway.trace import received_header

log = logging.getLogger(__name__)

ACTOR = "service:mta"


@dataclass
class MtaSettings:
    hostname: str
    local_domains: frozenset[str]
    max_message_size: int = 20 * 1024 * 1024
    max_recipients: int = 100
    #: The peer must present a verified certificate naming a trusted domain.
    require_peer_identity: bool = True
    #: Refuse a message without a passing DKIM signature of the sender's domain.
    require_dkim: bool = True


@dataclass
class InboundState:
    """Per-transaction state beside aiosmtpd's Envelope."""

    local: list[LocalRecipient] = field(default_factory=list)
    #: The directory's entry for the envelope sender (another operator's professional).
    sender: DirectoryEntry | None = None


class MtaHandler:
    """aiosmtpd handler for the MTA service."""

    def __init__(
        self,
        *,
        settings: MtaSettings,
        resolver: RecipientResolver,
        delivery: DeliveryAgent,
        gate: PolicyGate,
        verifier: DkimVerifier,
        on_refusal: RefusalHook | None = None,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.delivery = delivery
        self.gate = gate
        self.verifier = verifier
        self.on_refusal = on_refusal

    @staticmethod
    def state(envelope: Envelope) -> InboundState:
        st = getattr(envelope, "caducee_inbound", None)
        if st is None:
            st = InboundState()
            envelope.caducee_inbound = st  # type: ignore[attr-defined]
        return st

    def _refuse(
        self, session: Session, actor: str, reason: Reason, detail: str = "", *,
        recipient: str | None = None,
    ) -> str:
        """Answer a refusal; ``actor`` is the envelope sender (the operator's mailbox)."""
        if self.on_refusal is not None:
            self.on_refusal(actor or ACTOR, client_ip(session), reason, detail,
                            sender=actor, recipient=recipient)
        log.info("inbound refused: %s %s", reason, detail, extra={"client_ip": client_ip(session)})
        shown = detail if reason in (Reason.ATTACHMENT_TYPE_REFUSED,
                                     Reason.MESSAGE_TOO_LARGE) else ""
        return replies.for_reason(reason, shown)

    # -- EHLO ------------------------------------------------------------------------------

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        """RFC 5321 §4.1.1.1: our extensions; no AUTH between operators."""
        session.host_name = hostname
        out = []
        for line in responses:
            if line.startswith("250-AUTH"):
                continue
            if line == "250 HELP":
                out += ["250-ENHANCEDSTATUSCODES", "250-PIPELINING", "250 HELP"]
                continue
            out.append(line)
        return out

    # -- MAIL, RCPT ------------------------------------------------------------------------

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        names = certificate_names(peer_certificate(server, session))
        decision = recipient_rules.check_inbound_origin(
            address, space=self.gate.space, peer_names=names,
            require_peer_identity=self.settings.require_peer_identity,
        )
        if not decision:
            return self._refuse(session, address, decision.reason, decision.detail)
        state = self.state(envelope)
        state.local.clear()
        state.sender = None
        if address:
            state.sender = await self.gate.db.read(
                lambda conn: directory_lookup.mailbox_fact(conn, address)
            )
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.R250_SENDER_OK.line()

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        state = self.state(envelope)
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return replies.R452_TOO_MANY_RECIPIENTS.line()
        domain = address.rpartition("@")[2].lower()
        local: LocalRecipient | None = None
        if domain in self.settings.local_domains:
            local = await self.resolver.resolve(address)
        decision = recipient_rules.check_recipient(
            address, channel=recipient_rules.Channel.INBOUND, space=self.gate.space,
            local=local.mailbox() if local is not None else None,
        )
        sender = envelope.mail_from or ""
        if not decision:
            return self._refuse(session, sender, decision.reason, decision.detail,
                                recipient=address)
        if local is None:  # INBOUND allows local recipients only; defensive
            return self._refuse(session, sender, Reason.UNKNOWN_RECIPIENT, address,
                                recipient=address)
        if local.kind == "patient" and not grants_permission(state.sender,
                                                            sender_is_patient=False):
            # DOMAIN.md §5: only a professional writes first to a patient.
            return self._refuse(session, sender, Reason.SENDER_NOT_REFERENCED, address,
                                recipient=address)
        if any(r.account_id == local.account_id for r in state.local):
            return replies.R250_RECIPIENT_OK.line()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        state.local.append(local)
        return replies.R250_RECIPIENT_OK.line()

    async def handle_RSET(self, server: Any, session: Session, envelope: Envelope) -> str:
        return replies.R250_OK.line()

    async def handle_NOOP(self, server: Any, session: Session, envelope: Envelope, arg: str) -> str:
        return replies.R250_OK.line()

    async def handle_VRFY(
        self, server: Any, session: Session, envelope: Envelope, address: str
    ) -> str:
        return "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"

    # -- DATA ------------------------------------------------------------------------------

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = check_data(envelope, self.settings.max_message_size)
        if isinstance(raw, str):
            return raw
        state = self.state(envelope)
        sender = envelope.mail_from or ""
        fields = header_addresses_by_field(raw, "from", "sender")
        authors = fields["from"]
        origin = inbound_rules.check_header_origin(
            authors, fields["sender"], space=self.gate.space
        )
        if not origin:
            return self._refuse(session, sender, origin.reason, origin.detail)
        loop = asyncio.get_running_loop()
        verification = await loop.run_in_executor(None, self.verifier.verify, raw)
        if self.settings.require_dkim:
            alignment = inbound_rules.check_dkim_alignment(
                authors, verification.passing_domains()
            )
            if not alignment:
                passing = ",".join(sorted(verification.passing_domains())) or "none"
                return self._refuse(session, sender, alignment.reason,
                                    f"From: {alignment.detail}; passing d= {passing}")
        content = await self.gate.check_content(raw, state.local)
        if not content:
            return self._refuse(session, sender, content.reason, content.detail)
        hostname = self.settings.hostname
        raw = strip_forged(raw, hostname)
        tls = ssl_info(server)
        incoming = Incoming(
            raw=raw,
            mail_from=sender,
            recipients=tuple(state.local),
            actor=sender or ACTOR,
            protocol="mta",
            client_ip=client_ip(session),
            sign=False,
            patient_contact=grants_permission(state.sender, sender_is_patient=False),
        )
        trace = verification.header(hostname) + received_header(
            helo=session.host_name or "unknown",
            client_ip=incoming.client_ip,
            hostname=hostname,
            protocol="ESMTPS" if tls else "ESMTP",
            queue_id=incoming.queue_id,
            tls_version=tls[0] if tls else None,
            cipher=tls[1] if tls else None,
            recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None,
        )
        incoming = Incoming(**{**incoming.__dict__, "trace": trace})
        delivered = await self.delivery.deliver(incoming)
        log.info(
            "inbound message accepted",
            extra={"queue_id": delivered.queue_id, "recipients": len(state.local),
                   "size": delivered.size, "client_ip": incoming.client_ip},
        )
        return f"{replies.R250_QUEUED.line()} {delivered.queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        return exception_reply(error)


async def start_mta(
    handler: MtaHandler,
    *,
    hostname: str,
    tls_context: Any,
    listen: Sequence[tuple[str, int]],
    max_message_size: int,
    idle_timeout: float = 300.0,
) -> SmtpService:
    """Listen for other operators (STARTTLS, no AUTH)."""
    return await start_smtp_service(
        "mta", handler, hostname=hostname, tls_context=tls_context, starttls=listen,
        max_message_size=max_message_size, idle_timeout=idle_timeout, auth=False,
    )

