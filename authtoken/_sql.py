"""The SQL ``Repository``: SQLModel tables, SQLAlchemy Core statements, a lean login path.

Theory of operation
-------------------
The schema is declared with SQLModel on a registry of its own (so an application's
``SQLModel.metadata.create_all`` never sees it) and created on first use.  Table classes
never leave this module: rows become ``TokenRecord`` values at its edge.

Every value is stored in a dialect-neutral form: datetimes as integer microseconds since
1970 (no time-zone games, exact comparisons), users as ``"i:42"`` / ``"s:alice"`` so the
integer 42 and the string ``"42"`` stay distinct, ``data`` and ``description`` as UTF-8
bytes (PostgreSQL text refuses NUL characters, which a ``str`` may hold).

Admin paths (authorize, update, revoke, list) go through SQLAlchemy Core in short
transactions.  On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that two
processes never both read and then both try to upgrade to a write lock (which SQLite can
only resolve by failing one); the file is in WAL mode so readers never wait for writers.

Usage batches are increments, so each carries an id (``BatchId``): the transaction that
writes one first records it in ``authtoken_usage_batch`` and writes nothing if it was
there already -- a batch written again because its commit's answer was lost.  A call's
waits on the server, retries included, share one deadline (``timeout`` + 1 s).

Logins take a lean path: a per-thread connection in autocommit mode runs one prepared
``SELECT`` by primary key (``sqlite3`` on SQLite; libpq through psycopg's ``pgconn`` on
PostgreSQL).  Each statement starts a fresh read transaction, so a revocation committed
by any process is seen by the very next login: nothing is cached.  Other dialects use a
pooled Core connection with a cached compiled statement.

On PostgreSQL the login waits for its answer itself rather than inside libpq, for two
reasons.  The wait is bounded (``timeout`` plus a second), so a server that accepts the
query and never answers -- frozen, or behind a dead link -- cannot hang a login.  And it
polls before it sleeps: the round trip of a login is tens of microseconds, and a thread
put to sleep for it pays the wake-up of an idle CPU on return, which on a virtual machine
costs more than the round trip (measured on a 2-CPU VM, bare round trips: 5,600/s
asleep, 17,000/s polling, at no more CPU each; whole logins: +40 %, for 15 % more CPU).
The poll is bounded (200 µs) and stops against a server whose answers it keeps missing
-- a far one, or a loaded one -- so polling costs CPU only where it wins; the Linux
``haltpoll`` cpuidle governor makes the same trade in the kernel, which this kind of VM
often runs with polling off.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import random
import select
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from . import _migrate
from ._errors import AuthTokenError, InvalidArgument, RepositoryError, TokenRevoked
from ._expiry import from_micros, to_micros
from ._redact import redact
from ._repository import AuditEvent, BatchId, EventRow, LoginRow, Usage
from ._scopes import Script
from ._token import TokenRecord, UserKey
from ._watchdog import WATCHDOG, Watch

__all__ = ["SQLRepository"]

_R = TypeVar("_R")

DEFAULT_TIMEOUT = 5.0


class _Base(SQLModel, registry=registry()):
    pass


class TokenRow(_Base, table=True):
    """One token.  ``secret_hash`` is the SHA-256 of the secret, never the secret."""

    __tablename__ = "authtoken_token"
    __table_args__ = (
        sa.PrimaryKeyConstraint("id", name="pk_authtoken_token"),
        sa.UniqueConstraint("key", name="uq_authtoken_token_key"),
    )

    id: int | None = Field(default=None, nullable=False)
    key: str = Field(sa_type=sa.String(32), nullable=False)
    user_ref: str = Field(sa_type=sa.String(300), index=True, nullable=False)
    scope: str = Field(sa_type=sa.Text, nullable=False)
    data: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    description: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    expires: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: int = Field(sa_type=sa.BigInteger, nullable=False)
    updated_at: int = Field(sa_type=sa.BigInteger, nullable=False)
    revoked_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    last_used_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    use_count: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    parent_key: str | None = Field(default=None, sa_type=sa.String(32), index=True)
    secret_hash: bytes = Field(sa_type=sa.LargeBinary(32), nullable=False)
    version: int = Field(default=1, nullable=False)


class AuditRow(_Base, table=True):
    """One audit event; never a token string or secret."""

    __tablename__ = "authtoken_audit"
    __table_args__ = (sa.PrimaryKeyConstraint("id", name="pk_authtoken_audit"),)

    id: int | None = Field(
        default=None, nullable=False, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    at: int = Field(sa_type=sa.BigInteger, nullable=False, index=True)
    action: str = Field(sa_type=sa.String(16), nullable=False)
    outcome: str = Field(sa_type=sa.String(8), nullable=False)
    actor: str | None = Field(default=None, sa_type=sa.String(300))
    token_key: str | None = Field(default=None, sa_type=sa.String(32), index=True)
    user_ref: str | None = Field(default=None, sa_type=sa.String(300), index=True)
    script_key: int | None = Field(default=None, sa_type=sa.BigInteger)
    script_path: str | None = Field(default=None, sa_type=sa.Text)
    reason: str | None = Field(default=None, sa_type=sa.String(64))
    count: int = Field(default=1, sa_type=sa.BigInteger, nullable=False)


class UsageBatchRow(_Base, table=True):
    """The highest usage batch number a writer has written (see ``BatchId``)."""

    __tablename__ = "authtoken_usage_batch"
    __table_args__ = (sa.PrimaryKeyConstraint("writer", name="pk_authtoken_usage_batch"),)

    writer: str = Field(sa_type=sa.String(32), nullable=False)
    number: int = Field(sa_type=sa.BigInteger, nullable=False)
    written_at: int = Field(sa_type=sa.BigInteger, nullable=False)


METADATA = _Base.metadata
T: sa.Table = TokenRow.__table__  # type: ignore[attr-defined]
A: sa.Table = AuditRow.__table__  # type: ignore[attr-defined]
B: sa.Table = UsageBatchRow.__table__  # type: ignore[attr-defined]
_COLUMNS = tuple(c.name for c in T.columns)
_Row = NamedTuple("_Row", [(name, Any) for name in _COLUMNS])  # type: ignore[misc]
_LOGIN_SQL = (
    "SELECT secret_hash, user_ref, scope, data, expires, revoked_at "
    "FROM authtoken_token WHERE key = ?"
)
_GET_SQL = f"SELECT {', '.join(_COLUMNS)} FROM authtoken_token WHERE key = ?"  # noqa: S608
# The get by key in psycopg's placeholders; the login runs through libpq, with libpq's.
_PG_GET_SQL: Final = _GET_SQL.replace("?", "%s")
_PG_LOGIN_NAME: Final = b"authtoken_login"
_PG_LOGIN_SQL: Final = _LOGIN_SQL.replace("?", "$1").encode()
# How a login waits for its answer (see the module docstring): it polls for up to
# _POLL_NS before it sleeps, while polling keeps catching answers; after misses it only
# sleeps, and every _POLL_PROBE_EVERY-th login polls again to see whether that changed.
_POLL_NS: Final = 200_000
_POLL_TRUST_MAX: Final = 8
_POLL_PROBE_EVERY: Final = 32


def _readable(fd: int) -> Callable[[float], bool]:
    """Sleep until ``fd`` is readable or ``timeout`` seconds pass; True if readable.

    ``poll`` where there is one (``select`` fails on descriptors above 1023, which a busy
    scheduler may reach); ``select`` on Windows, where sockets are all it takes anyway.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return lambda timeout: bool(poller.poll(timeout * 1000))
    return lambda timeout: bool(select.select([fd], [], [], timeout)[0])


