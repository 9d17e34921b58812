"""PostgreSQL: the engine's driver, timeouts and pool, and the statements only it runs.

The driver is psycopg 3.  Connecting, waiting for a pooled connection and every
statement are bounded by the repository's timeout (``connect_timeout``,
``pool_timeout``, the server's ``statement_timeout``); every wait on the server is also
bounded on the client, by the watchdog (``_pg_watch``) for pooled calls and by the login
path itself (``_pg_login``) for reads by key.  Pooled connections are pinged at checkout
by our own listener, under the watchdog: SQLAlchemy's ``pool_pre_ping`` would ping
before the socket is watched.

Usage is written one chunk per statement -- rows locked in key order, then updated from
arrays -- rather than an executemany of many: the server's ``statement_timeout`` and the
watchdog then bound the same thing, however long each row waits for its lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._repository import BatchId
from .._watchdog import WATCHDOG, Watch
from . import _pg_watch
from ._calls import Calls
from ._dialect import Dialect, claim_by_upsert
from ._failures import Failures
from ._pg_login import PgReads
from ._statements import AUDIT_INSERT, CLAIM_BATCH, STAGED_INSERT

__all__ = ["PostgreSQL"]

# A chunk of usage in two statements.  The rows are locked first, in key order -- the
# order revocations lock them in, so the two never deadlock -- then updated from arrays
# in one statement.
_LOCK_IN_KEY_ORDER: Final = sa.text(
    "SELECT 1 FROM authtoken_token WHERE key = ANY(CAST(:keys AS text[])) "
    "ORDER BY key FOR UPDATE"
)
_ADD_USAGE: Final = sa.text(
    "UPDATE authtoken_token AS t SET use_count = t.use_count + v.n, "
    "last_used_at = CASE WHEN t.last_used_at IS NULL OR t.last_used_at < v.last "
    "THEN v.last ELSE t.last_used_at END "
    "FROM unnest(CAST(:keys AS text[]), CAST(:ns AS bigint[]), CAST(:lasts AS bigint[])) "
    "AS v(k, n, last) WHERE t.key = v.k"
)
_AUDIT_INSERT: Final = AUDIT_INSERT.replace("?", "%s")
_STAGED_INSERT: Final = STAGED_INSERT.replace("?", "%s")
_CLAIM_BATCH: Final = CLAIM_BATCH.replace("?", "%s")


class PostgreSQL(Dialect):
    """A PostgreSQL server reached through psycopg 3, every wait on it bounded."""

    # A read of the trail or a list reads the staging table and the filed rows in two
    # statements; READ COMMITTED would let a fold commit between them.
    read_isolation = "REPEATABLE READ"

    def __init__(self, url: sa.URL, *, shown: str, timeout: float, calls: Calls,
                 failures: Failures) -> None:
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        super().__init__(url, shown=shown, timeout=timeout, calls=calls, failures=failures)
        self._own_ping = True
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.reads: PgReads = PgReads(conninfo, timeout, calls, failures)

    @property
    def extra(self) -> str:
        return "postgres"

    def engine_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        options = dict(given or {})
        connect_args = options["connect_args"] = dict(options.get("connect_args", {}))
        connect_args.setdefault("connect_timeout", max(1, round(self.timeout)))
        connect_args.setdefault(
            "options", f"-c statement_timeout={round(self.timeout * 1000)}"
        )
        # Pooled connections are pinged on checkout by our own listener (``install``);
        # pool_pre_ping=False in the caller's options turns that off.
        self._own_ping = bool(options.get("pool_pre_ping", True))
        options["pool_pre_ping"] = False
        options.setdefault("pool_size", 5)
        options.setdefault("max_overflow", 10)
        options.setdefault("pool_timeout", self.timeout)
        return options

    def install(self, engine: Engine) -> None:
        _pg_watch.install(engine, ping=engine.dialect.do_ping if self._own_ping else None)

    def watching(self, limit: float | None = None,
                 ) -> contextlib.AbstractContextManager[Watch | None]:
        return WATCHDOG.watching(self.timeout + 1, limit)

    def limit_statements(self, conn: Connection, seconds: float) -> None:
        # The server ends a lock wait first, with its own clear error.
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, round(seconds * 1000))}")

    def claim(self, conn: Connection, batch: BatchId, now: int) -> bool:
        return claim_by_upsert(conn, batch, now, _CLAIM_BATCH)

    def add_usage(self, conn: Connection, chunk: list[dict[str, Any]]) -> None:
        keys = [p["k"] for p in chunk]
        conn.execute(_LOCK_IN_KEY_ORDER, {"keys": keys})
        conn.execute(_ADD_USAGE, {
            "keys": keys, "ns": [p["n"] for p in chunk], "lasts": [p["last"] for p in chunk],
        })

    def insert_events(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        conn.exec_driver_sql(_AUDIT_INSERT, rows)

    def stage(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        conn.exec_driver_sql(_STAGED_INSERT, rows)
