"""SQLAlchemy Core tables of the trust-space rules (ARCHITECTURE.md §4), on their own MetaData.

No foreign keys to other packages' tables: a patient is referred to by INS, a professional
by address. Times are stored in UTC (read back through :func:`utc`, since SQLite returns
naive datetimes). Migration: ``caducee/migrations/versions/policy_0001_trust_rules.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from mailstore.tables import NAMING

metadata = MetaData(naming_convention=NAMING)

#: One row per (domain, source): the manual list, a file, an URL of the liste blanche.
trusted_domain = Table(
    "trusted_domain",
    metadata,
    Column("domain", String(253), nullable=False),  # A-label, lower-case
    Column("source", String(500), nullable=False),
    Column("added_by", String(320), nullable=False, server_default=""),
    Column("added_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("domain", "source", name="pk_trusted_domain"),
    Index("ix_trusted_domain_source", "source"),
)

#: The contact permission of a (patient, professional) pair (policy.patients).
contact_permission = Table(
    "contact_permission",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_ins", String(15), nullable=False),
    Column("professional", String(320), nullable=False),  # normalised address
    Column("first_message_id", Text, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("last_message_id", Text, nullable=False),
    Column("last_message_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("reopened_at", DateTime(timezone=True), nullable=True),
    Column("message_count", Integer, nullable=False, server_default="1"),
    UniqueConstraint("patient_ins", "professional", name="uq_contact_permission_pair"),
)

#: Operator-recorded registrations of a patient with a pharmacy (DOMAIN.md §5).
pharmacy_grant = Table(
    "pharmacy_grant",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_ins", String(15), nullable=False),
    Column("pharmacy", String(320), nullable=False),
    Column("granted_by", String(320), nullable=False, server_default=""),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_by", String(320), nullable=True),
    UniqueConstraint("patient_ins", "pharmacy", name="uq_pharmacy_grant_pair"),
)

#: What a patient account needs beyond the account row: notification address, activation.
patient_profile = Table(
    "patient_profile",
    metadata,
    Column("ins", String(15), primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("notification_email", String(320), nullable=False),
    Column("activation_code_hash", String(200), nullable=True),  # argon2id; NULL once used
    Column("activation_expires_at", DateTime(timezone=True), nullable=True),
    Column("activation_failures", Integer, nullable=False, server_default="0"),
    Column("activated_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

ALL_TABLES = (trusted_domain, contact_permission, pharmacy_grant, patient_profile)


def utc(value: datetime) -> datetime:
    """A stored datetime as an aware UTC datetime (SQLite gives naive ones back)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def to_db(value: datetime) -> datetime:
    """A datetime to store: aware, in UTC. Naive values are refused (they hide bugs)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (UTC)")
    return value.astimezone(UTC)
