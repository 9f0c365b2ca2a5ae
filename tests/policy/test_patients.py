"""The contact permission: grant, close, reopen, pharmacy, expiry — unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from policy.decision import Reason
from policy.directory_facts import DirectoryEntry, MailboxType
from policy.patients import (
    ContactPermission,
    PharmacyGrant,
    check_pharmacy,
    closes_conversation,
    grants_permission,
    may_patient_write,
    on_professional_message,
)
from tests.policy.corpus import INS_A

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PRO = "claire.martin@chu.mssante.fr"


def msg(current: ContactPermission | None, at: datetime, *, closes: bool = False,
        mid: str = "<m@x>") -> ContactPermission:
    return on_professional_message(current, patient_ins=INS_A, professional=PRO, message_id=mid,
                                   at=at, closes=closes)


def test_closing_header() -> None:
    assert closes_conversation(["FIN"]) and closes_conversation([" fin "])
    assert closes_conversation(["OUVERT", "FIN"])
    assert not closes_conversation([]) and not closes_conversation(["FINAL"])


def test_who_grants_a_permission() -> None:
    for t in MailboxType:
        assert grants_permission(DirectoryEntry(PRO, t), sender_is_patient=False)
    assert not grants_permission(None, sender_is_patient=False)
    assert not grants_permission(DirectoryEntry(PRO, MailboxType.PER, active=False),
                                 sender_is_patient=False)
    assert not grants_permission(DirectoryEntry(PRO, MailboxType.PER), sender_is_patient=True)


def test_grant_close_reopen() -> None:
    p = msg(None, T0, mid="<first@x>")
    assert p.first_message_id == "<first@x>" and p.granted_at == T0 and p.is_open
    now = T0 + timedelta(hours=1)
    assert may_patient_write(professional=PRO, permission=p, now=now).allowed
    p = msg(p, T0 + timedelta(days=1), closes=True, mid="<fin@x>")
    assert not p.is_open and p.last_message_id == "<fin@x>"
    d = may_patient_write(professional=PRO, permission=p, now=T0 + timedelta(days=2))
    assert d.reason is Reason.PATIENT_NOT_CONTACTED and "closed" in d.detail
    p = msg(p, T0 + timedelta(days=3), mid="<again@x>")
    assert p.is_open and p.reopened_at == T0 + timedelta(days=3)
    assert p.first_message_id == "<first@x>" and p.granted_at == T0
    assert may_patient_write(professional=PRO, permission=p, now=T0 + timedelta(days=4)).allowed


def test_first_message_can_close_at_once() -> None:
    p = msg(None, T0, closes=True)
    assert not may_patient_write(professional=PRO, permission=p, now=T0).allowed


def test_late_arrival_does_not_change_the_state() -> None:
    p = msg(None, T0 + timedelta(days=1), closes=True, mid="<fin@x>")
    late = msg(p, T0, mid="<older@x>")
    assert late.closed_at is not None and late.first_message_id == "<older@x>"
    assert late.granted_at == T0 and late.last_message_id == "<fin@x>"
    later_but_not_first = msg(late, T0 + timedelta(hours=1))
    assert later_but_not_first == late


def test_no_permission_and_patients() -> None:
    d = may_patient_write(professional=PRO, permission=None, now=T0)
    assert d.reason is Reason.PATIENT_NOT_CONTACTED and PRO in d.detail
    d = may_patient_write(professional=PRO, permission=msg(None, T0), now=T0,
                          recipient_is_patient=True)
    assert d.reason is Reason.PATIENT_NOT_CONTACTED and "patient cannot write" in d.detail


def test_message_from_the_future_fails_closed() -> None:
    p = msg(None, T0 + timedelta(minutes=5))
    assert not may_patient_write(professional=PRO, permission=p, now=T0).allowed


def test_expiry() -> None:
    p = msg(None, T0)
    week = timedelta(days=7)
    assert may_patient_write(professional=PRO, permission=p, now=T0 + week, expiry=week).allowed
    d = may_patient_write(professional=PRO, permission=p, now=T0 + week + timedelta(seconds=1),
                          expiry=week)
    assert d.reason is Reason.PATIENT_NOT_CONTACTED and "expired" in d.detail
    assert may_patient_write(professional=PRO, permission=p, now=T0 + 100 * week,
                             expiry=timedelta(0)).allowed


def test_pharmacy_grant() -> None:
    pharmacy = "officine@pharma.mssante.fr"
    g = PharmacyGrant(INS_A, pharmacy, granted_at=T0, expires_at=T0 + timedelta(days=30))
    assert may_patient_write(professional=pharmacy, permission=None, pharmacy=g,
                             now=T0).allowed
    assert not g.holds_at(T0 - timedelta(seconds=1))
    assert not g.holds_at(T0 + timedelta(days=30))
    revoked = PharmacyGrant(INS_A, pharmacy, granted_at=T0, revoked_at=T0 + timedelta(days=1))
    assert revoked.holds_at(T0) and not revoked.holds_at(T0 + timedelta(days=1))
    assert not may_patient_write(professional=pharmacy, permission=None, pharmacy=revoked,
                                 now=T0 + timedelta(days=2)).allowed


def test_check_pharmacy() -> None:
    ok = DirectoryEntry("officine@pharma.mssante.fr", MailboxType.ORG, profession_code="21")
    assert check_pharmacy(ok) is None
    assert check_pharmacy(None) is not None
    assert "not an organisational mailbox of a pharmacy" in (check_pharmacy(
        DirectoryEntry("dr@x.fr", MailboxType.PER, profession_code="21")) or "")
    assert check_pharmacy(DirectoryEntry("o@x.fr", MailboxType.ORG, profession_code="10"))
    assert check_pharmacy(DirectoryEntry("o@x.fr", MailboxType.ORG, False, "21"))
