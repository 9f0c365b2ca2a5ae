"""Storage of the trust rules, on SQLite and PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from mailstore import accounts, policy_patients, policy_store, policy_trust
from mailstore.crypto import MasterKeyring
from mailstore.db import Database, Tx
from mailstore.keystore import KeyStore
from mailstore.policy_patients import ActivationResult, PatientError
from mailstore.policy_tables import metadata
from mailstore.policy_trust import TrustStoreError
from policy.decision import Decision, Reason
from tests.policy.corpus import INS_A, INS_B, INS_CORSICA, make_ins
from tests.policy.test_patients_property import (
    PROS,
    Event,
    Grant,
    PatientWrites,
    ProWrites,
    Reference,
    Revoke,
    steps,
)
from tests.support.schema import schema_drift

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PRO = "claire.martin@chu.mssante.fr"
PATIENT_DOMAIN = "patient.chu.mssante.fr"



def test_migration_matches_the_tables(db: Database) -> None:
    assert db.read_sync(lambda conn: schema_drift(conn, metadata)) == []


def test_grant_close_reopen_stored(db: Database) -> None:
    def write(at: datetime, closes: bool, mid: str) -> None:
        db.write_sync(lambda tx: policy_store.record_professional_message(
            tx.conn, INS_A.lower(), "Claire.Martin@CHU.mssante.fr", mid, at, closes))

    write(T0, False, "<1@x>")
    write(T0 + timedelta(days=1), True, "<2@x>")
    [p] = db.read_sync(lambda c: policy_store.list_permissions(c, INS_A))
    assert (p.professional, p.first_message_id, p.granted_at) == (PRO, "<1@x>", T0)
    assert p.closed_at == T0 + timedelta(days=1) and p.last_message_id == "<2@x>"
    write(T0 + timedelta(days=2), False, "<3@x>")
    write(T0 - timedelta(days=1), False, "<0@x>")  # late arrival: only the first message moves
    [p] = db.read_sync(lambda c: policy_store.list_permissions(c, INS_A))
    assert p.is_open and p.reopened_at == T0 + timedelta(days=2)
    assert (p.first_message_id, p.granted_at) == ("<0@x>", T0 - timedelta(days=1))
    assert p.last_message_id == "<3@x>"


def test_permission_facts_and_patient_decisions(db: Database) -> None:
    db.write_sync(lambda tx: policy_store.record_professional_message(
        tx.conn, INS_A, PRO, "<1@x>", T0, False))
    db.write_sync(lambda tx: policy_store.record_professional_message(
        tx.conn, INS_A, "closer@chu.mssante.fr", "<2@x>", T0, True))
    db.write_sync(lambda tx: policy_store.grant_pharmacy(
        tx.conn, patient_ins=INS_A, pharmacy="Officine@Pharma.mssante.fr", granted_by="op",
        at=T0))
    facts = db.read_sync(lambda c: policy_store.permission_facts(
        c, INS_A, [PRO.upper(), "officine@pharma.mssante.fr", "nobody@chu.mssante.fr", "junk"]))
    assert facts[PRO].permission is not None and facts[PRO].pharmacy is None
    assert facts["officine@pharma.mssante.fr"].pharmacy is not None
    assert facts["nobody@chu.mssante.fr"].permission is None
    assert facts["junk"].permission is None
    other = db.read_sync(lambda c: policy_store.permission_facts(c, INS_B, [PRO]))
    assert other[PRO].permission is None

    now = T0 + timedelta(hours=1)
    decisions = dict(db.read_sync(lambda c: policy_store.decide_patient_recipients(
        c, patient_ins=INS_A, now=now, patient_domain=PATIENT_DOMAIN,
        recipients=[PRO, "officine@pharma.mssante.fr", "closer@chu.mssante.fr",
                    "nobody@chu.mssante.fr", f"{INS_B}@{PATIENT_DOMAIN}", "junk"])))
    assert decisions[PRO].allowed and decisions["officine@pharma.mssante.fr"].allowed
    for refused in ("closer@chu.mssante.fr", "nobody@chu.mssante.fr", f"{INS_B}@{PATIENT_DOMAIN}"):
        assert decisions[refused].reason is Reason.PATIENT_NOT_CONTACTED, refused
    assert decisions["junk"].reason is Reason.UNKNOWN_RECIPIENT
    expired = dict(db.read_sync(lambda c: policy_store.decide_patient_recipients(
        c, patient_ins=INS_A, now=T0 + timedelta(days=8), patient_domain=PATIENT_DOMAIN,
        recipients=[PRO], expiry=timedelta(days=7))))
    assert expired[PRO].reason is Reason.PATIENT_NOT_CONTACTED
    writable = db.read_sync(lambda c: policy_store.writable_professionals(c, INS_A, now=now))
    assert writable == ["claire.martin@chu.mssante.fr", "officine@pharma.mssante.fr"]


def test_pharmacy_grants(db: Database) -> None:
    ph = "officine@pharma.mssante.fr"
    grant = db.write_sync(lambda tx: policy_store.grant_pharmacy(
        tx.conn, patient_ins=INS_A, pharmacy=ph, granted_by="op", at=T0,
        expires_at=T0 + timedelta(days=30)))
    assert grant.holds_at(T0) and grant.expires_at == T0 + timedelta(days=30)
    assert db.write_sync(lambda tx: policy_store.revoke_pharmacy(
        tx.conn, patient_ins=INS_A, pharmacy=ph, revoked_by="op", at=T0 + timedelta(days=1)))
    assert not db.write_sync(lambda tx: policy_store.revoke_pharmacy(
        tx.conn, patient_ins=INS_A, pharmacy=ph, revoked_by="op", at=T0 + timedelta(days=2)))
    assert db.read_sync(lambda c: policy_store.list_pharmacy_grants(
        c, INS_A, in_force_at=T0 + timedelta(days=2))) == []
    again = db.write_sync(lambda tx: policy_store.grant_pharmacy(
        tx.conn, patient_ins=INS_A, pharmacy=ph, granted_by="op2", at=T0 + timedelta(days=3)))
    assert again.revoked_at is None and again.expires_at is None and again.granted_by == "op2"
    [g] = db.read_sync(lambda c: policy_store.list_pharmacy_grants(
        c, INS_A, in_force_at=T0 + timedelta(days=300)))
    assert g.pharmacy == ph
    with pytest.raises(policy_store.PolicyStoreError):
        db.write_sync(lambda tx: policy_store.grant_pharmacy(
            tx.conn, patient_ins=INS_A, pharmacy="not an address", granted_by="op", at=T0))


def test_trusted_domains(db: Database) -> None:
    assert db.write_sync(lambda tx: policy_trust.add_trusted(
        tx.conn, "Santé.MSSante.fr", added_by="admin", at=T0))
    assert not db.write_sync(lambda tx: policy_trust.add_trusted(
        tx.conn, "xn--sant-epa.mssante.fr", at=T0))
    src = "https://liste.example/lb.xml"
    r = db.write_sync(lambda tx: policy_trust.replace_from_source(
        tx.conn, src, ["a.mssante.fr", "b.mssante.fr", "santé.mssante.fr"], at=T0))
    assert (r.added, r.removed, r.kept) == (3, 0, 0)
    r = db.write_sync(lambda tx: policy_trust.replace_from_source(
        tx.conn, src, ["b.mssante.fr", "c.mssante.fr"], at=T0))
    assert (r.added, r.removed, r.kept) == (1, 2, 1)
    assert db.read_sync(policy_trust.trusted_domains) == {
        "b.mssante.fr", "c.mssante.fr", "xn--sant-epa.mssante.fr"}
    assert db.read_sync(policy_trust.source_counts) == {"manual": 1, src: 2}
    entries = db.read_sync(lambda c: policy_trust.list_trusted(c, source="manual"))
    assert [(e.domain, e.added_by, e.added_at) for e in entries] == [
        ("xn--sant-epa.mssante.fr", "admin", T0)]
    # removing from the manual list keeps what a list source still says
    db.write_sync(lambda tx: policy_trust.replace_from_source(tx.conn, src, ["santé.mssante.fr"],
                                                              at=T0))
    assert db.write_sync(lambda tx: policy_trust.remove_trusted(tx.conn, "santé.mssante.fr")) == 1
    assert db.read_sync(policy_trust.trusted_domains) == {"xn--sant-epa.mssante.fr"}
    assert db.write_sync(lambda tx: policy_trust.remove_trusted(
        tx.conn, "santé.mssante.fr", source=None)) == 1
    assert db.read_sync(policy_trust.trusted_domains) == frozenset()
    with pytest.raises(TrustStoreError):
        db.write_sync(lambda tx: policy_trust.add_trusted(tx.conn, "not a domain", at=T0))


def test_patient_account_and_activation(db: Database) -> None:
    keystore = KeyStore(MasterKeyring.generate())

    def add(ins: str, email: str = "Jeanne@Example.org") -> tuple[accounts.Account, str]:
        return db.write_sync(lambda tx: policy_patients.add_patient(
            tx.conn, keystore, ins=ins, patient_domain=PATIENT_DOMAIN,
            display_name="Jeanne Patiente", notification_email=email, now=T0))

    acc, code = add(INS_CORSICA.lower())
    assert acc.address == f"{INS_CORSICA.lower()}@{PATIENT_DOMAIN}"
    assert acc.kind == "patient" and acc.state == accounts.PENDING and acc.ins == INS_CORSICA
    assert len(code) == 14 and code.count("-") == 2
    profile = db.read_sync(lambda c: policy_patients.get_profile(c, INS_CORSICA))
    assert profile is not None and profile.notification_email == "jeanne@example.org"
    assert profile.has_pending_code and profile.activation_expires_at == T0 + timedelta(days=30)

    with pytest.raises(accounts.AccountError):
        add(INS_CORSICA)
    with pytest.raises(PatientError, match="INS key is wrong"):
        add(INS_A[:-2] + "00")
    with pytest.raises(PatientError):
        add(INS_A, email="not an address")

    def activate(code: str, when: datetime = T0, password: str | None = None) -> ActivationResult:
        return db.write_sync(lambda tx: policy_patients.activate_patient(
            tx.conn, ins=INS_CORSICA, code=code, now=when, password=password))

    assert activate("0000-0000-0000") is ActivationResult.WRONG_CODE
    assert activate(code, when=T0 + timedelta(days=31)) is ActivationResult.EXPIRED
    assert activate(code.lower().replace("-", " "), password="un mot de passe long") is \
        ActivationResult.ACTIVATED
    assert activate(code) is ActivationResult.NO_PENDING_CODE
    active = db.read_sync(lambda c: accounts.get_by_address(c, acc.address))
    assert active is not None and active.state == accounts.ACTIVE
    assert db.read_sync(lambda c: accounts.password_hash_of(c, active.id))
    profile = db.read_sync(lambda c: policy_patients.get_profile(c, INS_CORSICA))
    assert profile is not None and profile.activated_at == T0 and not profile.has_pending_code
    with pytest.raises(PatientError, match="already activated"):
        db.write_sync(lambda tx: policy_patients.reissue_activation_code(
            tx.conn, INS_CORSICA, now=T0))
    with pytest.raises(PatientError, match="no patient"):
        db.write_sync(lambda tx: policy_patients.reissue_activation_code(tx.conn, INS_A, now=T0))
    assert db.write_sync(lambda tx: policy_patients.activate_patient(
        tx.conn, ins=INS_A, code=code, now=T0)) is ActivationResult.UNKNOWN_PATIENT


def test_wrong_codes_lock_until_a_new_code_is_issued(db: Database) -> None:
    keystore = KeyStore(MasterKeyring.generate())
    _, code = db.write_sync(lambda tx: policy_patients.add_patient(
        tx.conn, keystore, ins=INS_B, patient_domain=PATIENT_DOMAIN, display_name="P",
        notification_email="p@example.org", now=T0))
    for _ in range(policy_patients.MAX_ACTIVATION_FAILURES):
        assert db.write_sync(lambda tx: policy_patients.activate_patient(
            tx.conn, ins=INS_B, code="WRONG", now=T0)) is ActivationResult.WRONG_CODE
    assert db.write_sync(lambda tx: policy_patients.activate_patient(
        tx.conn, ins=INS_B, code=code, now=T0)) is ActivationResult.LOCKED
    new = db.write_sync(lambda tx: policy_patients.reissue_activation_code(
        tx.conn, INS_B, now=T0))
    assert db.write_sync(lambda tx: policy_patients.activate_patient(
        tx.conn, ins=INS_B, code=code, now=T0)) is ActivationResult.WRONG_CODE
    assert db.write_sync(lambda tx: policy_patients.activate_patient(
        tx.conn, ins=INS_B, code=new, now=T0)) is ActivationResult.ACTIVATED


_patients = (make_ins(f"1{i:012d}") for i in itertools.count(1_000_000))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=steps, expiry_days=st.sampled_from([0, 7]))
def test_stored_permissions_follow_the_reference(
    db: Database, steps: list[tuple[Event, int]], expiry_days: int
) -> None:
    """The property of test_patients_property, through the database."""
    ins = next(_patients)
    expiry = timedelta(days=expiry_days) if expiry_days else None
    ref = Reference(expiry)
    at = T0
    for n, (event, pause) in enumerate(steps):
        at += timedelta(seconds=pause)
        if isinstance(event, PatientWrites):
            d = db.read_sync(_decide(ins, PROS[event.pro], at, expiry))
            assert d.allowed == ref.allowed(event.pro, at), (event, at)
        else:
            db.write_sync(_apply(ins, event, at, f"<{n}@t>"))
        ref.apply(event, at)


def _decide(
    ins: str, pro: str, at: datetime, expiry: timedelta | None
) -> Callable[[Connection], Decision]:
    def read(conn: Connection) -> Decision:
        [(_, decision)] = policy_store.decide_patient_recipients(
            conn, patient_ins=ins, recipients=[pro], now=at, patient_domain=PATIENT_DOMAIN,
            expiry=expiry)
        return decision

    return read


def _apply(ins: str, event: Event, at: datetime, message_id: str) -> Callable[[Tx], object]:
    def write(tx: Tx) -> object:
        if isinstance(event, ProWrites):
            return policy_store.record_professional_message(
                tx.conn, ins, PROS[event.pro], message_id, at, event.closes)
        if isinstance(event, Grant):
            return policy_store.grant_pharmacy(
                tx.conn, patient_ins=ins, pharmacy=PROS[event.pro], granted_by="op", at=at,
                expires_at=at + timedelta(days=event.days) if event.days else None)
        if isinstance(event, Revoke):
            return policy_store.revoke_pharmacy(
                tx.conn, patient_ins=ins, pharmacy=PROS[event.pro], revoked_by="op", at=at)
        return None

    return write
