"""Parsing the trusted-domain list (the "liste blanche", DOMAIN.md §1). Pure: bytes in.

Two formats:

* the published XML: domain names are the text of ``//Domaine/Nom`` elements in the
  namespace ``https://listeblanche.mssante.fr/schema``. Parsed with ``defusedxml`` and
  **no DTD at all** (``forbid_dtd``): an entity expansion or external entity (XXE) attempt
  is refused as a whole, never half-read;
* a plain list: one domain a line, ``#`` starts a comment, blank lines ignored.

Every name is normalised to its A-label form (:func:`policy.domains.normalise_domain`);
names that are not domains are reported (with their line when known), not silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from policy.domains import DomainError, normalise_domain

NAMESPACE = "https://listeblanche.mssante.fr/schema"
_DOMAIN_TAG = f"{{{NAMESPACE}}}Domaine"
_NAME_TAG = f"{{{NAMESPACE}}}Nom"

#: A list larger than this is refused before parsing (the real list is well under 1 MiB).
MAX_LIST_BYTES = 16 * 1024 * 1024


class TrustListError(ValueError):
    """The list cannot be read at all (malformed, forbidden XML construct, too large)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A name of the list that is not a domain."""

    line: int | None
    value: str
    problem: str


@dataclass(frozen=True, slots=True)
class ParsedTrustList:
    #: Distinct normalised domains, in order of first appearance.
    domains: tuple[str, ...]
    rejected: tuple[Rejected, ...] = ()


def parse_xml_list(data: bytes) -> ParsedTrustList:
    """Domains of the liste blanche XML; raise :class:`TrustListError` if it cannot be read."""
    _check_size(data)
    try:
        root: Element = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise TrustListError(f"forbidden XML construct: {exc.__class__.__name__}") from None
    except ParseError as exc:
        raise TrustListError(f"malformed XML: {exc}") from None
    names: list[tuple[int | None, str]] = []
    for domaine in root.iter(_DOMAIN_TAG):
        for nom in domaine.findall(_NAME_TAG):
            names.append((None, "".join(nom.itertext()).strip()))
    if not names and not any(True for _ in root.iter(_DOMAIN_TAG)):
        raise TrustListError(
            f"no Domaine element in the namespace {NAMESPACE} (root element {root.tag})"
        )
    return _collect(names)


def parse_plain_list(data: bytes) -> ParsedTrustList:
    """Domains of a plain list (UTF-8, one a line, ``#`` comments)."""
    _check_size(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TrustListError(f"the list is not UTF-8 text (byte {exc.start})") from None
    names: list[tuple[int | None, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        value = line.split("#", 1)[0].strip()
        if value:
            names.append((lineno, value))
    return _collect(names)


def parse_trust_list(data: bytes) -> ParsedTrustList:
    """Either format, told apart by content: XML starts with ``<`` (after a BOM and spaces)."""
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return parse_xml_list(data)
    return parse_plain_list(data)


def _check_size(data: bytes) -> None:
    if len(data) > MAX_LIST_BYTES:
        raise TrustListError(f"the list is larger than {MAX_LIST_BYTES} bytes")


def _collect(names: list[tuple[int | None, str]]) -> ParsedTrustList:
    domains: dict[str, None] = {}
    rejected: list[Rejected] = []
    for line, value in names:
        try:
            domains.setdefault(normalise_domain(value), None)
        except DomainError as exc:
            rejected.append(Rejected(line, value, str(exc)))
    return ParsedTrustList(tuple(domains), tuple(rejected))
