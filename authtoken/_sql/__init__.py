"""The SQL ``Repository``: SQLite and PostgreSQL through SQLAlchemy, with a lean login path.

Which file holds what:

- ``_repository``: ``SQLRepository`` -- what users hold; it serves a plain SQLite file's
  logins and batches on ``sqlite3`` alone (``_lean``) and everything else through its
  ``SQLStore``, built when first needed;
- ``_store``: ``SQLStore`` -- SQLAlchemy Core transactions, retries, the schema check,
  the fold and the ``Repository`` methods, the same on every database;
- ``_lean``: SQLite without SQLAlchemy -- the file, the per-thread login reads, the
  batch append;
- ``_statements``: the plain SQL of the login path and the batch append;
- ``_schema``: the tables (``METADATA``); ``_rows``: how values are stored in them,
  converted to and from the engine's records;
- ``_staging``: what a batch stages and how the fold files it; ``_staged``: the staging
  table's queries;
- ``_dialect``: what the store asks of a database, and the portable answers;
  ``_sqlite`` and ``_postgres`` give their own where they do better;
- ``_pg_login``: the PostgreSQL login -- one prepared statement through libpq, on a
  connection per thread, waited for with a deadline and a short poll;
- ``_pg_watch``: the engine's hooks that put every wait on PostgreSQL under the
  watchdog (``authtoken._watchdog``);
- ``_calls``: calls in flight and per-thread connections, for ``close()``;
- ``_failures``: the ``RepositoryError`` of a failed call, never with a password.

A new database gets a ``Dialect`` subclass in a module of its own, registered in
``_store``; nothing else needs to know about it.  Schema changes are Alembic
revisions in ``authtoken/_migrations`` (see ``authtoken._migrate``).
"""

from __future__ import annotations

from typing import Any

from ._repository import SQLRepository as SQLRepository
from ._statements import LOGIN_SQL as LOGIN_SQL

__all__ = ["LOGIN_SQL", "METADATA", "SQLRepository"]


def __getattr__(name: str) -> Any:
    # The tables need SQLAlchemy: imported when asked for, not with the package.
    if name == "METADATA":
        from ._schema import METADATA

        return METADATA
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
