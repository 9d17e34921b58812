"""The audit trail.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authtoken_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("actor", sa.String(300), nullable=True),
        sa.Column("token_key", sa.String(32), nullable=True),
        sa.Column("user_ref", sa.String(300), nullable=True),
        sa.Column("script_key", sa.BigInteger(), nullable=True),
        sa.Column("script_path", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_authtoken_audit"),
    )
    op.create_index("ix_authtoken_audit_at", "authtoken_audit", ["at"])
    op.create_index("ix_authtoken_audit_token_key", "authtoken_audit", ["token_key"])
    op.create_index("ix_authtoken_audit_user_ref", "authtoken_audit", ["user_ref"])


def downgrade() -> None:
    op.drop_index("ix_authtoken_audit_user_ref", table_name="authtoken_audit")
    op.drop_index("ix_authtoken_audit_token_key", table_name="authtoken_audit")
    op.drop_index("ix_authtoken_audit_at", table_name="authtoken_audit")
    op.drop_table("authtoken_audit")
