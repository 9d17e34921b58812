"""SQLite without SQLAlchemy: the file, the per-thread login reads, and the batch append.

What a process that only logs in and records its usage needs of a SQLite store -- the
``authtoken login`` command, a script runner -- is here, on ``sqlite3`` alone, so that it
starts without importing SQLAlchemy (a third of a second): ``SQLRepository`` uses these
for a plain ``sqlite:///path`` URL and builds its SQLAlchemy engine only when a call
needs one (authorize, update, revoke, lists, the trail, the fold, the schema's first
creation).

The file is created readable by its owner only, in WAL mode so that readers never wait
for writers, with ``synchronous = NORMAL`` and the repository's timeout as
``busy_timeout``.  Reads go through one read-only connection per thread, in autocommit
mode, each statement its own read transaction, so a revocation committed by any process
is seen by the very next login.  A batch is appended under ``BEGIN IMMEDIATE`` on a
connection of its own (``SQLiteAppend``), with its ``BatchId`` claimed in the same
transaction.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from .._errors import RepositoryError
from .._repository import BatchId
from ._calls import Calls
from ._failures import Failures
from ._staging import KEEP_WRITERS_MICROS, PRUNE_EVERY
from ._statements import (
    CLAIM_BATCH,
    FORGET_WRITERS,
    GET_SQL,
    LOGIN_SQL,
    REVISION_SQL,
    SPEND_USE,
    STAGED_INSERT,
    STAGED_SPAN,
)
from ._urgent import signalling

__all__ = ["WAL_AUTOCHECKPOINT", "SQLiteAppend", "SQLiteReads", "begin_urgent", "begin_write",
           "create_file", "plain_sqlite_path", "tune"]

#: Pages of write-ahead log after which a bookkeeping commit checkpoints (SQLite's own
#: default); a revocation's commit never does.
WAL_AUTOCHECKPOINT: Final = 1000

# A plain file URL: no driver option, no query, nothing to decode.
_PLAIN: Final = re.compile(r"sqlite(?:\+pysqlite)?:///([^?#%\x00]+)")


def plain_sqlite_path(url: object) -> str | None:
    """The file of a plain ``sqlite:///path`` URL; ``None`` for anything else (another
    database, a query string, an in-memory database): SQLAlchemy reads those."""
    if not isinstance(url, str):
        return None
    match = _PLAIN.fullmatch(url)
    if match is None or match.group(1) == ":memory:":
        return None
    return match.group(1)


def create_file(path: str) -> str:
    """The absolute path of the database file, created (mode 0600) if missing.

    An existing file is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, the locks by which SQLite's connections in
    this process tell others that the file is in use.  Without them another process,
    closing its last connection, would take itself for the last user and delete the
    write-ahead log under them.
    """
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
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.access(path, os.R_OK | os.W_OK):
            return path
        error = "Permission denied"
    except OSError as exc:
        error = exc.strerror or type(exc).__name__
    else:
        os.close(fd)  # a new file: no connection of this process has it open
        return path
    raise RepositoryError(
        f"cannot open the SQLite database {path!r}: {error}; check the path and its "
        "permissions"
    )


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

    def revision(self) -> str | None:
        """The schema revision the file holds; ``None`` when it has none (yet)."""
        try:
            rows = self.cursor().execute(REVISION_SQL).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            self.drop()
            raise self._failures.of(exc) from exc
        except sqlite3.Error as exc:
            self.drop()
            raise self._failures.of(exc) from exc
        return str(rows[0][0]) if rows else None

    def first(self, sql: str, params: tuple[Any, ...]) -> Any:
        """The first row of a read of ``sql`` with ``params`` (``None``: no row), on this
        thread's connection: a read by key of another table (``_lean_links``)."""
        try:
            rows = self.cursor().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self.drop()
            raise self._failures.of(exc) from exc
        return rows[0] if rows else None

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


