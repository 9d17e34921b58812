"""The audit trail of an engine (``Trail``): recording, reading and pruning events.

``Trail`` is the engine's side of the ``AuditBuffer`` (``_audit``): what is buffered,
what is written at once.  ``Security.audit_events`` and ``Security.prune_audit`` check
their arguments here too (``check_query``, ``check_before``).  Pruning is optional for
a repository: one that can drop old events has ``prune_events(before)``
(``MemoryRepository`` and ``SQLRepository`` do); a repository of one's own without it
is refused a prune with a clear error rather than ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final, Protocol, runtime_checkable

from ._audit import AuditBuffer, change_event
from ._errors import ArgumentTypeError, InvalidArgument, RepositoryError
from ._expiry import aware_utc, to_micros
from ._repository import AuditEvent, Repository
from ._scopes import Script
from ._token import Principal, UserKey

__all__ = ["AUDIT_LIMIT", "Pruning", "Trail", "check_before", "check_query"]

AUDIT_LIMIT: Final = 10_000


@runtime_checkable
class Pruning(Protocol):
    """A repository that can drop old audit events."""

    def prune_events(self, before: int) -> int:
        """Drop every audit event recorded before ``before`` (µs); return how many."""


def check_query(token_key: object, since: object, limit: object) -> datetime | None:
    """Check a trail query's filters; return ``since`` as aware UTC."""
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
    return since


def check_before(before: object, now: datetime) -> int:
    """``before`` of a prune, as µs: a datetime not later than ``now``."""
    if not isinstance(before, datetime):
        raise ArgumentTypeError(f"before is a datetime, not {type(before).__name__}")
    before = aware_utc(before)
    if before > now:
        raise InvalidArgument(
            f"before {before.isoformat()} is in the future: a prune drops only events "
            "older than a time that has passed, such as 90 days ago"
        )
    return to_micros(before)


class Trail:
    """The audit trail of one engine: it records events into the engine's
    ``AuditBuffer`` and decides when they are written.

    Logins and refusals of unknown strings are buffered and written with the next
    batch (a batch that comes due is written at once, but a failure to write it never
    fails the login); a change's event is written at once, while its caller waits; a
    read or a prune writes what is buffered first, so it sees every event recorded
    before it.  ``now_us`` is the engine's clock in microseconds.
    """

    __slots__ = ("_buffer", "_now_us", "_repository")

    def __init__(self, buffer: AuditBuffer, repository: Repository,
                 now_us: Callable[[], int]) -> None:
        self._buffer = buffer
        self._repository = repository
        self._now_us = now_us

    def invalid(self, script: Script | None, action: str = "login") -> None:
        """A refusal of a string that names no token.  Never writes: a forged string is
        refused without touching storage; the next batch carries it."""
        self._buffer.invalid(self._now_us(), script, action)

    def login(self, at: int, key: str, user: UserKey, script: Script | None,
              reason: str | None = None, *, counted: bool = True) -> None:
        """A login with ``key``, successful when ``reason`` is ``None`` (``counted``:
        its use is buffered too, see ``AuditBuffer.login``)."""
        if self._buffer.login(key, at, user, script, reason, counted=counted):
            self.flush_quietly()

    def change(self, action: str, error: BaseException | None, *,
               actor: str | None = None, token_key: str | None = None,
               user: object = None) -> None:
        """A change (or a refused one: ``error``), written now.  A trail that cannot be
        written keeps the event for a later batch; the change itself stands."""
        if isinstance(error, RepositoryError):
            return  # storage failed: nothing was refused, and nothing can be written
        self._buffer.event(change_event(self._now_us(), action, error, actor=actor,
                                        token_key=token_key, user=user))
        try:
            self._buffer.flush(self._repository, wait=True)
        except RepositoryError:
            pass  # kept in the buffer; written by a later batch or flush()

    def upstream(self, at: int, principal: Principal, name: str,
                 reason: str | None = None) -> None:
        """An upstream access token given to ``principal``'s session for link ``name``
        (refused: ``reason``), buffered and summed like a login; never the token."""
        if self._buffer.upstream(at, principal.token_key, principal.user, principal.script,
                                 name, reason):
            self.flush_quietly()

    def failure(self, actor: str | None, reason: str) -> None:
        """A failed authentication of an API caller, summed per caller and reason."""
        if self._buffer.failure(self._now_us(), None if actor is None else str(actor)[:300],
                                str(reason)[:64]):
            self.flush_quietly()

    def read(self, *, user: UserKey | None, token_key: str | None,
             since: datetime | None, limit: int) -> list[AuditEvent]:
        """The newest ``limit`` events that pass the filters, after writing the buffer."""
        self._buffer.flush(self._repository, wait=True)
        return self._repository.events(user=user, token_key=token_key, since=since,
                                       limit=limit)

    def prune(self, before: int) -> int:
        """Drop the events before ``before`` (µs), after writing the buffer."""
        repository = self._repository
        if not isinstance(repository, Pruning):
            raise InvalidArgument(
                f"{type(repository).__name__} cannot prune its audit trail: it has no "
                "prune_events(before) method"
            )
        self._buffer.flush(repository, wait=True)
        return repository.prune_events(before)

    def flush(self) -> None:
        """Write what is buffered now; on ``RepositoryError`` it is kept."""
        self._buffer.flush(self._repository, wait=True)

    def flush_quietly(self) -> None:
        """Write a batch that came due, unless another thread is writing one; a failure
        keeps it buffered for later."""
        try:
            self._buffer.flush(self._repository, wait=False)
        except RepositoryError:
            pass  # kept in the buffer; written by a later batch or flush()
