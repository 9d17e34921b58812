"""The staging table's queries: take rows for a fold, and read what is still staged.

``_staging`` says what staged rows are and how a fold files them; these are the
statements that read and remove them, through SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._repository import AuditEvent
from .._token import UserKey
from ._rows import audit_event, user_ref
from ._schema import STAGED as S
from ._schema import TOKENS as T

__all__ = ["staged_events", "staged_usage", "take_staged", "trail_events"]

_IDS_PER_DELETE: Final = 500
_USES: Final = sa.or_(S.c.uses > 0, S.c.action.is_(None))  # rows that carry usage
_COLUMNS: Final = (S.c.id, S.c.at, S.c.action, S.c.outcome, S.c.actor, S.c.token_key,
                   S.c.user_ref, S.c.script_key, S.c.script_path, S.c.reason, S.c.count,
                   S.c.uses)

def take_staged(conn: Connection, limit: int) -> Sequence[Sequence[Any]]:
    """Remove and return the oldest ``limit`` staged rows, in ``conn``'s transaction.

    The rows are locked as they are read and rows locked by another fold are skipped,
    so two folds never take the same row.  (SQLite, which has no row locks, folds
    otherwise: see ``_fold``.)
    """
    rows = conn.execute(
        sa.select(*_COLUMNS).order_by(S.c.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    ids = [row[0] for row in rows]
    for i in range(0, len(ids), _IDS_PER_DELETE):  # many databases bind 999 at most
        conn.execute(S.delete().where(S.c.id.in_(ids[i:i + _IDS_PER_DELETE])))
    return rows


def staged_usage(conn: Connection, keys: Sequence[str] | None = None,
                 ) -> dict[str, tuple[int, int]]:
    """What is staged of the usage of ``keys`` (every token's if ``None``): logins and
    the latest login (µs), per key."""
    query = (sa.select(S.c.token_key, sa.func.sum(S.c.uses), sa.func.max(S.c.at))
             .where(_USES).group_by(S.c.token_key))
    if keys is not None:
        query = query.where(S.c.token_key.in_(list(keys)))
    return {key: (int(n), int(last)) for key, n, last in conn.execute(query)
            if key is not None}


def trail_events(conn: Connection, table: sa.Table, *, user: UserKey | None,
                 token_key: str | None, since: int | None, limit: int) -> list[AuditEvent]:
    """The newest ``limit`` events of ``table`` (the trail, or the staging table) that
    pass the filters, newest first: the order every index of the trail ends in.  Each
    with the ``run_id`` of its token, read by key for the events returned."""
    query = (sa.select(table, T.c.run_id)
             .select_from(table.outerjoin(T, T.c.key == table.c.token_key))
             .order_by(table.c.at.desc(), table.c.id.desc()).limit(limit))
    if table is S:
        query = query.where(S.c.action.is_not(None))  # usage-only rows are no events
    if user is not None:
        query = query.where(table.c.user_ref == user_ref(user))
    if token_key is not None:
        query = query.where(table.c.token_key == token_key)
    if since is not None:
        query = query.where(table.c.at >= since)
    return [audit_event(row) for row in conn.execute(query).mappings()]


def staged_events(conn: Connection, *, user: UserKey | None, token_key: str | None,
                  since: int | None, limit: int) -> list[AuditEvent]:
    """The newest ``limit`` staged events that pass the filters, newest first."""
    return trail_events(conn, S, user=user, token_key=token_key, since=since, limit=limit)
