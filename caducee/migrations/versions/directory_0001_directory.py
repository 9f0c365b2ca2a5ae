"""directory: practitioners, activities, mailboxes, search documents, import log

Revision ID: directory_0001
Revises:
Create Date: 2026-11-25 05:00:00

SQLite gets an FTS5 external-content table over ``directory_doc`` (ASCII tokens, no
positions: search terms are single tokens and prefixes, DOMAIN.md §4 / issue 6). PostgreSQL
gets a stored ``tsvector`` built from the same tokens with ``array_to_tsvector`` (no parser,
no stemming, so the tokens are exactly those SQLite sees) and a GIN index on it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "directory_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("directory",)
depends_on: str | Sequence[str] | None = None

_key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_sort = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
_tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "practitioner",
        sa.Column("id", _key, autoincrement=False, nullable=False),
        sa.Column("national_id", sa.String(length=12), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("name_terms", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("inactive_since", _tz, nullable=True),
        sa.Column("created_at", _tz, nullable=False),
        sa.Column("updated_at", _tz, nullable=False),
        sa.Column("created_import", sa.Integer(), nullable=False),
        sa.Column("changed_import", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_practitioner")),
    )
    op.create_table(
        "practitioner_activity",
        sa.Column("id", _key, nullable=False),
        sa.Column("practitioner_id", sa.BigInteger(), nullable=False),
        sa.Column("act_key", sa.BigInteger(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("inactive_since", _tz, nullable=True),
        sa.Column("created_import", sa.Integer(), nullable=False),
        sa.Column("changed_import", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_practitioner_activity")),
    )
    op.create_index(
        "uq_practitioner_activity_key", "practitioner_activity",
        ["practitioner_id", "act_key"], unique=True,
    )
    op.create_table(
        "directory_mailbox",
        sa.Column("id", _key, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("mailbox_type", sa.String(length=3), nullable=False),
        sa.Column("national_id", sa.String(length=12), nullable=True),
        sa.Column("practitioner_id", sa.BigInteger(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("name_terms", sa.Text(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("red_list", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("inactive_since", _tz, nullable=True),
        sa.Column("created_at", _tz, nullable=False),
        sa.Column("updated_at", _tz, nullable=False),
        sa.Column("created_import", sa.Integer(), nullable=False),
        sa.Column("changed_import", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_mailbox")),
        sa.UniqueConstraint("address", name=op.f("uq_directory_mailbox_address")),
    )
    op.create_index(
        "ix_directory_mailbox_practitioner_id", "directory_mailbox", ["practitioner_id"]
    )
    op.create_table(
        "directory_doc",
        sa.Column("pos", _key, autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("ref_id", sa.BigInteger(), nullable=False),
        sa.Column("sort_key", _sort, nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pos", name=op.f("pk_directory_doc")),
    )
    op.create_index("uq_directory_doc_ref", "directory_doc", ["kind", "ref_id"], unique=True)
    op.create_index("ix_directory_doc_sort_key", "directory_doc", ["sort_key"])
    op.create_table(
        "directory_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", _tz, nullable=False),
        sa.Column("finished_at", _tz, nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_import")),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE directory_fts USING fts5("
            "terms, content='directory_doc', content_rowid='pos', "
            "tokenize='ascii', prefix='3', detail='none', columnsize=0)"
        )
    else:
        op.execute(
            "ALTER TABLE directory_doc ADD COLUMN tsv tsvector GENERATED ALWAYS AS "
            "(array_to_tsvector(string_to_array(terms, ' '))) STORED"
        )
        op.execute("CREATE INDEX ix_directory_doc_tsv ON directory_doc USING gin (tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE directory_fts")
    op.drop_table("directory_import")
    op.drop_table("directory_doc")
    op.drop_table("directory_mailbox")
    op.drop_table("practitioner_activity")
    op.drop_table("practitioner")
