"""Senders (referenced, owned) and recipients (exists, relay, trusted, patients)."""

from __future__ import annotations

import pytest

from policy.decision import Reason
from policy.directory_facts import DirectoryEntry, MailboxType
from policy.domains import TrustSpace
from policy.recipients import (
    Channel,
    LocalMailbox,
    check_inbound_origin,
    check_patient_recipient,
    check_recipient,
)
from policy.senders import (
    AccountKind,
    SenderAccount,
    check_envelope_sender,
    check_header_senders,
    check_sender_referenced,
)
from tests.policy.corpus import INS_A, INS_B

PRO = "claire.martin@chu.mssante.fr"
ENTRY = DirectoryEntry(PRO, MailboxType.PER)
SPACE = TrustSpace.of(["chu.mssante.fr"], "patient.chu.mssante.fr", ["clinique.mssante.fr"])
PATIENT_A = f"{INS_A}@patient.chu.mssante.fr"


def account(**kw: object) -> SenderAccount:
    base: dict[str, object] = {"address": PRO, "kind": AccountKind.PROFESSIONAL, "active": True,
                               "directory": ENTRY}
    base.update(kw)
    return SenderAccount(**base)  # type: ignore[arg-type]


def test_referenced_professional_may_send() -> None:
    assert check_sender_referenced(account()).allowed
    assert check_sender_referenced(
        account(kind=AccountKind.ORGANISATION,
                directory=DirectoryEntry("Claire.Martin@CHU.mssante.fr", MailboxType.ORG))
    ).allowed


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"kind": AccountKind.PATIENT}, "patient account"),
        ({"kind": AccountKind.ADMIN}, "admin account"),
        ({"active": False}, "disabled"),
        ({"directory": None}, "not in the directory"),
        ({"directory": DirectoryEntry(PRO, MailboxType.PER, active=False)}, "no longer"),
        ({"directory": DirectoryEntry("x@chu.mssante.fr", MailboxType.PER)}, "another address"),
    ],
)
def test_sender_not_referenced(changes: dict[str, object], words: str) -> None:
    d = check_sender_referenced(account(**changes))
    assert d.reason is Reason.SENDER_NOT_REFERENCED and words in d.detail


def test_envelope_sender_must_be_owned() -> None:
    acc = account(aliases=frozenset({"cardio@chu.mssante.fr"}))
    assert check_envelope_sender(f"<{PRO.upper()}>", acc).allowed
    assert check_envelope_sender("cardio@CHU.mssante.fr", acc).allowed
    assert check_envelope_sender("<>", acc).allowed  # read receipts (RFC 8098 §2.1)
    d = check_envelope_sender("<boss@chu.mssante.fr>", acc)
    assert d.reason is Reason.SENDER_NOT_OWNED and d.detail == "boss@chu.mssante.fr"
    assert check_envelope_sender("garbage", acc).reason is Reason.SENDER_NOT_OWNED


def test_header_senders_must_be_owned() -> None:
    acc = account()
    assert check_header_senders([PRO], acc).allowed
    assert check_header_senders([PRO, "other@chu.mssante.fr"], acc).reason is \
        Reason.SENDER_NOT_OWNED
    assert check_header_senders([], acc).detail == "(no From: address)"
    assert check_header_senders([""], acc).reason is Reason.SENDER_NOT_OWNED


LOCAL_PRO = LocalMailbox(PRO, is_patient=False)
LOCAL_PATIENT = LocalMailbox(PATIENT_A, is_patient=True)


@pytest.mark.parametrize(
    ("recipient", "channel", "local", "sender_is_patient", "reason"),
    [
        (PRO, Channel.SUBMISSION, LOCAL_PRO, False, Reason.OK),
        (PATIENT_A, Channel.SUBMISSION, LOCAL_PATIENT, False, Reason.OK),
        (PATIENT_A, Channel.INBOUND, LOCAL_PATIENT, False, Reason.OK),
        ("ghost@chu.mssante.fr", Channel.SUBMISSION, None, False, Reason.UNKNOWN_RECIPIENT),
        (PRO, Channel.INBOUND, LocalMailbox(PRO, False, accepts_mail=False), False,
         Reason.UNKNOWN_RECIPIENT),
        ("not an address", Channel.SUBMISSION, None, False, Reason.UNKNOWN_RECIPIENT),
        ("dr@clinique.mssante.fr", Channel.SUBMISSION, None, False, Reason.OK),
        ("dr@clinique.mssante.fr", Channel.PATIENT, None, False, Reason.OK),
        ("friend@gmail.com", Channel.SUBMISSION, None, False, Reason.DOMAIN_NOT_TRUSTED),
        ("friend@gmail.com", Channel.PATIENT, None, False, Reason.DOMAIN_NOT_TRUSTED),
        ("dr@clinique.mssante.fr", Channel.INBOUND, None, False, Reason.RELAY_DENIED),
        ("friend@gmail.com", Channel.INBOUND, None, False, Reason.RELAY_DENIED),
        (PATIENT_A, Channel.PATIENT, LOCAL_PATIENT, False, Reason.PATIENT_NOT_CONTACTED),
        (PATIENT_A, Channel.INBOUND, LOCAL_PATIENT, True, Reason.PATIENT_NOT_CONTACTED),
        (PRO, Channel.PATIENT, LOCAL_PRO, False, Reason.OK),
    ],
)
def test_check_recipient(recipient: str, channel: Channel, local: LocalMailbox | None,
                         sender_is_patient: bool, reason: Reason) -> None:
    d = check_recipient(recipient, channel=channel, space=SPACE, local=local,
                        sender_is_patient=sender_is_patient)
    assert d.reason is reason, d


