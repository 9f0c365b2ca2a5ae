"""Storage of the contact permissions and pharmacy grants (policy.patients).

Functions take a SQLAlchemy ``Connection``: callers run them inside ``db.write``/``db.read``
(one transaction, the caller's). State changes go through the pure transition
:func:`policy.patients.on_professional_message`, so what is stored and what the rule
decides cannot drift apart. Works on SQLite and PostgreSQL; on PostgreSQL the row is locked
(``SELECT … FOR UPDATE``) so two nodes delivering at once serialise on it.

The trusted-domain list lives in :mod:`mailstore.policy_trust` and patient profiles in
:mod:`mailstore.policy_patients`; their main functions are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Row, and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mailstore.policy_tables import (
    contact_permission,
    pharmacy_grant,
    to_db,
    utc,
    utc_or_none,
)
from mailstore.policy_trust import (
    MANUAL_SOURCE,
    add_trusted,
    list_trusted,
    remove_trusted,
    replace_from_source,
    trusted_domains,
)
from policy.addresses import AddressError, is_patient_address, normalise_address
from policy.decision import Decision, Reason
from policy.patients import (
    ContactPermission,
    PharmacyGrant,
    may_patient_write,
    on_professional_message,
)

__all__ = [
    "MANUAL_SOURCE",
    "PermissionFacts",
    "add_trusted",
    "decide_patient_recipients",
    "grant_pharmacy",
    "list_permissions",
    "list_pharmacy_grants",
    "list_trusted",
    "permission_facts",
    "record_professional_message",
    "remove_trusted",
    "replace_from_source",
    "revoke_pharmacy",
    "trusted_domains",
]


class PolicyStoreError(ValueError):
    """A request the store refuses (an address that is not one, an unknown grant)."""


@dataclass(frozen=True, slots=True)
class PermissionFacts:
    """What :func:`policy.patients.may_patient_write` needs for one (patient, address) pair."""

    address: str
    permission: ContactPermission | None = None
    pharmacy: PharmacyGrant | None = None


def _address(value: str) -> str:
    try:
        return normalise_address(value)
    except AddressError as exc:
        raise PolicyStoreError(str(exc)) from None


def _permission(row: Row[tuple[object, ...]]) -> ContactPermission:
    m = row._mapping
    return ContactPermission(
        patient_ins=m["patient_ins"],
        professional=m["professional"],
        first_message_id=m["first_message_id"],
        granted_at=utc(m["granted_at"]),
        last_message_id=m["last_message_id"],
        last_message_at=utc(m["last_message_at"]),
        closed_at=utc_or_none(m["closed_at"]),
        reopened_at=utc_or_none(m["reopened_at"]),
    )


def _grant(row: Row[tuple[object, ...]]) -> PharmacyGrant:
    m = row._mapping
    return PharmacyGrant(
        patient_ins=m["patient_ins"],
        pharmacy=m["pharmacy"],
        granted_at=utc(m["granted_at"]),
        granted_by=m["granted_by"],
        revoked_at=utc_or_none(m["revoked_at"]),
        expires_at=utc_or_none(m["expires_at"]),
    )


def _insert_ignoring_conflict(conn: Connection, table_values: dict[str, object]) -> bool:
    """Insert a permission unless the pair exists (another node was faster); True if inserted."""
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(contact_permission).values(**table_values)
        stmt = pg.on_conflict_do_nothing(index_elements=["patient_ins", "professional"])
        return conn.execute(stmt).rowcount == 1
    if conn.dialect.name == "sqlite":
        lite = sqlite.insert(contact_permission).values(**table_values)
        stmt2 = lite.on_conflict_do_nothing(index_elements=["patient_ins", "professional"])
        return conn.execute(stmt2).rowcount == 1
    conn.execute(insert(contact_permission).values(**table_values))  # pragma: no cover
    return True  # pragma: no cover


def _load(conn: Connection, ins: str, professional: str) -> ContactPermission | None:
    row = conn.execute(
        select(contact_permission)
        .where(
            contact_permission.c.patient_ins == ins,
            contact_permission.c.professional == professional,
        )
        .with_for_update()
    ).first()
    return _permission(row) if row else None


def record_professional_message(
    conn: Connection,
    patient_ins: str,
    professional_address: str,
    message_id: str,
    at: datetime,
    closes: bool,
) -> ContactPermission:
    """Record that a professional's message reached the patient; return the new permission.

    The delivery path calls it for each patient recipient of a message whose sender
    :func:`policy.patients.grants_permission` accepts; ``closes`` is
    :func:`policy.patients.closes_conversation` of its ``X-MSS-MES`` values.
    """
    ins = patient_ins.upper()
    professional = _address(professional_address)
    at = to_db(at)
    for _ in range(2):
        current = _load(conn, ins, professional)
        new = on_professional_message(
            current,
            patient_ins=ins,
            professional=professional,
            message_id=message_id,
            at=at,
            closes=closes,
        )
        values = {
            "first_message_id": new.first_message_id,
            "granted_at": new.granted_at,
            "last_message_id": new.last_message_id,
            "last_message_at": new.last_message_at,
            "closed_at": new.closed_at,
            "reopened_at": new.reopened_at,
        }
        if current is None:
            inserted = _insert_ignoring_conflict(
                conn, {"patient_ins": ins, "professional": professional, "message_count": 1,
                       **values}
            )
            if inserted:
                return new
            continue  # inserted concurrently by another node: load it, locked, and apply
        conn.execute(
            update(contact_permission)
            .where(
                contact_permission.c.patient_ins == ins,
                contact_permission.c.professional == professional,
            )
            .values(message_count=contact_permission.c.message_count + 1, **values)
        )
        return new
    raise PolicyStoreError("contact permission changed concurrently")  # pragma: no cover


def list_permissions(conn: Connection, patient_ins: str) -> list[ContactPermission]:
    """Every professional who wrote to the patient (open or closed), latest first."""
    rows = conn.execute(
        select(contact_permission)
        .where(contact_permission.c.patient_ins == patient_ins.upper())
        .order_by(contact_permission.c.last_message_at.desc(), contact_permission.c.professional)
    ).all()
    return [_permission(r) for r in rows]


def permission_facts(
    conn: Connection, patient_ins: str, addresses: Iterable[str]
) -> dict[str, PermissionFacts]:
    """The stored permission and pharmacy grant of the patient for each address.

    Keys are the normalised addresses; an address that is not one maps to empty facts
    under its original spelling.
    """
    ins = patient_ins.upper()
    wanted: dict[str, str] = {}
    out: dict[str, PermissionFacts] = {}
    for a in addresses:
        try:
            wanted[normalise_address(a)] = a
        except AddressError:
            out[a] = PermissionFacts(a)
    if not wanted:
        return out
    perms = {
        p.professional: p
        for p in (
            _permission(r)
            for r in conn.execute(
                select(contact_permission).where(
                    contact_permission.c.patient_ins == ins,
                    contact_permission.c.professional.in_(list(wanted)),
                )
            )
        )
    }
    grants = {
        g.pharmacy: g
        for g in (
            _grant(r)
            for r in conn.execute(
                select(pharmacy_grant).where(
                    pharmacy_grant.c.patient_ins == ins,
                    pharmacy_grant.c.pharmacy.in_(list(wanted)),
                )
            )
        )
    }
    for address in wanted:
        out[address] = PermissionFacts(address, perms.get(address), grants.get(address))
    return out


def decide_patient_recipients(
    conn: Connection,
    *,
    patient_ins: str,
    recipients: Iterable[str],
    now: datetime,
    patient_domain: str,
    expiry: timedelta | None = None,
) -> list[tuple[str, Decision]]:
    """The patient-send rule for each recipient, with the stored facts (for the send API).

    A refused message is sent to nobody: callers refuse the whole message if any decision
    is a refusal, and name that recipient and reason.
    """
    listed = list(recipients)
    facts = permission_facts(conn, patient_ins, listed)
    out: list[tuple[str, Decision]] = []
    for original in listed:
        try:
            address = normalise_address(original)
        except AddressError:
            out.append((original, Decision.deny(Reason.UNKNOWN_RECIPIENT, original)))
            continue
        f = facts[address]
        out.append(
            (
                address,
                may_patient_write(
                    professional=address,
                    permission=f.permission,
                    pharmacy=f.pharmacy,
                    now=now,
                    expiry=expiry,
                    recipient_is_patient=is_patient_address(address, patient_domain),
                ),
            )
        )
    return out


def grant_pharmacy(
    conn: Connection,
    *,
    patient_ins: str,
    pharmacy: str,
    granted_by: str,
    at: datetime,
    expires_at: datetime | None = None,
) -> PharmacyGrant:
    """Record (or renew) the patient's registration with a pharmacy.

    The caller checks the pharmacy first with :func:`policy.patients.check_pharmacy`.
    """
    ins = patient_ins.upper()
    address = _address(pharmacy)
    values = {
        "granted_by": granted_by,
        "granted_at": to_db(at),
        "expires_at": to_db(expires_at) if expires_at else None,
        "revoked_at": None,
        "revoked_by": None,
    }
    done = conn.execute(
        update(pharmacy_grant)
        .where(pharmacy_grant.c.patient_ins == ins, pharmacy_grant.c.pharmacy == address)
        .values(**values)
    ).rowcount
    if not done:
        conn.execute(insert(pharmacy_grant).values(patient_ins=ins, pharmacy=address, **values))
    row = conn.execute(
        select(pharmacy_grant).where(
            pharmacy_grant.c.patient_ins == ins, pharmacy_grant.c.pharmacy == address
        )
    ).one()
    return _grant(row)


def revoke_pharmacy(
    conn: Connection, *, patient_ins: str, pharmacy: str, revoked_by: str, at: datetime
) -> bool:
    """End a pharmacy grant; False if there was no grant in force."""
    done = conn.execute(
        update(pharmacy_grant)
        .where(
            pharmacy_grant.c.patient_ins == patient_ins.upper(),
            pharmacy_grant.c.pharmacy == _address(pharmacy),
            pharmacy_grant.c.revoked_at.is_(None),
        )
        .values(revoked_at=to_db(at), revoked_by=revoked_by)
    ).rowcount
    return bool(done)


def list_pharmacy_grants(
    conn: Connection, patient_ins: str, *, in_force_at: datetime | None = None
) -> list[PharmacyGrant]:
    """The patient's pharmacy grants (only those in force at ``in_force_at`` if given)."""
    q = select(pharmacy_grant).where(pharmacy_grant.c.patient_ins == patient_ins.upper())
    if in_force_at is not None:
        now = to_db(in_force_at)
        q = q.where(
            pharmacy_grant.c.granted_at <= now,
            or_(pharmacy_grant.c.revoked_at.is_(None), pharmacy_grant.c.revoked_at > now),
            or_(pharmacy_grant.c.expires_at.is_(None), pharmacy_grant.c.expires_at > now),
        )
    rows = conn.execute(q.order_by(pharmacy_grant.c.pharmacy)).all()
    return [_grant(r) for r in rows]


def writable_professionals(
    conn: Connection, patient_ins: str, *, now: datetime, expiry: timedelta | None = None
) -> list[str]:
    """Addresses the patient may write to at ``now`` (for the webmail's recipient list)."""
    ins = patient_ins.upper()
    rows = conn.execute(
        select(contact_permission).where(
            and_(contact_permission.c.patient_ins == ins, contact_permission.c.closed_at.is_(None))
        )
    ).all()
    out = {
        p.professional
        for p in (_permission(r) for r in rows)
        if may_patient_write(professional=p.professional, permission=p, now=now, expiry=expiry)
    }
    out.update(g.pharmacy for g in list_pharmacy_grants(conn, ins, in_force_at=now))
    return sorted(out)
