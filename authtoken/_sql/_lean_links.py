"""The broker's read of a link without SQLAlchemy: one statement, one row.

``Broker.access_token`` on its fast path reads the session's token (the login's own
read) and the link, and opens the stored access token.  Through SQLAlchemy's
transaction machinery the link read cost ten times the rest of the call; this is the
same read as plain SQL with qmark placeholders, for the lean ``sqlite3`` reads of
``_lean`` (autocommit, each statement its own read transaction, so a write committed
by any process -- a refresh, an unlink -- is seen by the very next read) and, with
``%s`` placeholders, on PostgreSQL, for the psycopg cursor of the login path's
connection per thread (``_pg_login``, autocommit as well), bounded and retried exactly
as its read of a token by key: a pooled SQLAlchemy transaction costs a BEGIN, the
statement and a COMMIT, three round trips where one will do.  Writes stay with
SQLAlchemy (``_links``).
``tests/storage/test_lean_links.py`` checks that ``LINK_COLUMNS`` are the table's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from .._repository import UpstreamLink
from .._watchdog import WATCHDOG, Watch
from ._calls import MIN_RETRY
from ._rows import user_of

if TYPE_CHECKING:
    from ._pg_login import PgReads

__all__ = ["LINK_COLUMNS", "LINK_SQL", "link_of", "pg_link_row"]

#: The columns of ``authtoken_upstream_link`` the read returns, in ``UpstreamLink``'s order.
LINK_COLUMNS: Final = (
    "user_ref", "name", "state", "refresh_token", "access_token", "access_expires",
    "refresh_at", "refresh_expires", "lease_holder", "lease_expires", "version", "updated_at",
)
LINK_SQL: Final = (
    f"SELECT {', '.join(LINK_COLUMNS)} FROM authtoken_upstream_link "  # noqa: S608
    "WHERE user_ref = ? AND name = ?"
)
_PG_LINK_SQL: Final = LINK_SQL.replace("?", "%s")


def link_of(row: Sequence[Any]) -> UpstreamLink:
    """The ``UpstreamLink`` of a row of ``LINK_SQL`` (blobs as ``bytes``)."""
    (ref, name, state, refresh, access, access_expires, refresh_at, refresh_expires,
     holder, lease_expires, version, updated_at) = row
    return UpstreamLink(
        user=user_of(ref), name=name, state=state,
        refresh_token=None if refresh is None else bytes(refresh),
        access_token=None if access is None else bytes(access),
        access_expires=access_expires, refresh_at=refresh_at,
        refresh_expires=refresh_expires, lease_holder=holder, lease_expires=lease_expires,
        version=version, updated_at=updated_at,
    )


def pg_link_row(reads: PgReads, ref: str, name: str) -> tuple[Any, ...] | None:
    """The row of ``LINK_SQL`` on this thread's connection of ``reads`` (PostgreSQL).

    As ``PgReads`` reads a token by key: a prepared statement under the watchdog, the
    call's waits bounded by ``timeout`` + 1 s from its start; a connection that died
    while idle (a restart, a failover) gets one retry on a new one, if enough of that
    deadline is left.  Failures are the repository's ``RepositoryError``.
    """
    import psycopg

    timeout: float = reads._timeout  # the reads of this package, shared
    failures = reads._failures
    budget = round((timeout + 1) * 1e9)
    started = time.perf_counter_ns()
    watch: Watch | None = None
    for attempt in range(2):
        fresh = reads.current() is None
        try:
            if attempt:  # a new connection, connected within what is left
                left = (started + budget - time.perf_counter_ns()) / 1e9
                reads.connection(max(2, int(left)))
            limit = time.monotonic() + (started + budget - time.perf_counter_ns()) / 1e9
            with WATCHDOG.watching(timeout + 1, limit) as watch:
                cursor = reads.connection().cursor
                WATCHDOG.add(cursor.connection.pgconn.socket)
                WATCHDOG.step()
                rows = cursor.execute(_PG_LINK_SQL, (ref, name), prepare=True).fetchall()
            return tuple(rows[0]) if rows else None
        except psycopg.Error as exc:
            reads.drop()
            if fresh or attempt or not isinstance(exc, psycopg.OperationalError) or (
                watch is not None and watch.fired
            ) or started + budget - time.perf_counter_ns() < MIN_RETRY * 1e9:
                raise failures.of(exc, watch) from exc
    raise AssertionError("unreachable")
