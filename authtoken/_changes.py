"""What a change to a token writes: the records of an authorize and of an update.

``Security`` reads storage, the clock and the actor's parent token, then asks here what
the new record is; it writes that record and puts the outcome on the audit trail.
Everything here is a pure function of its arguments -- no storage, no clock -- so the
rules of a change (a child's default expiry, an expiry in the future, which concurrent
changes clash) are read and tested in one place.  The delegation rules themselves are
in ``_rules``; the messages that name a token by key, in ``shown_key`` and
``not_found_message`` here, so that no message echoes a pasted token string.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ._errors import (
    ArgumentTypeError,
    ConcurrentUpdate,
    InvalidArgument,
    TokenNotFound,
    TokenRevoked,
)
from ._expiry import ExpirySpec
from ._jobs import Limits, check_changed_limits, check_child_uses, check_renewal_within
from ._policy import Policy
from ._rules import check_child, check_delegation
from ._shape import is_token_key
from ._token import AuthToken, TokenRecord, UserKey, assigned_changes

__all__ = [
    "check_future",
    "check_key",
    "child_expiry",
    "new_record",
    "not_found_message",
    "shown_key",
    "updated_record",
]


def shown_key(key: str) -> str | None:
    """``key`` if it is safe to show; something else -- a pasted token string, its
    secret -- is never echoed."""
    return key if is_token_key(key) else None


def not_found_message(key: str) -> str:
    """What ``TokenNotFound`` says of ``key``, without echoing what is not a key."""
    if is_token_key(key):
        return f"no token with key {key!r}"
    return ("no token with that key: a token key is 16 characters of a-z and 2-7, as "
            "'authtoken list' shows (not shown here, in case it was a token string)")


def check_key(key: object) -> str:
    """``key`` as a ``str``: ``TokenNotFound`` for ``None``, ``TypeError`` for others."""
    if key is None:
        raise TokenNotFound("the token was never authorized (it has no key)")
    if not isinstance(key, str):
        raise ArgumentTypeError(f"a token key is a str, not {type(key).__name__}")
    return key


def check_future(expires: datetime | None, now: datetime) -> None:
    """``InvalidArgument`` unless ``expires`` is ``None`` or later than ``now``."""
    if expires is not None and expires <= now:
        raise InvalidArgument(
            f"expires {expires.isoformat()} is not in the future; give a later time "
            "or a duration such as '30d'"
        )


def child_expiry(spec: ExpirySpec, now: datetime, parent: TokenRecord | None,
                 scopes: tuple[str, ...], policy: Policy | None = None) -> datetime | None:
    """The expiry a new token gets from ``spec`` at ``now``, checked against ``parent``.

    An omitted expiry (the default) of a child becomes the earlier of the default and
    its parent's, and under a policy's ``max_lifetime`` no later than that allows; an
    expiry given explicitly must not outlive the parent, and the scopes must be within
    the parent's (``PermissionDenied`` otherwise).
    """
    expires = spec.resolve(now)
    cap = None if policy is None else policy.cap(now)
    if spec.is_default and cap is not None and (expires is None or expires > cap):
        expires = cap
    if parent is not None:
        if spec.is_default and parent.expires is not None \
                and (expires is None or expires > parent.expires):
            expires = parent.expires
        check_child(parent, scopes, expires, explicit=not spec.is_default)
    check_future(expires, now)
    return expires


def new_record(token: AuthToken, *, key: str, digest: bytes, user: UserKey,
               expires: datetime | None, now: datetime, parent: TokenRecord | None,
               limits: Limits, run_id: str | None = None) -> TokenRecord:
    """The record an authorize stores for ``token``, first version, never used."""
    return TokenRecord(
        key=key, user=user, scope=token.scope, data=token.data,
        description=token.description, expires=expires, created_at=now,
        updated_at=now, revoked_at=None, last_used_at=None, use_count=0,
        parent_key=None if parent is None else parent.key, secret_hash=digest,
        version=1, max_uses=limits.max_uses, max_lifetime=limits.max_lifetime,
        lifetime=limits.lifetime, run_id=run_id,
        ancestors=() if parent is None else (*parent.ancestors, parent.key),
    )


def updated_record(token: AuthToken, *, key: str, stored: TokenRecord | None,
                   base: TokenRecord | None, now: datetime,
                   parent: TokenRecord | None, policy: Policy | None = None) -> TokenRecord:
    """``stored`` with the fields assigned on ``token`` written on top.

    ``base`` is the record ``token`` was read as.  Only assigned fields are written, so
    two writers changing different fields both win; a field this writer assigned that
    someone else changed since ``base`` is ``ConcurrentUpdate`` -- nobody's change is
    silently lost.  ``TokenNotFound`` and ``TokenRevoked`` for a token that cannot be
    updated, ``InvalidArgument`` for an expiry not in the future, ``PermissionDenied``
    for a scope or expiry wider than ``parent``.
    """
    if stored is None or base is None:
        raise TokenNotFound(not_found_message(key), token_key=shown_key(key))
    if stored.revoked_at is not None:
        raise TokenRevoked("the token is revoked and cannot be updated",
                           token_key=key, revoked_at=stored.revoked_at)
    changes = assigned_changes(token, now)
    clashes = sorted(
        name for name, value in changes.items()
        if getattr(stored, name) != getattr(base, name) and getattr(stored, name) != value
    )
    if clashes:
        raise ConcurrentUpdate(
            f"token {key!r} had its {', '.join(clashes)} changed by someone else since "
            "it was read; read it again with get_auth_token and reapply the change",
            token_key=key,
        )
    expires = changes.get("expires")
    if isinstance(expires, datetime):
        check_future(expires, now)
    record = replace(stored, updated_at=now, **changes)  # type: ignore[arg-type]
    if "max_uses" in changes:
        check_changed_limits(stored, record.max_uses)
    if changes.keys() & {"expires", "max_lifetime"}:
        check_lifetime(record)
    if record.max_lifetime is not None and record.lifetime is None \
            and record.expires is not None:
        # Made renewable by this update: a renewal's default step is fixed now, or it
        # would grow with every renewal (expires minus created_at).
        record = replace(record, lifetime=record.expires - record.created_at)
    if parent is not None and changes.keys() - {"description", "data"}:
        # A token session changes more than the free fields only of a token that stays
        # within its own rights: scope, expiry, uses and how far it may be renewed.
        check_delegation(parent, tuple(record.scope.split(" ")), record.expires)
        check_child_uses(parent, record.max_uses)
        check_renewal_within(parent, record)
    if policy is not None and changes.keys() & {"expires", "max_lifetime"}:
        policy.check_expiry(record.expires, record.created_at)
        policy.check_max_lifetime(record.max_lifetime, record.created_at)
    return record


def check_lifetime(record: TokenRecord) -> None:
    """``InvalidArgument`` for a renewable token whose expiry is missing or past its
    ``created_at + max_lifetime``."""
    if record.max_lifetime is None:
        return
    if record.expires is None:
        raise InvalidArgument(
            "a token with a max_lifetime must expire; give an expiry, or remove the "
            "max_lifetime (max_lifetime=None)"
        )
    end = record.created_at + record.max_lifetime
    if record.expires > end:
        raise InvalidArgument(
            f"the token's max_lifetime ends at {end.isoformat()}: give an expiry no "
            "later, or a longer max_lifetime"
        )
