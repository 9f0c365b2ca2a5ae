"""Mail addresses of the trust space (DOMAIN.md §2).

An address is split at its last ``@`` (RFC 5321 §4.1.2: the local part may itself be
quoted and contain ``@``); the domain is normalised to its A-label form
(:func:`policy.domains.normalise_domain`) and the local part is lower-cased, as every
mailbox we host is case-insensitive. A patient address is
``<INS matricule, 15 characters>@<patient domain>``; its INS key is checked (DOMAIN.md §3,
Corsica's ``2A``/``2B`` included).
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.domains import DomainError, normalise_domain
from policy.identifiers import check_ins

#: RFC 5321 §4.5.3.1.1 and §4.5.3.1.3: local part at most 64 octets, path at most 256.
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


class AddressError(ValueError):
    """A string that is not an address we can route."""


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A normalised address: lower-case local part, A-label domain."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def parse_address(text: str) -> Address:
    """Parse and normalise ``local@domain`` (angle brackets allowed).

    Raise :class:`AddressError` when it is not an address we can route.
    """
    value = text.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"not a mail address: {text!r}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in local):
        raise AddressError(f"invalid characters in the local part of {text!r}")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError(f"local part longer than {MAX_LOCAL_PART} octets: {text!r}")
    try:
        domain = normalise_domain(domain)
    except DomainError as exc:
        raise AddressError(str(exc)) from None
    address = Address(local.lower(), domain)
    if len(str(address).encode("utf-8")) > MAX_ADDRESS:
        raise AddressError(f"address longer than {MAX_ADDRESS} octets: {text!r}")
    return address


def try_parse_address(text: str) -> Address | None:
    try:
        return parse_address(text)
    except AddressError:
        return None


def normalise_address(text: str) -> str:
    """The normalised string form of an address; raise :class:`AddressError`."""
    return str(parse_address(text))


def patient_address(ins: str, patient_domain: str) -> str:
    """The address of the patient whose INS is ``ins``; raise :class:`AddressError` if invalid."""
    problem = check_ins(ins)
    if problem:
        raise AddressError(f"{problem}: {ins!r}")
    try:
        domain = normalise_domain(patient_domain)
    except DomainError as exc:
        raise AddressError(str(exc)) from None
    return f"{ins.upper()}@{domain}".lower()


def patient_ins(address: str | Address, patient_domain: str) -> str | None:
    """The INS of a patient address in ``patient_domain``, or ``None``.

    ``None`` when the address is elsewhere, or when its local part is not an INS with a
    correct key (such an address can never be a patient's). Corsican INS come back with
    ``2A``/``2B`` in upper case.
    """
    parsed = address if isinstance(address, Address) else try_parse_address(address)
    if parsed is None or not patient_domain:
        return None
    try:
        if parsed.domain != normalise_domain(patient_domain):
            return None
    except DomainError:
        return None
    candidate = parsed.local.upper()
    if check_ins(candidate) is not None:
        return None
    return candidate


def is_patient_address(address: str | Address, patient_domain: str) -> bool:
    return patient_ins(address, patient_domain) is not None
