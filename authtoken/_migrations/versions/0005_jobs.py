"""Tokens for jobs: use limits, renewable lifetimes, run ids and the delegation chain.

``max_uses`` (a login spends one, atomically, in the token's row), ``max_lifetime`` and
``lifetime`` (microseconds: how long after ``created_at`` renewals may extend the token,
and its first lifetime, a renewal's default step), ``run_id`` (the run of a job a run
token was made for) and ``ancestors`` (the keys from the root of the token's delegation
tree to its parent, space-separated, so that a login knows who acts for whom without a
second read).  Every column is nullable: tokens of the earlier schema have no limit,
are not renewable, belong to no run and, for a child, name only their parent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("max_uses", "max_lifetime", "lifetime", "run_id", "ancestors")


def upgrade() -> None:
    op.add_column("authtoken_token", sa.Column("max_uses", sa.BigInteger(), nullable=True))
    op.add_column("authtoken_token", sa.Column("max_lifetime", sa.BigInteger(), nullable=True))
    op.add_column("authtoken_token", sa.Column("lifetime", sa.BigInteger(), nullable=True))
    op.add_column("authtoken_token", sa.Column("run_id", sa.Text(), nullable=True))
    op.add_column("authtoken_token", sa.Column("ancestors", sa.Text(), nullable=True))
    # Children of the earlier schema: the keys from the root of their tree down to
    # their parent, read from the parent links (a tree is never deeper than the tokens).
    conn = op.get_bind()
    token = sa.table("authtoken_token", sa.column("key"), sa.column("parent_key"),
                     sa.column("ancestors"))
    parents = dict(conn.execute(
        sa.select(token.c.key, token.c.parent_key).where(token.c.parent_key.is_not(None))
    ).all())
    rows = []
    for key in parents:
        chain, seen, up = [], {key}, parents[key]
        while up is not None and up not in seen:
            chain.append(up)
            seen.add(up)
            up = parents.get(up)
        rows.append({"k": key, "a": " ".join(reversed(chain))})
    update = (token.update().where(token.c.key == sa.bindparam("k"))
              .values(ancestors=sa.bindparam("a")))
    for start in range(0, len(rows), 1000):
        conn.execute(update, rows[start:start + 1000])


def downgrade() -> None:
    # The earlier schema cannot keep a use limit: a use-limited token is revoked rather
    # than left to log in without one.  (Its stored digest is of a domain of its own
    # that the earlier release never matches anyway, see ``_jobs.stored_digest``.)
    now = time.time_ns() // 1000
    op.execute(sa.text(
        "UPDATE authtoken_token SET revoked_at = :now, version = version + 1 "
        "WHERE max_uses IS NOT NULL AND revoked_at IS NULL").bindparams(now=now))
    with op.batch_alter_table("authtoken_token") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
