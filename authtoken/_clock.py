"""The one place that reads the system's clock; everything else takes a ``clock``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["Clock", "system_clock", "system_micros", "system_seconds"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)


def system_micros() -> int:
    """The current time in microseconds since 1970: ``system_clock`` without the object."""
    return time.time_ns() // 1000


#: The current time in seconds since 1970, as a float: the issuers' hot path reads it on
#: every call, so it is ``time.time`` itself rather than a wrapper.
system_seconds: Callable[[], float] = time.time
