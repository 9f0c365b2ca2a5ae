"""Domains of the trust space: normalisation and trusted-domain matching (DOMAIN.md §1).

Domain names are compared in their IDNA A-label form (RFC 5890 §2.3.2.1), lower-case,
without a trailing dot, with the UTS #46 mapping applied first so that ``Santé.MSSanté.fr``
and ``xn--sant-dpa.xn--mssant-fva.fr`` are the same name. Matching is exact: the liste
blanche lists every domain of the trust space, so a sub-domain of a trusted domain is not
trusted by that fact alone. Our own domains (professional and patient) are always trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import idna

from policy.decision import Decision, Reason

#: One label of an A-label domain name (RFC 1035 §2.3.1, RFC 5890 §2.3.2.1).
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAX_DOMAIN = 253


class DomainError(ValueError):
    """A string that is not a usable domain name."""


@lru_cache(maxsize=4096)
def normalise_domain(name: str) -> str:
    """The A-label, lower-case form of ``name``; raise :class:`DomainError` if invalid.

    Memoised (a pure function, and every envelope of a busy sender names the same few
    domains); a refusal is raised again each time, never cached.

    Address literals (``[192.0.2.1]``) are not domains of the trust space and are refused.
    """
    text = name.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text or text.startswith("["):
        raise DomainError(f"not a domain name: {name!r}")
    if text.isascii():
        ascii_name = text.lower()
    else:
        try:
            ascii_name = idna.encode(text, uts46=True).decode("ascii").lower()
        except idna.IDNAError as exc:
            raise DomainError(
                f"not a valid internationalised domain name: {name!r} ({exc})"
            ) from None
    if len(ascii_name) > _MAX_DOMAIN:
        raise DomainError(f"domain name longer than {_MAX_DOMAIN} characters: {name!r}")
    labels = ascii_name.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise DomainError(f"not a domain name: {name!r}")
    for label in labels:
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise DomainError(f"invalid A-label {label!r} in {name!r} ({exc})") from None
    return ascii_name


def try_normalise_domain(name: str) -> str | None:
    """Like :func:`normalise_domain`, but ``None`` instead of an exception."""
    try:
        return normalise_domain(name)
    except DomainError:
        return None


def display_domain(a_label: str) -> str:
    """The U-label (Unicode) form of a normalised domain, for people; falls back to it."""
    try:
        return str(idna.decode(a_label))
    except idna.IDNAError:
        return a_label


@dataclass(frozen=True, slots=True)
class TrustSpace:
    """The facts about domains: ours and the trusted list, all in normalised A-label form.

    Build it with :meth:`of`, which normalises every name.
    """

    #: The professional domains we host.
    professional_domains: frozenset[str]
    #: The patient domain we host (``<INS>@<patient domain>``), or "" if none.
    patient_domain: str
    #: Domains of the other operators of the trust space (the liste blanche).
    trusted: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        professional_domains: list[str] | tuple[str, ...] | frozenset[str],
        patient_domain: str = "",
        trusted: list[str] | tuple[str, ...] | frozenset[str] = (),
    ) -> TrustSpace:
        return cls(
            frozenset(normalise_domain(d) for d in professional_domains),
            normalise_domain(patient_domain) if patient_domain else "",
            frozenset(n for n in (try_normalise_domain(d) for d in trusted) if n),
        )

    @property
    def own_domains(self) -> frozenset[str]:
        extra = {self.patient_domain} if self.patient_domain else set()
        return self.professional_domains | extra

    def is_own(self, domain: str) -> bool:
        name = try_normalise_domain(domain)
        return name is not None and name in self.own_domains

    def is_trusted(self, domain: str) -> bool:
        """Our own domains and the listed ones are trusted; anything else is not."""
        name = try_normalise_domain(domain)
        return name is not None and (name in self.own_domains or name in self.trusted)


def check_domain_trusted(domain: str, space: TrustSpace) -> Decision:
    """``domain_not_trusted`` unless ``domain`` is ours or on the trusted list."""
    if space.is_trusted(domain):
        return Decision.allow()
    return Decision.deny(Reason.DOMAIN_NOT_TRUSTED, domain)
