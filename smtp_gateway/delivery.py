"""The one durable path into mailboxes (ARCHITECTURE.md §3 "One durable path").

Every edge that accepts a message — SMTP submission, the MTA listener, the webmail — hands
it to :meth:`DeliveryAgent.deliver`, which

1. adds the trace fields (``Received``, ``Message-ID`` and ``Date`` if missing),
2. DKIM-signs it where we are the sender's domain,
3. parses its MIME index once,
4. in **one** write job of the group commit: stores it in every local recipient's INBOX,
   records the patient contact permissions, queues it (encrypted) for its remote
   recipients (:mod:`smtp_gateway.queue_store`), and appends the journal entries,
5. returns only once that commit is durable, so the edge may answer ``250``; then wakes
   the queue runner (an after-commit callback) if something was queued.

CPU work (signing, parsing) happens before the write job so the single writer only writes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Protocol

from sqlalchemy import Connection

from audit.events import Action, AuditEvent
from mailstore.db import Database, Tx
from mailstore.keystore import KeyStore
from mailstore.messages import Stored, append_message, encode_index
from mailstore.policy_store import record_professional_message
from mailstore.tables import PATIENT
from policy.patients import CLOSING_HEADER, closes_conversation
from policy.recipients import LocalMailbox
from smtp_gateway import queue_store
from smtp_gateway.dkim_sign import DkimSigner
from smtp_gateway.trace import find_message_id, header_values, message_id_header, new_queue_id

log = logging.getLogger(__name__)


class JournalLike(Protocol):
    def append(self, conn: Connection, events: Sequence[AuditEvent]) -> None: ...


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    """A recipient hosted here, resolved at RCPT time."""

    address: str
    account_id: int
    inbox_id: int
    kind: str
    ins: str | None = None

    def mailbox(self) -> LocalMailbox:
        """The routing fact the recipient rules take (:mod:`policy.recipients`)."""
        return LocalMailbox(self.address, is_patient=self.kind == PATIENT)


@dataclass(frozen=True)
class Incoming:
    """A message accepted by an edge, before it is made durable."""

    raw: bytes  # CRLF line endings, as received (dot-unstuffed)
    mail_from: str
    recipients: Sequence[LocalRecipient]
    actor: str  # the authenticated account, or "service:<edge>"
    protocol: str  # "smtp", "web", "mta"
    client_ip: str | None = None
    #: Prepended trace field(s), e.g. the ``Received:`` line, with CRLF.
    trace: bytes = b""
    #: Whether we DKIM-sign it (we are the sender's operator).
    sign: bool = True
    #: The sender is a referenced professional mailbox: delivering to a patient opens (or
    #: reopens, or with ``X-MSS-MES: FIN`` closes) the conversation (DOMAIN.md §5).
    patient_contact: bool = False
    #: (account id, mailbox id) that keeps the sender's own copy (\\Seen), e.g. Sent.
    sender_copy: tuple[int, int] | None = None
    #: The INS of a patient sender (journaled with the acceptance).
    sender_ins: str | None = None
    queue_id: str = field(default_factory=new_queue_id)
    #: Remote recipients (trusted domains of other operators), queued for the runner.
    remote: tuple[str, ...] = ()
    #: The local account that sends: its data key encrypts the queued copy.
    sender_account_id: int | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    queue_id: str
    message_id: str
    stored: tuple[Stored, ...]
    size: int


class DeliveryAgent:
    """Signs, stores and journals accepted messages in one transaction."""

    def __init__(
        self,
        *,
        db: Database,
        keystore: KeyStore,
        hostname: str,
        signers: dict[str, DkimSigner] | None = None,
        journal: JournalLike | None = None,
        notify: Callable[[int], None] | None = None,
        queue_max_age: timedelta = timedelta(days=5),
    ) -> None:
        self.db = db
        self.keystore = keystore
        self.hostname = hostname
        self.signers = signers or {}
        self.journal = journal
        self.notify = notify
        #: How long a queued entry is retried before it bounces.
        self.queue_max_age = queue_max_age
        #: Called (on the event loop) after a commit that queued something: the runner's
        #: wake-up. Set by whoever runs the queue in this process.
        self.on_queued: Callable[[], None] | None = None
        self._cpu = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="sign")

    def prepare(self, incoming: Incoming) -> tuple[bytes, str]:
        """The bytes to store (trace fields, Message-ID, DKIM-Signature) and the Message-ID."""
        raw = incoming.raw
        message_id = find_message_id(raw)
        head = incoming.trace
        if message_id is None:
            field_bytes, message_id = message_id_header(self.hostname)
            raw = field_bytes + raw
        if incoming.sign and not header_values(raw, "Date"):
            # RFC 6409 §8.2: a submission server may add the missing Date (RFC 5322 §3.6
            # requires one). Done before signing: a Date added downstream would break the
            # signature, which over-signs Date.
            raw = f"Date: {format_datetime(datetime.now(UTC))}\r\n".encode() + raw
        raw = head + raw
        if incoming.sign:
            signer = self.signers.get(incoming.mail_from.rpartition("@")[2].lower())
            if signer is not None:
                raw = signer.sign(raw)
        return raw, message_id

    async def deliver(
        self, incoming: Incoming, *, also: Callable[[Tx], None] | None = None
    ) -> Delivered:
        """Make ``incoming`` durable; return once committed (raise if it was not).

        ``also`` runs inside the same write job (the queue runner finishes the bounced
        entries in the transaction that stores their DSN).
        """
        if incoming.remote and incoming.sender_account_id is None:
            raise ValueError("queuing for remote recipients needs the sender's account")
        loop = asyncio.get_running_loop()
        # RSA signing releases the GIL: done on a small pool, it overlaps the event loop.
        raw, message_id = await loop.run_in_executor(self._cpu, self.prepare, incoming)
        index_json = encode_index(raw)
        now = datetime.now(UTC)
        closes = closes_conversation(header_values(raw, CLOSING_HEADER))
        professional = incoming.mail_from.lower()

        def job(tx: Tx) -> tuple[Stored, ...]:
            stored = []
            for rcpt in incoming.recipients:
                stored.append(
                    append_message(
                        tx, self.keystore, rcpt.account_id, rcpt.inbox_id, raw,
                        internal_date=now, index_json=index_json, notify=self.notify,
                    )
                )
                if incoming.patient_contact and rcpt.ins and professional:
                    record_professional_message(
                        tx.conn, rcpt.ins, professional, message_id, now, closes
                    )
            if incoming.sender_copy is not None:
                account_id, mailbox_id = incoming.sender_copy
                stored.append(
                    append_message(
                        tx, self.keystore, account_id, mailbox_id, raw, flags=("\\Seen",),
                        internal_date=now, index_json=index_json, notify=self.notify,
                    )
                )
            if incoming.remote and incoming.sender_account_id is not None:
                queue_store.enqueue(
                    tx.conn, self.keystore, account_id=incoming.sender_account_id,
                    sender=incoming.mail_from, recipients=incoming.remote, raw=raw,
                    queue_id=incoming.queue_id, message_id=message_id, now=now,
                    max_age=self.queue_max_age,
                )
                tx.after_commit(self._queued)
            if also is not None:
                also(tx)
            if self.journal is not None:
                self.journal.append(tx.conn, self._events(incoming, message_id, now))
            return tuple(stored)

        stored = await self.db.write(job)
        return Delivered(incoming.queue_id, message_id, stored, len(raw))

    def _queued(self) -> None:
        if self.on_queued is not None:
            self.on_queued()

    @staticmethod
    def _events(incoming: Incoming, message_id: str, now: datetime) -> list[AuditEvent]:
        events = [
            AuditEvent(
                action=Action.WEBMAIL_SEND if incoming.protocol == "web"
                else Action.MESSAGE_ACCEPTED,
                actor=incoming.actor, message_id=message_id,
                queue_id=incoming.queue_id, client_ip=incoming.client_ip,
                patient_ins=incoming.sender_ins, protocol=incoming.protocol, at=now,
            )
        ]
        for rcpt in incoming.recipients:
            events.append(
                AuditEvent(
                    action=Action.MESSAGE_DELIVERED, actor=incoming.actor,
                    message_id=message_id, queue_id=incoming.queue_id,
                    patient_ins=rcpt.ins, client_ip=incoming.client_ip,
                    protocol=incoming.protocol,
                    object_ids=(("recipient", rcpt.address),), at=now,
                )
            )
        return events