def begin_urgent(raw: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` on a ``sqlite3`` connection, polling for the lock every half
    millisecond for as long as its busy timeout.

    SQLite's busy handler sleeps ever longer between tries (up to 100 ms) while writers
    that retry sooner keep taking the lock; a revocation, and the event that records
    it, poll instead, so they get the lock as soon as the writer holding it lets go --
    and say meanwhile that they wait (``_urgent``), so that a fold lets go at once.
    """
    # No checkpoint at this commit: copying the log into the file (and syncing it) is
    # bookkeeping, left to the next batch or fold on this connection (``begin_write``).
    raw.execute("PRAGMA wal_autocheckpoint = 0")
    (busy_ms,) = raw.execute("PRAGMA busy_timeout").fetchone()
    deadline = time.monotonic() + busy_ms / 1000
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        if _begin_now(raw, deadline):
            return
        with signalling(_main_file(raw)):
            while not _begin_now(raw, deadline):
                time.sleep(0.0005)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")


def _begin_now(raw: sqlite3.Connection, deadline: float) -> bool:
    """``BEGIN IMMEDIATE`` if the write lock is free now; ``False`` if it is held (and
    ``deadline`` is still ahead: past it, the lock error is raised)."""
    try:
        raw.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) or time.monotonic() >= deadline:
            raise
        return False


def _main_file(raw: sqlite3.Connection) -> str:
    """The path of the database file ``raw`` is connected to."""
    for _seq, name, file in raw.execute("PRAGMA database_list"):
        if name == "main":
            return str(file)
    raise sqlite3.OperationalError("no main database on this connection")


def begin_write(raw: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` for bookkeeping (a batch, a fold), whose commit checkpoints
    the write-ahead log as SQLite does by default (every ``WAL_AUTOCHECKPOINT`` pages)."""
    raw.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
    raw.execute("BEGIN IMMEDIATE")


class SQLiteAppend:
    """Appends usage batches to the staging table on a ``sqlite3`` connection of its own.

    One connection, made at the first batch and shared by the threads under a lock (a
    SQLite file has one writer at a time anyway).  A batch is one ``BEGIN IMMEDIATE``
    transaction: claim its ``BatchId``, append its rows, read how many rows are staged.
    """

    def __init__(self, path: str, timeout: float, calls: Calls, failures: Failures) -> None:
        self._path = path
        self._timeout = timeout
        self._calls = calls
        self._failures = failures
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def append(self, rows: Sequence[tuple[Any, ...]], batch: BatchId | None,
               chunk: int, *, urgent: bool = False) -> int:
        """Stage ``rows`` (``chunk`` per statement) unless ``batch`` was written already;
        return about how many rows are staged now (0 for a batch written already).
        ``urgent``: poll for the write lock (see ``begin_urgent``)."""
        with self._lock:
            conn = self._connection()
            try:
                if urgent:
                    begin_urgent(conn)
                else:
                    begin_write(conn)
                try:
                    staged = self._write(conn, rows, batch, chunk)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._drop()
                raise self._failures.of(exc) from exc
            return staged

    def spend(self, key: str, at: int) -> bool:
        """Spend one use of a token with ``max_uses`` (``SPEND_USE``, one statement:
        atomic); whether it did."""
        with self._lock:
            conn = self._connection()
            try:
                return bool(conn.execute(SPEND_USE, (at, at, key)).rowcount == 1)
            except sqlite3.Error as exc:
                self._drop()
                raise self._failures.of(exc) from exc

    @staticmethod
    def _write(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]],
               batch: BatchId | None, chunk: int) -> int:
        if batch is not None:
            now = time.time_ns() // 1000  # wall time, for pruning only
            if conn.execute(CLAIM_BATCH, (batch.writer, batch.number, now)).rowcount != 1:
                return 0  # written already: this is a retry after a lost answer
            if batch.number % PRUNE_EVERY == 1:
                conn.execute(FORGET_WRITERS, (now - KEEP_WRITERS_MICROS,))
        for i in range(0, len(rows), chunk):
            conn.executemany(STAGED_INSERT, rows[i:i + chunk])
        low, high = conn.execute(STAGED_SPAN).fetchone()
        return 0 if low is None else int(high) - int(low) + 1

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._calls.check_open()
            conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False)
            try:
                tune(conn, round(self._timeout * 1000))
            except sqlite3.Error as exc:
                conn.close()
                raise self._failures.of(exc) from exc
            self._calls.register(conn)
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._calls.discard(conn)
