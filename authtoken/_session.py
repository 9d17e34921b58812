"""Login contexts: ``Session`` (who acts, with what rights) and ``ScriptRunner``.

Theory of operation
-------------------
A ``Session`` is one actor.  It gets its user either from its constructor (a user who
authenticated some other way, or an admin tool) or from a token it logged in with.  A
session that logged in *by a token* holds no more rights than that token: every token it
authorizes is a child of it (``parent_key``) and no wider, and every update it makes
stays inside the same limits; a revoked parent cannot delegate.  Revoking a token
revokes its descendants, so a tree of delegations dies with its root.

The session decides none of this itself.  It describes who acts -- ``session.actor``,
an ``Actor`` of ``_rules`` -- and hands that to the engine with every call; the engine
applies the rules of ``_rules`` and records what it refused.  So a face built on a
session (the admin API, the token page, the command line) gets the same rules, written
once.
"""

from __future__ import annotations

from datetime import datetime

from ._errors import ArgumentTypeError, InvalidArgument
from ._explain import LoginCheck
from ._jobs import check_run_id
from ._redact import redact
from ._repository import AuditEvent
from ._rules import Actor
from ._run import RUN_DEFAULT, RunToken
from ._scopes import Script
from ._security import Security
from ._token import AuthToken, ExpiresLike, Principal, ScopeLike, UserKey, check_user

