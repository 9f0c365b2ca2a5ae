"""directory: the vocabulary of the SQLite search index (prefix expansion)

Revision ID: directory_0002
Revises: directory_0001
Create Date: 2026-12-02 12:45:00

SQLite only: an ``fts5vocab`` table over ``directory_fts`` lists the index's tokens, so a
search can turn a prefix into the tokens it stands for (:mod:`directory.search`). It stores
nothing: it reads the full-text index itself. PostgreSQL needs nothing here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "directory_0002"
down_revision: str | None = "directory_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE directory_fts_vocab USING fts5vocab(directory_fts, 'row')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE directory_fts_vocab")
