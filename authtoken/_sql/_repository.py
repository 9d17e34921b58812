"""``SQLRepository``: the ``Repository`` contract kept in a SQL database.

Theory of operation
-------------------
Every call goes to a ``SQLStore`` (``_store``): SQLAlchemy Core in short transactions,
the schema check, the retries, the fold.  Building one imports SQLAlchemy, which takes
longer than everything else ``authtoken login`` does.  So for a plain SQLite file
(``sqlite:///path``) the repository builds its store only when a call needs it, and
serves on ``sqlite3`` alone (``_lean``) the calls of a process that only logs in and
records its usage: ``login_row``, ``get`` and ``record_usage`` (the batch append);
and the broker's read of a link (``get_link``, ``_lean_links``, which on PostgreSQL
reads through the login path's connections).  The
schema is checked on that path too, by reading its revision: a file at the newest
revision needs no store; any other -- new, old or newer -- is handed to the store, which
creates or refuses it as always.  PostgreSQL, other databases and the URLs the lean path
does not read (a query string, ``engine_options``) get their store at once.

Both paths are one repository: the same file, statements and errors; ``close()`` closes
what either opened.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .._errors import RepositoryError
from .._migrations import REVISIONS
from .._redact import redact
from .._repository import AuditEvent, BatchId, EventRow, LoginRow, UpstreamLink, Usage
from .._token import TokenRecord, UserKey
from ._calls import DEFAULT_TIMEOUT, Calls, check_timeout
from ._failures import Failures
from ._lean import SQLiteAppend, SQLiteReads, create_file, plain_sqlite_path
from ._lean_links import LINK_SQL, link_of, pg_link_row
from ._rows import StoredToken, login_row, token_record, user_ref
from ._staging import FOLD_CHUNK, WRITE_CHUNK, fold_due, staged_rows, with_usage

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ._links import SQLLinks
    from ._pg_login import PgReads
    from ._store import SQLStore

__all__ = ["DEFAULT_TIMEOUT", "SQLRepository"]



class _Lean:
    """The ``sqlite3`` side of a repository on a plain SQLite file."""

    def __init__(self, path: str, timeout: float) -> None:
        self.calls = Calls()
        failures = Failures(None, timeout + 1)
        self.reads = SQLiteReads(path, timeout, self.calls, failures)
        self.append = SQLiteAppend(path, timeout, self.calls, failures)
        self.ready = False  # the file holds the newest schema


class SQLRepository:
    """A ``Repository`` in a SQL database.

    ``SQLRepository("sqlite:///path/to/tokens.db")`` or a ``postgresql://`` URL.  The
    schema is created on first use.  ``timeout`` (seconds) bounds how long a call waits
    for a lock, a connection or a statement before it fails.  Every failure of the
    database is raised as ``RepositoryError`` (its message never holds the URL's
    password); the repository recovers by itself once the database is back.
    """

    def __init__(self, url: Any, *, timeout: float = DEFAULT_TIMEOUT,
                 engine_options: Mapping[str, Any] | None = None) -> None:
        self._timeout = check_timeout(timeout)
        self._url = self._shown = url
        self._engine_options = engine_options
        self._built: SQLStore | None = None
        self._link_ops: SQLLinks | None = None
        self._link_reads: PgReads | Literal[False] | None = False  # not looked for yet
        self._build_lock = threading.Lock()
        self._folded_at = time.monotonic()
        path = plain_sqlite_path(url) if engine_options is None else None
        if path is not None:
            path = create_file(path)
            self._url = f"sqlite:///{path}"  # the store opens the very file (~ expanded)
        self._lean = None if path is None else _Lean(path, self._timeout)
        if self._lean is None:
            self._store()  # at once: its errors (a bad URL, a missing driver) are now

    def _store(self) -> SQLStore:
        """The SQLAlchemy side, built at its first use."""
        built = self._built
        if built is None:
            with self._build_lock:
                built = self._built
                if built is None:
                    if self._lean is not None:
                        self._lean.calls.check_open()
                    from ._store import SQLStore

                    built = self._built = SQLStore(self._url, timeout=self._timeout,
                                                   engine_options=self._engine_options)
        return built

    def __repr__(self) -> str:
        if self._built is not None or self._lean is None:
            return repr(self._store())
        return f"SQLRepository({redact(str(self._shown))!r})"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for migrations and diagnostics)."""
        return self._store().engine

    def schema_revision(self) -> str | None:
        """The schema revision the database holds (``None``: empty)."""
        return self._store().schema_revision()

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Migrate the database to the newest schema; return (before, after) revisions.

        Refuses a schema newer than this code.  Safe to run while other processes use
        the database: it runs in one transaction under the schema lock.
        """
        return self._store().upgrade_schema()

    def fold(self, max_rows: int | None = None) -> int:
        """File staged usage and events into the tokens and the trail now (see
        ``_staging``); return how many staged rows were filed."""
        self._folded_at = time.monotonic()
        return self._store().fold(max_rows)

    def prune_events(self, before: int) -> int:
        """Drop the audit events recorded before ``before`` (µs); return how many."""
        return self._store().prune_events(before)

    # -- the lean path ------------------------------------------------------------------
    def _ready(self, lean: _Lean) -> None:
        """Check the schema once on the lean path (callers test ``lean.ready`` first,
        so a login pays one attribute read); anything but the newest goes to the store,
        which creates or refuses it."""
        if lean.reads.revision() != REVISIONS[-1]:
            self._store().ensure_schema()
        lean.ready = True

    def login_row(self, key: str) -> LoginRow | None:
        lean = self._lean
        if lean is None:
            return self._store().login_row(key)
        lean.calls.enter()
        try:
            if not lean.ready:
                self._ready(lean)
            row = lean.reads.login(key)
        finally:
            lean.calls.leave()
        return None if row is None else login_row(row)

    def get(self, key: str) -> TokenRecord | None:
        lean = self._lean
        if lean is None:
            return self._store().get(key)
        lean.calls.enter()
        try:
            if not lean.ready:
                self._ready(lean)
            stored = lean.reads.get(key)
        finally:
            lean.calls.leave()
        if stored is None:
            return None
        *columns, logins, last = stored  # the token's row, then its staged usage
        return with_usage(token_record(StoredToken(*columns)), logins, last)

    def record_usage(self, usage: Mapping[str, Usage],
                     events: Sequence[EventRow] = (), batch: BatchId | None = None) -> None:
        lean = self._lean
        if lean is None:
            self._store().record_usage(usage, events, batch)
            return
        if not usage and not events:
            return
        rows = staged_rows(usage, events)
        lean.calls.enter()
        try:
            if not lean.ready:
                self._ready(lean)
            # A batch without logins is a change's event, written while its caller
            # (a revocation, say) waits: it goes ahead of bookkeeping, and folds nothing.
            staged = lean.append.append(rows, batch, WRITE_CHUNK, urgent=not usage)
        finally:
            lean.calls.leave()
        if fold_due(usage, staged, self._folded_at, time.monotonic()):
            try:
                self.fold(max_rows=FOLD_CHUNK)  # one chunk: the flushing login waits
            except RepositoryError:
                pass  # the rows stay staged, and reads still count them: folded later

    def spend_use(self, key: str, at: int) -> bool:
        lean = self._lean
        if lean is None:
            return self._store().spend_use(key, at)
        lean.calls.enter()
        try:
            if not lean.ready:
                self._ready(lean)
            return lean.append.spend(key, at)
        finally:
            lean.calls.leave()

    # -- everything else: the store -----------------------------------------------------
    def insert(self, record: TokenRecord) -> None:
        self._store().insert(record)

    def insert_within(self, record: TokenRecord, limit: int, now: int) -> int:
        return self._store().insert_within(record, limit, now)

    def update(self, record: TokenRecord) -> TokenRecord | None:
        return self._store().update(record)

    def revoke(self, key: str, at: int) -> int | None:
        return self._store().revoke(key, at)

    def revoke_user(self, user: UserKey, at: int) -> int:
        return self._store().revoke_user(user, at)

    def list(self, user: UserKey | None, include_revoked: bool) -> builtins.list[TokenRecord]:
        return self._store().list(user, include_revoked)

    def events(self, *, user: UserKey | None, token_key: str | None,
               since: datetime | None, limit: int) -> builtins.list[AuditEvent]:
        return self._store().events(user=user, token_key=token_key, since=since,
                                    limit=limit)

    # -- upstream links (``_links``): the store's, never on the login path --------------------
    def _links(self) -> SQLLinks:
        ops = self._link_ops
        if ops is None:
            from ._links import SQLLinks

            ops = self._link_ops = SQLLinks(self._store)
        return ops

    def put_link(self, link: UpstreamLink, at: int) -> UpstreamLink:
        return self._links().put_link(link, at)

    def _pg_reads(self, store: SQLStore) -> PgReads | None:
        """PostgreSQL's reads by key (``_pg_login``), for the link read; ``None`` on any
        other database (its links are read through SQLAlchemy)."""
        found = self._link_reads
        if found is False:
            from ._pg_login import PgReads

            reads = store.reads  # the store's reads by key, shared
            found = self._link_reads = reads if isinstance(reads, PgReads) else None
        return found

    def get_link(self, user: UserKey, name: str) -> UpstreamLink | None:
        # The broker's fast path (``_lean_links``): on a plain SQLite file, one lean read;
        # on PostgreSQL, one prepared statement on the login path's connection.
        lean = self._lean
        if lean is None:
            store = self._store()
            reads = self._pg_reads(store)
            if reads is None:
                return self._links().get_link(user, name)
            ref = user_ref(user)
            # The store's read by key: counted in flight, the schema checked once.
            row = store.read_by_key(lambda _: pg_link_row(reads, ref, name), name)
            return None if row is None else link_of(row)
        lean.calls.enter()
        try:
            if not lean.ready:
                self._ready(lean)
            row = lean.reads.first(LINK_SQL, (user_ref(user), name))
        finally:
            lean.calls.leave()
        return None if row is None else link_of(row)

    def list_links(self, user: UserKey) -> builtins.list[UpstreamLink]:
        return self._links().list_links(user)

    def delete_link(self, user: UserKey, name: str) -> bool:
        return self._links().delete_link(user, name)

    def take_lease(self, user: UserKey, name: str, holder: str, now: int,
                   until: int) -> UpstreamLink | None:
        return self._links().take_lease(user, name, holder, now, until)

    def finish_refresh(self, link: UpstreamLink, holder: str, at: int) -> UpstreamLink | None:
        return self._links().finish_refresh(link, holder, at)

    def mark_needs_relink(self, user: UserKey, name: str, holder: str, at: int) -> bool:
        return self._links().mark_needs_relink(user, name, holder, at)

    def release_lease(self, user: UserKey, name: str, holder: str) -> bool:
        return self._links().release_lease(user, name, holder)

    def close(self) -> None:
        """Refuse new calls, let calls in flight finish (up to 2 x (``timeout`` + 1 s)),
        and close every connection."""
        lean = self._lean
        if lean is not None:
            lean.calls.close(wait=2 * (self._timeout + 1))
            lean.calls.release()
        with self._build_lock:
            built = self._built
        if built is not None:
            built.close()
