"""The tables of the SQL repository, and how values are stored in them.

The schema is declared with SQLModel on a registry of its own (so an application's
``SQLModel.metadata.create_all`` never sees it); the migrations of
``authtoken/_migrations`` create it, and a test checks that the two agree.  Table classes
never leave the ``_sql`` package: rows become ``TokenRecord``, ``LoginRow`` and
``AuditEvent`` values here, at its edge.

Every value is stored in a dialect-neutral form: datetimes as integer microseconds since
1970 (no time-zone games, exact comparisons), users as ``"i:42"`` / ``"s:alice"`` so the
integer 42 and the string ``"42"`` stay distinct, ``data`` and ``description`` as UTF-8
bytes (PostgreSQL text refuses NUL characters, which a ``str`` may hold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from .._expiry import from_micros, to_micros
from .._repository import AuditEvent, EventRow, LoginRow
from .._scopes import Script
from .._token import TokenRecord, UserKey

__all__ = [
    "AUDIT", "AUDIT_INSERT", "BATCHES", "COLUMNS", "GET_SQL", "LOGIN_SELECT", "LOGIN_SQL",
    "METADATA", "STAGED", "STAGED_INSERT", "TOKENS", "AuditRow", "StagedRow", "StoredToken",
    "TokenRow", "UsageBatchRow",
    "audit_event", "audit_rows", "decode_utf8", "fit", "login_row", "micros_or_none",
    "time_or_none", "token_record", "token_values", "user_of", "user_ref",
]


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
    """One audit event; never a token string or secret.

    Indexed so that the newest ``limit`` events of a user, of a token or of everyone
    are read in ``limit`` steps: each index ends with ``(at, id)``, the order of a read.
    """

    __tablename__ = "authtoken_audit"
    __table_args__ = (
        sa.PrimaryKeyConstraint("id", name="pk_authtoken_audit"),
        sa.Index("ix_authtoken_audit_at_id", "at", "id"),
        sa.Index("ix_authtoken_audit_user_at", "user_ref", "at", "id"),
        sa.Index("ix_authtoken_audit_token_at", "token_key", "at", "id"),
    )

    id: int | None = Field(
        default=None, nullable=False, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    at: int = Field(sa_type=sa.BigInteger, nullable=False)
    action: str = Field(sa_type=sa.String(16), nullable=False)
    outcome: str = Field(sa_type=sa.String(8), nullable=False)
    actor: str | None = Field(default=None, sa_type=sa.String(300))
    token_key: str | None = Field(default=None, sa_type=sa.String(32))
    user_ref: str | None = Field(default=None, sa_type=sa.String(300))
    script_key: int | None = Field(default=None, sa_type=sa.BigInteger)
    script_path: str | None = Field(default=None, sa_type=sa.Text)
    reason: str | None = Field(default=None, sa_type=sa.String(64))
    count: int = Field(default=1, sa_type=sa.BigInteger, nullable=False)


class StagedRow(_Base, table=True):
    """A usage count or an audit event written by a batch and not yet folded in.

    The columns of an audit row (``action`` and ``outcome`` ``NULL`` for a row that is
    usage only) plus ``uses``: how many logins of ``token_key`` it adds to the token's
    ``use_count``, the latest at ``at``.  Appended, read in ``id`` order, never indexed
    otherwise: see ``_staging``.
    """

    __tablename__ = "authtoken_staged"
    __table_args__ = (sa.PrimaryKeyConstraint("id", name="pk_authtoken_staged"),)

    id: int | None = Field(
        default=None, nullable=False, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    at: int = Field(sa_type=sa.BigInteger, nullable=False)
    action: str | None = Field(default=None, sa_type=sa.String(16))
    outcome: str | None = Field(default=None, sa_type=sa.String(8))
    actor: str | None = Field(default=None, sa_type=sa.String(300))
    token_key: str | None = Field(default=None, sa_type=sa.String(32))
    user_ref: str | None = Field(default=None, sa_type=sa.String(300))
    script_key: int | None = Field(default=None, sa_type=sa.BigInteger)
    script_path: str | None = Field(default=None, sa_type=sa.Text)
    reason: str | None = Field(default=None, sa_type=sa.String(64))
    count: int = Field(default=1, sa_type=sa.BigInteger, nullable=False)
    uses: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)


class UsageBatchRow(_Base, table=True):
    """The highest usage batch number a writer has written (see ``BatchId``)."""

    __tablename__ = "authtoken_usage_batch"
    __table_args__ = (sa.PrimaryKeyConstraint("writer", name="pk_authtoken_usage_batch"),)

    writer: str = Field(sa_type=sa.String(32), nullable=False)
    number: int = Field(sa_type=sa.BigInteger, nullable=False)
    written_at: int = Field(sa_type=sa.BigInteger, nullable=False)


METADATA = _Base.metadata
TOKENS: sa.Table = TokenRow.__table__  # type: ignore[attr-defined]
AUDIT: sa.Table = AuditRow.__table__  # type: ignore[attr-defined]
BATCHES: sa.Table = UsageBatchRow.__table__  # type: ignore[attr-defined]
STAGED: sa.Table = StagedRow.__table__  # type: ignore[attr-defined]
COLUMNS: Final = tuple(c.name for c in TOKENS.columns)
# A token's row as a driver returns it (the first columns of GET_SQL), with their names.
StoredToken = NamedTuple("StoredToken", [(name, Any) for name in COLUMNS])  # type: ignore[misc]

# The two reads by key of the per-thread login connections, in qmark placeholders
# (sqlite3's); the PostgreSQL path rewrites them into its own.
LOGIN_SQL: Final = (
    "SELECT secret_hash, user_ref, scope, data, expires, revoked_at "
    "FROM authtoken_token WHERE key = ?"
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
# The login read through SQLAlchemy, for a dialect without a login path of its own.
LOGIN_SELECT: Final = sa.select(
    TOKENS.c.secret_hash, TOKENS.c.user_ref, TOKENS.c.scope, TOKENS.c.data,
    TOKENS.c.expires, TOKENS.c.revoked_at,
).where(TOKENS.c.key == sa.bindparam("key"))
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


def user_ref(user: UserKey) -> str:
    """How ``user`` is stored: ``"i:42"`` for the integer, ``"s:42"`` for the string."""
    return f"i:{user}" if isinstance(user, int) else f"s:{user}"


def user_of(ref: str) -> UserKey:
    """The user a stored ``user_ref`` names."""
    return int(ref[2:]) if ref.startswith("i:") else ref[2:]


def decode_utf8(raw: bytes | None) -> str | None:
    """Text stored as UTF-8 bytes (``data``, ``description``), back as ``str``."""
    return None if raw is None else bytes(raw).decode("utf-8")


def micros_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def time_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


def token_record(row: Any) -> TokenRecord:
    """The ``TokenRecord`` of a token row (any object with the columns as attributes)."""
    return TokenRecord(
        key=row.key,
        user=user_of(row.user_ref),
        scope=row.scope,
        data=decode_utf8(row.data),
        description=decode_utf8(row.description) or "",
        expires=time_or_none(row.expires),
        created_at=from_micros(row.created_at),
        updated_at=from_micros(row.updated_at),
        revoked_at=time_or_none(row.revoked_at),
        last_used_at=time_or_none(row.last_used_at),
        use_count=row.use_count,
        parent_key=row.parent_key,
        secret_hash=bytes(row.secret_hash),
        version=row.version,
    )


def token_values(record: TokenRecord) -> dict[str, Any]:
    """The columns of a new row for ``record``."""
    return {
        "key": record.key,
        "user_ref": user_ref(record.user),
        "scope": record.scope,
        "data": None if record.data is None else record.data.encode("utf-8"),
        "description": record.description.encode("utf-8"),
        "expires": micros_or_none(record.expires),
        "created_at": to_micros(record.created_at),
        "updated_at": to_micros(record.updated_at),
        "revoked_at": micros_or_none(record.revoked_at),
        "last_used_at": micros_or_none(record.last_used_at),
        "use_count": record.use_count,
        "parent_key": record.parent_key,
        "secret_hash": record.secret_hash,
        "version": record.version,
    }


def login_row(row: Sequence[Any]) -> LoginRow:
    """The ``LoginRow`` of the columns ``LOGIN_SQL`` selects, in its order."""
    secret_hash, ref, scope, data, expires, revoked_at = row
    return LoginRow(
        bytes(secret_hash), user_of(ref), scope,
        None if data is None else bytes(data).decode("utf-8"), expires, revoked_at,
    )


def audit_event(row: Mapping[Any, Any]) -> AuditEvent:
    """The ``AuditEvent`` of an audit row, by column name."""
    script_key, script_path = row["script_key"], row["script_path"]
    return AuditEvent(
        at=from_micros(row["at"]), action=row["action"], outcome=row["outcome"],
        actor=row["actor"], token_key=row["token_key"],
        user=None if row["user_ref"] is None else user_of(row["user_ref"]),
        script=None if script_key is None and script_path is None
        else Script(key=script_key, path=script_path),
        reason=row["reason"], count=row["count"],
    )


def audit_rows(events: Sequence[EventRow]) -> list[tuple[Any, ...]]:
    """The rows of ``AUDIT_INSERT`` for buffered events, each value fitted to its column."""
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
            at, action, outcome, fit(actor, 300), fit(key, 32), ref, script_key,
            None if script is None else fit(script.path, 4096), fit(reason, 64), count,
        ))
    return rows


def fit(text: str | None, size: int) -> str | None:
    """``text`` as a column takes it: valid UTF-8 (a lone surrogate, as ``os.fsdecode``
    makes of an undecodable file name, becomes ``?``) and at most ``size`` characters."""
    if text is None:
        return None
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:size]
