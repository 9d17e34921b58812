"""The engine: ``Security`` authorizes, stores, renews, revokes and logs in with tokens.

Theory of operation
-------------------
A login is checked by the ``LoginGate`` (``_login``): every login reads storage, nothing
about a token is cached, and what a login writes is buffered.  Reads through this
``Security`` add the logins still buffered, so they look exact.

The audit trail (``Trail``, ``_trail``): every change (authorize, update, renew, revoke,
revoke-all) and every refusal of one writes its event at once; logins are batched;
refusals of strings that name no token are sampled; a read writes the buffer first.

Who acts: a call made directly on a ``Security`` acts for whoever holds it (the trail's
actor is ``None``).  A ``Session``, and every face built on one, passes ``actor=`` (an
``Actor`` of ``_rules``): then the engine applies the ownership and delegation rules of
``_rules`` first, records a refusal like any other, and names the actor on the trail.
That keyword is the whole interface between the engine and the sessions: nobody calls
the private methods below from outside.

Every decision about time uses the injected ``clock``.
"""

from __future__ import annotations

import hmac
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType

from ._audit import AuditBuffer, flush_forgotten
from ._changes import (
    check_key,
    child_expiry,
    new_record,
    not_found_message,
    shown_key,
    updated_record,
)
from ._clock import Clock, system_clock, system_micros
from ._codec import TokenCodec, new_key
from ._errors import (
    ArgumentTypeError,
    AuthTokenError,
    ConcurrentUpdate,
    InvalidArgument,
    InvalidToken,
    TokenNotFound,
)
from ._expiry import aware_utc, to_micros
from ._explain import LoginCheck, explain
from ._jobs import (
    check_expiring,
    check_run_id,
    default_spec,
    new_limits,
    renewed_expiry,
    stored_digest,
)
from ._login import LoginGate
from ._policy import Policy
from ._redact import redact
from ._repository import AuditEvent, Repository, UseLimits, with_usage
from ._rules import (
    Actor,
    acting_user,
    audit_user,
    check_owner,
    check_renewer,
    live_parent,
    require_user,
)
from ._scopes import Script
from ._shape import is_token_key
from ._token import (
    AuthToken,
    Principal,
    TokenRecord,
    UserKey,
    check_user,
    load_record,
    read_record,
    token_from_record,
)
from ._trail import Trail, check_before, check_query

__all__ = ["Security"]


