"""Message submission for professionals (RFC 6409) on top of aiosmtpd.

One coroutine hook per SMTP command; every hook that can accept something is implemented
(aiosmtpd's defaults would answer ``250`` and drop the message). Rules:

* AUTH PLAIN / LOGIN (RFC 4954, RFC 4616) only over TLS, checked by the shared
  :class:`~mailstore.auth.Authenticator` (argon2id off the loop, cache, rate limit);
  AUTH EXTERNAL (RFC 4422 Appendix A) with a verified client certificate.
* MAIL FROM must be an address owned by the authenticated account (RFC 6409 §6.1).
* RCPT TO: local recipients must exist (``550 5.1.1``); remote recipients must be in a
  trusted domain of the trust space (``550 5.7.1`` otherwise) and are queued for the
  outbound queue (docs/outbound.md).
* DATA: NUL bytes, bare CR and undeclared 8-bit data are refused, bare LF is stored as
  CRLF (:func:`smtp_gateway.smtp_edge.check_data`); then the message goes through the one
  durable path (stored for local recipients, queued for remote ones) and ``250`` is sent
  only after the commit.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiosmtpd.smtp import MISSING, AuthResult, Envelope, Session

from audit.events import AuditEvent
from mailstore.accounts import Account
from mailstore.auth import (
    Authenticator,
    AuthOutcome,
    AuthStatus,
    certificate_identity,
    login_entry,
)
from mailstore.tables import PATIENT
from policy.decision import Decision, Reason
from smtp_gateway import replies
from smtp_gateway.delivery import DeliveryAgent, Incoming, LocalRecipient
from smtp_gateway.recipients import RecipientResolver
from smtp_gateway.smtp_edge import (
    RefusalHook,
    check_data,
    exception_reply,
    peer_certificate,
    ssl_info,
)
from smtp_gateway.smtp_edge import client_ip as session_client_ip
from smtp_gateway.trace import received_header

log = logging.getLogger(__name__)

#: Accounts that may not submit (RFC 6409): patients write through the web.
_REFUSED_KINDS = {PATIENT: "patient_smtp_refused"}

class SubmissionPolicy(Protocol):
    """The rules the submission service applies (:class:`smtp_gateway.policy_gate.PolicyGate`)."""

    async def on_mail(self, account: Account, mail_from: str) -> Decision: ...

    async def on_rcpt(
        self, account: Account, address: str, local: LocalRecipient | None
    ) -> Decision: ...

    async def on_data(
        self, account: Account, raw: bytes, recipients: Sequence[LocalRecipient]
    ) -> Decision: ...

    async def grants_patient_contact(self, account: Account) -> bool: ...


@dataclass
class SubmissionSettings:
    hostname: str
    local_domains: frozenset[str]
    max_message_size: int = 20 * 1024 * 1024
    max_recipients: int = 100


@dataclass
class TxState:
    """Per-transaction state kept beside aiosmtpd's Envelope."""

    local: list[LocalRecipient] = field(default_factory=list)
    #: Recipients in trusted domains of other operators (queued).
    remote: list[str] = field(default_factory=list)


