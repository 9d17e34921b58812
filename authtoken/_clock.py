"""The one place that reads the system's clock, and the one definition of a clock.

Everything else takes a ``clock``: a callable returning the current time.  The engine
(``Security``) reads aware UTC datetimes (a ``Clock``).  The issuer sessions and the test
servers also accept a clock of seconds since 1970 (a ``ClockOrSeconds``); the refresh
engine itself reads plain seconds, and ``seconds_clock`` is the one adapter from either
kind to that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

from ._errors import ArgumentTypeError

__all__ = [
    "Clock",
    "ClockOrSeconds",
    "seconds_clock",
    "system_clock",
    "system_micros",
    "system_seconds",
]

#: A clock: the current time as an aware UTC ``datetime`` (``authtoken.testing.FakeClock``
#: is one).
Clock = Callable[[], datetime]

#: A clock of aware datetimes or of seconds since 1970 (a ``float``): what the issuer
#: sessions and the test servers accept as ``clock=``.  A naive datetime counts as UTC.
ClockOrSeconds = Callable[[], "datetime | float"]


def system_clock() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)


def system_micros() -> int:
    """The current time in microseconds since 1970: ``system_clock`` without the object."""
    return time.time_ns() // 1000


#: The current time in seconds since 1970, as a float: the issuers' hot path reads it on
#: every call, so it is ``time.time`` itself rather than a wrapper.
system_seconds: Callable[[], float] = time.time


def seconds_clock(clock: ClockOrSeconds | None) -> Callable[[], float]:
    """``clock`` as seconds since 1970: ``system_seconds`` for ``None``, else a reader
    that turns each datetime (naive means UTC) or number it returns into a ``float``.

    Raises ``ArgumentTypeError`` (a ``TypeError``) when ``clock`` is not callable.
    """
    if clock is None:
        return system_seconds
    if not callable(clock):
        raise ArgumentTypeError("clock must be a callable returning an aware datetime "
                                "(or seconds since 1970)")

    def now() -> float:
        value = clock()
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.timestamp()
        return float(value)

    return now