class Security:
    """The token engine over one ``Repository``.

    ``Security(repository, *, secret_keys, clock=None, policy=None, audit=None)``:
    ``secret_keys`` is one key or a list, newest first (the first signs, all verify);
    ``clock`` returns the current aware UTC ``datetime`` and decides every expiry;
    ``policy`` (a ``Policy``) limits every token it authorizes, updates or renews;
    ``audit`` is the
    ``AuditBuffer`` that holds usage and audit events until they are written (default: a
    new one with the standard batch sizes; give one to tune them, one per ``Security``).
    Use as a context manager, or call ``close()``, so buffered usage and audit events are
    written.

    Every management call takes a keyword-only ``actor`` (an ``Actor``, as ``Session``
    passes it): the call is then made *as* that actor -- ``PermissionDenied`` for another
    user's token unless it is an admin, no wider than the token it logged in with --
    and the trail names it.  Without one, the call acts for whoever holds the engine.
    """

    def __init__(
        self,
        repository: Repository,
        *,
        secret_keys: str | bytes | Sequence[str | bytes],
        clock: Clock | None = None,
        policy: Policy | None = None,
        audit: AuditBuffer | None = None,
    ) -> None:
        if not isinstance(repository, Repository):
            raise ArgumentTypeError(
                f"repository must implement authtoken.Repository, not "
                f"{type(repository).__name__}"
            )
        if clock is not None and not callable(clock):
            raise ArgumentTypeError("clock must be a callable returning an aware datetime")
        if policy is not None and not isinstance(policy, Policy):
            raise ArgumentTypeError(f"policy must be a Policy, not {type(policy).__name__}")
        if audit is not None and not isinstance(audit, AuditBuffer):
            raise ArgumentTypeError(f"audit must be an AuditBuffer, not {type(audit).__name__}")
        self._repository = repository
        self._policy = None if policy is None or policy.empty else policy
        self._codec = TokenCodec(secret_keys)
        self._clock: Clock = clock or system_clock
        # The login path needs only microseconds; with the system clock it skips the
        # datetime round trip.
        self._now_us: Callable[[], int] = (
            system_micros if clock is None else (lambda: to_micros(self.now()))
        )
        self._audit = AuditBuffer() if audit is None else audit
        self._finalizer = weakref.finalize(self, flush_forgotten, self._audit, repository)
        self._trail = Trail(self._audit, repository, self._now_us)
        self._gate = LoginGate(self._codec, repository, self._trail, self._now_us)

    def __repr__(self) -> str:
        # Masked here too: a repository of the user's own may show its URL's password.
        return redact(f"Security({self._repository!r})")

    def __enter__(self) -> Security:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def repository(self) -> Repository:
        return self._repository

    @property
    def policy(self) -> Policy | None:
        """The ``Policy`` every token of this engine obeys (``None``: none)."""
        return self._policy

    def derive_key(self, purpose: str | bytes) -> bytes:
        """A 256-bit key for one ``purpose`` (say, a page's CSRF tokens) from the newest
        secret key: the same in every process sharing the keys, new with a new newest key,
        never a signing key, revealing nothing of the keys or signatures (``str``: UTF-8)."""
        return self._codec.derive_each(purpose)[0]

    def derive_keys(self, purpose: str | bytes) -> tuple[bytes, ...]:
        """``derive_key``'s key from each secret key, newest first: kept data outlives rotations."""
        return self._codec.derive_each(purpose)

    def record_upstream(self, principal: Principal, name: str, reason: str | None = None) -> None:
        """Put an upstream access token given to ``principal`` for link ``name`` (refused:
        ``reason``, the error's class) on the trail: ``upstream``, buffered like a login."""
        self._trail.upstream(self._now_us(), principal, name, reason)

    def now(self) -> datetime:
        """The engine's current time (its clock, as aware UTC)."""
        now = self._clock()
        if not isinstance(now, datetime):
            raise ArgumentTypeError("the clock must return a datetime")
        return aware_utc(now)

    # -- the actor's side: its rules, applied before storage is touched -------------------
    def _parent_of(self, actor: Actor) -> TokenRecord | None:
        """The token ``actor`` logged in with, as stored now, if it did; it must live."""
        if actor.token_key is None:
            return None
        return live_parent(self._repository.get(actor.token_key), actor.token_key,
                           self.now())

    def _stored(self, key: object) -> TokenRecord:
        """The stored token with ``key``: ``TokenNotFound`` if none (``TypeError`` for a
        non-``str``)."""
        key = check_key(key)
        record = self._repository.get(key) if is_token_key(key) else None
        if record is None:
            raise TokenNotFound(not_found_message(key), token_key=shown_key(key))
        return record

    # -- authorize --------------------------------------------------------------------
    def authorize_token(self, token: AuthToken, *, user: UserKey | None,
                        actor: Actor | None = None, run_id: str | None = None) -> str:
        """Store ``token`` for ``user``, set ``token.key``; return the token string.

        The string is shown this once: storage keeps only a digest of its secret.
        Raises ``InvalidArgument`` if the token is already authorized or its expiry is
        not in the future; nothing is stored then.

        With ``actor``, ``user=None`` means the actor's own user; an actor that logged
        in by a token makes ``token`` its child, no wider than itself (an omitted expiry
        becomes the earlier of the default and its own), else ``PermissionDenied``.
        ``run_id`` marks the token as made for one run of a job (see
        ``Session.run_token``).  Under a ``policy``, what it forbids is
        ``PolicyViolation``.
        """
        if run_id is not None:
            run_id = check_run_id(run_id)
        if actor is None:
            return self._authorize(token, check_user(user), None, None, run_id)
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        try:
            owner = acting_user(actor, user)
            parent = self._parent_of(actor)
        except AuthTokenError as exc:
            self._trail.change("authorize", exc, actor=actor.name,
                               user=user if user is not None else actor.user)
            raise
        return self._authorize(token, owner, parent, actor.name, run_id)

    def _authorize(self, token: AuthToken, user: UserKey, parent: TokenRecord | None,
                   actor: str | None, run_id: str | None) -> str:
        try:
            string = self._authorize_now(token, user, parent, run_id)
        except AuthTokenError as exc:
            self._trail.change("authorize", exc, actor=actor, user=user)
            raise
        self._trail.change("authorize", None, actor=actor, token_key=token.key, user=user)
        return string

    def _authorize_now(self, token: AuthToken, user: UserKey,
                       parent: TokenRecord | None, run_id: str | None) -> str:
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        if token.key is not None:
            raise InvalidArgument(
                f"token {token.key!r} is already authorized; create a new AuthToken"
            )
        check_expiring(token.expiry_spec.never, token.max_lifetime)
        now = self.now()
        policy = self._policy
        spec = default_spec(token.expiry_spec, token.max_lifetime, now)
        expires = child_expiry(spec, now, parent, token.scopes, policy)
        limits = new_limits(max_uses=token.max_uses, max_lifetime=token.max_lifetime,
                            expires=expires, now=now, parent=parent, policy=policy)
        if limits.max_uses is not None and not isinstance(self._repository, UseLimits):
            raise InvalidArgument(
                f"{type(self._repository).__name__} cannot count uses (it has no "
                "spend_use method): authorize the token without max_uses"
            )
        key = new_key()
        string, digest = self._codec.issue(key)
        record = new_record(token, key=key, digest=stored_digest(digest, limits.max_uses),
                            user=user, expires=expires, now=now, parent=parent,
                            limits=limits, run_id=run_id)
        self._insert(record, now)
        load_record(token, record)
        return string

    def _insert(self, record: TokenRecord, now: datetime) -> None:
        """Store a new record, under the policy's cap on live tokens per user."""
        if self._policy is None:
            self._repository.insert(record)
        else:
            self._policy.insert(self._repository, record, now)

    # -- read -------------------------------------------------------------------------
    def _overlay(self, record: TokenRecord) -> TokenRecord:
        """``record`` with the logins this engine still buffers."""
        pending = self._audit.pending(record.key)
        if pending is None:
            return record
        return with_usage(record, pending.logins, pending.last_used)

    def _with_usage(self, record: TokenRecord) -> AuthToken:
        return token_from_record(self._overlay(record))

    def _record_for(self, token_string: str | bytes) -> TokenRecord:
        key, digest = self._codec.read(token_string)
        record = self._repository.get(key)
        if record is None or not hmac.compare_digest(
                record.secret_hash, stored_digest(digest, record.max_uses)):
            raise InvalidToken("not a valid authtoken token string")
        return record

    def restore_auth_token(self, token_string: str | bytes) -> AuthToken:
        """The stored token for ``token_string``, even if expired or revoked.

        Raises ``InvalidToken`` for a string that is malformed, forged or unknown.
        """
        return self._with_usage(self._record_for(token_string))

    def get_auth_token(self, key: str, *, actor: Actor | None = None) -> AuthToken:
        """The token with ``key``; ``TokenNotFound`` if there is none.

        With ``actor``: ``PermissionDenied`` for a token the actor may not manage (and
        for an actor with no user); a read changes nothing, so it is not on the trail.
        """
        if actor is not None:
            require_user(actor)
        record = self._stored(key)
        if actor is not None:
            check_owner(actor, record.user)
            self._parent_of(actor)
        return self._with_usage(record)

    def list_auth_tokens(self, *, user: UserKey | None = None, include_revoked: bool = False,
                         run_id: str | None = None,
                         actor: Actor | None = None) -> list[AuthToken]:
        """Tokens of ``user`` (of everyone if ``None``), newest first; with ``run_id``,
        only the tokens made for that run.

        With ``actor``, ``user=None`` means the actor's own user -- everyone's for an
        admin actor with no user -- and another user needs an admin actor.
        """
        if run_id is not None and not isinstance(run_id, str):
            raise ArgumentTypeError(f"run_id is a str, not {type(run_id).__name__}")
        if actor is not None and not (user is None and actor.user is None and actor.admin):
            user = acting_user(actor, user,
                               refusal="only an admin can list another user's tokens")
            self._parent_of(actor)
        elif user is not None:
            user = check_user(user)
        return [self._with_usage(r) for r in self._repository.list(user, bool(include_revoked))
                if run_id is None or r.run_id == run_id]

    def explain_login(self, key: str, *, script: Script | None = None,
                      actor: Actor | None = None) -> LoginCheck:
        """What a login with the token ``key`` by ``script`` would get now, secret aside:
        a ``LoginCheck`` (``ok``, ``reason`` -- the ``LoginError`` class name -- and a
        ``message`` that says what to change).  For an owner who holds no string for
        the token.  Reads only: no use is spent, nothing is recorded.

        ``TokenNotFound`` for an unknown key (``TypeError`` for a non-``str``); with
        ``actor``, ``PermissionDenied`` for a token it may not manage.
        """
        if script is not None and not isinstance(script, Script):
            raise ArgumentTypeError(f"script must be a Script or None, not {type(script).__name__}")
        if actor is not None:
            require_user(actor)
        record = self._stored(key)
        if actor is not None:
            check_owner(actor, record.user)
            self._parent_of(actor)
        return explain(record, script, self.now())

    # -- change -----------------------------------------------------------------------
    def update_auth_token(self, token: AuthToken, *, actor: Actor | None = None) -> None:
        """Persist the token's ``scope``, ``data``, ``description`` and ``expires``.

        A relative expiry is measured from now.  Raises ``TokenNotFound``,
        ``TokenRevoked``, ``InvalidArgument`` for an expiry that is not in the future,
        and ``ConcurrentUpdate`` when the token changed since this object was read
        (read it again and retry).  Nothing is stored on failure.

        With ``actor``: ``PermissionDenied`` for a token the actor may not manage, and
        for a change of ``scope`` or ``expires`` that leaves the token wider than the
        token the actor logged in with (``description`` and ``data`` are always free).
        """
        if actor is None:
            self._update(token, None, None)
            return
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        stored: TokenRecord | None = None
        try:
            require_user(actor)
            stored = self._stored(token.key)
            check_owner(actor, stored.user)
            parent = self._parent_of(actor)
        except AuthTokenError as exc:
            self._trail.change("update", exc, actor=actor.name,
                               token_key=stored.key if stored else None,
                               user=stored.user if stored else None)
            raise
        self._update(token, parent, actor.name)

    def _update(self, token: AuthToken, parent: TokenRecord | None,
                actor: str | None) -> None:
        key = token.key if isinstance(token, AuthToken) else None
        base = read_record(token) if isinstance(token, AuthToken) else None
        owner = None if base is None else base.user
        try:
            self._update_now(token, parent)
        except AuthTokenError as exc:
            self._trail.change("update", exc, actor=actor, token_key=key, user=owner)
            raise
        self._trail.change("update", None, actor=actor, token_key=key, user=owner)

    def _update_now(self, token: AuthToken, parent: TokenRecord | None) -> None:
        """Write what ``updated_record`` makes of ``token`` on what storage holds now."""
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        key = check_key(token.key)
        base = read_record(token)
        for _attempt in range(5):
            record = updated_record(token, key=key, stored=self._repository.get(key),
                                    base=base, now=self.now(), parent=parent,
                                    policy=self._policy)
            new = self._repository.update(record)
            if new is not None:
                load_record(token, self._overlay(new))
                return
            # Someone wrote between our read and our write: look again.
        raise ConcurrentUpdate(
            f"token {key!r} keeps changing under this update; retry later",
            token_key=key,
        )

    # -- renew ------------------------------------------------------------------------
    def renew_auth_token(self, token_string: str | bytes, *, by: object = None,
                         actor: Actor | None = None) -> datetime:
        """Renew a token authorized with a ``max_lifetime``; return its new ``expires``.

        ``expires`` becomes ``min(now + by, created_at + max_lifetime)`` -- ``by`` (a
        duration) defaults to the token's first lifetime -- no later than its parent's
        expiry or the policy's cap, and never earlier than it was.  Raises
        ``InvalidToken``; ``InvalidArgument`` for a token that is not renewable;
        ``TokenRevoked``; ``TokenExpired``.  With ``actor``: ``PermissionDenied``
        unless it may manage the token -- a token session only its own token and
        those derived from it.
        """
        try:
            record = self._record_for(token_string)
        except InvalidToken:
            self._trail.invalid(None, "renew")
            raise
        return self._renew(record, by, actor)

    def renew_auth_token_by_key(self, key: str, *, by: object = None,
                                actor: Actor | None = None) -> datetime:
        """``renew_auth_token`` for the token with ``key`` (``TokenNotFound`` if none)."""
        try:
            if actor is not None:
                require_user(actor)
            record = self._stored(key)
        except AuthTokenError as exc:
            self._trail.change("renew", exc, actor=None if actor is None else actor.name,
                               token_key=shown_key(key) if isinstance(key, str) else None)
            raise
        return self._renew(record, by, actor)

    def _renew(self, record: TokenRecord, by: object, actor: Actor | None) -> datetime:
        try:
            if actor is not None:
                check_renewer(actor, record)
                self._parent_of(actor)
            expires = self._renew_now(record, by)
        except AuthTokenError as exc:
            self._trail.change("renew", exc, actor=None if actor is None else actor.name,
                               token_key=record.key, user=record.user)
            raise
        self._trail.change("renew", None, actor=None if actor is None else actor.name,
                           token_key=record.key, user=record.user)
        return expires

    def _renew_now(self, record: TokenRecord, by: object) -> datetime:
        for _attempt in range(5):
            key = record.parent_key
            parent = None if key is None else self._repository.get(key)
            now = self.now()
            expires = renewed_expiry(record, by, now, parent, self._policy)
            if expires == record.expires:
                return expires  # at its limit already: nothing to write
            if self._repository.update(replace(record, expires=expires, updated_at=now)):
                return expires
            record = self._stored(record.key)  # changed meanwhile: look again
        raise ConcurrentUpdate(f"token {record.key!r} keeps changing under this renewal; "
                               "retry later", token_key=record.key)

    def revoke_auth_token(self, token_string: str | bytes, *,
                          actor: Actor | None = None) -> None:
        """Revoke the token (and every token derived from it); idempotent.

        Raises ``InvalidToken`` for a string that is malformed, forged or unknown; with
        ``actor``, ``PermissionDenied`` for a token it may not manage (nothing revoked).
        """
        record: TokenRecord | None = None
        try:
            if actor is not None:
                require_user(actor)
            try:
                record = self._record_for(token_string)
            except InvalidToken:
                self._trail.invalid(None, "revoke")  # sampled, like logins
                raise
            if actor is not None:
                check_owner(actor, record.user)
                self._parent_of(actor)
        except InvalidToken:
            raise
        except AuthTokenError as exc:
            if actor is not None:
                self._trail.change("revoke", exc, actor=actor.name,
                                   token_key=record.key if record else None,
                                   user=record.user if record else None)
            raise
        self._revoke_key(record.key, owner=record.user,
                         actor=None if actor is None else actor.name)

    def revoke_auth_token_by_key(self, key: str, *, actor: Actor | None = None) -> None:
        """Revoke the token with ``key`` and its descendants; idempotent.

        Raises ``TokenNotFound`` if there is no such token; with ``actor``,
        ``PermissionDenied`` for a token it may not manage (nothing revoked).
        """
        if actor is None:
            self._revoke_key(key)
            return
        stored: TokenRecord | None = None
        try:
            require_user(actor)
            stored = self._stored(key)
            check_owner(actor, stored.user)
            self._parent_of(actor)
        except AuthTokenError as exc:
            self._trail.change("revoke", exc, actor=actor.name,
                               token_key=stored.key if stored else None,
                               user=stored.user if stored else None)
            raise
        self._revoke_key(key, owner=stored.user, actor=actor.name)

    def _revoke_key(self, key: str, *, owner: UserKey | None = None,
                    actor: str | None = None) -> None:
        shown = shown_key(key) if isinstance(key, str) else None
        try:
            key = check_key(key)
            if owner is None and is_token_key(key):  # the trail files it under its user
                record = self._repository.get(key)
                owner = None if record is None else record.user
            changed = (
                self._repository.revoke(key, to_micros(self.now()))
                if is_token_key(key) else None
            )
            if changed is None:
                raise TokenNotFound(not_found_message(key), token_key=shown)
        except AuthTokenError as exc:
            self._trail.change("revoke", exc, actor=actor, token_key=shown, user=owner)
            raise
        self._trail.change("revoke", None, actor=actor, token_key=shown, user=owner)

    def revoke_user_tokens(self, user: UserKey, *, actor: Actor | None = None) -> int:
        """Revoke every live token of ``user`` and, transitively, those derived from them.

        Returns how many tokens this call revoked.  With ``actor``: a non-admin actor
        may name only its own user, else ``PermissionDenied`` (nothing changes).
        """
        if actor is None:
            return self._revoke_user(user, None)
        try:
            owner = acting_user(actor, check_user(user),
                                refusal="only an admin can revoke another user's tokens")
            self._parent_of(actor)
        except AuthTokenError as exc:
            self._trail.change("revoke_all", exc, actor=actor.name, user=user)
            raise
        return self._revoke_user(owner, actor.name)

    def _revoke_user(self, user: UserKey, actor: str | None) -> int:
        try:
            count = self._repository.revoke_user(check_user(user), to_micros(self.now()))
        except AuthTokenError as exc:
            self._trail.change("revoke_all", exc, actor=actor,
                               user=user if isinstance(user, (int, str)) else None)
            raise
        self._trail.change("revoke_all", None, actor=actor, user=user)
        return count

    # -- log in -----------------------------------------------------------------------
    def login_by_auth_token(self, token_string: str | bytes, *,
                            script: Script | None = None) -> Principal:
        """Log in as the token's user.

        Checks the signature, existence, secret, revocation, expiry (expired when
        ``now >= expires``), script binding and -- for a token with ``max_uses`` --
        that a use is left, in that order, and raises the ``LoginError`` for the first
        that fails: ``InvalidToken``, ``TokenRevoked``, ``TokenExpired``,
        ``ScriptNotAuthorized`` or ``TokenExhausted``.  A refused login spends no use.
        """
        return self._gate.login(token_string, script)

    # -- audit trail, usage and life cycle -------------------------------------------
    def record_authentication_failure(self, *, actor: str | None, reason: str) -> None:
        """Put a failed authentication of an API caller on the audit trail.

        Action ``authenticate``, outcome ``refused``; ``actor`` names the caller (say
        ``address:<ip>``, at most 300 characters kept), ``reason`` the refusal (the
        error's class name, at most 64 characters kept).  Summed per actor, reason and
        minute and written with the next batch, like logins.
        """
        self._trail.failure(actor, reason)

    def audit_events(self, *, user: UserKey | None = None, token_key: str | None = None,
                     since: datetime | None = None, limit: int = 1000,
                     actor: Actor | None = None) -> list[AuditEvent]:
        """The audit trail, newest first, at most ``limit`` (≤ 10,000) events.

        ``user`` keeps the events about that user's tokens, ``token_key`` one token's,
        ``since`` those at or after it.  Every event this ``Security`` recorded before
        the call is written first, so it is seen.  Raises ``RepositoryError`` if storage
        fails.

        With ``actor``: a non-admin reads only its own user's events (``user=None``
        means its own), else ``PermissionDenied``; an admin reads anyone's.
        """
        if actor is not None:
            user = audit_user(actor, user)
            self._parent_of(actor)
        elif user is not None:
            user = check_user(user)
        since = check_query(token_key, since, limit)
        return self._trail.read(user=user, token_key=token_key, since=since, limit=limit)

    def prune_audit(self, *, before: datetime) -> int:
        """Drop the audit events recorded before ``before``; return how many.

        What this ``Security`` has buffered is written first, so no event escapes the
        prune by being late.  Raises ``InvalidArgument`` for a ``before`` later than now
        or a repository that cannot prune, ``RepositoryError`` if storage fails (what
        was dropped before the failure stays dropped).  Usage counts are not touched.
        """
        return self._trail.prune(check_before(before, self.now()))

    def flush(self) -> None:
        """Write buffered usage and audit events now.  On ``RepositoryError`` they are kept."""
        self._trail.flush()

    def close(self) -> None:
        """Write buffered usage and audit events and release the repository's connections.

        If storage cannot be reached they cannot be written: ``RepositoryError``
        is raised and the repository stays open, so ``close()`` may be retried.
        """
        self.flush()
        self._finalizer.detach()
        self._repository.close()
