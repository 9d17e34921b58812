"""How values are stored in the SQL tables, and rows turned into records and back.

Every value is stored in a dialect-neutral form: datetimes as integer microseconds since
1970 (no time-zone games, exact comparisons), users as ``"i:42"`` / ``"s:alice"`` so the
integer 42 and the string ``"42"`` stay distinct, ``data`` and ``description`` as UTF-8
bytes (PostgreSQL text refuses NUL characters, which a ``str`` may hold).  Plain Python:
the lean SQLite path (``_lean``) uses these without importing SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .._expiry import from_micros, to_micros
from .._repository import AuditEvent, EventRow, LoginRow
from .._scopes import Script
from .._token import TokenRecord, UserKey
from ._statements import COLUMNS

__all__ = [
    "StoredToken", "audit_event", "audit_rows", "decode_utf8", "fit", "limit_values",
    "login_row",
    "micros_or_none", "time_or_none", "token_record", "token_values", "user_of", "user_ref",
]

# A token's row as a driver returns it (the first columns of GET_SQL), with their names.
StoredToken = NamedTuple("StoredToken", [(name, Any) for name in COLUMNS])  # type: ignore[misc]


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
        max_uses=row.max_uses,
        max_lifetime=_span(row.max_lifetime),
        lifetime=_span(row.lifetime),
        run_id=row.run_id,
        ancestors=tuple(row.ancestors.split(" ")) if row.ancestors else (),
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
        **limit_values(record),
        "run_id": record.run_id,
        "ancestors": " ".join(record.ancestors) or None,
    }


def limit_values(record: TokenRecord) -> dict[str, Any]:
    """The columns of ``record``'s limits (an update writes them too)."""
    return {
        "max_uses": record.max_uses,
        "max_lifetime": _micros(record.max_lifetime),
        "lifetime": _micros(record.lifetime),
    }


def _span(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(microseconds=value)


def _micros(value: timedelta | None) -> int | None:
    return None if value is None else value // timedelta(microseconds=1)


def login_row(row: Sequence[Any]) -> LoginRow:
    """The ``LoginRow`` of the columns ``LOGIN_SQL`` selects, in its order."""
    secret_hash, ref, scope, data, expires, revoked_at, max_uses, parent, run, chain = row
    return LoginRow(
        bytes(secret_hash), user_of(ref), scope,
        None if data is None else bytes(data).decode("utf-8"), expires, revoked_at,
        max_uses, parent, run, chain,
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
        reason=row["reason"], count=row["count"], run_id=row.get("run_id"),
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
