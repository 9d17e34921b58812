"""Upstream links: a user's accounts at upstream issuers, kept by the broker.

``authtoken_upstream_link`` holds one row per (user, link name): its state (``ok`` or
``needs_relink``), the refresh and access tokens *sealed* (AES-GCM blobs, never tokens
in clear), the access token's expiry and refresh time, the refresh lease (its holder and
expiry: one refresh at a time across every process) and a version.  A new table: tokens
of the earlier schema are untouched, and the login path never reads it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authtoken_upstream_link",
        sa.Column("user_ref", sa.String(300), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("refresh_token", sa.LargeBinary(), nullable=True),
        sa.Column("access_token", sa.LargeBinary(), nullable=True),
        sa.Column("access_expires", sa.BigInteger(), nullable=True),
        sa.Column("refresh_at", sa.BigInteger(), nullable=True),
        sa.Column("refresh_expires", sa.BigInteger(), nullable=True),
        sa.Column("lease_holder", sa.String(64), nullable=True),
        sa.Column("lease_expires", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_ref", "name", name="pk_authtoken_upstream_link"),
    )


def downgrade() -> None:
    # The links go with the table: their owners link again after an upgrade.
    op.drop_table("authtoken_upstream_link")
