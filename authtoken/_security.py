"""The engine: ``Security`` authorizes, stores, revokes and logs in with tokens.

Theory of operation
-------------------
A login checks, in this order and stopping at the first failure: the signature (no
storage touched, so forged strings cost nothing), existence and secret (one read by key,
then ``compare_digest`` of SHA-256 digests -- unknown, malformed and wrong-secret are all
the same ``InvalidToken``), revocation, expiry, script binding.  Only after the secret
matched does the caller learn that a token is revoked or expired.

Nothing about a token is cached: every login reads storage, so a revocation made by any
process is refused by the next login everywhere.  What a login *writes* -- usage and its
audit event -- is buffered in memory and written in batches, in one transaction (every
1,000 logins, every second of clock time, on ``flush()``/``close()``, when a forgotten
``Security`` is collected and at interpreter exit).  A batch that cannot be written is
kept whole and written again, under the same ``BatchId``, before anything newer, never
dropped; the id lets storage skip a batch whose commit landed but whose answer was lost,
so a retry never counts twice.  Reads through this ``Security`` add the
logins still buffered, so they look exact, and ``audit_events`` writes the buffered
events before it reads.

The audit trail: every change (authorize, update, revoke, revoke-all) and every refusal
of one writes its event at once; logins are batched as above; refusals of strings that
name no token are sampled (``SAMPLED_INVALID`` kept per batch, the rest counted).

Every decision about time uses the injected ``clock``.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, Final, NamedTuple

from ._clock import Clock, system_clock, system_micros
from ._codec import TokenCodec, new_key
from ._defaults import (
    default_database_path,
    default_database_url,
    default_key_path,
    default_secret_keys,
)
from ._errors import (
    ArgumentTypeError,
    AuthTokenError,
    ConcurrentUpdate,
    InvalidArgument,
    InvalidToken,
    RepositoryError,
    ScriptNotAuthorized,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from ._expiry import aware_utc, from_micros, to_micros
from ._redact import redact
from ._repository import (
    AuditEvent,
    BatchId,
    EventRow,
    MemoryRepository,
    Repository,
    Usage,
    new_writer,
)
from ._scopes import Script
from ._shape import is_token_key
from ._token import AuthToken, Principal, TokenRecord, UserKey, check_user

__all__ = [
    "Security",
    "default_database_path",
    "default_database_url",
    "default_key_path",
    "open_security",
]

FLUSH_EVERY_LOGINS: Final = 1000
FLUSH_EVERY_MICROS: Final = 1_000_000
# Vets an update before it is written: (stored, resulting record, names of the changed
# fields) -> None, or raises.
_UpdateCheck = Callable[[TokenRecord, TokenRecord, "set[str]"], None]
_BINDING_PREFIXES = ("vfs:", "ufs:")


def shown_key(key: str) -> str | None:
    """``key`` if it is safe to show; something else -- a pasted token string, its
    secret -- is never echoed."""
    return key if is_token_key(key) else None


def not_found_message(key: str) -> str:
    if is_token_key(key):
        return f"no token with key {key!r}"
    return ("no token with that key: a token key is 16 characters of a-z and 2-7, as "
            "'authtoken list' shows (not shown here, in case it was a token string)")


def _check_key(key: object) -> str:
    if key is None:
        raise TokenNotFound("no token key given (the token was never authorized?)")
    if not isinstance(key, str):
        raise ArgumentTypeError(f"a token key is a str, not {type(key).__name__}")
    return key


# Per batch, the login events of one token, script and outcome kept one by one; the rest
# are counted in one summary event.  Refusals of unknown or forged strings: likewise, but
# for all of them together.
SAMPLED_LOGINS: Final = 10
SAMPLED_INVALID: Final = 10
AUDIT_LIMIT: Final = 10_000
# Events held while storage cannot take them; beyond, new events are only counted (and
# the count logged).  Usage counts are never dropped.
MAX_BUFFERED_EVENTS: Final = 100_000
log = logging.getLogger("authtoken")


class _Batch(NamedTuple):
    """Usage and events taken from the buffer to be written together, under ``id``."""

    id: BatchId
    usage: dict[str, Usage]
    events: list[EventRow]


class _Activity:
    """Usage counts and audit events waiting to be written, in one batch.

    Thread-safe; a batch is written in one repository transaction (``record_usage``), so
    the login path adds one write per batch, not two.  A batch that cannot be written is
    kept whole, with its id, and written again before any newer one: no count and no
    event is lost, and none is written twice (the repository skips an id it has).

    Login events are sampled so that neither a busy token nor garbage can flood the
    store: per batch, the first ``SAMPLED_LOGINS`` events of one (token, script, outcome)
    are kept one by one and the others counted in one summary event (``count``, the time
    of the last); the first ``SAMPLED_INVALID`` refusals of unknown or forged strings
    are kept and the others counted per action and script.  A batch is due every
    ``FLUSH_EVERY_LOGINS`` login attempts or ``FLUSH_EVERY_MICROS``.
    """

    __slots__ = ("_attempts", "_dropped", "_events", "_extra", "_first", "_flush_lock",
                 "_kept", "_lock", "_number", "_pid", "_room", "_sampled", "_samples",
                 "_usage", "_writer")

    def __init__(self) -> None:
        self._usage: dict[str, list[int]] = {}  # key -> [logins, last at]
        self._events: list[EventRow] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._attempts = 0  # login attempts naming a token, this batch
        self._first: int | None = None  # when the oldest waiting entry was added
        # (action, token key, script, reason, actor) -> [kept, counted, last at, user]
        self._samples: dict[tuple[str, str | None, Script | None, str | None, str | None],
                            list[Any]] = {}
        self._dropped = 0  # events not kept: the buffer was full
        self._sampled = 0
        self._extra: dict[tuple[str, Script | None], list[int]] = {}  # -> [count, last at]
        self._kept: _Batch | None = None  # a batch whose write failed: next to write
        self._room = MAX_BUFFERED_EVENTS  # events the buffer takes, beside the kept batch
        self._writer, self._number, self._pid = new_writer(), 0, os.getpid()

    def _due(self, at: int) -> bool:
        # caller holds _lock
        if self._first is None:
            self._first = at
        return (self._attempts >= FLUSH_EVERY_LOGINS
                or len(self._events) >= FLUSH_EVERY_LOGINS
                or at - self._first >= FLUSH_EVERY_MICROS)

    def _count_use(self, key: str, at: int) -> None:
        # caller holds _lock
        entry = self._usage.get(key)
        if entry is None:
            self._usage[key] = [1, at]
        else:
            entry[0] += 1
            if at > entry[1]:
                entry[1] = at

    def login(self, key: str, at: int, user: UserKey, script: Script | None,
              reason: str | None = None) -> bool:
        """Count one login attempt with token ``key`` -- successful when ``reason`` is
        ``None``, else refused for ``reason`` -- and its event; ``True`` when a batch is
        due."""
        with self._lock:
            if reason is None:
                self._count_use(key, at)
            self._attempts += 1
            if self._sample(("login", key, script, reason, None), at, user):
                self._keep((at, "login", "ok" if reason is None else "refused",
                            None, key, user, script, reason, 1))
            return self._due(at)

    def _sample(self, what: tuple[str, str | None, Script | None, str | None, str | None],
                at: int, user: UserKey | None) -> bool:
        """Count one event of kind ``what``: ``True`` to keep it one by one."""
        # caller holds _lock
        sample = self._samples.get(what)
        if sample is None:
            self._samples[what] = [1, 0, at, user]
            return True
        if sample[0] < SAMPLED_LOGINS:
            sample[0] += 1
            return True
        sample[1] += 1
        sample[2] = at
        return False

    def _keep(self, event: EventRow) -> None:
        # caller holds _lock
        if len(self._events) < self._room:
            self._events.append(event)
        else:
            self._dropped += 1

    def event(self, event: EventRow) -> bool:
        """Keep one audit event; ``True`` when a batch is due."""
        with self._lock:
            self._keep(event)
            return self._due(event[0])

    def failure(self, at: int, actor: str | None, reason: str) -> bool:
        """A failed authentication of an API caller, sampled per caller and reason."""
        with self._lock:
            if self._sample(("authenticate", None, None, reason, actor), at, None):
                self._keep((at, "authenticate", "refused", actor, None, None, None, reason,
                            1))
            return self._due(at)

    def invalid(self, at: int, script: Script | None, action: str) -> bool:
        """Count a refusal of an unknown or forged token string (sampled)."""
        with self._lock:
            if self._sampled < SAMPLED_INVALID:
                self._sampled += 1
                self._keep((at, action, "refused", None, None, None, script, "InvalidToken",
                            1))
            else:
                entry = self._extra.get((action, script))
                if entry is None:
                    if len(self._extra) >= SAMPLED_INVALID:  # many scripts: count them all
                        script = None
                        entry = self._extra.setdefault((action, None), [0, at])
                    else:
                        entry = self._extra[action, script] = [0, at]
                entry[0] += 1
                entry[1] = max(entry[1], at)
            return self._due(at)

    def pending(self, key: str) -> tuple[int, int] | None:
        with self._lock:
            entry = self._usage.get(key)
            kept = self._kept
        old = None if kept is None else kept.usage.get(key)
        if old is None:
            return None if entry is None else (entry[0], entry[1])
        if entry is None:
            return old.logins, old.last_used
        return entry[0] + old.logins, max(entry[1], old.last_used)

    def flush(self, repository: Repository, *, wait: bool) -> None:
        """Write what is buffered: a batch kept from a failed write first, under its own
        id, then a new batch of the rest.  On failure the batch is kept and the error
        raised."""
        if not self._flush_lock.acquire(blocking=wait):
            return  # another thread is writing; it will take ours next time
        try:
            kept = self._kept
            if kept is not None and not self._write(repository, kept):
                return
            batch = self._take()
            if batch is not None:
                self._write(repository, batch)
        finally:
            self._flush_lock.release()

    def _take(self) -> _Batch | None:
        """Empty the buffer into a new batch with the next id (``None``: nothing)."""
        # caller holds _flush_lock
        if self._pid != os.getpid():  # a forked child: its batches are not the parent's
            self._writer, self._number, self._pid = new_writer(), 0, os.getpid()
        with self._lock:
            usage, events = self._usage, self._events
            events.extend(
                (at, action, "ok" if reason is None else "refused", actor, key, user,
                 script, reason, counted)
                for (action, key, script, reason, actor), (_, counted, at, user)
                in self._samples.items()
                if counted
            )
            dropped, self._dropped = self._dropped, 0
            events.extend(
                (at, action, "refused", None, None, None, script, "InvalidToken", count)
                for (action, script), (count, at) in self._extra.items()
            )
            self._usage, self._events, self._samples, self._extra = {}, [], {}, {}
            self._attempts = self._sampled = 0
            self._first = None
        if dropped:
            log.warning("authtoken: %d audit events were not kept: storage could not "
                        "take them and the buffer was full", dropped)
        if not usage and not events:
            return None
        self._number += 1
        return _Batch(BatchId(self._writer, self._number),
                      {k: Usage(v[0], v[1]) for k, v in usage.items()}, events)

    def _write(self, repository: Repository, batch: _Batch) -> bool:
        """Write ``batch``; ``True`` if written, ``False`` if kept (and logged)."""
        # caller holds _flush_lock
        try:
            if _takes_batch_ids(repository):
                repository.record_usage(batch.usage, batch.events, batch=batch.id)
            else:  # a repository written before batch ids: as before, without one
                repository.record_usage(batch.usage, batch.events)
        except RepositoryError:
            self._keep_batch(batch)  # storage is down, or its answer was lost: all waits
            raise
        except Exception:
            # Not storage being down but something in the batch it cannot take: keep
            # the counts, drop the events rather than fail every batch after.
            self._keep_batch(batch._replace(events=[]))
            log.exception("authtoken: %d audit events could not be written and were "
                          "dropped", len(batch.events))
            return False
        except BaseException:
            self._keep_batch(batch)
            raise
        if self._kept is not None:
            with self._lock:
                self._kept, self._room = None, MAX_BUFFERED_EVENTS
        return True

    def _keep_batch(self, batch: _Batch) -> None:
        """Keep ``batch`` to be written again, whole and under its id, before anything
        newer: merged into newer counts, a batch whose commit landed unseen could not
        be recognised when written again."""
        with self._lock:
            if not batch.usage and not batch.events:  # nothing left worth keeping
                self._kept, self._room = None, MAX_BUFFERED_EVENTS
                return
            if self._kept is None:  # a first failure: the next batch is due as before
                self._attempts += sum(u.logins for u in batch.usage.values())
                if self._first is None:
                    self._first = min([e[0] for e in batch.events]
                                      + [u.last_used for u in batch.usage.values()])
            self._kept = batch
            self._room = MAX_BUFFERED_EVENTS - len(batch.events)


def _takes_batch_ids(repository: Repository) -> bool:
    """Whether ``repository.record_usage`` takes ``batch`` (checked per batch, not login)."""
    import inspect

    try:
        parameters = inspect.signature(repository.record_usage).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the current protocol
        return True
    return any(p.name == "batch" or p.kind is p.VAR_KEYWORD for p in parameters)


def _flush_quietly_now(activity: _Activity, repository: Repository) -> None:
    try:
        activity.flush(repository, wait=True)
    except Exception:  # noqa: S110 - a forgotten Security: nobody is left to tell
        pass


def _flush_forgotten(activity: _Activity, repository: Repository) -> None:
    """Write what a ``Security`` that was never closed still holds.

    Runs when the ``Security`` is garbage-collected or at interpreter exit.  The garbage
    collector may run this in the middle of any code of the collecting thread -- even in
    the middle of a schema migration -- so the write happens in a thread of its own (not
    a daemon: the interpreter waits for it at exit).  Where no thread can be started any
    more, it happens here.
    """
    if threading.current_thread() is threading.main_thread() \
            and not threading.main_thread().is_alive():  # atexit: nothing to re-enter
        _flush_quietly_now(activity, repository)
        return
    try:
        threading.Thread(target=_flush_quietly_now, args=(activity, repository),
                         name="authtoken-flush", daemon=False).start()
    except RuntimeError:  # the interpreter is shutting down
        _flush_quietly_now(activity, repository)


class Security:
    """The token engine over one ``Repository``.

    ``Security(repository, *, secret_keys, clock=None)``: ``secret_keys`` is one key or
    a list, newest first (the first signs, all verify); ``clock`` returns the current
    aware UTC ``datetime`` and decides every expiry.  Use as a context manager, or call
    ``close()``, so buffered usage and audit events are written.
    """

    def __init__(
        self,
        repository: Repository,
        *,
        secret_keys: str | bytes | Sequence[str | bytes],
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(repository, Repository):
            raise ArgumentTypeError(
                f"repository must implement authtoken.Repository, not "
                f"{type(repository).__name__}"
            )
        if clock is not None and not callable(clock):
            raise ArgumentTypeError("clock must be a callable returning an aware datetime")
        self._repository = repository
        self._codec = TokenCodec(secret_keys)
        self._clock: Clock = clock or system_clock
        # The login path needs only microseconds; with the system clock it skips the
        # datetime round trip.
        self._now_us: Callable[[], int] = (
            system_micros if clock is None else (lambda: to_micros(self.now()))
        )
        self._activity = _Activity()
        self._finalizer = weakref.finalize(self, _flush_forgotten, self._activity, repository)

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

    def derive_key(self, purpose: str | bytes) -> bytes:
        """A 256-bit key for one ``purpose`` (say, signing a page's CSRF tokens).

        Derived from the newest secret key, so every process sharing the secret keys
        derives the same key for the same purpose, and a new newest key gives new
        derived keys.  It is never a signing key itself, and reveals nothing of the
        secret keys or of token signatures.  ``purpose`` as ``str`` is its UTF-8 bytes.
        """
        if isinstance(purpose, str):
            purpose = purpose.encode("utf-8")
        if not isinstance(purpose, bytes):
            raise ArgumentTypeError(f"purpose is a str, not {type(purpose).__name__}")
        return self._codec.derive(purpose)

    def now(self) -> datetime:
        """The engine's current time (its clock, as aware UTC)."""
        now = self._clock()
        if not isinstance(now, datetime):
            raise ArgumentTypeError("the clock must return a datetime")
        return aware_utc(now)

    # -- authorize --------------------------------------------------------------------
    def authorize_token(self, token: AuthToken, *, user: UserKey) -> str:
        """Store ``token`` for ``user``, set ``token.key``; return the token string.

        The string is shown this once: storage keeps only a digest of its secret.
        Raises ``InvalidArgument`` if the token is already authorized or its expiry is
        not in the future; nothing is stored then.
        """
        return self._authorize(token, check_user(user), parent=None)

    def _authorize(self, token: AuthToken, user: UserKey, parent: str | None = None,
                   vet: Callable[[datetime | None], None] | None = None,
                   expiry_cap: datetime | None = None, actor: str | None = None) -> str:
        """Authorize ``token``; ``vet`` sees the resolved expiry before anything is stored."""
        try:
            string = self._authorize_now(token, user, parent, vet, expiry_cap)
        except AuthTokenError as exc:
            self._record_event("authorize", exc, actor=actor, user=user)
            raise
        self._record_event("authorize", None, actor=actor, token_key=token.key, user=user)
        return string

    def _authorize_now(self, token: AuthToken, user: UserKey, parent: str | None,
                       vet: Callable[[datetime | None], None] | None,
                       expiry_cap: datetime | None) -> str:
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        if token.key is not None:
            raise InvalidArgument(
                f"token {token.key!r} is already authorized; create a new AuthToken"
            )
        now = self.now()
        spec = token.expiry_spec
        expires = spec.resolve(now)
        if spec.is_default and expiry_cap is not None and (expires is None or expires > expiry_cap):
            expires = expiry_cap
        if vet is not None:
            vet(expires)  # the very value that is stored: no second reading of the clock
        if expires is not None and expires <= now:
            raise InvalidArgument(
                f"expires {expires.isoformat()} is not in the future; give a later time "
                "or a duration such as '30d'"
            )
        key = new_key()
        string, digest = self._codec.issue(key)
        record = TokenRecord(
            key=key, user=user, scope=token.scope, data=token.data,
            description=token.description, expires=expires, created_at=now,
            updated_at=now, revoked_at=None, last_used_at=None, use_count=0,
            parent_key=parent, secret_hash=digest, version=1,
        )
        self._repository.insert(record)
        token._load(record)
        return string

    # -- read -------------------------------------------------------------------------
    def _overlay(self, record: TokenRecord) -> TokenRecord:
        pending = self._activity.pending(record.key)
        if pending is None:
            return record
        count, last = pending
        when = from_micros(last)
        return replace(
            record,
            use_count=record.use_count + count,
            last_used_at=when if record.last_used_at is None or when > record.last_used_at
            else record.last_used_at,
        )

    def _with_usage(self, record: TokenRecord) -> AuthToken:
        return AuthToken._from_record(self._overlay(record))

    def _record_for(self, token_string: str | bytes) -> TokenRecord:
        key, digest = self._codec.read(token_string)
        record = self._repository.get(key)
        if record is None or not hmac.compare_digest(record.secret_hash, digest):
            raise InvalidToken("not a valid authtoken token string")
        return record

    def restore_auth_token(self, token_string: str | bytes) -> AuthToken:
        """The stored token for ``token_string``, even if expired or revoked.

        Raises ``InvalidToken`` for a string that is malformed, forged or unknown.
        """
        return self._with_usage(self._record_for(token_string))

    def get_auth_token(self, key: str) -> AuthToken:
        """The token with ``key``; ``TokenNotFound`` if there is none."""
        key = _check_key(key)
        record = self._repository.get(key) if is_token_key(key) else None
        if record is None:
            raise TokenNotFound(not_found_message(key), token_key=shown_key(key))
        return self._with_usage(record)

    def list_auth_tokens(self, *, user: UserKey | None = None,
                         include_revoked: bool = False) -> list[AuthToken]:
        """Tokens of ``user`` (of everyone if ``None``), newest first."""
        if user is not None:
            user = check_user(user)
        return [self._with_usage(r) for r in self._repository.list(user, bool(include_revoked))]

    # -- change -----------------------------------------------------------------------
    def update_auth_token(self, token: AuthToken) -> None:
        """Persist the token's ``scope``, ``data``, ``description`` and ``expires``.

        A relative expiry is measured from now.  Raises ``TokenNotFound``,
        ``TokenRevoked``, ``InvalidArgument`` for an expiry that is not in the future,
        and ``ConcurrentUpdate`` when the token changed since this object was read
        (read it again and retry).  Nothing is stored on failure.
        """
        self._update(token, check=None)

    def _update(self, token: AuthToken, check: _UpdateCheck | None,
                actor: str | None = None) -> None:
        key = token.key if isinstance(token, AuthToken) else None
        owner = token._base.user if isinstance(token, AuthToken) and token._base else None
        try:
            self._update_now(token, check)
        except AuthTokenError as exc:
            self._record_event("update", exc, actor=actor, token_key=key, user=owner)
            raise
        self._record_event("update", None, actor=actor, token_key=key, user=owner)

    def _update_now(self, token: AuthToken, check: _UpdateCheck | None) -> None:
        """Write the fields assigned on ``token`` on top of what storage holds now.

        Only assigned fields are written, so two writers changing different fields
        both win.  If another writer changed a field this one also assigned, since this
        object was read, that is ``ConcurrentUpdate``: nobody's change is silently lost.
        """
        if not isinstance(token, AuthToken):
            raise ArgumentTypeError(f"expected an AuthToken, not {type(token).__name__}")
        key = _check_key(token.key)
        base = token._base
        for _attempt in range(5):
            stored = self._repository.get(key)
            if stored is None or base is None:
                raise TokenNotFound(not_found_message(key), token_key=shown_key(key))
            if stored.revoked_at is not None:
                raise TokenRevoked("the token is revoked and cannot be updated",
                                   token_key=key, revoked_at=stored.revoked_at)
            now = self.now()
            changes = token._changes(now)
            clashes = sorted(
                name for name, value in changes.items()
                if getattr(stored, name) != getattr(base, name)
                and getattr(stored, name) != value
            )
            if clashes:
                raise ConcurrentUpdate(
                    f"token {key!r} had its {', '.join(clashes)} changed by someone else "
                    "since it was read; read it again with get_auth_token and reapply "
                    "the change",
                    token_key=key,
                )
            expires = changes.get("expires")
            if isinstance(expires, datetime) and expires <= now:
                raise InvalidArgument(
                    f"expires {expires.isoformat()} is not in the future; give a later "
                    "time or a duration such as '30d'"
                )
            record = replace(stored, updated_at=now, **changes)  # type: ignore[arg-type]
            if check is not None:
                check(stored, record, set(changes))
            new = self._repository.update(record)
            if new is not None:
                token._load(self._overlay(new))
                return
            # Someone wrote between our read and our write: look again.
        raise ConcurrentUpdate(
            f"token {key!r} keeps changing under this update; retry later",
            token_key=key,
        )

    def revoke_auth_token(self, token_string: str | bytes) -> None:
        """Revoke the token (and every token derived from it); idempotent.

        Raises ``InvalidToken`` for a string that is malformed, forged or unknown.
        """
        try:
            record = self._record_for(token_string)
        except InvalidToken:
            self._note_invalid(None, "revoke")  # sampled, like logins
            raise
        self._revoke_key(record.key, owner=record.user)

    def revoke_auth_token_by_key(self, key: str) -> None:
        """Revoke the token with ``key`` and its descendants; idempotent.

        Raises ``TokenNotFound`` if there is no such token.
        """
        self._revoke_key(key)

    def _revoke_key(self, key: str, *, owner: UserKey | None = None,
                    actor: str | None = None) -> None:
        shown = shown_key(key) if isinstance(key, str) else None
        try:
            key = _check_key(key)
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
            self._record_event("revoke", exc, actor=actor, token_key=shown, user=owner)
            raise
        self._record_event("revoke", None, actor=actor, token_key=shown, user=owner)

    def revoke_user_tokens(self, user: UserKey) -> int:
        """Revoke every live token of ``user`` and, transitively, those derived from them.

        Returns how many tokens this call revoked.
        """
        return self._revoke_user(user)

    def _revoke_user(self, user: UserKey, actor: str | None = None) -> int:
        try:
            count = self._repository.revoke_user(check_user(user), to_micros(self.now()))
        except AuthTokenError as exc:
            self._record_event("revoke_all", exc, actor=actor,
                              user=user if isinstance(user, (int, str)) else None)
            raise
        self._record_event("revoke_all", None, actor=actor, user=user)
        return count

    # -- log in -----------------------------------------------------------------------
    def login_by_auth_token(self, token_string: str | bytes, *,
                            script: Script | None = None) -> Principal:
        """Log in as the token's user.

        Checks the signature, existence, secret, revocation, expiry (expired when
        ``now >= expires``) and script binding, in that order, and raises the
        ``LoginError`` for the first that fails: ``InvalidToken``, ``TokenRevoked``,
        ``TokenExpired`` or ``ScriptNotAuthorized``.  Nothing is written on failure.
        """
        if script is not None and not isinstance(script, Script):
            raise ArgumentTypeError(f"script must be a Script or None, not {type(script).__name__}")
        try:
            key, digest = self._codec.read(token_string)
        except InvalidToken:
            self._note_invalid(script)
            raise
        row = self._repository.login_row(key)
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            self._note_invalid(script)
            raise InvalidToken("not a valid authtoken token string")
        now_us = self._now_us()
        if row.revoked_at is not None:
            self._note_login(now_us, key, row.user, script, "TokenRevoked")
            raise TokenRevoked("the token was revoked", token_key=key,
                               revoked_at=from_micros(row.revoked_at))
        if row.expires is not None and now_us >= row.expires:
            self._note_login(now_us, key, row.user, script, "TokenExpired")
            expired_at = from_micros(row.expires)
            raise TokenExpired(f"the token expired at {expired_at.isoformat()}",
                               token_key=key, expired_at=expired_at)
        scope = row.scope
        scopes = tuple(scope.split(" "))
        if "vfs:" in scope or "ufs:" in scope:
            bindings = [s for s in scopes if s[:4] in _BINDING_PREFIXES]
            if bindings and (script is None or script._identifiers.isdisjoint(bindings)):
                self._note_login(now_us, key, row.user, script, "ScriptNotAuthorized")
                raise ScriptNotAuthorized(
                    "the token is bound to other scripts" if script is not None
                    else "the token is bound to scripts: log in with the Script using it",
                    token_key=key,
                )
        if self._activity.login(key, now_us, row.user, script):
            self._flush_quietly()
        return Principal(
            user=row.user, token_key=key, scopes=scopes, data=row.data,
            expires=None if row.expires is None else from_micros(row.expires),
            script=script,
        )

    # -- audit trail, usage and life cycle -------------------------------------------
    def _note_invalid(self, script: Script | None, action: str = "login") -> None:
        # Never writes: a forged string is refused without touching storage.  The next
        # batch of a real login, flush(), close() or an audit read writes it.
        self._activity.invalid(self._now_us(), script, action)

    def _note_login(self, at: int, key: str, user: UserKey, script: Script | None,
                    reason: str) -> None:
        if self._activity.login(key, at, user, script, reason):
            self._flush_quietly()

    def _record_event(self, action: str, error: BaseException | None, *,
                      actor: str | None = None, token_key: str | None = None,
                      user: object = None, script: Script | None = None) -> None:
        """Put an event of a change (or a refused one) on the trail and write it now.

        ``error`` is what refused the action, ``None`` for success.  A trail that cannot
        be written keeps the event for a later batch; the change itself stands.
        """
        if isinstance(error, RepositoryError):
            return  # storage failed: nothing was refused, and nothing can be written
        try:
            user = None if user is None else check_user(user)
        except (ArgumentTypeError, InvalidArgument):
            user = None  # a refusal for a bad user: the trail keeps the rest
        self._activity.event((
            self._now_us(), action, "ok" if error is None else "refused",
            None if actor is None else str(actor)[:300], token_key, user, script,
            None if error is None else type(error).__name__, 1,
        ))
        try:
            self._activity.flush(self._repository, wait=True)
        except RepositoryError:
            pass  # kept in the buffer; written by a later batch or flush()

    def record_authentication_failure(self, *, actor: str | None, reason: str) -> None:
        """Put a failed authentication of an API caller on the audit trail.

        Action ``authenticate``, outcome ``refused``; ``actor`` names the caller (say
        ``address:<ip>``, at most 300 characters kept), ``reason`` the refusal (the
        error's class name, at most 64 characters kept).  Sampled per actor and reason
        and written with the next batch, like logins.
        """
        if self._activity.failure(self._now_us(),
                                  None if actor is None else str(actor)[:300],
                                  str(reason)[:64]):
            self._flush_quietly()

    _record_authentication_failure = record_authentication_failure  # until the admin app moves

    def audit_events(self, *, user: UserKey | None = None, token_key: str | None = None,
                     since: datetime | None = None, limit: int = 1000) -> list[AuditEvent]:
        """The audit trail, newest first, at most ``limit`` (≤ 10,000) events.

        ``user`` keeps the events about that user's tokens, ``token_key`` one token's,
        ``since`` those at or after it.  Every event this ``Security`` recorded before
        the call is written first, so it is seen.  Raises ``RepositoryError`` if storage
        fails.
        """
        if user is not None:
            user = check_user(user)
        if token_key is not None and not isinstance(token_key, str):
            raise ArgumentTypeError(f"token_key is a str, not {type(token_key).__name__}")
        if since is not None:
            if not isinstance(since, datetime):
                raise ArgumentTypeError(f"since is a datetime, not {type(since).__name__}")
            since = aware_utc(since)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ArgumentTypeError(f"limit is an int, not {type(limit).__name__}")
        if not 1 <= limit <= AUDIT_LIMIT:
            raise InvalidArgument(f"limit is from 1 to {AUDIT_LIMIT}, not {limit}")
        self._activity.flush(self._repository, wait=True)
        return self._repository.events(user=user, token_key=token_key, since=since,
                                       limit=limit)

    def _flush_quietly(self) -> None:
        try:
            self._activity.flush(self._repository, wait=False)
        except RepositoryError:
            pass  # kept in the buffer; written by a later batch or flush()

    def flush(self) -> None:
        """Write buffered usage and audit events now.  On ``RepositoryError`` they are kept."""
        self._activity.flush(self._repository, wait=True)

    def close(self) -> None:
        """Write buffered usage and audit events and release the repository's connections.

        If storage cannot be reached they cannot be written: ``RepositoryError``
        is raised and the repository stays open, so ``close()`` may be retried.
        """
        self.flush()
        self._finalizer.detach()
        self._repository.close()


# -- open_security (the default store lives in _defaults) ---------------------------------
def open_repository(url: str) -> Repository:
    """The repository for a URL: ``memory://``, ``sqlite:///…`` or ``postgresql://…``."""
    if not isinstance(url, str):
        raise ArgumentTypeError(f"a database URL is a str, not {type(url).__name__}")
    scheme = url.split(":", 1)[0].lower()
    if url == "memory://" or scheme == "memory":
        return MemoryRepository()
    base = scheme.split("+", 1)[0]
    if base in ("sqlite", "postgresql", "postgres"):
        from ._sql import SQLRepository

        if base == "postgres":
            url = "postgresql" + url[len("postgres"):]
        return SQLRepository(url)
    raise InvalidArgument(
        f"unsupported database URL scheme {scheme[:20]!r}: use 'memory://', "
        "'sqlite:///path.db' or 'postgresql://user@host/db'"
    )


def open_security(
    url: str | None = None,
    *,
    secret_keys: str | bytes | Iterable[str | bytes] | None = None,
    clock: Clock | None = None,
) -> Security:
    """A ``Security`` over the database at ``url``; also a context manager.

    ``url`` defaults to ``AUTHTOKEN_DATABASE_URL``, else the embedded SQLite file at
    ``default_database_path()``.  ``secret_keys`` default to ``AUTHTOKEN_SECRET_KEYS``
    (comma-separated, newest first), else the key file at ``default_key_path()``,
    created with mode 0600 on first use.  The default folder is created 0700; a folder
    of another user or one that others can write, and a key file that is not a regular
    file of the current user closed to everyone else, are refused with
    ``InvalidArgument`` saying how to fix them (see ``authtoken._defaults``).
    ``RepositoryError`` when storage cannot be reached or a file cannot be read.
    """
    keys: str | bytes | list[str | bytes]
    if secret_keys is None:
        keys = list(default_secret_keys())
    elif isinstance(secret_keys, (str, bytes)):
        keys = secret_keys
    else:
        keys = list(secret_keys)
    repository = open_repository(default_database_url() if url is None else url)
    try:
        return Security(repository, secret_keys=keys, clock=clock)
    except BaseException:
        repository.close()
        raise
