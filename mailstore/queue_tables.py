"""SQLAlchemy Core tables of the outbound queue (ARCHITECTURE.md §4 ``queue_entry``).

Two tables on their own MetaData (migration ``caducee/migrations/versions/queue_0001_*``):

* ``queue_message`` holds one accepted message once, however many remote recipients it
  has: its bytes encrypted with the *sending account's* data key (AES-256-GCM, associated
  data binding the ciphertext to the row and the account, see ``smtp_gateway.queue_store``),
  the envelope sender and the identifiers the journal needs. Nothing readable.
* ``queue_entry`` is one remote recipient of one message: where it goes, how many attempts,
  when the next one is due, the last error, and the lease of the node delivering it.

No foreign keys to other packages' tables (the account is referred to by id). Times are
UTC; SQLite gives them back naive, :func:`utc` puts the zone back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from mailstore.tables import NAMING

metadata = MetaData(naming_convention=NAMING)

#: Entry states: waiting for its next attempt, or claimed by a node (leased).
QUEUED = "queued"
ACTIVE = "active"

queue_message = Table(
    "queue_message",
    metadata,
    Column("id", String(32), primary_key=True),  # random 128-bit hex, part of the AAD
    Column("queue_id", String(32), nullable=False, index=True),  # as in "250 … queued as"
    Column("message_id", Text, nullable=False),
    Column("sender", String(320), nullable=False),  # envelope sender; "" is the null path
    Column("account_id", Integer, nullable=False),  # whose data key encrypts the body
    Column("size", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),  # encrypted RFC 5322 bytes
    #: The message needs SMTPUTF8 (RFC 6531) / 8BITMIME (RFC 6152) from the next hop.
    Column("smtputf8", Boolean, nullable=False, server_default="0"),
    Column("eight_bit", Boolean, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

queue_entry = Table(
    "queue_entry",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "message_ref",
        String(32),
        ForeignKey("queue_message.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("recipient", String(320), nullable=False),
    Column("domain", String(253), nullable=False),  # lower-case A-label
    Column("state", String(16), nullable=False, server_default=QUEUED),
    Column("attempts", Integer, nullable=False, server_default="0"),
    #: When the entry is due; while it is leased, when the lease ends.
    Column("next_attempt", DateTime(timezone=True), nullable=False),
    #: After this the entry bounces (RFC 5321 §4.5.4.1: give up after 4–5 days).
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_queue_entry_next_attempt", "next_attempt"),
)

ALL_TABLES = (queue_message, queue_entry)


def utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite returns naive ones)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
