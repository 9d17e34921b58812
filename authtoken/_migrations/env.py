"""Alembic environment for authtoken's own tables.

authtoken runs migrations itself (``authtoken db upgrade``, or on first use of an empty
database) on a connection it opened and already holds in a transaction, with its own
version table, so an application's own Alembic history never collides with it.
"""

from __future__ import annotations

from alembic import context

from authtoken._migrate import VERSION_TABLE
from authtoken._sql import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
