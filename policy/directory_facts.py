"""Facts the rules need from the directory (DOMAIN.md §2 and §4), as plain values.

The directory package builds them from the Annuaire Santé extracts; the rules only read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Profession code of pharmacists (``Code profession``, DOMAIN.md §4).
PHARMACIST_PROFESSION = "21"


class MailboxType(StrEnum):
    """The MSSanté mailbox types (``Type de BAL``, DOMAIN.md §2)."""

    PER = "PER"  # a practitioner's personal mailbox
    ORG = "ORG"  # an organisational mailbox (a service of a structure)
    APP = "APP"  # a structure's software
    CAB = "CAB"  # a practice

    @classmethod
    def parse(cls, value: str) -> MailboxType | None:
        try:
            return cls(value.strip().upper())
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One mailbox of the directory, local or of another operator of the trust space."""

    address: str
    mailbox_type: MailboxType
    #: False when the mailbox left the directory's latest extract, or was disabled.
    active: bool = True
    #: The profession code of the mailbox's holder or structure (``21`` for a pharmacy).
    profession_code: str = ""
    #: The national identifier (8+RPPS / 0+ADELI) of the holder or person in charge, if any.
    national_id: str | None = None

    @property
    def is_pharmacy(self) -> bool:
        """An organisational mailbox of a pharmacist structure (DOMAIN.md §5)."""
        return (
            self.mailbox_type is MailboxType.ORG
            and self.profession_code == PHARMACIST_PROFESSION
        )
