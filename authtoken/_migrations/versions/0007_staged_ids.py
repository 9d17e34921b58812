"""Staged row ids are never handed out twice (SQLite): ``authtoken_staged`` with
``AUTOINCREMENT``.

A fold on SQLite reads staged rows without the write lock and then deletes them by id in
the transactions that file them, filing nothing unless every one is still there (see
``authtoken/_sql/_fold.py``).  That check needs an id to name one row for good: SQLite
gives a plain ``INTEGER PRIMARY KEY`` row the highest id plus one, so once the table
emptied, ids would start again.  With ``AUTOINCREMENT`` an id is always above every id
the table ever held.  The table is rebuilt with its rows (they keep their ids); on
PostgreSQL, whose identity never goes back, nothing changes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = ('id, at, action, outcome, actor, token_key, user_ref, script_key, script_path, '
            'reason, "count", uses')


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.rename_table("authtoken_staged", "authtoken_staged_before")
    op.create_table(
        "authtoken_staged",
        sa.Column("id", sa.Integer(), nullable=False),
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
        sqlite_autoincrement=autoincrement,
    )
    op.execute(f"INSERT INTO authtoken_staged ({_COLUMNS}) "  # noqa: S608 - constants
               f"SELECT {_COLUMNS} FROM authtoken_staged_before")
    op.drop_table("authtoken_staged_before")


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
