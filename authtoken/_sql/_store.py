"""``SQLStore``: the ``Repository`` contract kept in a SQL database through SQLAlchemy.

``SQLRepository`` (``_repository``) is what users hold: it hands every call to this
store, built when the first call needs SQLAlchemy -- at once for PostgreSQL, later for a
plain SQLite file, whose logins and batches need none (``_lean``).

Theory of operation
-------------------
Admin paths (authorize, update, revoke, list, usage batches) go through SQLAlchemy Core
in short transactions on pooled connections (``_tx``); writes run under ``_write``,
which retries a transaction the server broke off to end a deadlock.  Logins and reads
by key take the dialect's lean path when it has one (``Dialect.reads``: ``_sqlite``,
``_pg_login``), else a pooled transaction too.  The schema is checked once, at the first
call (``_migrate``).

A call's waits on the server, retries included, share one deadline (``timeout`` + 1 s
from its start).  Usage batches are increments, so each carries an id (``BatchId``):
the transaction that writes one first records it in ``authtoken_usage_batch`` and
writes nothing if it was there already -- a batch written again because its commit's
answer was lost.

What differs between databases lives with its dialect (``_dialect``, ``_sqlite``,
``_postgres``); every driver error leaves as ``RepositoryError`` (``_failures``).
"""

from __future__ import annotations

import builtins
import functools
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import _migrate
from .._errors import AuthTokenError, InvalidArgument, RepositoryError, TokenRevoked
from .._expiry import to_micros
from .._redact import redact
from .._repository import AuditEvent, BatchId, EventRow, LoginRow, Usage
from .._token import TokenRecord, UserKey
from ._calls import DEFAULT_TIMEOUT, MIN_RETRY, Calls, check_timeout
from ._dialect import Dialect, FastReads
from ._failures import BATCH_UNKNOWN, CHANGE_UNKNOWN, Failures
from ._fold import Taken, file_part, parts, read_staged
from ._postgres import PostgreSQL
from ._rows import (
    StoredToken,
    limit_values,
    login_row,
    micros_or_none,
    time_or_none,
    token_record,
    token_values,
    user_ref,
)
from ._schema import AUDIT as A
from ._schema import BATCHES as B
from ._schema import LOGIN_SELECT
from ._schema import TOKENS as T
from ._sqlite import SQLite
from ._staged import staged_events, staged_usage, take_staged, trail_events
from ._staging import (
    FOLD_CHUNK,
    KEEP_WRITERS_MICROS,
    PRUNE_EVERY,
    WRITE_CHUNK,
    file_rows,
    fold_due,
    staged_rows,
    with_usage,
)

__all__ = ["DEFAULT_TIMEOUT", "WRITE_CHUNK", "SQLStore"]

_R = TypeVar("_R")

_DIALECTS: Final[dict[str, type[Dialect]]] = {"sqlite": SQLite, "postgresql": PostgreSQL}


