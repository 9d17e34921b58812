"""Usage batches already written, so that a batch written again is recognised.

One row per writer (a buffer of one process): the highest batch number it has written.
A batch whose commit reached the database but whose answer was lost is written again
with the same number, and skipped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authtoken_usage_batch",
        sa.Column("writer", sa.String(32), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("writer", name="pk_authtoken_usage_batch"),
    )


def downgrade() -> None:
    op.drop_table("authtoken_usage_batch")