@pytest.mark.parametrize(
    ("mail_from", "peers", "required", "reason"),
    [
        ("<dr@clinique.mssante.fr>", [], False, Reason.OK),
        ("<dr@clinique.mssante.fr>", ["mx1.clinique.mssante.fr"], True, Reason.OK),
        ("<dr@clinique.mssante.fr>", ["clinique.mssante.fr"], True, Reason.OK),
        ("<dr@clinique.mssante.fr>", [], True, Reason.DOMAIN_NOT_TRUSTED),
        ("<dr@clinique.mssante.fr>", ["mx.evil.example"], False, Reason.DOMAIN_NOT_TRUSTED),
        ("<x@gmail.com>", [], False, Reason.DOMAIN_NOT_TRUSTED),
        ("<x@gmail.com>", ["mx1.clinique.mssante.fr"], False, Reason.DOMAIN_NOT_TRUSTED),
        ("<boss@chu.mssante.fr>", [], False, Reason.SENDER_NOT_OWNED),
        (f"<{INS_B}@patient.chu.mssante.fr>", [], False, Reason.SENDER_NOT_OWNED),
        ("<>", ["mx1.clinique.mssante.fr"], False, Reason.OK),
        ("<>", [], False, Reason.DOMAIN_NOT_TRUSTED),
        ("garbage", [], False, Reason.DOMAIN_NOT_TRUSTED),
        # one pair of angle brackets at most, and a matched one
        ("dr@clinique.mssante.fr", [], False, Reason.OK),
        ("dr@clinique.mssante.fr>", [], False, Reason.DOMAIN_NOT_TRUSTED),
        ("<<dr@clinique.mssante.fr>>", [], False, Reason.DOMAIN_NOT_TRUSTED),
    ],
)
def test_check_inbound_origin(mail_from: str, peers: list[str], required: bool,
                              reason: Reason) -> None:
    d = check_inbound_origin(mail_from, space=SPACE, peer_names=peers,
                             require_peer_identity=required)
    assert d.reason is reason, d


REMOTE = "dr.autre@clinique.mssante.fr"


@pytest.mark.parametrize(
    ("recipient", "local", "entry", "reason"),
    [
        (PRO, LocalMailbox(PRO, is_patient=False), ENTRY, Reason.OK),
        (REMOTE, None, DirectoryEntry(REMOTE, MailboxType.PER), Reason.OK),
        ("officine@clinique.mssante.fr", None,
         DirectoryEntry("officine@clinique.mssante.fr", MailboxType.ORG, profession_code="21"),
         Reason.OK),
        # Our domain without an account (gone or disabled): never taken for a remote one.
        (PRO, None, ENTRY, Reason.UNKNOWN_RECIPIENT),
        (PRO, LocalMailbox(PRO, is_patient=False, accepts_mail=False), ENTRY,
         Reason.UNKNOWN_RECIPIENT),
        # Another operator that left the trust space.
        ("dr@parti.mssante.fr", None, DirectoryEntry("dr@parti.mssante.fr", MailboxType.PER),
         Reason.DOMAIN_NOT_TRUSTED),
        (PATIENT_A, LocalMailbox(PATIENT_A, is_patient=True), None,
         Reason.PATIENT_NOT_CONTACTED),
        # Left the directory, or never in it.
        (PRO, LocalMailbox(PRO, is_patient=False), DirectoryEntry(PRO, MailboxType.PER,
                                                                  active=False),
         Reason.PATIENT_NOT_CONTACTED),
        (REMOTE, None, None, Reason.PATIENT_NOT_CONTACTED),
    ],
)
def test_check_patient_recipient(recipient: str, local: LocalMailbox | None,
                                 entry: DirectoryEntry | None, reason: Reason) -> None:
    decision = check_patient_recipient(recipient, space=SPACE, local=local, directory=entry)
    assert (decision.allowed, decision.reason) == (reason is Reason.OK, reason)
    if not decision.allowed:
        assert recipient in decision.detail