def _writable(fd: int, timeout: float) -> bool:
    """Sleep until ``fd`` can take more bytes, has some to read, or ``timeout`` passes.

    Rarely needed: only when a send did not fit the socket's buffer.  Readable counts
    too, since libpq must read what the server sends while it waits to send more.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLOUT)
        return bool(poller.poll(timeout * 1000))
    ready = select.select([fd], [fd], [], timeout)
    return bool(ready[0] or ready[1])


def _pg_error(result: Any, pgconn: Any) -> Exception:
    """The error of a failed login statement, operational if a new connection may help.

    It may if the connection died, or if the prepared statement is gone or stale (a
    pooler that discards statements; "cached plan must not change result type" after
    an upgrade altered the table): a new connection prepares it afresh.  Anything else
    the server refused on a live connection (its statement timeout, say) is the answer,
    not a reason to wait all over again.
    """
    import psycopg

    message = _pg_message(result, pgconn)
    sqlstate = result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b""
    if pgconn.status != psycopg.pq.ConnStatus.OK or sqlstate[:2] in (b"0A", b"26"):
        return psycopg.OperationalError(message)
    return psycopg.DatabaseError(message)


def next_poll_trust(trust: int, caught: bool) -> int:
    """How much the next login trusts polling, after one that polled.

    A caught answer adds one, up to ``_POLL_TRUST_MAX``; a miss halves it, so a server
    that stopped answering within the poll stops being polled for after four misses in
    a row, while one miss among catches does not.  At zero a login sleeps at once.
    """
    return min(_POLL_TRUST_MAX, trust + 1) if caught else trust // 2


def _pg_message(result: Any, pgconn: Any) -> str:
    raw = result.error_message or pgconn.error_message or b"the login query failed"
    return bytes(raw).decode("utf-8", "replace").strip()


def user_ref(user: UserKey) -> str:
    return f"i:{user}" if isinstance(user, int) else f"s:{user}"


def _user(ref: str) -> UserKey:
    return int(ref[2:]) if ref.startswith("i:") else ref[2:]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else bytes(raw).decode("utf-8")


def _micros(value: Any) -> int | None:
    return None if value is None else to_micros(value)


def _time(value: int | None) -> Any:
    return None if value is None else from_micros(value)


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        key=row.key,
        user=_user(row.user_ref),
        scope=row.scope,
        data=_text(row.data),
        description=_text(row.description) or "",
        expires=_time(row.expires),
        created_at=from_micros(row.created_at),
        updated_at=from_micros(row.updated_at),
        revoked_at=_time(row.revoked_at),
        last_used_at=_time(row.last_used_at),
        use_count=row.use_count,
        parent_key=row.parent_key,
        secret_hash=bytes(row.secret_hash),
        version=row.version,
    )


def _detail(exc: BaseException, password: str | None) -> str:
    """What went wrong, in one line, with no password: ``Class: first line``."""
    inner = getattr(exc, "orig", None) or exc
    detail = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    detail = redact(detail)
    if password:
        detail = detail.replace(password, "***")
    return f"{type(inner).__name__}: {detail[:300]}"


def _failure(exc: BaseException, password: str | None) -> RepositoryError:
    return RepositoryError(
        f"the token store failed ({_detail(exc, password)}); check that the database is "
        "reachable and writable, then retry"
    )


# What a write whose commit was sent but never answered tells its caller to do.
_CHANGE_UNKNOWN: Final = "read the token back to see whether the change was made, then retry"
_BATCH_UNKNOWN: Final = (
    "the usage batch is kept and will be written again, safely: a batch the database "
    "has already is recognised and skipped"
)


def _no_answer(seconds: float) -> RepositoryError:
    return RepositoryError(
        f"PostgreSQL did not answer within {seconds:g} s (the server is frozen or the "
        "network to it is down); check the server, then retry"
    )


# SQLAlchemy's first queries on a new connection (server version, settings, a rollback:
# about five round trips, with no event between them) run as one step of this many
# times the patience.  At the default timeout that is 9 s: a healthy server may take up
# to ~2 s a round trip, and one that freezes mid-setup still fails within the promised 10 s.
_SETUP_STRETCH: Final = 1.5


def _pg_connect(dbapi_conn: Any, record: Any) -> None:
    """A new pooled connection: watched from here (SQLAlchemy's first queries on it too)."""
    record.info["authtoken_fresh"] = True  # and so not pinged at this checkout
    WATCHDOG.add(dbapi_conn.pgconn.socket)
    WATCHDOG.step(_SETUP_STRETCH)


def _pg_checkout_listener(ping: Callable[[Any], object] | None) -> Callable[..., None]:
    """What ``pool_pre_ping`` does, but under the call's watch (see ``_watchdog``).

    A closure, not a method: the engine's event list must not hold the repository,
    or a repository dropped without ``close()`` could never release its connections.
    """
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


class SQLRepository:
    """A ``Repository`` in a SQL database reached through SQLAlchemy.

    ``SQLRepository("sqlite:///path/to/tokens.db")`` or a ``postgresql://`` URL.  The
    schema is created on first use.  ``timeout`` (seconds) bounds how long a call waits
    for a lock, a connection or a statement before it fails.  Every failure of the
    database is raised as ``RepositoryError`` (its message never holds the URL's
    password); the repository recovers by itself once the database is back.
    """

    def __init__(self, url: str | sa.URL, *, timeout: float = DEFAULT_TIMEOUT,
                 engine_options: Mapping[str, Any] | None = None) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            0 < timeout <= 60
        ):
            raise InvalidArgument("timeout is a number of seconds in (0, 60]")
        self._timeout = float(timeout)
        self._budget_ns = round((self._timeout + 1) * 1e9)  # a call's deadline, in ns
        try:
            self._url = sa.make_url(url)
        except Exception as exc:
            raise InvalidArgument(
                f"not a database URL: {redact(str(url))!r}; use e.g. "
                "'sqlite:///path/to/tokens.db' or 'postgresql://user@host/db'"
            ) from exc
        # A password given in the query string (?password=) is one too.
        password = self._url.password or self._url.query.get("password")
        self._password = password if isinstance(password, str) and password else None
        self._dialect = self._url.get_backend_name()
        self._local = threading.local()
        self._fast: list[Any] = []  # per-thread read connections, closed by close()
        self._fast_lock = threading.Lock()
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._closed = False
        # Pooled transactions in flight; close() waits for them (see close()).
        self._in_flight = 0
        self._idle = threading.Condition()
        options: dict[str, Any] = dict(engine_options or {})
        if self._dialect == "sqlite":
            try:
                self._sqlite_path = self._prepare_sqlite_file()
            except ValueError as exc:  # e.g. a NUL in the path
                raise InvalidArgument(
                    f"not a usable SQLite path in {redact(str(url))!r}: {exc}"
                ) from exc
            options.setdefault("connect_args", {}).update(
                {"timeout": self._timeout, "check_same_thread": False}
            )
        elif self._dialect == "postgresql":
            if self._url.drivername == "postgresql":
                self._url = self._url.set(drivername="postgresql+psycopg")
            connect_args = options.setdefault("connect_args", {})
            connect_args.setdefault("connect_timeout", max(1, round(self._timeout)))
            connect_args.setdefault(
                "options", f"-c statement_timeout={round(self._timeout * 1000)}"
            )
            # Pooled connections are pinged on checkout by our own listener (below), under
            # the watchdog, since a ping can hang on a frozen server like any statement;
            # SQLAlchemy's pool_pre_ping would ping before the socket is watched.
            own_ping = bool(options.get("pool_pre_ping", True))
            options["pool_pre_ping"] = False
            options.setdefault("pool_size", 5)
            options.setdefault("max_overflow", 10)
            options.setdefault("pool_timeout", self._timeout)
        self._fast_path = self._dialect in ("sqlite", "postgresql")
        if self._dialect == "postgresql":
            self._conninfo = self._url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
        try:
            self._engine: Engine = sa.create_engine(self._url, **options)
        except (ValueError, TypeError, sa.exc.ArgumentError) as exc:
            raise InvalidArgument(
                f"the database URL {redact(str(url))!r} has an option that cannot be "
                f"used ({type(exc).__name__}); check its query string"
            ) from exc
        except ModuleNotFoundError as exc:
            extra = "postgres" if self._dialect == "postgresql" else self._dialect
            raise RepositoryError(
                f"no driver for {self._dialect}: install it with "
                f'pip install "authtoken[{extra}]"'
            ) from exc
        if self._dialect == "sqlite":
            busy_ms = round(self._timeout * 1000)

            def on_connect(dbapi_conn: Any, _record: Any) -> None:
                _sqlite_connect(dbapi_conn, busy_ms)

            event.listen(self._engine, "connect", on_connect)
            event.listen(self._engine, "begin", _sqlite_begin)
        elif self._dialect == "postgresql":
            ping = self._engine.dialect.do_ping if own_ping else None
            event.listen(self._engine, "connect", _pg_connect, insert=True)
            event.listen(self._engine, "checkout", _pg_checkout_listener(ping))
            event.listen(self._engine, "checkin", _checkin)
            for name in ("before_cursor_execute", "commit", "rollback"):
                event.listen(self._engine, name, _step)
            event.listen(self._engine, "after_cursor_execute", _rest)
        self._login_stmt = sa.select(
            T.c.secret_hash, T.c.user_ref, T.c.scope, T.c.data, T.c.expires, T.c.revoked_at
        ).where(T.c.key == sa.bindparam("key"))
        # A repository dropped without close() still releases its connections.
        self._finalizer = weakref.finalize(self, _release, self._fast, self._fast_lock,
                                           self._engine)

    def __repr__(self) -> str:
        return f"SQLRepository({redact(self._url.render_as_string(hide_password=True))!r})"

    # -- plumbing -------------------------------------------------------------------
    def _prepare_sqlite_file(self) -> str:
        path = self._url.database
        if not path or path == ":memory:" or self._url.query.get("mode") == "memory":
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

    def _watch(self, limit: float | None = None,
               ) -> contextlib.AbstractContextManager[Watch | None]:
        """Bound each step of a call to PostgreSQL by timeout + 1 s, and by ``limit``
        (a ``time.monotonic()``) if given (see ``_watchdog``)."""
        if self._dialect != "postgresql":
            return contextlib.nullcontext()
        return WATCHDOG.watching(self._timeout + 1, limit)

    def _failure(self, exc: BaseException, watch: Watch | None) -> RepositoryError:
        if watch is not None and watch.fired:
            return _no_answer(self._timeout + 1)
        return _failure(exc, self._password)

    def _unknown(self, exc: BaseException, watch: Watch | None,
                 then: str) -> RepositoryError:
        """The error of a commit that was sent but never answered: it may have landed."""
        lost = (f"PostgreSQL did not answer within {self._timeout + 1:g} s"
                if watch is not None and watch.fired
                else f"the connection failed before the answer came "
                     f"({_detail(exc, self._password)})")
        return RepositoryError(
            f"the outcome of the write is unknown: its commit was sent, but {lost}; {then}"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RepositoryError("the repository is closed; open a new one")

    def _write(self, body: Callable[[Connection], _R], *,
               unknown: str = _CHANGE_UNKNOWN) -> _R:
        """Run ``body`` in a write transaction, again if the server broke a deadlock.

        Deadlocks and serialization failures are the server's way of asking for a
        retry; the transaction was rolled back, so running it again is safe.  The call
        has one deadline, ``timeout`` + 1 s from its start: a retry gets what is left of
        it (its statements and waits are cut at the deadline), and there is none when
        less than ``_MIN_RETRY`` seconds are left.  ``unknown``: what the error of a
        commit that was sent but never answered tells the caller to do.
        """
        deadline = time.monotonic() + self._timeout + 1
        for attempt in range(4):
            try:
                with self._tx(limit=deadline if attempt else None, unknown=unknown) as conn:
                    if attempt and self._dialect == "postgresql":
                        # The server ends a lock wait first, with its own clear error.
                        left = deadline - time.monotonic() - 0.5
                        conn.exec_driver_sql(
                            f"SET LOCAL statement_timeout = {max(1, round(left * 1000))}"
                        )
                    return body(conn)
            except RepositoryError as exc:
                sqlstate = getattr(getattr(exc.__cause__, "orig", None), "sqlstate", None)
                if sqlstate not in ("40P01", "40001") or attempt == 3:
                    raise
                pause = 0.01 * (attempt + 1) * (1 + random.random())
                if deadline - time.monotonic() - pause < _MIN_RETRY:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    @contextmanager
    def _tx(self, write: bool = True, *, limit: float | None = None,
            unknown: str = _CHANGE_UNKNOWN) -> Iterator[Connection]:
        """A transaction on a pooled connection; ``limit``: see ``Watch``."""
        with self._idle:
            self._check_open()
            self._in_flight += 1
        try:
            self._ensure_schema()
            with self._watch(limit) as watch:
                committing = False
                try:
                    with self._engine.connect() as conn:
                        if write:
                            conn = conn.execution_options(authtoken_write=True)
                        with conn.begin():
                            yield conn
                            committing = True  # the commit runs as this block ends
                except AuthTokenError:
                    raise
                except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as exc:
                    # A commit whose connection died (or was cut by the watchdog) may
                    # have landed; one the server refused on a live connection did not.
                    if write and committing and (
                        (watch is not None and watch.fired)
                        or getattr(exc, "connection_invalidated", False)
                    ):
                        raise self._unknown(exc, watch, unknown) from exc
                    raise self._failure(exc, watch) from exc
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        self._check_open()
        with self._schema_lock:
            if self._schema_ready:
                return
            try:
                with self._watch() as watch, self._engine.connect() as conn:
                    conn = conn.execution_options(authtoken_write=True)
                    with conn.begin():
                        try:
                            state = _migrate.schema_state(conn)
                        except RepositoryError:
                            state = "unsure"  # maybe read half-way through a creation
                        if state != "current":
                            # Lock, then look again: another process may have been
                            # creating the schema while we looked.
                            _migrate.lock(conn)
                            state = _migrate.schema_state(conn)
                            if state == "empty":
                                _migrate.upgrade(conn)
                                state = "current"
                        if state != "current":
                            raise _migrate.refusal(state, _migrate.current_revision(conn))
            except AuthTokenError:
                raise
            except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
                raise self._failure(exc, watch) from exc
            self._schema_ready = True

    def schema_revision(self) -> str | None:
        """The schema revision the database holds (``None``: empty)."""
        self._check_open()
        with self._watch() as watch:
            try:
                with self._engine.connect() as conn, conn.begin():
                    return _migrate.current_revision(conn)
            except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
                raise self._failure(exc, watch) from exc

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Migrate the database to the newest schema; return (before, after) revisions.

        Refuses a schema newer than this code.  Safe to run while other processes use
        the database: it runs in one transaction under the schema lock.
        """
        self._check_open()
        try:
            with self._watch() as watch, self._engine.connect() as conn:
                conn = conn.execution_options(authtoken_write=True)
                with conn.begin():
                    _migrate.lock(conn)
                    before = _migrate.current_revision(conn)
                    if _migrate.schema_state(conn) == "newer":
                        raise _migrate.refusal("newer", before)
                    _migrate.upgrade(conn)
        except AuthTokenError:
            raise
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            raise self._failure(exc, watch) from exc
        self._schema_ready = True
        return before, _migrate.HEAD

    def _fast_cursor(self) -> sqlite3.Cursor:
        cur: sqlite3.Cursor | None = getattr(self._local, "cursor", None)
        if cur is None:
            self._check_open()
            self._ensure_schema()
            conn = sqlite3.connect(
                self._sqlite_path, timeout=self._timeout, isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {round(self._timeout * 1000)}")
            conn.execute("PRAGMA query_only = ON")
            self._register(conn)
            cur = conn.cursor()
            self._local.cursor = cur
        return cur

    def _register(self, conn: Any) -> None:
        """Track a new per-thread connection for close(); refuse it if close() ran."""
        with self._fast_lock:
            if not self._closed:
                self._fast.append(conn)
                return
        conn.close()
        self._check_open()

    def _pg_connection(self, connect_timeout: int | None = None) -> Any:
        conn = getattr(self._local, "pg", None)
        if conn is None:
            import psycopg

            self._check_open()
            self._ensure_schema()
            conn = psycopg.connect(
                self._conninfo, autocommit=True,
                connect_timeout=connect_timeout or max(2, round(self._timeout)),
                options=f"-c statement_timeout={round(self._timeout * 1000)}",
            )
            self._register(conn)
            self._local.pg = conn
            self._local.pg_cursor = conn.cursor()  # reused: a new cursor per call costs
        return conn

    def _pg_login_rows(self, key: str, started: int) -> list[Any]:
        """The login read, straight through libpq on this thread's connection.

        A login is one prepared ``SELECT``: psycopg's cursor machinery around it costs
        about a third of the round trip, so the statement is prepared once per
        connection under a name of ours, sent with ``PQsendQueryPrepared`` and waited
        for by ``_pg_answer``; binary results are decoded here.  Same connection, same
        autocommit snapshot rule as every fast read.  ``started``: when the call began
        (``perf_counter_ns``); the PREPARE and the login share its deadline.
        """
        import psycopg  # loaded already: the connection was made with it

        pgconn = self._pg_connection().pgconn
        status = psycopg.pq.ExecStatus
        local = self._local
        if not getattr(local, "pg_login_ready", False):
            pgconn.send_prepare(_PG_LOGIN_NAME, _PG_LOGIN_SQL)
            done = self._pg_answer(pgconn, started, poll=False)
            if done.status != status.COMMAND_OK:
                raise _pg_error(done, pgconn)
            local.pg_login_ready = True
            # The first statement on a new backend is slow (catalog caches, planning):
            # begin with enough trust that its miss does not switch polling off.
            local.pg_poll_trust, local.pg_poll_skipped = _POLL_TRUST_MAX // 2, 0
        pgconn.send_query_prepared(_PG_LOGIN_NAME, [key.encode()], result_format=1)
        result = self._pg_answer(pgconn, started, poll=True)
        if result.status != status.TUPLES_OK:
            raise _pg_error(result, pgconn)
        if result.ntuples == 0:
            return []
        value = result.get_value
        data, expires, revoked = value(0, 3), value(0, 4), value(0, 5)
        return [(
            bytes(value(0, 0) or b""), bytes(value(0, 1) or b"").decode(),
            bytes(value(0, 2) or b"").decode(), None if data is None else bytes(data),
            None if expires is None else int.from_bytes(expires, "big", signed=True),
            None if revoked is None else int.from_bytes(revoked, "big", signed=True),
        )]

    def _pg_answer(self, pgconn: Any, started: int, *, poll: bool) -> Any:
        """The result of the one statement just sent on ``pgconn``, waited for here.

        Polls first if ``poll`` and polling pays (``next_poll_trust``), then sleeps on
        the socket; every wait is bounded by ``started`` + the timeout + a second (the
        server's own ``statement_timeout`` answers first unless the server cannot
        answer at all).  Only a lone read polls: when other calls of this repository are
        in flight, the process has other work for the CPU and the thread sleeps at once.
        """
        # psycopg's connections are nonblocking: the send may have left bytes in
        # libpq's buffer (not for a login's few bytes, but a full socket buffer can).
        while pgconn.flush():
            self._pg_sleep(pgconn, started, write=True)
            pgconn.consume_input()
        local = self._local
        trust = 0
        if poll and self._in_flight == 1:
            trust = local.pg_poll_trust
            if not trust:
                local.pg_poll_skipped += 1
                poll = local.pg_poll_skipped % _POLL_PROBE_EVERY == 0
        else:
            poll = False
        caught = self._pg_wait(pgconn, started, _POLL_NS if poll else 0)
        if poll:
            local.pg_poll_trust = next_poll_trust(trust, caught)
        result = pgconn.get_result()
        # The server ends each statement with ReadyForQuery, nearly always in the same
        # packet as the rows: drain to it, so the connection is idle for the next login.
        # One statement gives one result; more (say, a COPY) means something is wrong.
        for _ in range(4):
            self._pg_wait(pgconn, started, 0)
            if pgconn.get_result() is None:
                if result is None:
                    break
                return result
        import psycopg

        raise psycopg.OperationalError("unexpected results from the login statement")

    def _pg_wait(self, pgconn: Any, started: int, budget: int) -> bool:
        """Wait until ``pgconn`` has a whole result; True if polling caught it."""
        consume, busy = pgconn.consume_input, pgconn.is_busy
        if budget > 0:
            until = started + budget
            while True:
                consume()
                if not busy():
                    return True
                if time.perf_counter_ns() >= until:
                    break
        elif not busy():
            return False
        while True:
            self._pg_sleep(pgconn, started)
            consume()
            if not busy():
                return False

    def _pg_sleep(self, pgconn: Any, started: int, *, write: bool = False) -> None:
        """Sleep until the socket is readable (writable), or fail at the deadline."""
        left = started + self._budget_ns - time.perf_counter_ns()
        if left > 0:
            if write:
                _writable(pgconn.socket, left / 1e9 + 0.001)
                return
            readable = getattr(self._local, "pg_readable", None)
            if readable is None:
                readable = self._local.pg_readable = _readable(pgconn.socket)
            if readable(left / 1e9 + 0.001):
                return
        self._drop_fast_connection()
        raise _no_answer(self._timeout + 1)

    def _pg_cursor(self) -> Any:
        self._pg_connection()
        return self._local.pg_cursor

    def _fast_rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run a read on this thread's autocommit connection: a fresh snapshot each time.

        Each statement is its own transaction, so it sees every commit made before it
        began, by any process: this is what makes a revocation visible at once.  Counted
        as in flight, so close() does not close a connection under a running read.
        """
        idle = self._idle
        with idle:
            self._check_open()
            self._in_flight += 1
        try:
            return self._fast_read(sql, params)
        finally:
            with idle:
                self._in_flight -= 1
                if self._closed:
                    idle.notify_all()

    def _fast_read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self._dialect == "sqlite":
            try:
                # fetchall runs the statement to completion, so no open statement can
                # pin an old read snapshot between logins.
                return self._fast_cursor().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                self._drop_fast_connection()
                raise _failure(exc, self._password) from exc
        import psycopg

        # One deadline for the call, retry included: timeout + 1 s from its first wait
        # on the server (a new connection's connect is bounded by its own timeout).
        budget = self._budget_ns
        started = 0
        watch: Watch | None = None
        for attempt in range(2):
            fresh = getattr(self._local, "pg", None) is None
            try:
                if attempt:  # a new connection, connected within what is left
                    left = (started + budget - time.perf_counter_ns()) / 1e9
                    self._pg_connection(max(2, int(left)))
                else:
                    if fresh:
                        self._pg_connection()
                    started = time.perf_counter_ns()
                if sql is _LOGIN_SQL:
                    return self._pg_login_rows(params[0], started)
                limit = time.monotonic() + (started + budget - time.perf_counter_ns()) / 1e9
                with self._watch(limit) as watch:
                    cursor = self._pg_cursor()
                    WATCHDOG.add(cursor.connection.pgconn.socket)
                    WATCHDOG.step()
                    rows: list[Any] = cursor.execute(_PG_GET_SQL, params, prepare=True).fetchall()
                return rows
            except psycopg.Error as exc:
                self._drop_fast_connection()
                # A connection that died while idle (server restart, failover) gets one
                # retry on a new connection, if enough of the deadline is left; a fresh
                # connection that fails is the answer, and so is one that the server
                # stopped answering, or whose statement it cancelled at its timeout.
                if fresh or attempt or not isinstance(exc, psycopg.OperationalError) or (
                    watch is not None and watch.fired
                ) or started + budget - time.perf_counter_ns() < _MIN_RETRY * 1e9:
                    raise self._failure(exc, watch) from exc
        raise AssertionError("unreachable")

    # -- the Repository protocol ------------------------------------------------------
    def login_row(self, key: str) -> LoginRow | None:
        if self._fast_path:
            rows = self._fast_rows(_LOGIN_SQL, (key,))
            row = rows[0] if rows else None
        else:
            with self._tx(write=False) as conn:
                row = conn.execute(self._login_stmt, {"key": key}).first()
        if row is None:
            return None
        secret_hash, ref, scope, data, expires, revoked_at = row
        return LoginRow(
            bytes(secret_hash), _user(ref), scope,
            None if data is None else bytes(data).decode("utf-8"), expires, revoked_at,
        )

    def _drop_fast_connection(self) -> None:
        cur = getattr(self._local, "cursor", None)
        conn = getattr(self._local, "pg", None) if cur is None else cur.connection
        self._local.cursor = self._local.pg = self._local.pg_cursor = None
        self._local.pg_login_ready = False
        self._local.pg_readable = None
        if conn is not None:
            with self._fast_lock:
                if conn in self._fast:
                    self._fast.remove(conn)
            try:
                conn.close()
            except Exception:  # noqa: S110 - a broken connection may fail to close
                pass

    def insert(self, record: TokenRecord) -> None:
        values = {
            "key": record.key,
            "user_ref": user_ref(record.user),
            "scope": record.scope,
            "data": None if record.data is None else record.data.encode("utf-8"),
            "description": record.description.encode("utf-8"),
            "expires": _micros(record.expires),
            "created_at": to_micros(record.created_at),
            "updated_at": to_micros(record.updated_at),
            "revoked_at": _micros(record.revoked_at),
            "last_used_at": _micros(record.last_used_at),
            "use_count": record.use_count,
            "parent_key": record.parent_key,
            "secret_hash": record.secret_hash,
            "version": record.version,
        }
        def insert(conn: Connection) -> None:
            if record.parent_key is not None:
                # FOR UPDATE (ignored by SQLite, whose BEGIN IMMEDIATE already
                # serialises writers) keeps a concurrent revocation of the parent from
                # slipping between this check and the insert.
                parent = conn.execute(
                    sa.select(T.c.revoked_at).where(T.c.key == record.parent_key)
                    .with_for_update()
                ).first()
                if parent is None or parent.revoked_at is not None:
                    raise TokenRevoked(
                        "the parent token was revoked: it can no longer delegate",
                        token_key=record.parent_key,
                        revoked_at=_time(parent.revoked_at) if parent else None,
                    )
            exists = conn.execute(sa.select(T.c.id).where(T.c.key == record.key)).first()
            if exists is not None:
                raise InvalidArgument(f"a token with key {record.key!r} already exists")
            conn.execute(T.insert().values(**values))

        self._write(insert)

    def get(self, key: str) -> TokenRecord | None:
        if self._fast_path:
            rows = self._fast_rows(_GET_SQL, (key,))
            return _record(_Row(*rows[0])) if rows else None
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(T).where(T.c.key == key)).first()
        return None if row is None else _record(row)

    def update(self, record: TokenRecord) -> TokenRecord | None:
        def update(conn: Connection) -> TokenRecord | None:
            result = conn.execute(
                T.update()
                .where(T.c.key == record.key, T.c.version == record.version,
                       T.c.revoked_at.is_(None))
                .values(
                    scope=record.scope,
                    data=None if record.data is None else record.data.encode("utf-8"),
                    description=record.description.encode("utf-8"),
                    expires=_micros(record.expires),
                    updated_at=to_micros(record.updated_at),
                    version=T.c.version + 1,
                )
            )
            row = conn.execute(sa.select(T).where(T.c.key == record.key)).first()
            if row is None:
                return None
            if result.rowcount != 1:
                if row.revoked_at is not None:
                    raise TokenRevoked(
                        "the token is revoked and cannot be updated",
                        token_key=record.key, revoked_at=_time(row.revoked_at),
                    )
                return None
            return _record(row)

        return self._write(update)

    def _revoke_tree(self, conn: Connection, roots: sa.Select[Any], at: int) -> int:
        # nesting=True keeps the WITH inside the subquery, so the statement starts with
        # UPDATE and drivers report its row count (pysqlite reports -1 for "WITH ...").
        tree = roots.cte("tree", recursive=True, nesting=True)
        child = T.alias("child")
        tree = tree.union(sa.select(child.c.key).join(tree, child.c.parent_key == tree.c.key))
        # Rows are locked in key order -- the order usage batches update them in -- so
        # a revocation and a usage write never wait for each other in a cycle.
        find = (
            sa.select(T.c.key)
            .where(T.c.key.in_(sa.select(tree.c.key)), T.c.revoked_at.is_(None))
            .order_by(T.c.key)
            .with_for_update()
        )
        # Under READ COMMITTED (PostgreSQL) the tree is read from the statement's
        # snapshot, but a child being inserted holds its parent's row lock, so our
        # UPDATE of that parent waits for the insert to commit -- and the new child was
        # not in our snapshot.  Looking again until nothing changes catches every such
        # child: later inserts under a parent we revoked wait for our commit and then
        # see the parent revoked, and are refused.  (SQLite serialises writers; there
        # the second pass finds nothing.)
        total = 0
        while True:
            keys = [row[0] for row in conn.execute(find)]
            if not keys:
                return total
            for start in range(0, len(keys), 500):
                total += int(conn.execute(
                    T.update()
                    .where(T.c.key.in_(keys[start:start + 500]), T.c.revoked_at.is_(None))
                    .values(revoked_at=at, version=T.c.version + 1)
                ).rowcount)

    def revoke(self, key: str, at: int) -> int | None:
        def revoke(conn: Connection) -> int | None:
            if conn.execute(sa.select(T.c.id).where(T.c.key == key)).first() is None:
                return None
            return self._revoke_tree(conn, sa.select(T.c.key).where(T.c.key == key), at)

        return self._write(revoke)

    def revoke_user(self, user: UserKey, at: int) -> int:
        # The tokens revoked by this call stay roots on the second pass.
        roots = sa.select(T.c.key).where(
            T.c.user_ref == user_ref(user),
            sa.or_(T.c.revoked_at.is_(None), T.c.revoked_at == at),
        )
        return self._write(lambda conn: self._revoke_tree(conn, roots, at))

    def list(self, user: UserKey | None, include_revoked: bool) -> list[TokenRecord]:
        query = sa.select(T).order_by(T.c.created_at.desc(), T.c.id.desc())
        if user is not None:
            query = query.where(T.c.user_ref == user_ref(user))
        if not include_revoked:
            query = query.where(T.c.revoked_at.is_(None))
        with self._tx(write=False) as conn:
            return [_record(row) for row in conn.execute(query)]

    def record_usage(self, usage: Mapping[str, Usage],
                     events: Sequence[EventRow] = (), batch: BatchId | None = None) -> None:
        if not usage and not events:
            return
        last = sa.bindparam("last", type_=sa.BigInteger)
        stmt = (
            T.update()
            .where(T.c.key == sa.bindparam("k"))
            .values(
                use_count=T.c.use_count + sa.bindparam("n", type_=sa.BigInteger),
                last_used_at=sa.case(
                    (T.c.last_used_at.is_(None), last),
                    (T.c.last_used_at < last, last),
                    else_=T.c.last_used_at,
                ),
            )
        )
        # Rows are updated in key order, the order revocations lock them in.
        params = [{"k": k, "n": u.logins, "last": u.last_used} for k, u in sorted(usage.items())]
        rows = _audit_rows(events)
        postgres = self._dialect == "postgresql"
        insert = _AUDIT_INSERT.replace("?", "%s") if postgres else _AUDIT_INSERT

        def write(conn: Connection) -> None:
            if batch is not None and not self._claim(conn, batch):
                return  # written already: this is a retry after a lost answer
            # In chunks (a backlog kept while the database was down can hold any number
            # of tokens).  On PostgreSQL each chunk is one statement, not an executemany
            # of many: the server's statement_timeout and the watchdog then bound the
            # same thing, however long each row waits for its lock.
            for i in range(0, len(params), _WRITE_CHUNK):
                chunk = params[i:i + _WRITE_CHUNK]
                if not postgres:
                    conn.execute(stmt, chunk)
                    continue
                keys = [p["k"] for p in chunk]
                conn.execute(_PG_LOCK_IN_KEY_ORDER, {"keys": keys})
                conn.execute(_PG_ADD_USAGE, {
                    "keys": keys, "ns": [p["n"] for p in chunk],
                    "lasts": [p["last"] for p in chunk],
                })
            for i in range(0, len(rows), _WRITE_CHUNK):
                # Straight to the driver's executemany: building the events through the
                # SQL expression layer would cost more than the logins they record.
                conn.exec_driver_sql(insert, rows[i:i + _WRITE_CHUNK])

        self._write(write, unknown=_BATCH_UNKNOWN)

    def _claim(self, conn: Connection, batch: BatchId) -> bool:
        """Record ``batch`` as written, in the caller's transaction; ``False`` if its
        writer has written it (or a later one) already.

        On PostgreSQL a first attempt still in flight on a dead connection holds the
        writer's row: this waits for its outcome, then sees it.  Now and then it also
        forgets writers that wrote nothing for ``_KEEP_WRITERS_MICROS``.
        """
        now = time.time_ns() // 1000  # wall time, for pruning only: not a token's clock
        if self._dialect in ("postgresql", "sqlite"):
            claimed = conn.execute(_CLAIM_BATCH, {
                "writer": batch.writer, "number": batch.number, "at": now,
            }).rowcount == 1
        else:
            row = conn.execute(
                sa.select(B.c.number).where(B.c.writer == batch.writer).with_for_update()
            ).first()
            claimed = row is None or row.number < batch.number
            if row is None:
                conn.execute(B.insert().values(writer=batch.writer, number=batch.number,
                                               written_at=now))
            elif claimed:
                conn.execute(B.update().where(B.c.writer == batch.writer)
                             .values(number=batch.number, written_at=now))
        if claimed and batch.number % _PRUNE_EVERY == 1:
            conn.execute(B.delete().where(B.c.written_at < now - _KEEP_WRITERS_MICROS))
        return claimed

    def events(self, *, user: UserKey | None, token_key: str | None,
               since: datetime | None, limit: int) -> builtins.list[AuditEvent]:
        query = sa.select(A).order_by(A.c.at.desc(), A.c.id.desc()).limit(limit)
        if user is not None:
            query = query.where(A.c.user_ref == user_ref(user))
        if token_key is not None:
            query = query.where(A.c.token_key == token_key)
        if since is not None:
            query = query.where(A.c.at >= to_micros(since))
        with self._tx(write=False) as conn:
            return [
                AuditEvent(
                    at=from_micros(r.at), action=r.action, outcome=r.outcome, actor=r.actor,
                    token_key=r.token_key,
                    user=None if r.user_ref is None else _user(r.user_ref),
                    script=None if r.script_key is None and r.script_path is None
                    else Script(key=r.script_key, path=r.script_path),
                    reason=r.reason, count=r._mapping["count"],
                )
                for r in conn.execute(query)
            ]

    def close(self) -> None:
        """Refuse new calls, let calls in flight finish (up to 2 x (``timeout`` + 1 s)),
        and close every connection."""
        # A connection still checked out (say, a batch another thread is writing) would
        # escape ``dispose``: wait for it, as long as one call may take -- a step may
        # last the timeout plus the watchdog's second, and a login may try twice.
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._in_flight == 0,
                                timeout=2 * (self._timeout + 1))
        self._finalizer()  # closes the per-thread connections, disposes the pool

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for migrations and diagnostics)."""
        return self._engine


_WRITE_CHUNK: Final = 1000  # rows per statement (or executemany) of a usage batch
# A retry of a call gets what is left of its deadline, if at least this many seconds:
# less would not do (psycopg gives a new connection at least 2 s to connect).
_MIN_RETRY: Final = 2.0
# A writer's last batch number is kept this long after its last batch: a batch whose
# answer was lost is written again at the next flush, or once the database is back.
_KEEP_WRITERS_MICROS: Final = 30 * 24 * 3600 * 1_000_000
_PRUNE_EVERY: Final = 1000  # a writer's 1st, 1001st, ... batch forgets old writers
# Both PostgreSQL and SQLite (3.24+) take this upsert; it changes no row, and so counts
# none, when the writer's number is already as high.
_CLAIM_BATCH: Final = sa.text(
    "INSERT INTO authtoken_usage_batch (writer, number, written_at) "
    "VALUES (:writer, :number, :at) ON CONFLICT (writer) DO UPDATE "
    "SET number = excluded.number, written_at = excluded.written_at "
    "WHERE authtoken_usage_batch.number < excluded.number"
)
# PostgreSQL: a chunk of usage in two statements.  The rows are locked first, in key
# order -- the order revocations lock them in, so the two never deadlock -- then updated
# from arrays in one statement.
_PG_LOCK_IN_KEY_ORDER: Final = sa.text(
    "SELECT 1 FROM authtoken_token WHERE key = ANY(CAST(:keys AS text[])) "
    "ORDER BY key FOR UPDATE"
)
_PG_ADD_USAGE: Final = sa.text(
    "UPDATE authtoken_token AS t SET use_count = t.use_count + v.n, "
    "last_used_at = CASE WHEN t.last_used_at IS NULL OR t.last_used_at < v.last "
    "THEN v.last ELSE t.last_used_at END "
    "FROM unnest(CAST(:keys AS text[]), CAST(:ns AS bigint[]), CAST(:lasts AS bigint[])) "
    "AS v(k, n, last) WHERE t.key = v.k"
)

_AUDIT_INSERT: Final = (
    'INSERT INTO authtoken_audit (at, action, outcome, actor, token_key, user_ref, '
    'script_key, script_path, reason, "count") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
)


def _release(fast: list[Any], lock: threading.Lock, engine: Engine) -> None:
    with lock:
        connections = list(fast)
        fast.clear()
    for conn in connections:
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            conn.close()
    engine.dispose()


def _audit_rows(events: Sequence[EventRow]) -> list[tuple[Any, ...]]:
    refs: dict[UserKey, str] = {}  # a batch is mostly the same few users
    rows = []
    for at, action, outcome, actor, key, user, script, reason, count in events:
        ref = None
        if user is not None:
            ref = refs.get(user)
            if ref is None:
                ref = refs[user] = user_ref(user)
        script_key = None if script is None else script.key
        if script_key is not None and not -(2**63) <= script_key < 2**63:
            script_key = None  # beyond a BIGINT: the path, if any, still says which
        rows.append((
            at, action, outcome, _fit(actor, 300), _fit(key, 32), ref, script_key,
            None if script is None else _fit(script.path, 4096), _fit(reason, 64), count,
        ))
    return rows


def _fit(text: str | None, size: int) -> str | None:
    """``text`` as a column takes it: valid UTF-8 (a lone surrogate, as ``os.fsdecode``
    makes of an undecodable file name, becomes ``?``) and at most ``size`` characters."""
    if text is None:
        return None
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:size]


def _sqlite_connect(dbapi_conn: Any, busy_ms: int) -> None:
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


def _sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("authtoken_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
