"""SQLAlchemy Core tables of the mail store (ARCHITECTURE.md §4).

Callers outside :mod:`mailstore` never see these: they get our dataclasses.
Encrypted columns hold AES-256-GCM ciphertexts (see :mod:`mailstore.crypto`); sizes, flags,
UIDs and dates stay in clear so IMAP can answer most questions without decrypting.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

#: Account kinds.
PROFESSIONAL = "professional"
PATIENT = "patient"
ORGANISATION = "organisation"
ADMIN = "admin"

account = Table(
    "account",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),  # lower-case
    Column("kind", String(16), nullable=False),
    Column("display_name", String(200), nullable=False, server_default=""),
    Column("rpps", String(12), nullable=True, index=True),  # national id (8+RPPS / 0+ADELI)
    Column("ins", String(15), nullable=True, unique=True),  # patients only
    Column("password_hash", String(200), nullable=True),
    Column("cert_subject", String(200), nullable=True, unique=True),
    Column("state", String(16), nullable=False, server_default="active"),
    Column("credentials_version", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: An account's data key, wrapped by a master key (envelope encryption).
account_key = Table(
    "account_key",
    metadata,
    Column("account_id", Integer, ForeignKey("account.id", ondelete="CASCADE"), primary_key=True),
    Column("master_key_id", String(32), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rewrapped_at", DateTime(timezone=True), nullable=True),
)

mailbox = Table(
    "mailbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(500), nullable=False),  # hierarchy separator "/"
    Column("special_use", String(32), nullable=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False, server_default="1"),
    Column("highestmodseq", BigInteger, nullable=False, server_default="1"),
    Column("subscribed", Boolean, nullable=False, server_default="1"),
    UniqueConstraint("account_id", "name", name="uq_mailbox_account_name"),
)

#: The immutable content of a message, shared by its copies inside one account.
blob = Table(
    "blob",
    metadata,
    Column("id", String(32), primary_key=True),  # random 128-bit hex, part of the AAD
    Column("account_id", Integer, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("size", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),  # encrypted RFC 5322 bytes
    Column("meta", LargeBinary, nullable=False),  # encrypted JSON: envelope, structure, headers
    Column("created_at", DateTime(timezone=True), nullable=False),
)

message = Table(
    "message",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailbox.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Column("flags", Text, nullable=False, server_default=""),  # space-separated, sorted
    Column("internal_date", DateTime(timezone=True), nullable=False),
    Column("size", Integer, nullable=False),
    Column("blob_id", String(32), ForeignKey("blob.id"), nullable=False, index=True),
    Column("recent", Boolean, nullable=False, server_default="1"),
    UniqueConstraint("mailbox_id", "uid", name="uq_message_mailbox_uid"),
    Index("ix_message_mailbox_modseq", "mailbox_id", "modseq"),
)

ALL_TABLES = (account, account_key, mailbox, blob, message)
