"""Where a message may go, and from where it may come (issue 7, "Domains"; ARCHITECTURE.md §5).

* A local recipient must exist (``unknown_recipient``, RFC 5321 §3.3 "550 no such user").
* A remote recipient is accepted only from an authenticated professional (submission) or
  a patient (the send API) — never from another operator (``relay_denied``: no open relay,
  RFC 5321 §3.6.2) — and only in a trusted domain (``domain_not_trusted``).
* Patients never write to patients, and never receive from patients
  (``patient_not_contacted``, DOMAIN.md §5).
* Inbound mail from another operator comes only from a trusted domain, never claiming one
  of ours (:func:`check_inbound_origin`).
* A patient's recipient (the send API) is routable like any other, and is still an active,
  referenced mailbox of the directory when the patient writes
  (:func:`check_patient_recipient`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from policy.addresses import try_parse_address
from policy.decision import Decision, Reason
from policy.directory_facts import DirectoryEntry
from policy.domains import TrustSpace, try_normalise_domain
from policy.patients import grants_permission


class Channel(StrEnum):
    """How a message enters."""

    #: An authenticated local professional through SMTP submission.
    SUBMISSION = "submission"
    #: Another operator of the trust space through the MTA (port 25).
    INBOUND = "inbound"
    #: A local patient through the send API (the webmail).
    PATIENT = "patient"


@dataclass(frozen=True, slots=True)
class LocalMailbox:
    """What the caller found for a recipient in one of our domains."""

    address: str
    is_patient: bool
    #: False when the account is disabled (a pending patient still receives mail).
    accepts_mail: bool = True


def check_recipient(
    recipient: str,
    *,
    channel: Channel,
    space: TrustSpace,
    local: LocalMailbox | None,
    sender_is_patient: bool = False,
) -> Decision:
    """Decide one ``RCPT TO`` (or one recipient of the send API).

    ``local`` is the caller's lookup of ``recipient`` among our accounts (``None`` when there
    is no account, or when the domain is not ours). ``sender_is_patient`` is implied by the
    ``PATIENT`` channel; inbound, the caller says whether the sender is a patient address.
    """
    address = try_parse_address(recipient)
    if address is None:
        return Decision.deny(Reason.UNKNOWN_RECIPIENT, recipient.strip())
    patient_sender = sender_is_patient or channel is Channel.PATIENT
    if space.is_own(address.domain):
        if local is None or not local.accepts_mail:
            return Decision.deny(Reason.UNKNOWN_RECIPIENT, str(address))
        if patient_sender and local.is_patient:
            return Decision.deny(
                Reason.PATIENT_NOT_CONTACTED, f"{address}: a patient cannot write to a patient"
            )
        return Decision.allow()
    if channel is Channel.INBOUND:
        return Decision.deny(Reason.RELAY_DENIED, str(address))
    if not space.is_trusted(address.domain):
        return Decision.deny(Reason.DOMAIN_NOT_TRUSTED, str(address))
    return Decision.allow()


def check_patient_recipient(
    recipient: str,
    *,
    space: TrustSpace,
    local: LocalMailbox | None,
    directory: DirectoryEntry | None,
) -> Decision:
    """Decide one recipient of a patient's message, once the contact permission allowed it.

    Routing first (:func:`check_recipient`, channel ``PATIENT``): a local professional
    whose account is gone or disabled is ``unknown_recipient`` — never queued, even if our
    own domain is also on the trusted list — and another operator's domain must still be
    trusted. Then the directory: the address must still be an active PER/ORG/APP/CAB
    mailbox (a professional who left, or a pharmacy that closed, can no longer be written
    to: ``patient_not_contacted``).
    """
    routed = check_recipient(recipient, channel=Channel.PATIENT, space=space, local=local)
    if not routed:
        return routed
    if not grants_permission(directory, sender_is_patient=False):
        return Decision.deny(
            Reason.PATIENT_NOT_CONTACTED,
            f"{recipient.strip()}: no longer a referenced professional mailbox",
        )
    return Decision.allow()


def _peer_trusted(name: str, space: TrustSpace) -> bool:
    """A peer certificate name is trusted if it is a trusted domain or inside one."""
    host = try_normalise_domain(name.removeprefix("*."))
    if host is None:
        return False
    labels = host.split(".")
    candidates = {".".join(labels[i:]) for i in range(len(labels) - 1)}
    return bool(candidates & space.trusted)


def check_inbound_origin(
    mail_from: str,
    *,
    space: TrustSpace,
    peer_names: Iterable[str] = (),
    require_peer_identity: bool = False,
) -> Decision:
    """Decide ``MAIL FROM`` on the MTA listener (ARCHITECTURE.md §2, flow 2).

    ``peer_names`` are the DNS names of the peer's verified client certificate (mutual TLS,
    DOMAIN.md §1). With ``require_peer_identity`` one of them must be a trusted domain or
    inside one. The null reverse-path (bounces, RFC 5321 §4.5.5) is accepted only from such
    a peer, since it names no domain to check.
    """
    names = list(peer_names)
    peer_ok = any(_peer_trusted(n, space) for n in names)
    if (require_peer_identity or names) and not peer_ok:
        shown = names[0] if names else "(no client certificate)"
        return Decision.deny(Reason.DOMAIN_NOT_TRUSTED, f"peer {shown}")
    stripped = mail_from.strip()
    if stripped in ("", "<>"):
        if peer_ok:
            return Decision.allow()
        return Decision.deny(Reason.DOMAIN_NOT_TRUSTED, "null sender from an unidentified peer")
    return check_other_operator_address(stripped, space)


def check_other_operator_address(text: str, space: TrustSpace) -> Decision:
    """An address another operator presents as its sender (envelope or header): in a
    trusted domain (``domain_not_trusted``), never in one of ours (``sender_not_owned``:
    our users' mail comes through submission)."""
    address = try_parse_address(text)
    if address is None:
        return Decision.deny(Reason.DOMAIN_NOT_TRUSTED, text.strip() or "(empty address)")
    if space.is_own(address.domain):
        return Decision.deny(
            Reason.SENDER_NOT_OWNED, f"{address}: our own domain, from another operator"
        )
    if address.domain not in space.trusted:
        return Decision.deny(Reason.DOMAIN_NOT_TRUSTED, str(address))
    return Decision.allow()
