"""JSON-ready views of tokens and principals, shared by the command line and the admin API.

A *view* holds what is safe to show about a token -- never its string or secret, which
the engine does not keep -- with datetimes as ISO 8601 UTC strings and ``None`` as
``null``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ._expiry import shown_duration
from ._repository import AuditEvent
from ._token import AuthToken, Principal

__all__ = ["VIEW_FIELDS", "isoformat", "principal_view", "token_view"]

#: The keys of a token view, in the order they are shown.
VIEW_FIELDS = (
    "key",
    "user",
    "scope",
    "scopes",
    "description",
    "data",
    "expires",
    "created_at",
    "updated_at",
    "revoked_at",
    "last_used_at",
    "use_count",
    "parent_key",
    "max_uses",
    "max_lifetime",
    "run_id",
)


def isoformat(value: datetime | None) -> str | None:
    """``value`` as ISO 8601 in UTC (``2026-12-23T16:09:32.500953+00:00``), or ``None``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def token_view(token: AuthToken) -> dict[str, object]:
    """The view of ``token``: its fields, JSON-ready (``scopes`` a list, ``max_lifetime``
    a duration such as ``"90d"``)."""
    return {
        "key": token.key,
        "user": token.user,
        "scope": token.scope,
        "scopes": list(token.scopes),
        "description": token.description,
        "data": token.data,
        "expires": isoformat(token.expires),
        "created_at": isoformat(token.created_at),
        "updated_at": isoformat(token.updated_at),
        "revoked_at": isoformat(token.revoked_at),
        "last_used_at": isoformat(token.last_used_at),
        "use_count": token.use_count,
        "parent_key": token.parent_key,
        "max_uses": token.max_uses,
        "max_lifetime": None if token.max_lifetime is None
        else shown_duration(token.max_lifetime),
        "run_id": token.run_id,
    }


def principal_view(principal: Principal) -> dict[str, object]:
    """``{"user", "token_key", "scopes", "data", "expires"}`` of a login, JSON-ready."""
    return {
        "user": principal.user,
        "token_key": principal.token_key,
        "scopes": list(principal.scopes),
        "data": principal.data,
        "expires": isoformat(principal.expires),
    }


def event_view(event: AuditEvent) -> dict[str, object]:
    """An audit event as the admin API shows it.

    ``at``, ``actor``, ``action``, ``token_key``, ``run_id``, ``script``, ``outcome``
    and ``reason``, plus ``count`` on a summary event -- one that stands for ``count`` like
    login attempts of one kind and minute in a batch (a SQL store's fold sums them across
    batches; see ``docs/admin.md``).
    """
    script = event.script
    view: dict[str, object] = {
        "at": isoformat(event.at),
        "actor": event.actor,
        "action": event.action,
        "token_key": event.token_key,
        "run_id": event.run_id,
        "script": None if script is None else {"key": script.key, "path": script.path},
        "outcome": event.outcome,
        "reason": event.reason,
    }
    if event.count != 1:
        view["count"] = event.count
    return view
