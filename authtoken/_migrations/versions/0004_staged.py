"""Logins staged for the fold, and audit indexes that read the newest events first.

A usage batch no longer updates each token it used: it appends its counts and events to
``authtoken_staged`` (no index but its key), and the fold moves them into the tokens and
the trail in bulk.  The trail's three one-column indexes become ``(at, id)``,
``(user_ref, at, id)`` and ``(token_key, at, id)``, so that the newest events of a user
or a token are read without sorting all of them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authtoken_staged",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("outcome", sa.String(8), nullable=True),
        sa.Column("actor", sa.String(300), nullable=True),
        sa.Column("token_key", sa.String(32), nullable=True),
        sa.Column("user_ref", sa.String(300), nullable=True),
        sa.Column("script_key", sa.BigInteger(), nullable=True),
        sa.Column("script_path", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("uses", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_authtoken_staged"),
    )
    op.drop_index("ix_authtoken_audit_user_ref", table_name="authtoken_audit")
    op.drop_index("ix_authtoken_audit_token_key", table_name="authtoken_audit")
    op.drop_index("ix_authtoken_audit_at", table_name="authtoken_audit")
    op.create_index("ix_authtoken_audit_at_id", "authtoken_audit", ["at", "id"])
    op.create_index("ix_authtoken_audit_user_at", "authtoken_audit", ["user_ref", "at", "id"])
    op.create_index("ix_authtoken_audit_token_at", "authtoken_audit", ["token_key", "at", "id"])


_STAGED_USES = (
    "FROM authtoken_staged s WHERE s.token_key = authtoken_token.key "
    "AND (s.uses > 0 OR s.action IS NULL)"
)


def downgrade() -> None:
    # What is still staged goes into the tokens and the trail first: nothing is lost.
    op.execute(
        f"UPDATE authtoken_token SET use_count = use_count + "  # noqa: S608
        f"(SELECT COALESCE(SUM(s.uses), 0) {_STAGED_USES}), last_used_at = "
        f"(SELECT CASE WHEN MAX(s.at) > COALESCE(authtoken_token.last_used_at, -1) "
        f"THEN MAX(s.at) ELSE authtoken_token.last_used_at END {_STAGED_USES}) "
        "WHERE key IN (SELECT token_key FROM authtoken_staged "
        "WHERE uses > 0 OR action IS NULL)"
    )
    op.execute(
        'INSERT INTO authtoken_audit (at, action, outcome, actor, token_key, user_ref, '
        'script_key, script_path, reason, "count") SELECT at, action, outcome, actor, '
        'token_key, user_ref, script_key, script_path, reason, "count" '
        "FROM authtoken_staged WHERE action IS NOT NULL ORDER BY id"
    )
    op.drop_index("ix_authtoken_audit_token_at", table_name="authtoken_audit")
    op.drop_index("ix_authtoken_audit_user_at", table_name="authtoken_audit")
    op.drop_index("ix_authtoken_audit_at_id", table_name="authtoken_audit")
    op.create_index("ix_authtoken_audit_at", "authtoken_audit", ["at"])
    op.create_index("ix_authtoken_audit_token_key", "authtoken_audit", ["token_key"])
    op.create_index("ix_authtoken_audit_user_ref", "authtoken_audit", ["user_ref"])
    op.drop_table("authtoken_staged")
