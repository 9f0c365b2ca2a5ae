"""The contact permission between a patient and a professional (DOMAIN.md §5, issue 7).

Only a professional starts a conversation with a patient. The permission is a small state
machine per (patient, professional address):

* a professional's message (PER, ORG, APP or CAB mailbox, local or from another operator)
  delivered to the patient **grants** it, recorded with the first message's id and date;
* a message carrying ``X-MSS-MES: FIN`` **closes** it;
* a later message from that professional **reopens** it;
* optionally it **expires** a number of days after the professional's latest message.

Separately, the operator may record a **pharmacy grant** (a patient registered with a
pharmacy may write to it first). :func:`may_patient_write` decides a patient's message:
allowed only if the professional's latest message precedes it and did not close the
conversation (and has not expired), or a pharmacy grant holds.

Storage keeps one :class:`ContactPermission` per pair and moves it with
:func:`on_professional_message`, so the rule and the stored state cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from policy.decision import Decision, Reason
from policy.directory_facts import DirectoryEntry, MailboxType

#: The header a professional sets to close the conversation, and its value.
CLOSING_HEADER = "X-MSS-MES"
CLOSING_VALUE = "FIN"

#: Mailbox types whose messages open a conversation with a patient.
PROFESSIONAL_TYPES = frozenset(MailboxType)


def closes_conversation(header_values: Iterable[str]) -> bool:
    """True when one of the message's ``X-MSS-MES`` values is ``FIN`` (case and spaces ignored)."""
    return any(v.strip().upper() == CLOSING_VALUE for v in header_values)


def grants_permission(sender: DirectoryEntry | None, *, sender_is_patient: bool) -> bool:
    """Does a message from ``sender`` delivered to a patient grant (or reopen) a permission?

    Only a referenced professional mailbox (PER, ORG, APP, CAB) active in the directory does.
    """
    return (
        not sender_is_patient
        and sender is not None
        and sender.active
        and sender.mailbox_type in PROFESSIONAL_TYPES
    )


@dataclass(frozen=True, slots=True)
class ContactPermission:
    """The state of one (patient, professional) pair."""

    patient_ins: str
    professional: str
    first_message_id: str
    granted_at: datetime
    last_message_id: str
    last_message_at: datetime
    #: When the latest message closed the conversation; ``None`` while it is open.
    closed_at: datetime | None = None
    #: When a message last reopened a closed conversation.
    reopened_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


def on_professional_message(
    current: ContactPermission | None,
    *,
    patient_ins: str,
    professional: str,
    message_id: str,
    at: datetime,
    closes: bool,
) -> ContactPermission:
    """The permission after a professional's message to the patient was delivered at ``at``.

    Messages are ordered by ``at``; one that arrives late (an older ``at`` than the latest
    recorded, e.g. clocks of two nodes apart) changes the first message if it is older, never
    the open/closed state, which belongs to the latest message.
    """
    if current is None:
        return ContactPermission(
            patient_ins=patient_ins,
            professional=professional,
            first_message_id=message_id,
            granted_at=at,
            last_message_id=message_id,
            last_message_at=at,
            closed_at=at if closes else None,
        )
    if at < current.last_message_at:
        if at < current.granted_at:
            return replace(current, first_message_id=message_id, granted_at=at)
        return current
    if closes:
        return replace(current, last_message_id=message_id, last_message_at=at, closed_at=at)
    return replace(
        current,
        last_message_id=message_id,
        last_message_at=at,
        closed_at=None,
        reopened_at=at if current.closed_at is not None else current.reopened_at,
    )


@dataclass(frozen=True, slots=True)
class PharmacyGrant:
    """An operator-recorded registration of a patient with a pharmacy (DOMAIN.md §5)."""

    patient_ins: str
    pharmacy: str
    granted_at: datetime
    granted_by: str = ""
    revoked_at: datetime | None = None
    expires_at: datetime | None = None

    def holds_at(self, now: datetime) -> bool:
        if now < self.granted_at:
            return False
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at


def check_pharmacy(entry: DirectoryEntry | None) -> str | None:
    """Why ``entry`` cannot be the object of a pharmacy grant, or ``None`` if it can."""
    if entry is None:
        return "the address is not in the directory"
    if not entry.active:
        return "the mailbox is no longer in the directory"
    if not entry.is_pharmacy:
        return "the mailbox is not an organisational mailbox of a pharmacy"
    return None


def may_patient_write(
    *,
    professional: str,
    permission: ContactPermission | None,
    pharmacy: PharmacyGrant | None = None,
    now: datetime,
    expiry: timedelta | None = None,
    recipient_is_patient: bool = False,
) -> Decision:
    """May the patient send a message to ``professional`` at ``now``?

    ``permission`` and ``pharmacy`` are the stored facts for this (patient, address) pair;
    ``expiry`` (``None`` or zero: never) bounds how long after the professional's latest
    message the patient may still write. The detail names the recipient.
    """
    if recipient_is_patient:
        return Decision.deny(
            Reason.PATIENT_NOT_CONTACTED, f"{professional}: a patient cannot write to a patient"
        )
    if pharmacy is not None and pharmacy.holds_at(now):
        return Decision.allow(f"{professional}: pharmacy")
    if permission is None:
        return Decision.deny(
            Reason.PATIENT_NOT_CONTACTED, f"{professional}: has not written to the patient"
        )
    if now < permission.last_message_at:
        # The latest recorded message is later than this one: only what came before counts,
        # and the stored state no longer says what that was. Refuse (fail closed).
        return Decision.deny(
            Reason.PATIENT_NOT_CONTACTED, f"{professional}: latest message is later than now"
        )
    if permission.closed_at is not None:
        return Decision.deny(
            Reason.PATIENT_NOT_CONTACTED, f"{professional}: conversation closed by the professional"
        )
    if expiry and now - permission.last_message_at > expiry:
        return Decision.deny(Reason.PATIENT_NOT_CONTACTED, f"{professional}: permission expired")
    return Decision.allow(f"{professional}: contacted")
