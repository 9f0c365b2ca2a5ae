"""trust rules: trusted domains, contact permissions, pharmacy grants, patient profiles

Revision ID: policy_0001
Revises:
Create Date: 2026-11-25 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "policy_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("policy",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trusted_domain",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("added_by", sa.String(length=320), server_default="", nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("domain", "source", name="pk_trusted_domain"),
    )
    op.create_index("ix_trusted_domain_source", "trusted_domain", ["source"], unique=False)
    op.create_table(
        "contact_permission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_ins", sa.String(length=15), nullable=False),
        sa.Column("professional", sa.String(length=320), nullable=False),
        sa.Column("first_message_id", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_message_id", sa.Text(), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_count", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_permission")),
        sa.UniqueConstraint("patient_ins", "professional", name="uq_contact_permission_pair"),
    )
    op.create_table(
        "pharmacy_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_ins", sa.String(length=15), nullable=False),
        sa.Column("pharmacy", sa.String(length=320), nullable=False),
        sa.Column("granted_by", sa.String(length=320), server_default="", nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacy_grant")),
        sa.UniqueConstraint("patient_ins", "pharmacy", name="uq_pharmacy_grant_pair"),
    )
    op.create_table(
        "patient_profile",
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("notification_email", sa.String(length=320), nullable=False),
        sa.Column("activation_code_hash", sa.String(length=200), nullable=True),
        sa.Column("activation_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activation_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ins", name=op.f("pk_patient_profile")),
        sa.UniqueConstraint("address", name=op.f("uq_patient_profile_address")),
    )


def downgrade() -> None:
    op.drop_table("patient_profile")
    op.drop_table("pharmacy_grant")
    op.drop_table("contact_permission")
    op.drop_index("ix_trusted_domain_source", table_name="trusted_domain")
    op.drop_table("trusted_domain")
