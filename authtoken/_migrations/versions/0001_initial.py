"""The token table.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authtoken_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("user_ref", sa.String(300), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("description", sa.LargeBinary(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("use_count", sa.BigInteger(), nullable=False),
        sa.Column("parent_key", sa.String(32), nullable=True),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_authtoken_token"),
        sa.UniqueConstraint("key", name="uq_authtoken_token_key"),
    )
    op.create_index("ix_authtoken_token_user_ref", "authtoken_token", ["user_ref"])
    op.create_index("ix_authtoken_token_parent_key", "authtoken_token", ["parent_key"])


def downgrade() -> None:
    op.drop_index("ix_authtoken_token_parent_key", table_name="authtoken_token")
    op.drop_index("ix_authtoken_token_user_ref", table_name="authtoken_token")
    op.drop_table("authtoken_token")
