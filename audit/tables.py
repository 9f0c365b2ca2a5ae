"""SQLAlchemy Core tables of the journal, on the audit package's own metadata.

* ``audit_entry``: one row per event, numbered gap-free by ``seq``, chained by ``hash``
  (see :mod:`audit.canonical`). ``at`` is stored as fixed-width ISO 8601 UTC text, so it
  sorts as text and goes into the canonical encoding exactly as stored.
* ``audit_head``: a single row (``id = 1``) holding the chain head. Every append locks and
  updates it inside the caller's transaction, which gives one gap-free order across
  processes and makes a rolled-back savepoint roll the head back with its entries.
* ``audit_checkpoint``: signed ``(seq, hash)`` statements (Ed25519), also mirrored to an
  append-only file outside the database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

#: 64-bit on PostgreSQL; on SQLite ``INTEGER PRIMARY KEY`` makes ``seq`` the rowid (fast scans).
SeqType = BigInteger().with_variant(Integer(), "sqlite")

HEAD_ID = 1

audit_entry = Table(
    "audit_entry",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("at", String(27), nullable=False),
    Column("action", String(64), nullable=False),
    Column("actor", String(320), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("message_id", String(998), nullable=True),
    Column("document_id", String(200), nullable=True),
    Column("queue_id", String(64), nullable=True),
    Column("patient_ins", String(32), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("protocol", String(16), nullable=True),
    Column("object_ids", Text, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Index("ix_audit_entry_at", "at"),
    Index("ix_audit_entry_patient_ins", "patient_ins", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    #: The last sequence number handed out, and its hash.
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    #: The sequence number of the latest signed checkpoint.
    Column("checkpoint_seq", BigInteger, nullable=False),
    #: Entries up to this number were removed by a (signed) prune.
    Column("pruned_through", BigInteger, nullable=False),
)

audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("at", String(27), nullable=False),
    #: "periodic" (every N entries or T seconds), "manual", or "prune" (a prune boundary).
    Column("kind", String(16), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Index("ix_audit_checkpoint_seq", "seq"),
)
