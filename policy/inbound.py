"""Who a message from another operator claims to be from (ARCHITECTURE.md §2 flow 2, issue 7
"Domains"), decided at the MTA's DATA.

The envelope was checked at ``MAIL FROM`` (:func:`policy.recipients.check_inbound_origin`).
What the patient or professional *sees* is the ``From:`` field (RFC 5322 §3.6.2), so it
gets the same rules, and is tied to the DKIM result:

* every ``From:`` and ``Sender:`` address is in a trusted domain
  (``domain_not_trusted``) and never in one of **ours** (``sender_not_owned``): our own
  users' mail comes through submission, never from another operator;
* every ``From:`` domain is *aligned* with a passing DKIM signature (``dkim_failed``),
  in the spirit of DMARC's relaxed alignment (RFC 7489 §3.1.1), see :func:`aligned`.
"""

from __future__ import annotations

from collections.abc import Iterable

from policy.addresses import try_parse_address
from policy.decision import Decision, Reason
from policy.domains import TrustSpace, try_normalise_domain
from policy.recipients import check_other_operator_address


def check_header_origin(
    from_addresses: Iterable[str], sender_addresses: Iterable[str], *, space: TrustSpace
) -> Decision:
    """Decide the ``From:`` and ``Sender:`` addresses of an inbound message.

    The caller passes the addresses it extracted (``email.utils.getaddresses``). A message
    without a ``From:`` address is refused: RFC 5322 §3.6 requires one, and nothing else
    says who wrote it. Trusted means on the list exactly, as for ``MAIL FROM``.
    """
    froms = list(from_addresses)
    if not any(a.strip() for a in froms):
        return Decision.deny(Reason.DOMAIN_NOT_TRUSTED, "(no From: address)")
    for text in (*froms, *sender_addresses):
        decision = check_other_operator_address(text, space)
        if not decision:
            return decision
    return Decision.allow()


def aligned(author_domain: str, signing_domain: str) -> bool:
    """Is a DKIM signature of ``signing_domain`` (``d=``) aligned with ``author_domain``?

    RFC 7489 §3.1.1 relaxed mode compares Organizational Domains, found with a public
    suffix list. In the trust space every operator sits under one shared parent
    (``*.mssante.fr``), which no public list marks as a suffix: with plain relaxed
    alignment one operator could sign for another's ``From:``. So we accept equal names
    and names in one line of descent (``d=`` a parent or a sub-domain of the author's),
    never siblings; the shorter name needs two labels at least (no ``d=fr``).
    """
    author = try_normalise_domain(author_domain)
    signer = try_normalise_domain(signing_domain)
    if author is None or signer is None:
        return False
    if author == signer:
        return True
    parent, child = (signer, author) if len(signer) < len(author) else (author, signer)
    return parent.count(".") >= 1 and child.endswith("." + parent)


def check_dkim_alignment(
    from_addresses: Iterable[str], passing_domains: Iterable[str]
) -> Decision:
    """Every ``From:`` domain needs a passing DKIM signature aligned with it.

    Every one, not any: a message with two ``From:`` fields (or two addresses) must not
    ride on a signature for only one of them (RFC 7489 §6.6.1 leaves this to the receiver).
    """
    signers = [d for d in passing_domains if d]
    seen = False
    for text in from_addresses:
        address = try_parse_address(text)
        if address is None:
            return Decision.deny(Reason.DKIM_FAILED, text.strip() or "(empty From:)")
        seen = True
        if not any(aligned(address.domain, signer) for signer in signers):
            return Decision.deny(Reason.DKIM_FAILED, address.domain)
    if not seen:
        return Decision.deny(Reason.DKIM_FAILED, "(no From: address)")
    return Decision.allow()
