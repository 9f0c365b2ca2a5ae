"""Who may send: the authenticated account and the addresses it may use (issue 7, "Senders").

Two rules, applied at SMTP submission (ARCHITECTURE.md §2, flow 1):

* :func:`check_sender_referenced` — the authenticated account must be an active
  professional or organisation account matching an active, referenced mailbox of the
  directory; otherwise ``sender_not_referenced`` (answered at MAIL FROM, and again at RCPT
  for clients that ignore the first refusal). Patients never use SMTP submission.
* :func:`check_envelope_sender` and :func:`check_header_senders` — ``MAIL FROM`` (RFC 5321
  §4.1.1.2) and the ``From:``/``Sender:`` fields (RFC 5322 §3.6.2) must be addresses of that
  account; otherwise ``sender_not_owned``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from policy.addresses import try_parse_address
from policy.decision import Decision, Reason
from policy.directory_facts import DirectoryEntry


class AccountKind(StrEnum):
    """Kinds of local accounts (the values stored by the mail store)."""

    PROFESSIONAL = "professional"
    ORGANISATION = "organisation"
    PATIENT = "patient"
    ADMIN = "admin"


#: Kinds of accounts that may send through SMTP submission.
SENDING_KINDS = frozenset({AccountKind.PROFESSIONAL, AccountKind.ORGANISATION})


@dataclass(frozen=True, slots=True)
class SenderAccount:
    """The authenticated account, as the rules need it."""

    address: str
    kind: AccountKind
    active: bool
    #: The directory's entry for ``address``; ``None`` when the directory does not list it.
    directory: DirectoryEntry | None
    #: Other addresses the account may send as (aliases), if any.
    aliases: frozenset[str] = field(default_factory=frozenset)
    #: The account's practitioner identifier (8+RPPS / 0+ADELI), if it has one.
    national_id: str | None = None

    @property
    def owned(self) -> frozenset[str]:
        """Every address of the account, normalised."""
        out = set()
        for a in (self.address, *self.aliases):
            parsed = try_parse_address(a)
            if parsed is not None:
                out.add(str(parsed))
        return frozenset(out)


def check_sender_referenced(account: SenderAccount) -> Decision:
    """``sender_not_referenced`` unless the account may send as a referenced professional."""
    if account.kind not in SENDING_KINDS:
        return Decision.deny(
            Reason.SENDER_NOT_REFERENCED, f"{account.address}: {account.kind} account"
        )
    if not account.active:
        return Decision.deny(Reason.SENDER_NOT_REFERENCED, f"{account.address}: account disabled")
    entry = account.directory
    if entry is None:
        return Decision.deny(
            Reason.SENDER_NOT_REFERENCED, f"{account.address}: not in the directory"
        )
    if not entry.active:
        return Decision.deny(
            Reason.SENDER_NOT_REFERENCED, f"{account.address}: mailbox no longer in the directory"
        )
    if try_parse_address(entry.address) != try_parse_address(account.address):
        return Decision.deny(
            Reason.SENDER_NOT_REFERENCED,
            f"{account.address}: directory entry is for another address",
        )
    if account.national_id and entry.national_id and account.national_id != entry.national_id:
        return Decision.deny(
            Reason.SENDER_NOT_REFERENCED,
            f"{account.address}: directory entry belongs to another practitioner",
        )
    return Decision.allow()


def check_envelope_sender(mail_from: str, account: SenderAccount) -> Decision:
    """``MAIL FROM`` must be one of the account's addresses.

    The null reverse-path ``<>`` (RFC 5321 §4.5.5) is allowed: clients send read receipts
    (RFC 8098 §2.1) with it; the ``From:`` field of such a message is still checked by
    :func:`check_header_senders`.
    """
    stripped = mail_from.strip()
    if stripped in ("", "<>"):
        return Decision.allow()
    parsed = try_parse_address(stripped)
    if parsed is None or str(parsed) not in account.owned:
        return Decision.deny(Reason.SENDER_NOT_OWNED, stripped.strip("<>"))
    return Decision.allow()


def check_header_senders(addresses: Iterable[str], account: SenderAccount) -> Decision:
    """Every address of the ``From:`` and ``Sender:`` fields must belong to the account.

    The caller passes the addresses it extracted (``email.utils.getaddresses``); a message
    with no ``From:`` address at all is refused too (RFC 5322 §3.6 requires one).
    """
    seen = False
    for text in addresses:
        seen = True
        parsed = try_parse_address(text)
        if parsed is None or str(parsed) not in account.owned:
            return Decision.deny(Reason.SENDER_NOT_OWNED, text.strip() or "(empty From:)")
    if not seen:
        return Decision.deny(Reason.SENDER_NOT_OWNED, "(no From: address)")
    return Decision.allow()
