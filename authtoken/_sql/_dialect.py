"""What ``SQLRepository`` asks of a database dialect, and the portable answers.

``Dialect`` runs every call through pooled SQLAlchemy Core connections with portable
statements: what a database without a module of its own here gets.  ``_sqlite.SQLite``
and ``_postgres.PostgreSQL`` override its setup, add reads by key on a per-thread
connection (``FastReads``: the login path) and replace the few statements their own SQL
does better.  The repository never asks which dialect it runs on; it asks its dialect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._repository import BatchId
from .._watchdog import Watch
from ._calls import Calls
from ._failures import Failures
from ._schema import BATCHES, TOKENS
from ._statements import AUDIT_INSERT, CLAIM_BATCH, STAGED_INSERT, STAGED_SPAN

__all__ = ["Dialect", "FastReads", "claim_by_upsert"]

# Adds one chunk of usage: {"k": key, "n": logins, "last": µs} per token.
_LAST: Final = sa.bindparam("last", type_=sa.BigInteger)
_ADD_USAGE: Final = (
    TOKENS.update()
    .where(TOKENS.c.key == sa.bindparam("k"))
    .values(
        use_count=TOKENS.c.use_count + sa.bindparam("n", type_=sa.BigInteger),
        last_used_at=sa.case(
            (TOKENS.c.last_used_at.is_(None), _LAST),
            (TOKENS.c.last_used_at < _LAST, _LAST),
            else_=TOKENS.c.last_used_at,
        ),
    )
)


class FastReads(Protocol):
    """Reads by key on this thread's own connection, outside any pooled transaction.

    Each read is its own transaction, so it sees every commit made before it began, by
    any process: this is what makes a revocation visible at once.  Failures raise
    ``RepositoryError``.
    """

    def login(self, key: str) -> Sequence[Any] | None:
        """The columns of ``LOGIN_SQL`` for ``key``, in its order; ``None``: no row."""

    def get(self, key: str) -> Sequence[Any] | None:
        """The columns of ``GET_SQL`` (every column) for ``key``; ``None``: no row."""


class Dialect:
    """A database reached through SQLAlchemy alone.

    ``url``: what the engine connects to; ``shown``: the URL as errors may show it
    (redacted); ``timeout``: the repository's, in seconds; ``calls`` and ``failures``:
    the repository's, for a dialect whose reads keep connections of their own.
    """

    reads: FastReads | None = None  # None: logins read through a pooled transaction
    # The isolation of a read transaction, if the default would let two statements of
    # one read see different commits (a fold landing between them); None: the default.
    read_isolation: str | None = None
    # One write lock for the whole database (SQLite): a fold files in parts (``_fold``).
    one_writer = False

    def __init__(self, url: sa.URL, *, shown: str, timeout: float, calls: Calls,
                 failures: Failures) -> None:
        self.url = url
        self.name = url.get_backend_name()
        self.timeout = timeout

    @property
    def extra(self) -> str:
        """The ``pip install "authtoken[extra]"`` that brings this dialect's driver."""
        return self.name

    def engine_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The options of ``sa.create_engine``: the caller's, completed (called once,
        before ``install``)."""
        return dict(given or {})

    def install(self, engine: Engine) -> None:
        """Listen to the engine's events, if the dialect needs to."""

    def watching(self, limit: float | None = None,
                 ) -> contextlib.AbstractContextManager[Watch | None]:
        """Bound each wait of a call on the server (see ``_watchdog``); here: unbounded.

        ``limit``: a ``time.monotonic()`` no wait may run past, if given.
        """
        return contextlib.nullcontext()

    def limit_statements(self, conn: Connection, seconds: float) -> None:
        """In a retried write: let the server end a statement after ``seconds``."""

    def revocation_waiting(self) -> bool:
        """Whether a revocation waits for the write lock (``one_writer``); a fold asks
        before each part, and then lets it pass first."""
        return False

    def let_revocations_pass(self, until: float) -> None:
        """Return once no revocation waits for the write lock (each has taken it), or
        at ``until`` (``time.monotonic()``)."""

    def claim(self, conn: Connection, batch: BatchId, now: int) -> bool:
        """Record ``batch`` as written, in ``conn``'s transaction; ``False`` if its
        writer has written it (or a later one) already.  ``now``: µs, for pruning."""
        row = conn.execute(
            sa.select(BATCHES.c.number).where(BATCHES.c.writer == batch.writer)
            .with_for_update()
        ).first()
        claimed = row is None or row.number < batch.number
        if row is None:
            conn.execute(BATCHES.insert().values(writer=batch.writer, number=batch.number,
                                                 written_at=now))
        elif claimed:
            conn.execute(BATCHES.update().where(BATCHES.c.writer == batch.writer)
                         .values(number=batch.number, written_at=now))
        return claimed

    def add_usage(self, conn: Connection, chunk: list[dict[str, Any]]) -> None:
        """Add one chunk of usage (``{"k", "n", "last"}`` per token, in key order)."""
        conn.execute(_ADD_USAGE, chunk)

    def insert_events(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Append audit rows (``_schema.audit_rows``)."""
        conn.exec_driver_sql(AUDIT_INSERT, rows)

    def stage(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Append staged rows (``_staging.staged_rows``)."""
        conn.exec_driver_sql(STAGED_INSERT, rows)

    def staged_span(self, conn: Connection) -> int:
        """About how many rows are staged (the span of their ids: cheap on any size)."""
        low, high = conn.exec_driver_sql(STAGED_SPAN).one()
        return 0 if low is None else int(high) - int(low) + 1


def claim_by_upsert(conn: Connection, batch: BatchId, now: int, sql: str = CLAIM_BATCH,
                    ) -> bool:
    """``Dialect.claim`` in one statement (``_statements.CLAIM_BATCH``, in the driver's
    placeholders), for a dialect that has ``ON CONFLICT``."""
    return bool(conn.exec_driver_sql(sql, (batch.writer, batch.number, now)).rowcount == 1)

