"""Who may do what: the one home of the ownership and delegation rules.

Theory of operation
-------------------
``Security`` acts for whoever holds it.  A ``Session`` -- and every face built on one:
the admin API, the token page, the command line -- acts for an ``Actor``: a user (or
nobody), admin or not, and the token it logged in with, if it did.  It hands the actor
to the engine with every call (``Security.authorize_token(..., actor=...)`` and the
rest), and the engine applies the rules below before it touches storage, recording a
refusal on the audit trail like any other.  So the rules are written once, here, and
the engine is the only caller.

- **Ownership.**  An actor with no user (and no admin rights) may do nothing.  A
  non-admin actor manages only its own user's tokens; the same user means the same
  type and value (``same_user``: the ``int`` user 42 is not the ``str`` user "42").
- **No escalation through delegation.**  An actor that logged in *by a token* holds no
  more rights than that token, as storage holds it *now*: it must be neither revoked
  nor expired, and a token it authorizes -- or a token's scope or expiry it changes --
  is no wider: opaque scopes a subset of its own, script bindings a non-empty subset of
  its own when it has any, code bindings (``sha256:``) likewise a non-empty subset of
  its own when it has any, expiry no later.  An unbound or unpinned token may bind or
  pin the tokens it delegates.

Everything here is a pure function of its arguments: no storage, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ._errors import PermissionDenied, TokenExpired, TokenRevoked
from ._scopes import bindings_of, code_bindings_of
from ._token import TokenRecord, UserKey, check_user, same_user

__all__ = [
    "Actor",
    "ActorTokenExpired",
    "acting_user",
    "audit_user",
    "check_child",
    "check_delegation",
    "check_owner",
    "check_renewer",
    "live_parent",
    "require_user",
]

_NO_USER = "this session has no user: log in with a token or create it with user=..."


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks the engine to act, with what rights.

    ``user``: whose tokens it manages (``None``: nobody's, unless ``admin``);
    ``admin``: it may manage every user's tokens; ``token_key``: the token it logged in
    with, whose limits it acts within (``None``: it did not log in by a token).
    """

    user: UserKey | None = None
    admin: bool = False
    token_key: str | None = None

    @property
    def name(self) -> str | None:
        """The actor as the audit trail names it: ``token:<key>`` for one that logged in
        by a token, else ``user:<u>`` (``user:<u> (admin)``), ``admin``, or ``None``."""
        if self.token_key is not None:
            return f"token:{self.token_key}"
        if self.user is not None:
            return f"user:{self.user}" + (" (admin)" if self.admin else "")
        return "admin" if self.admin else None


def require_user(actor: Actor) -> None:
    """``PermissionDenied`` for an actor with neither a user nor admin rights."""
    if actor.user is None and not actor.admin:
        raise PermissionDenied(_NO_USER)


def acting_user(actor: Actor, user: UserKey | None, *,
                refusal: str = "only an admin session can act for another user") -> UserKey:
    """The user ``actor`` acts for: ``user`` when given, else its own.

    Raises ``PermissionDenied`` (saying ``refusal``) when a non-admin names another
    user, ``PermissionDenied`` when there is no user at all, and what ``check_user``
    raises for a bad ``user``.
    """
    if user is not None:
        user = check_user(user)
        if not actor.admin and not same_user(user, actor.user):
            raise PermissionDenied(refusal)
        return user
    if actor.user is None:
        raise PermissionDenied(_NO_USER)
    return actor.user


def audit_user(actor: Actor, user: UserKey | None) -> UserKey | None:
    """Whose events on the audit trail ``actor`` may read: ``user``'s (``None``: everyone's).

    An admin reads anyone's, or everyone's; anyone else only its own user's (``user``
    ``None`` means its own), else ``PermissionDenied``.
    """
    if actor.admin:
        return None if user is None else check_user(user)
    return acting_user(actor, user, refusal="only an admin can read the audit trail of "
                       "another user's tokens")


def check_owner(actor: Actor, owner: UserKey | None) -> None:
    """``PermissionDenied`` unless ``actor`` may manage a token of ``owner``."""
    require_user(actor)
    if not actor.admin and not same_user(owner, actor.user):
        raise PermissionDenied("the token belongs to another user")


