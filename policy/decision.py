"""Decisions and their stable reason codes (ARCHITECTURE.md §6)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes; each edge maps them to its own reply with one table."""

    OK = "ok"
    TLS_REQUIRED = "tls_required"
    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    SENDER_NOT_OWNED = "sender_not_owned"
    SENDER_NOT_REFERENCED = "sender_not_referenced"
    DOMAIN_NOT_TRUSTED = "domain_not_trusted"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    RELAY_DENIED = "relay_denied"
    PATIENT_NOT_CONTACTED = "patient_not_contacted"
    ATTACHMENT_TYPE_REFUSED = "attachment_type_refused"
    MESSAGE_TOO_LARGE = "message_too_large"
    DKIM_FAILED = "dkim_failed"
    STORAGE_UNAVAILABLE = "storage_unavailable"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a rule: allowed or not, why (a stable code), and a detail for humans.

    ``detail`` names the object concerned (a recipient, an attachment name) and never
    carries message content.
    """

    allowed: bool
    reason: Reason
    detail: str = ""

    @classmethod
    def allow(cls, detail: str = "") -> Decision:
        return cls(True, Reason.OK, detail)

    @classmethod
    def deny(cls, reason: Reason, detail: str = "") -> Decision:
        return cls(False, reason, detail)

    def __bool__(self) -> bool:
        return self.allowed
