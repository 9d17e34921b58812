"""The statements that need no SQLAlchemy: the login path's and the batch append's.

Plain SQL with qmark placeholders (``sqlite3``'s; the PostgreSQL paths rewrite them into
their own).  They live apart from the table declarations of ``_schema`` so that a
process that only logs in and records its usage -- ``authtoken login`` -- never imports
SQLAlchemy; ``tests/storage/test_migrations.py`` checks that they name the columns the
tables have.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AUDIT_INSERT", "CLAIM_BATCH", "COLUMNS", "FORGET_WRITERS", "GET_SQL", "LOGIN_SQL",
    "REVISION_SQL", "SPEND_USE", "STAGED_INSERT", "STAGED_SPAN",
]

#: The token table's columns, in its order.
COLUMNS: Final = (
    "id", "key", "user_ref", "scope", "data", "description", "expires", "created_at",
    "updated_at", "revoked_at", "last_used_at", "use_count", "parent_key", "secret_hash",
    "version", "max_uses", "max_lifetime", "lifetime", "run_id", "ancestors",
)
LOGIN_SQL: Final = (
    "SELECT secret_hash, user_ref, scope, data, expires, revoked_at, max_uses, "
    "parent_key, run_id, ancestors FROM authtoken_token WHERE key = ?"
)
# A login of a token with max_uses spends one use, atomically: of two racing for the
# last, the one whose UPDATE comes second finds no row to change.
SPEND_USE: Final = (
    "UPDATE authtoken_token SET use_count = use_count + 1, last_used_at = "
    "CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? ELSE last_used_at END "
    "WHERE key = ? AND revoked_at IS NULL AND max_uses IS NOT NULL "
    "AND use_count < max_uses"
)
# A token's row and what the staging table still holds of its usage (logins, latest),
# so that a read by key is exact before the fold (``_staging``).
_STAGED_OF_T: Final = (
    "FROM authtoken_staged s WHERE s.token_key = t.key AND (s.uses > 0 OR s.action IS NULL)"
)
GET_SQL: Final = (
    f"SELECT {', '.join('t.' + c for c in COLUMNS)}, "  # noqa: S608
    f"(SELECT CAST(COALESCE(SUM(s.uses), 0) AS BIGINT) {_STAGED_OF_T}), "
    f"(SELECT MAX(s.at) {_STAGED_OF_T}) "
    "FROM authtoken_token t WHERE t.key = ?"
)
# Audit rows go straight to the driver's executemany: building them through the SQL
# expression layer would cost more than the logins they record.
AUDIT_INSERT: Final = (
    'INSERT INTO authtoken_audit (at, action, outcome, actor, token_key, user_ref, '
    'script_key, script_path, reason, "count") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
)
# Staged rows: the columns of an audit row, then ``uses``.
STAGED_INSERT: Final = (
    'INSERT INTO authtoken_staged (at, action, outcome, actor, token_key, user_ref, '
    'script_key, script_path, reason, "count", uses) '
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
)
#: About how many rows are staged: the span of their ids (cheap on any size).
STAGED_SPAN: Final = "SELECT MIN(id), MAX(id) FROM authtoken_staged"
# Records a usage batch as written (PostgreSQL and SQLite 3.24+): it changes no row,
# and so counts none, when the writer's number is already as high.
CLAIM_BATCH: Final = (
    "INSERT INTO authtoken_usage_batch (writer, number, written_at) VALUES (?, ?, ?) "
    "ON CONFLICT (writer) DO UPDATE SET number = excluded.number, "
    "written_at = excluded.written_at WHERE authtoken_usage_batch.number < excluded.number"
)
FORGET_WRITERS: Final = "DELETE FROM authtoken_usage_batch WHERE written_at < ?"
REVISION_SQL: Final = "SELECT version_num FROM authtoken_schema_version"
