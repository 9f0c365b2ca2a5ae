"""imap: the highest UIDVALIDITY of each account's deleted mailboxes

Revision ID: imap_0001
Revises:
Create Date: 2026-11-26 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "imap_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("imap",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailbox_uidvalidity",
        sa.Column("account_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("highest_deleted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_mailbox_uidvalidity")),
    )


def downgrade() -> None:
    op.drop_table("mailbox_uidvalidity")
