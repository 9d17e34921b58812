"""Login contexts: ``Session`` (who acts, with what rights) and ``ScriptRunner``.

Theory of operation
-------------------
A ``Session`` is one actor.  It gets its user either from its constructor (a user who
authenticated some other way, or an admin tool) or from a token it logged in with.  A
session that logged in *by a token* holds no more rights than that token: every token it
authorizes is a child of it (``parent_key``) and no wider -- opaque scopes a subset,
script bindings a non-empty subset when the parent has any, expiry no later -- and every
update it makes stays inside the same limits.  The limits are checked against the parent
as storage holds it *now*, not as it was at login, and the repository refuses to insert a
child under a parent revoked in the meantime, so a revoked parent cannot delegate.
Revoking a token revokes its descendants (``Security``), so a tree of delegations dies
with its root.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ._errors import (
    ArgumentTypeError,
    AuthTokenError,
    InvalidToken,
    PermissionDenied,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from ._redact import redact
from ._scopes import Script, bindings_of
from ._security import Security, not_found_message, shown_key
from ._shape import is_token_key
from ._token import AuthToken, Principal, TokenRecord, UserKey, check_user, same_user

__all__ = ["ScriptRunner", "Session", "check_delegation"]


def check_delegation(
    parent: TokenRecord, scopes: tuple[str, ...] | None, expires: datetime | Literal[False] | None,
) -> None:
    """Raise ``PermissionDenied`` if ``scopes``/``expires`` are wider than ``parent``'s.

    ``scopes=None`` skips the scope check; ``expires=False`` skips the expiry check.
    """
    if scopes is not None:
        own = parent.scope.split(" ")
        own_bindings = set(bindings_of(own))
        own_opaque = set(own) - own_bindings
        child_bindings = bindings_of(scopes)
        wider = [s for s in scopes if s not in child_bindings and s not in own_opaque]
        if own_bindings:
            # A bound parent narrows scripts too; an unbound one (any script) may bind.
            wider += [s for s in child_bindings if s not in own_bindings]
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
    if expires is not False and parent.expires is not None:
        if expires is None or expires > parent.expires:
            raise PermissionDenied(
                "a delegated token cannot outlive the session's token, which expires at "
                f"{parent.expires.isoformat()}; give an earlier expiry"
            )


class Session:
    """One login context: a user, optionally a script, optionally admin rights.

    Management calls act as ``session.user`` (``PermissionDenied`` without one); a
    non-admin session manages only its own user's tokens.  After
    ``login_by_auth_token`` the session acts as the token's user, with no more rights
    than the token (see the module notes).  Every refusal leaves storage unchanged.
    """

    def __init__(self, security: Security, *, user: UserKey | None = None,
                 script: Script | None = None, admin: bool = False) -> None:
        if not isinstance(security, Security):
            raise ArgumentTypeError(f"expected a Security, not {type(security).__name__}")
        if script is not None and not isinstance(script, Script):
            raise ArgumentTypeError(f"script must be a Script or None, not {type(script).__name__}")
        self.security = security
        self.user: UserKey | None = None if user is None else check_user(user)
        self.script = script
        self.admin = bool(admin)
        self.principal: Principal | None = None

    def __repr__(self) -> str:
        via = f", token_key={self.principal.token_key!r}" if self.principal else ""
        # Masked: a token string accepted by mistake as a user or a script path shows here.
        return redact(f"Session(user={self.user!r}, script={self.script!r}, "
                      f"admin={self.admin}{via})")

    def _actor(self) -> str | None:
        """Who acts, for the audit trail: the session's token, else its user."""
        if self.principal is not None:
            return f"token:{self.principal.token_key}"
        if self.user is not None:
            return f"user:{self.user}" + (" (admin)" if self.admin else "")
        return "admin" if self.admin else None

    def _refused(self, action: str, error: BaseException, *, token_key: str | None = None,
                 user: UserKey | None = None) -> None:
        self.security._record_event(action, error, actor=self._actor(), token_key=token_key,
                                   user=user)

    # -- who --------------------------------------------------------------------------
    def login_by_auth_token(self, token_string: str | bytes) -> Principal:
        """Log in with ``token_string`` for ``session.script``; the session acts as its user.

        Raises the ``LoginError`` of ``Security.login_by_auth_token``; on failure the
        session is unchanged.
        """
        principal = self.security.login_by_auth_token(token_string, script=self.script)
        self.user = principal.user
        self.principal = principal
        return principal

    def _acting_user(self, user: UserKey | None) -> UserKey:
        if user is not None:
            user = check_user(user)
            if not self.admin and not same_user(user, self.user):
                raise PermissionDenied("only an admin session can act for another user")
            return user
        if self.user is None:
            raise PermissionDenied(
                "this session has no user: log in with a token or create it with user=..."
            )
        return self.user

    def _require_user(self) -> None:
        if self.user is None and not self.admin:
            raise PermissionDenied(
                "this session has no user: log in with a token or create it with user=..."
            )

    def _stored(self, key: str | None) -> TokenRecord:
        if key is None:
            raise TokenNotFound("the token was never authorized")
        if not isinstance(key, str):
            raise ArgumentTypeError(f"a token key is a str, not {type(key).__name__}")
        stored = self.security.repository.get(key) if is_token_key(key) else None
        if stored is None:
            raise TokenNotFound(not_found_message(key), token_key=shown_key(key))
        return stored

    def _check_owner(self, owner: UserKey | None) -> None:
        if self.user is None and not self.admin:
            raise PermissionDenied(
                "this session has no user: log in with a token or create it with user=..."
            )
        if not self.admin and not same_user(owner, self.user):
            raise PermissionDenied("the token belongs to another user")

    def _parent(self) -> TokenRecord | None:
        """The session's own token as stored now, if it logged in by one.

        Raises ``TokenRevoked`` / ``TokenExpired`` once that token is dead: a session
        is worth no more than the token it logged in with.
        """
        if self.principal is None:
            return None
        key = self.principal.token_key
        parent = self.security.repository.get(key)
        if parent is None or parent.revoked_at is not None:
            raise TokenRevoked(
                "this session's token was revoked: it can no longer delegate or manage",
                token_key=key, revoked_at=None if parent is None else parent.revoked_at,
            )
        now = self.security.now()
        if parent.expires is not None and now >= parent.expires:
            raise TokenExpired("this session's token has expired", token_key=key,
                               expired_at=parent.expires)
        return parent

    # -- manage -----------------------------------------------------------------------
    def authorize_token(self, token: AuthToken, *, user: UserKey | None = None) -> str:
        """Authorize ``token`` for the session's user (an admin may name another ``user``).

        In a session logged in by a token, ``token`` becomes its child and may be no
        wider; an omitted expiry becomes the earlier of 30 days and the parent's.
        Raises ``PermissionDenied`` (nothing stored) or what ``Security`` raises.
        """
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        try:
            owner = self._acting_user(user)
            parent = self._parent()
        except AuthTokenError as exc:
            self._refused("authorize", exc, user=user if user is not None else self.user)
            raise
        if parent is None:
            return self.security._authorize(token, owner, actor=self._actor())
        explicit = not token.expiry_spec.is_default

        def within_parent(expires: datetime | None) -> None:
            check_delegation(parent, token.scopes, expires if explicit else False)
            if parent.expires is not None and (expires is None or expires > parent.expires):
                raise PermissionDenied(  # the default, capped: never later than the parent
                    "a delegated token cannot outlive the session's token"
                )

        return self.security._authorize(
            token, owner, parent=parent.key, vet=within_parent, expiry_cap=parent.expires,
            actor=self._actor(),
        )

    def update_auth_token(self, token: AuthToken) -> None:
        """Persist a change to one of the session's user's tokens (see ``Security``).

        In a session logged in by a token, a change to ``scope`` or ``expires`` must
        leave the whole token no wider than the session's own (scopes a subset, expiry
        no later); a change to only ``description`` or ``data`` is always allowed.
        Raises ``PermissionDenied`` (nothing changed) or what ``Security`` raises.
        """
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        stored: TokenRecord | None = None
        try:
            self._require_user()
            stored = self._stored(token.key)
            self._check_owner(stored.user)
            parent = self._parent()
        except AuthTokenError as exc:
            self._refused("update", exc, token_key=stored.key if stored else None,
                          user=stored.user if stored else None)
            raise
        if parent is None:
            self.security._update(token, check=None, actor=self._actor())
            return

        def within_parent(before: TokenRecord, after: TokenRecord, changed: set[str]) -> None:
            if changed & {"scope", "expires"}:
                check_delegation(parent, tuple(after.scope.split(" ")), after.expires)

        self.security._update(token, check=within_parent, actor=self._actor())

    def revoke_auth_token(self, token_string: str | bytes) -> None:
        """Revoke a token of the session's user by its string; idempotent.

        Raises ``InvalidToken`` or ``PermissionDenied`` (nothing revoked).
        """
        record: TokenRecord | None = None
        try:
            self._require_user()
            try:
                record = self.security._record_for(token_string)
            except InvalidToken:
                self.security._note_invalid(None, "revoke")  # sampled, like logins
                raise
            self._check_owner(record.user)
            self._parent()
        except InvalidToken:
            raise
        except AuthTokenError as exc:
            self._refused("revoke", exc, token_key=record.key if record else None,
                          user=record.user if record else None)
            raise
        self.security._revoke_key(record.key, owner=record.user, actor=self._actor())

    def revoke_auth_token_by_key(self, key: str) -> None:
        """Revoke a token of the session's user by key; idempotent.

        Raises ``TokenNotFound`` or ``PermissionDenied`` (nothing revoked).
        """
        stored: TokenRecord | None = None
        try:
            self._require_user()
            stored = self._stored(key)
            self._check_owner(stored.user)
            self._parent()
        except AuthTokenError as exc:
            self._refused("revoke", exc, token_key=stored.key if stored else None,
                          user=stored.user if stored else None)
            raise
        self.security._revoke_key(key, owner=stored.user, actor=self._actor())

    def get_auth_token(self, key: str) -> AuthToken:
        """The token with ``key``, if the session may see it: one of its user's (any
        token for an admin session).

        Raises ``TokenNotFound`` for an unknown key (``TypeError`` for a non-``str``)
        and ``PermissionDenied`` for a token of another user or a session with no
        user; nothing is returned then.  Reading changes nothing, so a refused read is
        not an event of the audit trail (whose actions are the changes and logins).
        """
        self._require_user()
        token = self.security.get_auth_token(key)
        self._check_owner(token.user)
        self._parent()
        return token

    def revoke_user_tokens(self, user: UserKey) -> int:
        """Revoke every live token of ``user`` and their descendants, as this session.

        A non-admin session may name only its own user.  Returns how many tokens were
        revoked.  Raises ``PermissionDenied`` (recorded as a refused ``revoke_all`` about
        ``user``; nothing changes) or what ``Security.revoke_user_tokens`` raises.
        """
        try:
            owner = self._acting_user(user)
            self._parent()
        except AuthTokenError as exc:
            self._refused("revoke_all", exc, user=user)
            raise
        return self.security._revoke_user(owner, actor=self._actor())

    def list_auth_tokens(self, *, include_revoked: bool = False,
                         user: UserKey | None = None) -> list[AuthToken]:
        """The session's user's tokens, newest first.

        An admin session may name another ``user``; an admin session without a user
        lists everyone's.
        """
        if user is None and self.user is None and self.admin:
            return self.security.list_auth_tokens(include_revoked=include_revoked)
        owner = self._acting_user(user)
        self._parent()
        return self.security.list_auth_tokens(user=owner, include_revoked=include_revoked)


class ScriptRunner:
    """Runs one script: logs tokens in *for that script*.

    ``ScriptRunner(security, script).login_by_auth_token(token_string)`` returns a
    ``Session`` logged in as the token's user, or raises the ``LoginError`` of
    ``Security.login_by_auth_token`` (``ScriptNotAuthorized`` when the token is bound to
    other scripts).
    """

    def __init__(self, security: Security, script: Script) -> None:
        if not isinstance(security, Security):
            raise ArgumentTypeError(f"expected a Security, not {type(security).__name__}")
        if not isinstance(script, Script):
            raise ArgumentTypeError(f"script must be a Script, not {type(script).__name__}")
        self.security = security
        self.script = script

    def __repr__(self) -> str:
        return redact(f"ScriptRunner(script={self.script!r})")

    def login_by_auth_token(self, token_string: str | bytes) -> Session:
        session = Session(self.security, script=self.script)
        session.login_by_auth_token(token_string)
        return session
