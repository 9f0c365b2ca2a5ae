"""Facts for the rules and the audit view: who is behind an address or an identifier.

Every function takes a :class:`~sqlalchemy.Connection` (callers run them inside
``db.read``/``db.write``) and answers from primary-key or unique-index lookups.

Red-listed mailboxes are ordinary here: the red list hides a mailbox from *search*, it does
not stop it from working (DOMAIN.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from directory import records
from directory.idchecks import national_id_of
from directory.professions import profession_label
from policy.directory_facts import DirectoryEntry, MailboxType

#: Mailbox types that make their holder a referenced professional (DOMAIN.md §2).
REFERENCED_TYPES = frozenset({"PER", "ORG", "APP", "CAB"})


@dataclass(frozen=True)
class MailboxEntry:
    address: str
    mailbox_type: str  # PER / ORG / APP / CAB
    national_id: str | None  # the practitioner (PER) or person in charge
    display_name: str
    profession_code: str
    #: The mailbox is in the latest extract (or added by hand) and not deactivated, and,
    #: for a personal mailbox whose practitioner is in the directory, so is the practitioner.
    active: bool
    red_list: bool
    source: str

    def fact(self) -> DirectoryEntry:
        """The policy fact for this mailbox (:mod:`policy.directory_facts`)."""
        return DirectoryEntry(
            address=self.address,
            mailbox_type=MailboxType(self.mailbox_type),
            active=self.active,
            profession_code=self.profession_code,
            national_id=self.national_id,
        )


@dataclass(frozen=True)
class PractitionerEntry:
    national_id: str
    last_name: str
    first_name: str
    civility: str
    display_name: str
    profession_code: str
    profession: str
    active: bool


def mailbox(conn: Connection, address: str) -> MailboxEntry | None:
    """The directory entry of a mailbox address (case-insensitive), or None."""
    row = conn.execute(
        text("""
            SELECT m.address, m.mailbox_type, m.national_id, m.raw, m.overrides, m.active,
                   m.red_list, m.source, p.active AS practitioner_active
            FROM directory_mailbox m LEFT JOIN practitioner p ON p.id = m.practitioner_id
            WHERE m.address = :a
        """),
        {"a": address.strip().lower()},
    ).first()
    if row is None:
        return None
    f = records.mailbox_fields(row.raw, records.load_overrides(row.overrides))
    active = bool(row.active)
    if row.mailbox_type == "PER" and row.practitioner_active is not None:
        active = active and bool(row.practitioner_active)
    return MailboxEntry(
        address=row.address,
        mailbox_type=row.mailbox_type,
        national_id=row.national_id,
        display_name=records.mailbox_display_name(f),
        profession_code=f[records.MAILBOX_FIELDS["profession"]].strip(),
        active=active,
        red_list=bool(row.red_list),
        source=row.source,
    )


def mailbox_fact(conn: Connection, address: str) -> DirectoryEntry | None:
    """The policy fact of a mailbox address (:mod:`policy.directory_facts`), or None when
    the directory does not list it."""
    entry = mailbox(conn, address)
    return entry.fact() if entry is not None else None


def is_referenced_active(conn: Connection, address: str, national_id: str | None = None) -> bool:
    """Whether ``address`` is an active PER/ORG/APP/CAB mailbox of the directory.

    With ``national_id`` (national identifier, or a bare RPPS/ADELI), the mailbox must also
    belong to that practitioner: a personal mailbox must carry exactly that identifier; a
    structure's mailbox (ORG/APP/CAB) must carry it too when it names a person in charge.
    """
    entry = mailbox(conn, address)
    if entry is None or not entry.active or entry.mailbox_type not in REFERENCED_TYPES:
        return False
    if national_id is None:
        return True
    wanted = national_id_of(national_id)
    if wanted is None:
        return False
    if entry.national_id is None:
        return entry.mailbox_type != "PER"
    return entry.national_id == wanted


def practitioner(conn: Connection, national_id: str) -> PractitionerEntry | None:
    """Name and profession of a practitioner (national identifier or bare RPPS/ADELI)."""
    nat = national_id_of(national_id)
    if nat is None:
        return None
    row = conn.execute(
        text("SELECT national_id, raw, overrides, active FROM practitioner WHERE id = :id"),
        {"id": int(nat)},
    ).first()
    if row is None:
        return None
    overrides = records.load_overrides(row.overrides)
    f = records.person_fields(row.raw, overrides)
    act = conn.execute(
        text("SELECT raw FROM practitioner_activity WHERE practitioner_id = :id "  # noqa: S608 - a constant
             f"{records.MAIN_ACTIVITY_FIRST} LIMIT 1"),
        {"id": int(nat)},
    ).scalar()
    code = records.activity_record(act, overrides).profession_code if act else ""
    first = f[records.PRACTITIONER_FIELDS["first_name"]].strip()
    last = f[records.PRACTITIONER_FIELDS["last_name"]].strip()
    civility = f[records.PRACTITIONER_FIELDS["civility"]].strip()
    return PractitionerEntry(
        national_id=row.national_id,
        last_name=last,
        first_name=first,
        civility=civility,
        display_name=records.display_name(first, last, civility),
        profession_code=code,
        profession=profession_label(code) if code else "",
        active=bool(row.active),
    )
