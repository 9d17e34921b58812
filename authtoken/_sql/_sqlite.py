"""SQLite under SQLAlchemy: the engine's connections and how its transactions begin.

Each pooled connection is tuned like the lean path's (``_lean.tune``: WAL, ``synchronous
= NORMAL``, the repository's timeout as ``busy_timeout``).  Write transactions start
with ``BEGIN IMMEDIATE`` so that two processes never both read and then both try to
upgrade to a write lock (which SQLite can only resolve by failing one).  Logins and
reads by key go through ``sqlite3`` directly (``_lean.SQLiteReads``), not SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from .._errors import InvalidArgument
from .._repository import BatchId
from . import _urgent
from ._calls import Calls
from ._dialect import Dialect, claim_by_upsert
from ._failures import Failures
from ._lean import SQLiteReads, begin_urgent, begin_write, create_file, tune

__all__ = ["SQLite", "SQLiteReads", "begin", "begin_urgent", "prepare_file"]


class SQLite(Dialect):
    """A SQLite file: tuned on connect, written under ``BEGIN IMMEDIATE``.

    Raises ``InvalidArgument`` for an in-memory database or an unusable path, and
    ``RepositoryError`` when the file's folder is missing or the file cannot be opened.
    """

    one_writer = True

    def __init__(self, url: sa.URL, *, shown: str, timeout: float, calls: Calls,
                 failures: Failures) -> None:
        super().__init__(url, shown=shown, timeout=timeout, calls=calls, failures=failures)
        try:
            path = prepare_file(url)
        except ValueError as exc:  # e.g. a NUL in the path
            raise InvalidArgument(f"not a usable SQLite path in {shown!r}: {exc}") from exc
        self.path = path
        self.reads: SQLiteReads = SQLiteReads(path, timeout, calls, failures)

    def engine_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        options = dict(given or {})
        options["connect_args"] = {**options.get("connect_args", {}),
                                   "timeout": self.timeout, "check_same_thread": False}
        return options

    def install(self, engine: Engine) -> None:
        busy_ms = round(self.timeout * 1000)

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            tune(dbapi_conn, busy_ms)

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", begin)

    def revocation_waiting(self) -> bool:
        return _urgent.waiting(self.path)

    def let_revocations_pass(self, until: float) -> None:
        _urgent.let_pass(self.path, until)

    def claim(self, conn: Connection, batch: BatchId, now: int) -> bool:
        return claim_by_upsert(conn, batch, now)


def prepare_file(url: sa.URL) -> str:
    """The absolute path of the database file, created (mode 0600) if missing."""
    path = url.database
    if not path or path == ":memory:" or url.query.get("mode") == "memory":
        raise InvalidArgument(
            "an in-memory SQLite database is private to one connection; use "
            "'memory://' for a throwaway store or 'sqlite:///path.db' for a file"
        )
    return create_file(path)


def begin(conn: Connection) -> None:
    """Start a transaction: ``BEGIN IMMEDIATE`` for a write, a plain ``BEGIN`` else.

    A revocation (``authtoken_urgent``) polls for the write lock (``_lean.begin_urgent``)
    instead of sleeping in SQLite's busy handler behind usage batches and folds.
    """
    options = conn.get_execution_options()
    if not options.get("authtoken_write"):
        conn.exec_driver_sql("BEGIN")
    elif options.get("authtoken_urgent"):
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        begin_urgent(raw)
    else:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        begin_write(raw)
