"""Patients write back (ARCHITECTURE.md §2 flow 4): the send API the webmail calls.

A patient may write only to professionals who wrote to them first and did not close the
conversation, or to a pharmacy they are registered with (DOMAIN.md §5). The message is
built here with :class:`email.message.EmailMessage` (no header injection through form
fields), checked like any submission (attachments by content, size), then goes through
the one durable path: DKIM-signed, stored for each local recipient and in the patient's
Sent folder, queued for professionals of other operators (who wrote first through the
MTA), journaled — or refused whole, stored and sent nowhere, naming the recipient and
the reason.

Each recipient is decided on facts read in one snapshot: the contact permission
(:func:`mailstore.policy_store.decide_patient_recipients`), then routing and the directory
(:func:`policy.recipients.check_patient_recipient` with the SMTP edge's trust space): a
disabled local account is ``unknown_recipient`` and never queued to ourselves, another
operator's domain must still be trusted, and the professional must still be an active,
referenced mailbox of the directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import Connection

from directory import lookup as directory_lookup
from mailstore import accounts
from mailstore.accounts import Account
from mailstore.db import Database
from mailstore.policy_store import decide_patient_recipients
from mailstore.tables import PATIENT
from policy import attachments as attachment_rules
from policy import recipients as recipient_rules
from policy.decision import Decision, Reason
from policy.directory_facts import DirectoryEntry
from policy.domains import TrustSpace
from smtp_gateway.delivery import Delivered, DeliveryAgent, Incoming, LocalRecipient
from smtp_gateway.recipients import lookup as lookup_local


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # as declared by the browser; the content decides
    data: bytes


@dataclass(frozen=True)
class PatientMessage:
    to: Sequence[str]
    subject: str
    body: str
    attachments: Sequence[Attachment] = field(default_factory=tuple)
    in_reply_to: str | None = None


@dataclass(frozen=True)
class SendRefused:
    """The whole message was refused; ``recipient`` names the first culprit (or "")."""

    decision: Decision
    recipient: str = ""


@dataclass(frozen=True, slots=True)
class _RecipientFacts:
    """What one snapshot says about a recipient of the patient's message."""

    address: str
    permission: Decision
    #: Our active account for the address (None: none, disabled, or not one of our domains).
    local: LocalRecipient | None = None
    directory: DirectoryEntry | None = None


class PatientSender:
    def __init__(
        self,
        *,
        db: Database,
        delivery: DeliveryAgent,
        trust_space: Callable[[], TrustSpace],
        patient_domain: str,
        hostname: str,
        limits: attachment_rules.AttachmentLimits,
        expiry: timedelta | None = None,
    ) -> None:
        self.db = db
        self.delivery = delivery
        #: The SMTP edge's current trust space (:attr:`PolicyGate.space`).
        self.trust_space = trust_space
        self.patient_domain = patient_domain
        self.hostname = hostname
        self.limits = limits
        self.expiry = expiry

    async def send(
        self, patient: Account, message: PatientMessage, *, client_ip: str | None = None,
        now: datetime | None = None,
    ) -> Delivered | SendRefused:
        now = now or datetime.now(UTC)
        if patient.kind != PATIENT or patient.ins is None or not patient.active:
            return SendRefused(Decision.deny(Reason.AUTH_REQUIRED, "not an active patient"))
        if not message.to:
            return SendRefused(Decision.deny(Reason.UNKNOWN_RECIPIENT, "no recipient"))
        ins = patient.ins

        def gather(conn: Connection) -> list[_RecipientFacts]:
            out = []
            for address, decision in decide_patient_recipients(
                conn, patient_ins=ins, recipients=message.to, now=now,
                patient_domain=self.patient_domain, expiry=self.expiry,
            ):
                if not decision:
                    out.append(_RecipientFacts(address, decision))
                    break
                out.append(_RecipientFacts(
                    address, decision, lookup_local(conn, address),
                    directory_lookup.mailbox_fact(conn, address),
                ))
            return out

        space = self.trust_space()
        local: list[LocalRecipient] = []
        remote: list[str] = []
        for facts in await self.db.read(gather):
            if not facts.permission:
                return SendRefused(facts.permission, facts.address)
            rcpt = facts.local
            decision = recipient_rules.check_patient_recipient(
                facts.address, space=space, local=rcpt.mailbox() if rcpt is not None else None,
                directory=facts.directory
            )
            if not decision:
                return SendRefused(decision, facts.address)
            if rcpt is None:
                # Another operator's professional who wrote first (through the MTA): queued.
                if facts.address not in remote:
                    remote.append(facts.address)
            elif all(r.account_id != rcpt.account_id for r in local):
                local.append(rcpt)
        raw = self.build(patient, message, now)
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(
            None, lambda: attachment_rules.check_message(raw, limits=self.limits)
        )
        if not report.decision:
            return SendRefused(report.decision)
        sent_box = await self.db.read(lambda c: accounts.mailbox_id(c, patient.id, "Sent"))
        incoming = Incoming(
            raw=raw, mail_from=patient.address, recipients=tuple(local), actor=patient.address,
            protocol="web", client_ip=client_ip,
            sender_copy=(patient.id, sent_box) if sent_box is not None else None,
            sender_ins=ins, remote=tuple(remote), sender_account_id=patient.id,
        )
        return await self.delivery.deliver(incoming)

    def build(self, patient: Account, message: PatientMessage, now: datetime) -> bytes:
        msg = EmailMessage()
        local, _, domain = patient.address.partition("@")
        msg["From"] = Address(patient.display_name or "", local, domain)
        msg["To"] = ", ".join(message.to)
        msg["Subject"] = message.subject
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid(domain=self.hostname)
        if message.in_reply_to:
            msg["In-Reply-To"] = message.in_reply_to
            msg["References"] = message.in_reply_to
        msg.set_content(message.body)
        for att in message.attachments:
            maintype, _, subtype = att.content_type.partition("/")
            msg.add_attachment(
                att.data, maintype=maintype or "application",
                subtype=subtype or "octet-stream", filename=att.filename,
            )
        return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
