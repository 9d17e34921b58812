"""Reading and pruning the audit trail: what a query may ask, and what a prune may drop.

``Security.audit_events`` and ``Security.prune_audit`` check their arguments here, so
that the engine keeps only the order of the steps (flush what is buffered, then read or
prune).  Pruning is optional for a repository: one that can drop old events has
``prune_events(before)`` (``MemoryRepository`` and ``SQLRepository`` do); a repository
of one's own without it is refused a prune with a clear error rather than ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Protocol, runtime_checkable

from ._errors import ArgumentTypeError, InvalidArgument
from ._expiry import aware_utc, to_micros

__all__ = ["AUDIT_LIMIT", "Pruning", "check_before", "check_query"]

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
