"""The engine's hooks that put every wait on a PostgreSQL server under the watchdog.

A call to PostgreSQL through the pool opens a watch (``_watchdog``); these listeners of
the SQLAlchemy engine and its pool register each connection's socket with it and mark
every wait on the server as a step: a new connection's first queries, the ping of a
pooled connection at checkout, each statement, commit and rollback.  A step that
overruns gets its socket shut down, the driver sees a dead connection, and the pool
does not keep it.

The listeners are plain functions and closures: the engine's event lists must not hold
the repository, or a repository dropped without ``close()`` could never release its
connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .._watchdog import WATCHDOG

__all__ = ["SETUP_STRETCH", "install"]

# SQLAlchemy's first queries on a new connection (server version, settings, a rollback:
# about five round trips, with no event between them) run as one step of this many
# times the patience.  At the default timeout that is 9 s: a healthy server may take up
# to ~2 s a round trip, and one that freezes mid-setup still fails within the promised 10 s.
SETUP_STRETCH: Final = 1.5


def install(engine: Engine, *, ping: Callable[[Any], object] | None) -> None:
    """Watch every wait of ``engine`` on the server; ``ping``: the checkout ping, if any."""
    event.listen(engine, "connect", _connect, insert=True)
    event.listen(engine, "checkout", _checkout_listener(ping))
    event.listen(engine, "checkin", _checkin)
    for name in ("before_cursor_execute", "commit", "rollback"):
        event.listen(engine, name, _step)
    event.listen(engine, "after_cursor_execute", _rest)


def _connect(dbapi_conn: Any, record: Any) -> None:
    """A new pooled connection: watched from here (SQLAlchemy's first queries on it too)."""
    record.info["authtoken_fresh"] = True  # and so not pinged at this checkout
    WATCHDOG.add(dbapi_conn.pgconn.socket)
    WATCHDOG.step(SETUP_STRETCH)


def _checkout_listener(ping: Callable[[Any], object] | None) -> Callable[..., None]:
    """What ``pool_pre_ping`` does, but under the call's watch."""
    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop("authtoken_fresh", False):
            WATCHDOG.rest()  # registered at connect; SQLAlchemy's own queries are done
            return
        WATCHDOG.add(dbapi_conn.pgconn.socket)
        if ping is None:
            return
        WATCHDOG.step()
        try:
            ping(dbapi_conn)
        except Exception as exc:
            import psycopg

            watch = WATCHDOG.current()
            if not isinstance(exc, psycopg.OperationalError) or (watch and watch.fired):
                raise  # a frozen server: no new connection would do better
            # As pool_pre_ping: every connection made before now is suspect (a restart).
            # The pool connects anew at once: that is not part of the ping's step.
            raise sa.exc.InvalidatePoolError(str(exc)) from exc
        finally:
            WATCHDOG.rest()

    return checkout


def _step(*_args: Any) -> None:
    WATCHDOG.step()  # a statement, a commit or a rollback: the server must answer


def _rest(*_args: Any) -> None:
    WATCHDOG.rest()  # it answered


def _checkin(_dbapi_conn: Any, record: Any) -> None:
    """Back to the pool: the clock stops; a connection the watchdog shut is not kept.

    The watchdog may fire after the server answered the last step (the commit's step
    runs until here): the call succeeded, but its socket is dead.
    """
    watch = WATCHDOG.current()
    WATCHDOG.rest()
    if watch is not None and watch.fired and record is not None:
        record.invalidate()