class SQLStore:
    """The ``Repository`` methods on a SQL database through SQLAlchemy (see
    ``SQLRepository`` for the arguments)."""

    def __init__(self, url: str | sa.URL, *, timeout: float = DEFAULT_TIMEOUT,
                 engine_options: Mapping[str, Any] | None = None) -> None:
        self._timeout = check_timeout(timeout)
        shown = redact(str(url))
        parsed = _parse(url, shown)
        # A password given in the query string (?password=) is one too.
        password = parsed.password or parsed.query.get("password")
        self._failures = Failures(password if isinstance(password, str) and password else None,
                                  self._timeout + 1)
        self._calls = Calls()
        kind = _DIALECTS.get(parsed.get_backend_name(), Dialect)
        self._dialect = kind(parsed, shown=shown, timeout=self._timeout, calls=self._calls,
                             failures=self._failures)
        self._reads = self._dialect.reads
        self._engine = _create_engine(self._dialect, engine_options, shown)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._folded_at = time.monotonic()
        # A repository dropped without close() still releases its connections.
        self._finalizer = weakref.finalize(self, _release, self._calls, self._engine)

    def __repr__(self) -> str:
        shown = self._dialect.url.render_as_string(hide_password=True)
        return f"SQLRepository({redact(shown)!r})"  # what users hold: see _repository

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for migrations and diagnostics)."""
        return self._engine

    @property
    def reads(self) -> FastReads | None:
        """The dialect's reads by key outside SQLAlchemy (``None``: none on this one)."""
        return self._reads

    def read_by_key(self, read: Callable[[str], Sequence[Any] | None], key: str,
                    ) -> Sequence[Any] | None:
        """``read(key)`` as the login's read by key runs: counted in flight, the schema
        checked once (the broker's link read shares it)."""
        return self._fast(read, key)

    # -- transactions ---------------------------------------------------------------
    def _write(self, body: Callable[[Connection], _R], *,
               unknown: str = CHANGE_UNKNOWN, urgent: bool = False) -> _R:
        """Run ``body`` in a write transaction, again if the server broke a deadlock.

        Deadlocks and serialization failures are the server's way of asking for a
        retry; the transaction was rolled back, so running it again is safe.  The call
        has one deadline, ``timeout`` + 1 s from its start: a retry gets what is left of
        it (its statements and waits are cut at the deadline), and there is none when
        less than ``MIN_RETRY`` seconds are left.  ``unknown``: what the error of a
        commit that was sent but never answered tells the caller to do.
        """
        deadline = time.monotonic() + self._timeout + 1
        for attempt in range(4):
            try:
                with self._tx(limit=deadline if attempt else None, unknown=unknown,
                              urgent=urgent) as conn:
                    if attempt:
                        self._dialect.limit_statements(
                            conn, deadline - time.monotonic() - 0.5
                        )
                    return body(conn)
            except RepositoryError as exc:
                sqlstate = getattr(getattr(exc.__cause__, "orig", None), "sqlstate", None)
                if sqlstate not in ("40P01", "40001") or attempt == 3:
                    raise
                pause = 0.01 * (attempt + 1) * (1 + random.random())
                if deadline - time.monotonic() - pause < MIN_RETRY:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    def transaction(self, body: Callable[[Connection], _R], *, write: bool = True) -> _R:
        """``body`` in one transaction of this store (a write: retried like every write),
        for the ``_sql`` modules that keep tables of their own (``_links``)."""
        if write:
            return self._write(body)
        with self._tx(write=False) as conn:
            return body(conn)

    @contextmanager
    def _tx(self, write: bool = True, *, limit: float | None = None,
            unknown: str = CHANGE_UNKNOWN, urgent: bool = False) -> Iterator[Connection]:
        """A transaction on a pooled connection; ``limit``: see ``Watch``."""
        self._calls.enter()
        try:
            self.ensure_schema()
            with self._dialect.watching(limit) as watch:
                committing = False
                try:
                    with self._transaction(write, urgent=urgent) as conn:
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
                        raise self._failures.unknown(exc, watch, unknown) from exc
                    raise self._failures.of(exc, watch) from exc
        finally:
            self._calls.leave()

    @contextmanager
    def _transaction(self, write: bool, *, urgent: bool = False) -> Iterator[Connection]:
        """A pooled connection in a transaction, which a write begins as one (SQLite:
        ``BEGIN IMMEDIATE``); committed as the block ends, rolled back on an error.
        ``urgent``: a revocation, which a dialect may let go ahead of bookkeeping."""
        with self._engine.connect() as conn:
            if write:
                conn = conn.execution_options(authtoken_write=True, authtoken_urgent=urgent)
            elif self._dialect.read_isolation is not None:
                conn = conn.execution_options(isolation_level=self._dialect.read_isolation)
            with conn.begin():
                yield conn

    @contextmanager
    def _schema_tx(self, *, write: bool) -> Iterator[Connection]:
        """A transaction for the schema check or a migration, not itself checked."""
        self._calls.check_open()
        with self._dialect.watching() as watch:
            try:
                with self._transaction(write) as conn:
                    yield conn
            except AuthTokenError:
                raise
            except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
                raise self._failures.of(exc, watch) from exc

    def ensure_schema(self) -> None:
        """Check the schema once: create an empty database's, refuse an old or newer one
        (``RepositoryError`` saying what to do)."""
        if self._schema_ready:
            return
        self._calls.check_open()
        with self._schema_lock:
            if self._schema_ready:
                return
            with self._schema_tx(write=True) as conn:
                _migrate.ensure_current(conn)
            self._schema_ready = True

    def schema_revision(self) -> str | None:
        """The schema revision the database holds (``None``: empty)."""
        with self._schema_tx(write=False) as conn:
            return _migrate.current_revision(conn)

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Migrate the database to the newest schema; return (before, after) revisions.

        Refuses a schema newer than this code.  Safe to run while other processes use
        the database: it runs in one transaction under the schema lock.
        """
        with self._schema_tx(write=True) as conn:
            before = _migrate.upgrade_to_head(conn)
        self._schema_ready = True
        return before, _migrate.HEAD

    def _fast(self, read: Callable[[str], Sequence[Any] | None], key: str,
              ) -> Sequence[Any] | None:
        """A read by key through the dialect's ``reads``, counted as in flight so that
        close() does not close a connection under it."""
        calls = self._calls
        calls.enter()
        try:
            if not self._schema_ready:
                self.ensure_schema()
            return read(key)
        finally:
            calls.leave()

    # -- the Repository protocol ------------------------------------------------------
    def login_row(self, key: str) -> LoginRow | None:
        reads = self._reads
        if reads is not None:
            row = self._fast(reads.login, key)
        else:
            with self._tx(write=False) as conn:
                row = conn.execute(LOGIN_SELECT, {"key": key}).first()
        return None if row is None else login_row(row)

    def get(self, key: str) -> TokenRecord | None:
        reads = self._reads
        if reads is not None:
            stored = self._fast(reads.get, key)
            if stored is None:
                return None
            *columns, logins, last = stored  # the token's row, then its staged usage
            return with_usage(token_record(StoredToken(*columns)), logins, last)
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(T).where(T.c.key == key)).first()
            staged = staged_usage(conn, [key]) if row is not None else {}
        return None if row is None else self._with_staged(token_record(row), staged)

    @staticmethod
    def _with_staged(record: TokenRecord, staged: Mapping[str, tuple[int, int]],
                     ) -> TokenRecord:
        logins, last = staged.get(record.key, (0, None))
        return with_usage(record, logins, last)

    def insert(self, record: TokenRecord) -> None:
        values = token_values(record)
        self._write(lambda conn: self._insert_in(conn, record, values))

    @staticmethod
    def _insert_in(conn: Connection, record: TokenRecord, values: dict[str, Any]) -> None:
        """Insert ``record`` (its ``values``) in ``conn``'s transaction."""
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
                    revoked_at=time_or_none(parent.revoked_at) if parent else None,
                )
        exists = conn.execute(sa.select(T.c.id).where(T.c.key == record.key)).first()
        if exists is not None:
            raise InvalidArgument(f"a token with key {record.key!r} already exists")
        conn.execute(T.insert().values(**values))

    def insert_within(self, record: TokenRecord, limit: int, now: int) -> int:
        values = token_values(record)

        def insert(conn: Connection) -> int:
            if self._dialect.name == "postgresql":  # one capped insert per user at a time
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:ref))"),
                             {"ref": "authtoken:" + values["user_ref"]})
            live = int(conn.execute(
                sa.select(sa.func.count()).select_from(T).where(
                    T.c.user_ref == values["user_ref"], T.c.revoked_at.is_(None),
                    sa.or_(T.c.expires.is_(None), T.c.expires > now))
            ).scalar_one())
            if live < limit:
                self._insert_in(conn, record, values)
            return live

        return self._write(insert)

    def spend_use(self, key: str, at: int) -> bool:
        # The lean path's SPEND_USE, as an expression.
        later = sa.or_(T.c.last_used_at.is_(None), T.c.last_used_at < at)
        spend_one = T.update().where(
            T.c.key == key, T.c.revoked_at.is_(None), T.c.max_uses.is_not(None),
            T.c.use_count < T.c.max_uses,
        ).values(use_count=T.c.use_count + 1,
                 last_used_at=sa.case((later, at), else_=T.c.last_used_at))

        def spend(conn: Connection) -> bool:
            return bool(conn.execute(spend_one).rowcount == 1)

        return self._write(spend)

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
                    expires=micros_or_none(record.expires),
                    updated_at=to_micros(record.updated_at),
                    **limit_values(record),
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
                        token_key=record.key, revoked_at=time_or_none(row.revoked_at),
                    )
                return None
            return self._with_staged(token_record(row), staged_usage(conn, [record.key]))

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

        return self._write(revoke, urgent=True)

    def revoke_user(self, user: UserKey, at: int) -> int:
        # The tokens revoked by this call stay roots on the second pass.
        roots = sa.select(T.c.key).where(
            T.c.user_ref == user_ref(user),
            sa.or_(T.c.revoked_at.is_(None), T.c.revoked_at == at),
        )
        return self._write(lambda conn: self._revoke_tree(conn, roots, at), urgent=True)

    def list(self, user: UserKey | None, include_revoked: bool) -> list[TokenRecord]:
        query = sa.select(T).order_by(T.c.created_at.desc(), T.c.id.desc())
        if user is not None:
            query = query.where(T.c.user_ref == user_ref(user))
        if not include_revoked:
            query = query.where(T.c.revoked_at.is_(None))
        with self._tx(write=False) as conn:
            records = [token_record(row) for row in conn.execute(query)]
            staged = staged_usage(conn) if records else {}
        return [self._with_staged(record, staged) for record in records]

    def record_usage(self, usage: Mapping[str, Usage],
                     events: Sequence[EventRow] = (), batch: BatchId | None = None) -> None:
        """Stage the batch (see ``_staging``): one append, whatever tokens it used;
        then, now and then, fold what is staged."""
        if not usage and not events:
            return
        rows = staged_rows(usage, events)
        dialect = self._dialect

        def write(conn: Connection) -> int:
            if batch is not None and not self._claim(conn, batch):
                return 0  # written already: this is a retry after a lost answer
            # In chunks: a backlog kept while the database was down can be any size.
            for i in range(0, len(rows), WRITE_CHUNK):
                dialect.stage(conn, rows[i:i + WRITE_CHUNK])
            return dialect.staged_span(conn)

        staged = self._write(write, unknown=BATCH_UNKNOWN)
        if fold_due(usage, staged, self._folded_at, time.monotonic()):
            self._fold_quietly()

    def fold(self, max_rows: int | None = None) -> int:
        """File staged usage and events into the tokens and the audit trail now.

        Takes ``FOLD_CHUNK`` rows per transaction until none is left (or ``max_rows``
        were filed); returns how many staged rows it filed.  Nothing a read returns
        changes (reads add what is staged); the trail's login events of one kind become
        one event with their count.  Raises ``RepositoryError`` if storage fails; what
        was filed before stays filed, the rest stays staged.
        """
        if self._dialect.one_writer:
            return self._fold_in_parts(max_rows)
        dialect = self._dialect

        def chunk(conn: Connection) -> int:
            taken = take_staged(conn, FOLD_CHUNK)
            usage, audit = file_rows(taken)
            for i in range(0, len(usage), WRITE_CHUNK):
                dialect.add_usage(conn, usage[i:i + WRITE_CHUNK])
            for i in range(0, len(audit), WRITE_CHUNK):
                dialect.insert_events(conn, audit[i:i + WRITE_CHUNK])
            return len(taken)

        self._folded_at = time.monotonic()
        filed = 0
        while max_rows is None or filed < max_rows:
            done = self._write(chunk)
            filed += done
            if done < FOLD_CHUNK:
                break
        return filed

    def _fold_in_parts(self, max_rows: int | None) -> int:
        """``fold`` where one write lock covers the database (SQLite): rows read without
        it, filed in parts of whole tokens, a waiting revocation first (see ``_fold``).
        It waits for revocations ``timeout`` seconds at most in all."""
        dialect = self._dialect
        self._folded_at = time.monotonic()
        patience = self._timeout  # seconds left to wait for revocations, this fold
        filed = 0
        while max_rows is None or filed < max_rows:
            limit = FOLD_CHUNK if max_rows is None else min(FOLD_CHUNK, max_rows - filed)
            with self._tx(write=False) as conn:
                rows = read_staged(conn, limit)
            todo = list(parts(rows))
            for n, part in enumerate(todo, 1):
                if patience > 0 and dialect.revocation_waiting():
                    began = time.monotonic()
                    dialect.let_revocations_pass(began + patience)
                    patience -= time.monotonic() - began
                try:
                    self._write(functools.partial(file_part, part=part, dialect=dialect,
                                                  last=n == len(todo)))
                except Taken:
                    return filed  # another fold filed some of these: the rest waits
                filed += len(part.ids)
            if len(rows) < limit:  # every row read is filed: the loop always advances
                break
        return filed

    def _fold_quietly(self) -> None:
        try:
            self.fold(max_rows=FOLD_CHUNK)  # one chunk: the flushing login waits for it
        except RepositoryError:
            pass  # the rows stay staged, and reads still count them: folded later

    def _claim(self, conn: Connection, batch: BatchId) -> bool:
        """Record ``batch`` as written, in the caller's transaction; ``False`` if its
        writer has written it (or a later one) already.

        On PostgreSQL a first attempt still in flight on a dead connection holds the
        writer's row: this waits for its outcome, then sees it.  Now and then it also
        forgets writers that wrote nothing for ``KEEP_WRITERS_MICROS``.
        """
        now = time.time_ns() // 1000  # wall time, for pruning only: not a token's clock
        claimed = self._dialect.claim(conn, batch, now)
        if claimed and batch.number % PRUNE_EVERY == 1:
            conn.execute(B.delete().where(B.c.written_at < now - KEEP_WRITERS_MICROS))
        return claimed

    def events(self, *, user: UserKey | None, token_key: str | None,
               since: datetime | None, limit: int) -> builtins.list[AuditEvent]:
        after = None if since is None else to_micros(since)
        with self._tx(write=False) as conn:
            staged = staged_events(conn, user=user, token_key=token_key, since=after,
                                   limit=limit)
            filed = trail_events(conn, A, user=user, token_key=token_key, since=after,
                                 limit=limit)
        # Staged events were recorded after the filed ones of the same time.
        merged = sorted(staged + filed, key=lambda e: e.at, reverse=True)
        return merged[:limit]

    def prune_events(self, before: int) -> int:
        """Drop the audit events recorded before ``before`` (µs); return how many.

        Staged events are filed first, so that none escapes (but those another fold, of
        any process or thread, is filing at that moment, which land just after); then the
        old events go ``FOLD_CHUNK`` at a time, each chunk its own short transaction.
        """
        self.fold()
        old = sa.select(A.c.id).where(A.c.at < before).order_by(A.c.at).limit(FOLD_CHUNK)

        def chunk(conn: Connection) -> int:
            return int(conn.execute(A.delete().where(A.c.id.in_(old))).rowcount)

        dropped = 0
        while True:
            done = self._write(chunk)
            dropped += done
            if done < FOLD_CHUNK:
                return dropped

    def close(self) -> None:
        """Refuse new calls, let calls in flight finish (up to 2 x (``timeout`` + 1 s)),
        and close every connection."""
        # A connection still checked out (say, a batch another thread is writing) would
        # escape ``dispose``: wait for it, as long as one call may take -- a step may
        # last the timeout plus the watchdog's second, and a login may try twice.
        self._calls.close(wait=2 * (self._timeout + 1))
        self._finalizer()  # closes the per-thread connections, disposes the pool


def _parse(url: str | sa.URL, shown: str) -> sa.URL:
    try:
        return sa.make_url(url)
    except Exception as exc:
        raise InvalidArgument(
            f"not a database URL: {shown!r}; use e.g. "
            "'sqlite:///path/to/tokens.db' or 'postgresql://user@host/db'"
        ) from exc


def _create_engine(dialect: Dialect, given: Mapping[str, Any] | None, shown: str) -> Engine:
    """The engine for ``dialect``, its options completed and its listeners installed."""
    try:
        engine = sa.create_engine(dialect.url, **dialect.engine_options(given))
    except (ValueError, TypeError, sa.exc.ArgumentError) as exc:
        raise InvalidArgument(
            f"the database URL {shown!r} has an option that cannot be "
            f"used ({type(exc).__name__}); check its query string"
        ) from exc
    except ModuleNotFoundError as exc:
        raise RepositoryError(
            f"no driver for {dialect.name}: install it with "
            f'pip install "authtoken[{dialect.extra}]"'
        ) from exc
    dialect.install(engine)
    return engine


def _release(calls: Calls, engine: Engine) -> None:
    calls.release()
    engine.dispose()
