"""SQLAlchemy Core tables of the directory (ARCHITECTURE.md §4), on their own ``MetaData``.

Storage choices, for the national size (≈ 2 million activity lines, 550,000 mailboxes):

* A practitioner's primary key is its national identifier read as an integer
  (``8`` + RPPS → 12 digits, ``0`` + ADELI → a number below 10¹⁰, so the two never
  collide). Activity lines then carry their practitioner's key without any lookup.
* ``raw`` columns keep the *source record* exactly as the extract gave it (the ``|``-joined
  fields, in canonical column order: :mod:`directory.formats`). They are compact, need no
  per-column binding at import time, and let ``show`` display every published field.
  Manual edits never touch ``raw``: they live in ``overrides`` (JSON) and are laid over
  ``raw`` when read (:mod:`directory.records`).
* Only what search and policy need is extracted into columns: name and search terms
  (:mod:`directory.normalise`), state, the links between mailboxes and practitioners.
* An activity is identified by its practitioner and a 64-bit hash of its fields
  (``act_key``): re-importing an unchanged line finds the same row.
* ``changed_import`` / ``created_import`` hold the number of the import (``directory_import``)
  that last changed or created a row: a delta is read from them.
* ``directory_doc`` holds one search document per result (a practitioner, or a mailbox not
  attached to a practitioner). Its ``pos`` follows alphabetical order, so the full-text index
  (FTS5 rowid / ``ORDER BY pos`` on PostgreSQL) returns the first page in order without
  sorting every match (:mod:`directory.search_index`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
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

#: A 64-bit key that is SQLite's rowid (``INTEGER PRIMARY KEY``) there.
RowKey = BigInteger().with_variant(Integer(), "sqlite")
#: Text compared byte by byte on both backends (sort keys are ASCII).
BinaryText = Text().with_variant(Text(collation="C"), "postgresql")

#: Where a row came from.
SOURCE_IMPORT = "import"
SOURCE_MANUAL = "manual"

practitioner = Table(
    "practitioner",
    metadata,
    Column("id", RowKey, primary_key=True, autoincrement=False),  # int(national_id)
    Column("national_id", String(12), nullable=False),
    Column("raw", Text, nullable=False),  # person columns 0..8 of the extract
    Column("name_terms", Text, nullable=False),  # effective names, folded (sort key first)
    Column("source", String(8), nullable=False),
    #: Listed by the latest extract of its kind (or added by hand and never delisted).
    Column("listed", Boolean, nullable=False),
    #: Effective state: listed, and not deactivated by hand.
    Column("active", Boolean, nullable=False),
    Column("inactive_since", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_import", Integer, nullable=False),
    Column("changed_import", Integer, nullable=False),
    Column("overrides", Text, nullable=True),  # JSON {field: {value, by, at, imported}}
)

activity = Table(
    "practitioner_activity",
    metadata,
    Column("id", RowKey, primary_key=True),
    Column("practitioner_id", BigInteger, nullable=False),
    Column("act_key", BigInteger, nullable=False),  # 64-bit hash of raw
    Column("raw", Text, nullable=False),  # person columns 9..51 of the extract
    Column("terms", Text, nullable=False),  # profession, specialty, town, postcode, dept
    Column("source", String(8), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("inactive_since", DateTime(timezone=True), nullable=True),
    Column("created_import", Integer, nullable=False),
    Column("changed_import", Integer, nullable=False),
    Index("uq_practitioner_activity_key", "practitioner_id", "act_key", unique=True),
)

mailbox = Table(
    "directory_mailbox",
    metadata,
    Column("id", RowKey, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),  # lower-case
    Column("mailbox_type", String(3), nullable=False),  # PER / ORG / APP / CAB (effective)
    Column("national_id", String(12), nullable=True),  # effective
    Column("practitioner_id", BigInteger, nullable=True, index=True),
    Column("raw", Text, nullable=False),  # the 31 columns of the extract
    Column("name_terms", Text, nullable=False),
    Column("terms", Text, nullable=False),
    Column("red_list", Boolean, nullable=False),
    Column("source", String(8), nullable=False),
    #: Listed by the latest extract of its kind (or added by hand and never delisted).
    Column("listed", Boolean, nullable=False),
    #: Effective state: listed, and not deactivated by hand.
    Column("active", Boolean, nullable=False),
    Column("inactive_since", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_import", Integer, nullable=False),
    Column("changed_import", Integer, nullable=False),
    Column("overrides", Text, nullable=True),
)

#: Kinds of search document.
DOC_PRACTITIONER = "p"
DOC_MAILBOX = "m"

doc = Table(
    "directory_doc",
    metadata,
    Column("pos", RowKey, primary_key=True, autoincrement=False),  # alphabetical position
    Column("kind", String(1), nullable=False),
    Column("ref_id", BigInteger, nullable=False),
    Column("sort_key", BinaryText, nullable=False),
    Column("terms", Text, nullable=False),
    Index("uq_directory_doc_ref", "kind", "ref_id", unique=True),
    Index("ix_directory_doc_sort_key", "sort_key"),
)

#: One row per import (its id numbers the changes it made), and manual-edit counters.
import_log = Table(
    "directory_import",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("files", Text, nullable=False),
    Column("summary", Text, nullable=False, server_default="{}"),  # JSON counters
)

#: The SQLite full-text table (external content over ``directory_doc``): created by the
#: migration, not part of the metadata.
FTS_TABLE = "directory_fts"
#: Its vocabulary (an ``fts5vocab`` table: one row per token in the index).
FTS_VOCAB = "directory_fts_vocab"
