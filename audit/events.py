"""What the journal records: stable action names and the typed event (DOMAIN.md §8).

An event says who did what, on which objects, with which outcome, and when. It never
carries message content, subjects, file names or passwords: only identifiers. The
identifiers of an event are resolved into names and titles at read time, by the caller
(see :mod:`audit.access_log`), never stored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Action(StrEnum):
    """Stable action names; the string values are stored and must never change."""

    MESSAGE_ACCEPTED = "message.accepted"
    MESSAGE_REFUSED = "message.refused"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_RELAYED = "message.relayed"
    MESSAGE_DEFERRED = "message.deferred"
    MESSAGE_BOUNCED = "message.bounced"
    DSN_SENT = "dsn.sent"
    MDN_SENT = "mdn.sent"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    #: A read of a patient's message or document by someone other than that patient.
    PATIENT_DATA_READ = "patient_data.read"
    WEBMAIL_SEND = "webmail.send"
    DOSSIER_FILED = "dossier.filed"
    DIRECTORY_IMPORTED = "directory.imported"
    DIRECTORY_EDITED = "directory.edited"
    TRUST_CHANGED = "trust.changed"
    KEYS_ROTATED = "keys.rotated"
    ACCOUNT_CHANGED = "account.changed"
    PERMISSION_CHANGED = "permission.changed"
    #: The journal itself: an export (it may carry patient data) and a prune.
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_PRUNED = "audit.pruned"


class Outcome(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    FAILED = "failed"


OUTCOMES: frozenset[str] = frozenset(o.value for o in Outcome)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One journal entry before it is numbered and chained.

    ``actor`` is an account address, or ``"service:smtp-submission"``, ``"service:imap"``,
    ``"cli:<user>"``…; ``object_ids`` holds other identifiers as ``(kind, id)`` pairs, e.g.
    ``(("mailbox_uid", "12/345"),)`` — never content. ``at`` is UTC; the journal fills in
    the time of the append when it is ``None``.
    """

    action: str
    actor: str
    outcome: str = "ok"
    reason: str | None = None
    message_id: str | None = None
    document_id: str | None = None
    queue_id: str | None = None
    patient_ins: str | None = None
    client_ip: str | None = None
    protocol: str | None = None
    object_ids: tuple[tuple[str, str], ...] = ()
    at: datetime | None = None


def login_event(
    actor: str, outcome: str, reason: str | None, *, client_ip: str | None, protocol: str
) -> AuditEvent:
    """One login attempt (SMTP AUTH, IMAP LOGIN/AUTHENTICATE, HTTP Basic): ``login.succeeded``
    when ``outcome`` is ``ok``, else ``login.failed``. ``actor`` is the name the client
    gave, cut to the longest address there is (RFC 5321 §4.5.3.1.3: 320 characters);
    never the password."""
    return AuditEvent(
        action=Action.LOGIN_SUCCEEDED if outcome == Outcome.OK else Action.LOGIN_FAILED,
        actor=actor[:320], outcome=outcome, reason=reason, client_ip=client_ip,
        protocol=protocol,
    )