class SubmissionHandler:
    """aiosmtpd handler for the submission service (ports 587 and 465)."""

    def __init__(
        self,
        *,
        settings: SubmissionSettings,
        authenticator: Authenticator,
        resolver: RecipientResolver,
        delivery: DeliveryAgent,
        gate: SubmissionPolicy,
        on_refusal: RefusalHook | None = None,
        on_login: Callable[[AuditEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.resolver = resolver
        self.delivery = delivery
        self.gate = gate
        self.on_refusal = on_refusal
        self.on_login = on_login
        #: Transactions between the end of DATA and the reply (for graceful shutdown).
        self.in_flight = 0

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def client_ip(session: Session) -> str | None:
        return session_client_ip(session)

    @staticmethod
    def account_of(session: Session) -> Any:
        return session.auth_data

    @staticmethod
    def tx_state(envelope: Envelope) -> TxState:
        state = getattr(envelope, "caducee", None)
        if state is None:
            state = TxState()
            envelope.caducee = state  # type: ignore[attr-defined]
        return state

    def _refuse(
        self, session: Session, reason: Reason, detail: str = "", *,
        sender: str | None = None, recipient: str | None = None,
    ) -> str:
        acc = self.account_of(session)
        if self.on_refusal is not None:
            actor = acc.address if acc is not None else "anonymous"
            self.on_refusal(actor, self.client_ip(session), reason, detail,
                            sender=sender, recipient=recipient)
        return replies.for_reason(reason, detail)

    # -- EHLO ------------------------------------------------------------------------------

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        """RFC 5321 §4.1.1.1 plus our extensions; EXTERNAL only with a verified certificate."""
        session.host_name = hostname
        out = []
        for line in responses:
            if line.startswith("250-AUTH "):
                mechs = line[len("250-AUTH ") :].split()
                if not peer_certificate(server, session):
                    mechs = [m for m in mechs if m != "EXTERNAL"]
                line = "250-AUTH " + " ".join(mechs)
            if line == "250 HELP":
                out += ["250-ENHANCEDSTATUSCODES", "250-PIPELINING", "250 HELP"]
                continue
            out.append(line)
        return out

    # -- AUTH (RFC 4954) -------------------------------------------------------------------

    async def auth_PLAIN(self, server: Any, args: list[str]) -> AuthResult:
        """RFC 4616: ``[authzid] NUL authcid NUL passwd``."""
        if len(args) == 1:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await server.push("501 5.5.2 Cannot split the PLAIN credentials")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            await server.push("535 5.7.8 Authorization identity must match the login")
            return AuthResult(success=False, handled=True)
        return await self._password_login(server, login, password)

    async def auth_LOGIN(self, server: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await server.challenge_auth("Username:")
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._password_login(server, login, password)

    async def auth_EXTERNAL(self, server: Any, args: list[str]) -> AuthResult:
        """RFC 4422 Appendix A: the identity is the verified client certificate's."""
        session: Session = server.session
        identity = certificate_identity(peer_certificate(server, session))
        if identity is None:
            await server.push("535 5.7.8 No verified client certificate")
            return AuthResult(success=False, handled=True)
        outcome = await self.authenticator.verify_certificate(identity, self.client_ip(session))
        return await self._finish_login(server, identity, outcome)

    async def _password_login(self, server: Any, login: bytes, password: bytes) -> AuthResult:
        session: Session = server.session
        try:
            address = login.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            await server.push("501 5.5.4 Credentials must be UTF-8")
            return AuthResult(success=False, handled=True)
        outcome = await self.authenticator.verify_password(
            address, secret, self.client_ip(session)
        )
        return await self._finish_login(server, address, outcome)

    async def _finish_login(self, server: Any, who: str, outcome: AuthOutcome) -> AuthResult:
        session: Session = server.session
        ip = self.client_ip(session)
        if self.on_login is not None:
            self.on_login(login_entry(outcome, who, client_ip=ip, protocol="smtp",
                                      refused_kinds=_REFUSED_KINDS))
        if outcome.status is AuthStatus.RATE_LIMITED:
            await server.push(replies.R421_RATE_LIMITED.line())
            server.transport.close()
            return AuthResult(success=False, handled=True)
        if outcome.status is AuthStatus.OK and outcome.account is not None:
            if outcome.account.kind in _REFUSED_KINDS:
                await server.push(replies.R535_PATIENT_NO_SUBMISSION.line())
                return AuthResult(success=False, handled=True)
            log.info("smtp login", extra={"account": outcome.account.address, "client_ip": ip})
            return AuthResult(success=True, handled=False, auth_data=outcome.account)
        return AuthResult(success=False, handled=False)

    # -- MAIL, RCPT ------------------------------------------------------------------------

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        acc = self.account_of(session)
        if acc is None:  # aiosmtpd's auth_required already answered; defensive
            return replies.R530_AUTH_REQUIRED.line()
        decision = await self.gate.on_mail(acc, address)
        if not decision:
            return self._refuse(session, decision.reason, _reply_detail(decision),
                                sender=address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        state = self.tx_state(envelope)
        state.local.clear()
        state.remote.clear()
        return replies.R250_SENDER_OK.line()

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        state = self.tx_state(envelope)
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return replies.R452_TOO_MANY_RECIPIENTS.line()
        domain = address.rpartition("@")[2].lower()
        acc = self.account_of(session)
        local: LocalRecipient | None = None
        if domain in self.settings.local_domains:
            local = await self.resolver.resolve(address)
        decision = await self.gate.on_rcpt(acc, address, local)
        if not decision:
            return self._refuse(session, decision.reason, _reply_detail(decision),
                                sender=envelope.mail_from, recipient=address)
        if local is None:
            # A trusted domain of another operator (the rules said so): queued at DATA.
            if address.lower() not in (r.lower() for r in state.remote):
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(rcpt_options)
                state.remote.append(address)
            return replies.R250_RECIPIENT_OK.line()
        if any(r.account_id == local.account_id for r in state.local):
            return replies.R250_RECIPIENT_OK.line()  # duplicate RCPT: deliver once
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
        # RFC 5321 §3.5.3: do not disclose which mailboxes exist.
        return "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"

    # -- DATA ------------------------------------------------------------------------------

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = check_data(envelope, self.settings.max_message_size)
        if isinstance(raw, str):
            return raw
        acc = self.account_of(session)
        state = self.tx_state(envelope)
        decision = await self.gate.on_data(acc, raw, state.local)
        if not decision:
            return self._refuse(session, decision.reason, _reply_detail(decision),
                                sender=envelope.mail_from)
        tls = ssl_info(server)
        incoming = Incoming(
            raw=raw,
            mail_from=envelope.mail_from or "",
            recipients=tuple(state.local),
            actor=acc.address,
            protocol="smtp",
            client_ip=self.client_ip(session),
            patient_contact=await self.gate.grants_patient_contact(acc),
            remote=tuple(state.remote),
            sender_account_id=acc.id,
        )
        trace = received_header(
            helo=session.host_name or "unknown",
            client_ip=incoming.client_ip,
            hostname=self.settings.hostname,
            protocol="ESMTPSA" if tls else "ESMTPA",
            queue_id=incoming.queue_id,
            tls_version=tls[0] if tls else None,
            cipher=tls[1] if tls else None,
            recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None,
        )
        incoming = Incoming(**{**incoming.__dict__, "trace": trace})
        self.in_flight += 1
        try:
            delivered = await self.delivery.deliver(incoming)
        finally:
            self.in_flight -= 1
        log.info(
            "message accepted",
            extra={"queue_id": delivered.queue_id, "account": acc.address,
                   "recipients": len(state.local), "remote": len(state.remote),
                   "size": delivered.size},
        )
        return f"{replies.R250_QUEUED.line()} {delivered.queue_id}"

    # -- errors ----------------------------------------------------------------------------

    async def handle_exception(self, error: Exception) -> str:
        """Our fault: log with a correlation id, answer temporarily (never 500 + traceback)."""
        return exception_reply(error)


def _reply_detail(decision: Decision) -> str:
    """The part of a decision's detail that goes into the reply text (ARCHITECTURE.md §6
    fixes the text; only attachment refusals name the attachment)."""
    if decision.reason in (Reason.ATTACHMENT_TYPE_REFUSED, Reason.MESSAGE_TOO_LARGE):
        return decision.detail
    return ""