__all__ = ["ScriptRunner", "Session"]


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

    @property
    def actor(self) -> Actor:
        """Who this session is to the engine: its user, admin rights and login token."""
        principal = self.principal
        return Actor(user=self.user, admin=self.admin,
                     token_key=None if principal is None else principal.token_key)

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

    # -- manage -----------------------------------------------------------------------
    def authorize_token(self, token: AuthToken, *, user: UserKey | None = None) -> str:
        """Authorize ``token`` for the session's user (an admin may name another ``user``).

        In a session logged in by a token, ``token`` becomes its child and may be no
        wider; an omitted expiry becomes the earlier of 30 days and the parent's.
        Raises ``PermissionDenied`` (nothing stored) or what ``Security`` raises.
        """
        return self.security.authorize_token(token, user=user, actor=self.actor)

    def get_auth_token(self, key: str) -> AuthToken:
        """The token with ``key``, if the session may see it: one of its user's (any
        token for an admin session).

        Raises ``TokenNotFound`` for an unknown key (``TypeError`` for a non-``str``)
        and ``PermissionDenied`` for a token of another user or a session with no
        user; nothing is returned then.  Reading changes nothing, so a refused read is
        not an event of the audit trail (whose actions are the changes and logins).
        """
        return self.security.get_auth_token(key, actor=self.actor)

    def update_auth_token(self, token: AuthToken) -> None:
        """Persist a change to one of the session's user's tokens (see ``Security``).

        In a session logged in by a token, a change to ``scope`` or ``expires`` must
        leave the whole token no wider than the session's own (scopes a subset, expiry
        no later); a change to only ``description`` or ``data`` is always allowed.
        Raises ``PermissionDenied`` (nothing changed) or what ``Security`` raises.
        """
        self.security.update_auth_token(token, actor=self.actor)

    def revoke_auth_token(self, token_string: str | bytes) -> None:
        """Revoke a token of the session's user by its string; idempotent.

        Raises ``InvalidToken`` or ``PermissionDenied`` (nothing revoked).
        """
        self.security.revoke_auth_token(token_string, actor=self.actor)

    def revoke_auth_token_by_key(self, key: str) -> None:
        """Revoke a token of the session's user by key; idempotent.

        Raises ``TokenNotFound`` or ``PermissionDenied`` (nothing revoked).
        """
        self.security.revoke_auth_token_by_key(key, actor=self.actor)

    def revoke_user_tokens(self, user: UserKey) -> int:
        """Revoke every live token of ``user`` and their descendants, as this session.

        A non-admin session may name only its own user.  Returns how many tokens were
        revoked.  Raises ``PermissionDenied`` (recorded as a refused ``revoke_all`` about
        ``user``; nothing changes) or what ``Security.revoke_user_tokens`` raises.
        """
        return self.security.revoke_user_tokens(user, actor=self.actor)

    def list_auth_tokens(self, *, include_revoked: bool = False,
                         user: UserKey | None = None,
                         run_id: str | None = None) -> list[AuthToken]:
        """The session's user's tokens, newest first (with ``run_id``, that run's only).

        An admin session may name another ``user``; an admin session without a user
        lists everyone's.
        """
        return self.security.list_auth_tokens(user=user, include_revoked=include_revoked,
                                              run_id=run_id, actor=self.actor)

    def explain_login(self, key: str, *, script: Script | None = None) -> LoginCheck:
        """Why a login with one of the session's user's tokens would be refused now (see
        ``Security.explain_login``); ``PermissionDenied`` for another user's token."""
        return self.security.explain_login(key, script=script, actor=self.actor)

    # -- jobs -------------------------------------------------------------------------
    def renew_auth_token(self, token_string: str | bytes, *, by: object = None) -> datetime:
        """Renew a renewable token (see ``Security.renew_auth_token``) as this session:
        one of its user's, and in a session logged in by a token only that token or
        one derived from it (``PermissionDenied`` otherwise)."""
        return self.security.renew_auth_token(token_string, by=by, actor=self.actor)

    def renew_auth_token_by_key(self, key: str, *, by: object = None) -> datetime:
        """``renew_auth_token`` by key (``TokenNotFound`` if there is none)."""
        return self.security.renew_auth_token_by_key(key, by=by, actor=self.actor)

    def run_token(self, run_id: str, *, scope: ScopeLike | None = None,
                  expires: ExpiresLike | object = RUN_DEFAULT, max_uses: int | None = None,
                  data: str | None = None) -> RunToken:
        """A token for one run of a job: the one call a scheduler makes per run.

        A child of the session's token (a token of the session's user for a session
        with a user and no token), marked with ``run_id`` (1 to 200 characters).
        ``scope`` defaults to the whole scope of the session's token, and may be no
        wider; ``max_uses`` to the session token's own limit, if it has one; ``expires``
        defaults to an hour, cut to the session token's expiry,
        while an explicit expiry past it is ``PermissionDenied``.  Use the result as a
        context manager: the run token is revoked when the block ends, whatever happens.
        """
        run_id = check_run_id(run_id)
        principal = self.principal
        if principal is not None:
            own = self.security.get_auth_token(principal.token_key, actor=self.actor)
            scope = own.scope if scope is None else scope
            # A use-limited session makes run tokens limited as tightly, unless told.
            max_uses = own.max_uses if max_uses is None else max_uses
        elif scope is None:
            raise InvalidArgument(
                "this session did not log in by a token, so run_token needs a scope"
            )
        token = AuthToken(scope, data, description=f"run {run_id}"[:1024],
                          expires=expires,  # type: ignore[arg-type]
                          max_uses=max_uses)
        string = self.security.authorize_token(token, user=None, actor=self.actor,
                                               run_id=run_id)
        assert token.key is not None
        return RunToken(self.security, string, token.key, run_id, token.expires)

    def audit_events(self, *, user: UserKey | None = None, token_key: str | None = None,
                     since: datetime | None = None, limit: int = 1000) -> list[AuditEvent]:
        """The audit trail as this session may read it, newest first.

        A non-admin session reads the events about its own user's tokens (naming
        another ``user`` is ``PermissionDenied``); an admin session anyone's, and
        everyone's when ``user`` is ``None``.  Otherwise as ``Security.audit_events``.
        """
        return self.security.audit_events(user=user, token_key=token_key, since=since,
                                          limit=limit, actor=self.actor)


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