class ActorTokenExpired(TokenExpired):
    """The token the actor logged in with has expired: its own credentials, not the
    token it acts on (the admin API answers this one with a 401, that one with a 409)."""


def live_parent(parent: TokenRecord | None, key: str, now: datetime) -> TokenRecord:
    """``parent`` -- the token with ``key`` an actor logged in with, as stored now -- if
    it still lives: ``TokenRevoked`` once it is revoked (or gone), ``TokenExpired`` once
    ``now`` reached its expiry.  An actor is worth no more than its token."""
    if parent is None or parent.revoked_at is not None:
        raise TokenRevoked(
            "this session's token was revoked: it can no longer delegate or manage",
            token_key=key, revoked_at=None if parent is None else parent.revoked_at,
        )
    if parent.expires is not None and now >= parent.expires:
        raise ActorTokenExpired("this session's token has expired", token_key=key,
                                expired_at=parent.expires)
    return parent


def check_delegation(
    parent: TokenRecord, scopes: tuple[str, ...] | None,
    expires: datetime | Literal[False] | None,
) -> None:
    """Raise ``PermissionDenied`` if ``scopes``/``expires`` are wider than ``parent``'s.

    ``scopes=None`` skips the scope check; ``expires=False`` skips the expiry check.
    """
    if scopes is not None:
        own = parent.scope.split(" ")
        own_bindings = set(bindings_of(own))
        own_code = set(code_bindings_of(own))
        own_opaque = set(own) - own_bindings - own_code
        child_bindings = bindings_of(scopes)
        child_code = code_bindings_of(scopes)
        wider = [s for s in scopes
                 if s not in child_bindings and s not in child_code and s not in own_opaque]
        # A bound parent narrows scripts too; an unbound one (any script) may bind.  The
        # same holds, apart, for code: a pinned parent's child is pinned within it.
        if own_bindings:
            wider += [s for s in child_bindings if s not in own_bindings]
        if own_code:
            wider += [s for s in child_code if s not in own_code]
        if wider:
            raise PermissionDenied(
                "a token can only delegate scopes it holds itself; not held: "
                + ", ".join(ascii(s) for s in wider),
                missing_scopes=wider,
            )
        if own_bindings and not child_bindings:
            raise PermissionDenied(
                "this session's token is bound to scripts, so a token it delegates must "
                "be bound to one or more of them: add one of "
                + ", ".join(sorted(own_bindings))
            )
        if own_code and not child_code:
            raise PermissionDenied(
                "this session's token is pinned to code, so a token it delegates must "
                "be pinned to some of the same code: add one of "
                + ", ".join(sorted(own_code))
            )
    if expires is not False and parent.expires is not None:
        if expires is None or expires > parent.expires:
            raise PermissionDenied(
                "a delegated token cannot outlive the session's token, which expires at "
                f"{parent.expires.isoformat()}; give an earlier expiry"
            )


def check_child(parent: TokenRecord, scopes: tuple[str, ...], expires: datetime | None,
                *, explicit: bool) -> None:
    """``PermissionDenied`` unless a new child of ``parent`` with these ``scopes``
    expiring at ``expires`` stays within it.

    ``explicit``: the expiry was given, not the default (which the engine caps at the
    parent's own); either way the child never outlives its parent.
    """
    check_delegation(parent, scopes, expires if explicit else False)
    if parent.expires is not None and (expires is None or expires > parent.expires):
        raise PermissionDenied("a delegated token cannot outlive the session's token")


def check_renewer(actor: Actor, record: TokenRecord) -> None:
    """``PermissionDenied`` unless ``actor`` may renew ``record``: an owner (or an
    admin) may renew the token; an actor that logged in by a token, only that token
    and the tokens derived from it."""
    check_owner(actor, record.user)
    key = actor.token_key
    if key is not None and key != record.key and key not in record.ancestors:
        raise PermissionDenied(
            "a session that logged in by a token may renew only that token and the "
            "tokens derived from it"
        )
