"""SQLite: the file, its tuning, and the per-thread connection logins read through.

The file is created readable by its owner only, in WAL mode so that readers never wait
for writers, with ``synchronous = NORMAL`` and the repository's timeout as
``busy_timeout``.  Write transactions start with ``BEGIN IMMEDIATE`` so that two
processes never both read and then both try to upgrade to a write lock (which SQLite can
only resolve by failing one).

Logins and reads by key go through ``sqlite3`` directly, not SQLAlchemy: one read-only
connection per thread, in autocommit mode, each statement its own read transaction, so
a revocation committed by any process is seen by the very next login.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from .._errors import InvalidArgument, RepositoryError
from .._repository import BatchId
from ._calls import Calls
from ._dialect import Dialect, claim_by_upsert
from ._failures import Failures
from ._schema import GET_SQL, LOGIN_SQL

__all__ = ["SQLite", "SQLiteReads"]


class SQLite(Dialect):
    """A SQLite file: tuned on connect, written under ``BEGIN IMMEDIATE``.

    Raises ``InvalidArgument`` for an in-memory database or an unusable path, and
    ``RepositoryError`` when the file's folder is missing or the file cannot be opened.
    """

    def __init__(self, url: sa.URL, *, shown: str, timeout: float, calls: Calls,
                 failures: Failures) -> None:
        super().__init__(url, shown=shown, timeout=timeout, calls=calls, failures=failures)
        try:
            path = prepare_file(url)
        except ValueError as exc:  # e.g. a NUL in the path
            raise InvalidArgument(f"not a usable SQLite path in {shown!r}: {exc}") from exc
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
    path = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise RepositoryError(
            f"the folder of the SQLite database does not exist: {folder!r}; create it "
            "or choose another path"
        )
    try:
        # Created by us: readable by its owner only (it holds hashes, not secrets,
        # but who holds which token is nobody else's business).
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as exc:
        raise RepositoryError(
            f"cannot open the SQLite database {path!r}: {exc.strerror}; check the "
            "path and its permissions"
        ) from exc
    return path


def tune(dbapi_conn: Any, busy_ms: int) -> None:
    """A new pooled connection: SQLAlchemy begins its transactions; WAL; busy timeout."""
    # Let SQLAlchemy's "begin" event decide how transactions start (pysqlite's own
    # implicit BEGIN would defeat BEGIN IMMEDIATE).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        # Switching to WAL needs a lock that a busy database refuses at once (the busy
        # handler is not used), e.g. while other processes open a new file together.
        # The mode is persistent: switch only while the file is not in WAL mode yet,
        # and look again after a refusal (another process may have switched it).
        deadline = time.monotonic() + busy_ms / 1000
        while True:
            mode = cur.execute("PRAGMA journal_mode").fetchone()
            if mode is not None and str(mode[0]).lower() == "wal":
                break
            try:
                cur.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        cur.execute("PRAGMA synchronous = NORMAL")
    finally:
        cur.close()


def begin(conn: Connection) -> None:
    """Start a transaction: ``BEGIN IMMEDIATE`` for a write, a plain ``BEGIN`` else."""
    if conn.get_execution_options().get("authtoken_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


class _Local(threading.local):
    cursor: sqlite3.Cursor | None = None


class SQLiteReads:
    """``FastReads`` on SQLite: a read-only ``sqlite3`` connection per thread."""

    def __init__(self, path: str, timeout: float, calls: Calls, failures: Failures) -> None:
        self._path = path
        self._timeout = timeout
        self._calls = calls
        self._failures = failures
        self._local = _Local()

    def login(self, key: str) -> Any:
        return self._first(LOGIN_SQL, key)

    def get(self, key: str) -> Any:
        return self._first(GET_SQL, key)

    def _first(self, sql: str, key: str) -> Any:
        try:
            # fetchall runs the statement to completion, so no open statement can pin
            # an old read snapshot between logins.
            rows = self.cursor().execute(sql, (key,)).fetchall()
        except sqlite3.Error as exc:
            self.drop()
            raise self._failures.of(exc) from exc
        return rows[0] if rows else None

    def cursor(self) -> sqlite3.Cursor:
        """This thread's cursor, on a connection made at its first read."""
        cur = self._local.cursor
        if cur is None:
            self._calls.check_open()
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {round(self._timeout * 1000)}")
            conn.execute("PRAGMA query_only = ON")
            self._calls.register(conn)
            cur = self._local.cursor = conn.cursor()
        return cur

    def drop(self) -> None:
        """Close this thread's connection (after a failure); the next read makes one."""
        cur, self._local.cursor = self._local.cursor, None
        if cur is not None:
            self._calls.discard(cur.connection)
