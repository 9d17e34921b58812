"""The SQL ``Repository``: SQLite and PostgreSQL through SQLAlchemy, with a lean login path.

Which file holds what:

- ``_repository``: ``SQLRepository`` -- transactions, retries, the schema check and the
  ``Repository`` methods, the same on every database;
- ``_schema``: the tables (``METADATA``) and how values are stored in them, converted to
  and from the engine's records;
- ``_dialect``: what the repository asks of a database, and the portable answers;
  ``_sqlite`` and ``_postgres`` give their own where they do better;
- ``_sqlite``: the file, WAL and ``BEGIN IMMEDIATE``, the per-thread login connection;
- ``_postgres``: psycopg, timeouts and pool, the usage statements only it runs;
- ``_pg_login``: the PostgreSQL login -- one prepared statement through libpq, on a
  connection per thread, waited for with a deadline and a short poll;
- ``_pg_watch``: the engine's hooks that put every wait on PostgreSQL under the
  watchdog (``authtoken._watchdog``);
- ``_calls``: calls in flight and per-thread connections, for ``close()``;
- ``_failures``: the ``RepositoryError`` of a failed call, never with a password.

A new database gets a ``Dialect`` subclass in a module of its own, registered in
``_repository``; nothing else needs to know about it.  Schema changes are Alembic
revisions in ``authtoken/_migrations`` (see ``authtoken._migrate``).
"""

from __future__ import annotations

from ._repository import SQLRepository as SQLRepository
from ._schema import LOGIN_SQL as LOGIN_SQL
from ._schema import METADATA as METADATA

__all__ = ["LOGIN_SQL", "METADATA", "SQLRepository"]
