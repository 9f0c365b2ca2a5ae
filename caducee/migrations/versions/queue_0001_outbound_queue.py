"""outbound queue: queued messages (encrypted) and their remote recipients

Revision ID: queue_0001
Revises:
Create Date: 2026-11-25 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "queue_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("queue",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_message",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("smtputf8", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("eight_bit", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_message")),
    )
    op.create_index(
        op.f("ix_queue_message_queue_id"), "queue_message", ["queue_id"], unique=False
    )
    op.create_table(
        "queue_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_ref", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_ref"], ["queue_message.id"],
            name=op.f("fk_queue_entry_message_ref_queue_message"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_entry")),
    )
    op.create_index(
        op.f("ix_queue_entry_message_ref"), "queue_entry", ["message_ref"], unique=False
    )
    op.create_index("ix_queue_entry_next_attempt", "queue_entry", ["next_attempt"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_queue_entry_next_attempt", table_name="queue_entry")
    op.drop_index(op.f("ix_queue_entry_message_ref"), table_name="queue_entry")
    op.drop_table("queue_entry")
    op.drop_index(op.f("ix_queue_message_queue_id"), table_name="queue_message")
    op.drop_table("queue_message")
