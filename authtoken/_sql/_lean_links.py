"""The broker's read of a link without SQLAlchemy: one statement, one row.

``Broker.access_token`` on its fast path reads the session's token (the login's own
read) and the link, and opens the stored access token.  Through SQLAlchemy's
transaction machinery the link read cost ten times the rest of the call; this is the
same read as plain SQL with qmark placeholders, for the lean ``sqlite3`` reads of
``_lean`` (autocommit, each statement its own read transaction, so a write committed
by any process -- a refresh, an unlink -- is seen by the very next read) and, with
``$n`` placeholders, on PostgreSQL, as a statement prepared on the login path's
connection per thread (``_pg_login``, autocommit as well) and run through libpq as a
login is, bounded and retried the same way: a pooled SQLAlchemy transaction costs a
BEGIN, the statement and a COMMIT, three round trips where one will do.  Writes stay with
SQLAlchemy (``_links``).
``tests/storage/test_lean_links.py`` checks that ``LINK_COLUMNS`` are the table's.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from .._repository import UpstreamLink
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
# PostgreSQL's: a named statement, prepared on each of the login path's connections
# (remembered by connection: a new one prepares it again).
_PG_LINK_NAME: Final = b"authtoken_upstream_link"
_PG_LINK_SQL: Final = (LINK_SQL.replace("?", "$1", 1).replace("?", "$2", 1)).encode()
_PREPARED: weakref.WeakSet[Any] = weakref.WeakSet()


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

    As ``PgReads`` runs a login: a statement prepared once per connection, sent through
    libpq and waited for by ``PgReads.answer`` (which polls while polling pays), every
    wait bounded by ``timeout`` + 1 s from the call's start; a connection that died
    while idle (a restart, a failover) or lost the prepared statement (a pooler's
    DISCARD) gets one retry on a new one, if enough of that deadline is left.
    Failures are the repository's ``RepositoryError``.
    """
    import psycopg

    timeout = reads.timeout
    failures = reads.failures
    budget = round((timeout + 1) * 1e9)
    started = 0
    for attempt in range(2):
        fresh = reads.current() is None
        try:
            if attempt:  # a new connection, connected within what is left
                left = (started + budget - time.perf_counter_ns()) / 1e9
                reads.connection(max(2, int(left)))
            else:
                if fresh:
                    reads.connection()
                started = time.perf_counter_ns()
            return _pg_link_rows(reads, ref, name, started)
        except psycopg.Error as exc:
            reads.drop()
            if fresh or attempt or not isinstance(exc, psycopg.OperationalError) or (
                started + budget - time.perf_counter_ns() < MIN_RETRY * 1e9
            ):
                raise failures.of(exc) from exc
    raise AssertionError("unreachable")


def _pg_link_rows(reads: PgReads, ref: str, name: str,
                  started: int) -> tuple[Any, ...] | None:
    import psycopg  # loaded already: the connection was made with it

    from ._pg_login import _statement_error as statement_error  # same failures as a login

    state = reads.connection()
    pgconn = state.pgconn
    status = psycopg.pq.ExecStatus
    if state.conn not in _PREPARED:
        pgconn.send_prepare(_PG_LINK_NAME, _PG_LINK_SQL)
        done = reads.answer(state, started, poll=False)
        if done.status != status.COMMAND_OK:
            raise statement_error(done, pgconn)
        _PREPARED.add(state.conn)
    pgconn.send_query_prepared(_PG_LINK_NAME, [ref.encode(), name.encode()],
                               result_format=1)
    result = reads.answer(state, started, poll=True)
    if result.status != status.TUPLES_OK:
        raise statement_error(result, pgconn)
    if result.ntuples == 0:
        return None
    value = result.get_value
    texts = [value(0, i) for i in (0, 1, 2, 8)]  # user_ref, name, state, lease_holder
    ref_, name_, state_, holder = (None if t is None else bytes(t).decode() for t in texts)
    refresh, access = value(0, 3), value(0, 4)
    numbers = [value(0, i) for i in (5, 6, 7, 9, 10, 11)]
    (access_expires, refresh_at, refresh_expires, lease_expires, version,
     updated_at) = (None if n is None else int.from_bytes(n, "big", signed=True)
                    for n in numbers)
    return (ref_, name_, state_, None if refresh is None else bytes(refresh),
            None if access is None else bytes(access), access_expires, refresh_at,
            refresh_expires, holder, lease_expires, version, updated_at)
