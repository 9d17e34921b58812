"""Upstream links in SQL (``UpstreamLinks``): the broker's table, off the login path.

Every operation is one short transaction of the store (``SQLStore.transaction``).  The
lease is a conditional ``UPDATE``: taken only where no unexpired lease is held, written
back (``finish_refresh``, ``mark_needs_relink``, ``release_lease``) only where the
caller still holds it.  A write transaction on SQLite begins ``IMMEDIATE``, so writers
are serialised; on PostgreSQL the ``UPDATE`` locks the row and, under READ COMMITTED,
re-checks its condition against the committed row it waited for -- so of two processes
that race for a lease, exactly one gets it.  ``put_link`` is an upsert (``INSERT ... ON
CONFLICT DO UPDATE``, which both databases have), so two processes linking the same
account at once never fail on the primary key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .._repository import UpstreamLink
from .._token import UserKey
from ._rows import user_of, user_ref
from ._schema import LINKS as L
from ._store import SQLStore

__all__ = ["SQLLinks"]

_TOKENS = ("refresh_token", "access_token", "access_expires", "refresh_at", "refresh_expires")


def _link(row: Any) -> UpstreamLink:
    return UpstreamLink(
        user=user_of(row.user_ref), name=row.name, state=row.state,
        refresh_token=None if row.refresh_token is None else bytes(row.refresh_token),
        access_token=None if row.access_token is None else bytes(row.access_token),
        access_expires=row.access_expires, refresh_at=row.refresh_at,
        refresh_expires=row.refresh_expires, lease_holder=row.lease_holder,
        lease_expires=row.lease_expires, version=row.version, updated_at=row.updated_at,
    )


def _where(user: UserKey, name: str) -> sa.ColumnElement[bool]:
    return sa.and_(L.c.user_ref == user_ref(user), L.c.name == name)


def _read(conn: Connection, user: UserKey, name: str) -> UpstreamLink | None:
    row = conn.execute(sa.select(L).where(_where(user, name))).first()
    return None if row is None else _link(row)


class SQLLinks:
    """The ``UpstreamLinks`` operations on the store ``store()`` gives (built lazily)."""

    def __init__(self, store: Callable[[], SQLStore]) -> None:
        self._store = store

    def _write(self, body: Callable[[Connection], Any]) -> Any:
        return self._store().transaction(body)

    def put_link(self, link: UpstreamLink, at: int) -> UpstreamLink:
        values = {name: getattr(link, name) for name in _TOKENS}
        values.update(state=link.state, lease_holder=None, lease_expires=None, updated_at=at)

        def put(conn: Connection) -> UpstreamLink:
            insert: Any = (postgresql.insert(L) if conn.dialect.name == "postgresql"
                           else sqlite.insert(L))
            conn.execute(insert.values(user_ref=user_ref(link.user), name=link.name,
                                       version=1, **values)
                         .on_conflict_do_update(index_elements=[L.c.user_ref, L.c.name],
                                                set_={**values, "version": L.c.version + 1}))
            stored = _read(conn, link.user, link.name)
            assert stored is not None
            return stored

        result: UpstreamLink = self._write(put)
        return result

    def get_link(self, user: UserKey, name: str) -> UpstreamLink | None:
        result: UpstreamLink | None = self._store().transaction(
            lambda conn: _read(conn, user, name), write=False)
        return result

    def list_links(self, user: UserKey) -> list[UpstreamLink]:
        query = sa.select(L).where(L.c.user_ref == user_ref(user)).order_by(L.c.name)
        result: list[UpstreamLink] = self._store().transaction(
            lambda conn: [_link(row) for row in conn.execute(query)], write=False)
        return result

    def delete_link(self, user: UserKey, name: str) -> bool:
        return bool(self._write(
            lambda conn: conn.execute(L.delete().where(_where(user, name))).rowcount == 1))

    def take_lease(self, user: UserKey, name: str, holder: str, now: int,
                   until: int) -> UpstreamLink | None:
        take = L.update().where(
            _where(user, name),
            sa.or_(L.c.lease_holder.is_(None), L.c.lease_expires.is_(None),
                   L.c.lease_expires <= now),
        ).values(lease_holder=holder, lease_expires=until, version=L.c.version + 1)

        def lease(conn: Connection) -> UpstreamLink | None:
            conn.execute(take)
            return _read(conn, user, name)

        result: UpstreamLink | None = self._write(lease)
        return result

    def _if_held(self, user: UserKey, name: str, holder: str,
                 values: dict[str, Any]) -> bool:
        change = L.update().where(_where(user, name), L.c.lease_holder == holder).values(
            lease_holder=None, lease_expires=None, version=L.c.version + 1, **values)
        return bool(self._write(lambda conn: conn.execute(change).rowcount == 1))

    def finish_refresh(self, link: UpstreamLink, holder: str, at: int) -> UpstreamLink | None:
        change = L.update().where(
            _where(link.user, link.name), L.c.lease_holder == holder,
        ).values(state="ok", lease_holder=None, lease_expires=None,
                 version=L.c.version + 1, updated_at=at,
                 **{name: getattr(link, name) for name in _TOKENS})

        def finish(conn: Connection) -> UpstreamLink | None:
            if conn.execute(change).rowcount != 1:
                return None
            return _read(conn, link.user, link.name)

        result: UpstreamLink | None = self._write(finish)
        return result

    def mark_needs_relink(self, user: UserKey, name: str, holder: str, at: int) -> bool:
        return self._if_held(user, name, holder, {
            "state": "needs_relink", "updated_at": at, **dict.fromkeys(_TOKENS)})

    def release_lease(self, user: UserKey, name: str, holder: str) -> bool:
        return self._if_held(user, name, holder, {})
