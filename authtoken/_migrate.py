"""Schema versions: what this code knows, what a database holds, and how to upgrade.

Theory of operation
-------------------
The schema is versioned with Alembic (``authtoken/_migrations``), recorded in a version
table of its own (``authtoken_schema_version``) so an application's Alembic history is
never touched.  On first use a ``SQLRepository`` reads that table -- one plain query,
Alembic is not imported -- and then:

- an empty database is brought to the newest revision (Alembic, in one transaction under
  a lock, so processes starting together create it once);
- a database at the newest revision is used;
- an older one is refused: ``authtoken db upgrade`` migrates it (a deliberate step, as a
  migration of a shared store should be);
- a newer one -- written by a later authtoken -- is refused: this code does not know
  what the new columns mean, and writing to it could corrupt them.
"""

from __future__ import annotations

import threading
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._errors import RepositoryError
from ._migrations import REVISIONS as _REVISIONS

__all__ = ["HEAD", "REVISIONS", "VERSION_TABLE", "current_revision", "ensure_current", "lock",
           "refusal", "schema_state", "upgrade", "upgrade_to_head"]

VERSION_TABLE: Final = "authtoken_schema_version"
# Every revision this code knows, oldest first (kept where the revisions are).
REVISIONS: Final = _REVISIONS
HEAD: Final = REVISIONS[-1]
# Serialises schema creation across processes on PostgreSQL (an arbitrary constant).
_PG_LOCK_ID: Final = 0x61746B5F7363686D  # "atk_schm"
_ALEMBIC_LOCK: Final = threading.RLock()


def current_revision(conn: Connection) -> str | None:
    """The revision recorded in the database, or ``None`` for an empty database."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(VERSION_TABLE):
        if inspector.has_table("authtoken_token"):
            raise RepositoryError(
                "the database holds an authtoken_token table but no schema version: it "
                "was not created by authtoken's migrations; move it aside or use a "
                "fresh database"
            )
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()  # noqa: S608
    return rows[0][0] if rows else None


def schema_state(conn: Connection) -> str:
    """``"empty"``, ``"current"``, ``"old"`` or ``"newer"``."""
    revision = current_revision(conn)
    if revision is None:
        return "empty"
    if revision == HEAD:
        return "current"
    if revision in REVISIONS:
        return "old"
    return "newer"


def lock(conn: Connection) -> None:
    """Hold the schema lock until the current transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    # SQLite: the caller's BEGIN IMMEDIATE already excludes every other writer.


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on ``conn``, inside its transaction."""
    try:
        from alembic import command
        from alembic.config import Config
    except ImportError as exc:  # pragma: no cover - alembic is a dependency
        raise RepositoryError("alembic is needed to create or upgrade the schema") from exc
    config = Config()
    config.set_main_option("script_location", "authtoken:_migrations")
    config.attributes["connection"] = conn
    # Alembic's ``op`` and ``context`` are process-wide proxies: two threads migrating
    # two databases at once would swap them under each other's feet.
    with _ALEMBIC_LOCK:
        command.upgrade(config, revision)


def ensure_current(conn: Connection) -> None:
    """Create the schema of an empty database; refuse an old or a newer one.

    Runs in the caller's write transaction.  Raises ``RepositoryError`` (``refusal``)
    for a schema that is not at ``HEAD`` and could not be created.
    """
    try:
        state = schema_state(conn)
    except RepositoryError:
        state = "unsure"  # maybe read half-way through a creation
    if state != "current":
        # Lock, then look again: another process may have been creating the schema
        # while we looked.
        lock(conn)
        state = schema_state(conn)
        if state == "empty":
            upgrade(conn)
            state = "current"
    if state != "current":
        raise refusal(state, current_revision(conn))


def upgrade_to_head(conn: Connection) -> str | None:
    """Migrate to ``HEAD`` under the schema lock, in the caller's write transaction;
    return the revision before.  Refuses (``RepositoryError``) a schema newer than
    this code."""
    lock(conn)
    before = current_revision(conn)
    if schema_state(conn) == "newer":
        raise refusal("newer", before)
    upgrade(conn)
    return before


def refusal(state: str, revision: str | None) -> RepositoryError:
    """The error that refuses a schema at ``revision``, ``state`` "old" or "newer"."""
    if state == "old":
        return RepositoryError(
            f"the database schema is at revision {revision}, older than this authtoken "
            f"needs ({HEAD}): run 'authtoken db upgrade --database URL' once, then retry"
        )
    return RepositoryError(
        f"the database schema is at revision {revision!r}, newer than this authtoken "
        f"knows (up to {HEAD}): it was upgraded by a later authtoken; upgrade this one "
        "(pip install -U authtoken) rather than write to it"
    )
