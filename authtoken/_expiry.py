"""Reading ``expires`` values and resolving them against a clock.

An expiry is kept as a *spec* until the engine resolves it: absolute (a datetime),
relative (a ``timedelta``/``relativedelta`` measured from the moment of authorization
or update), or none.  Resolution is a pure function of ``(spec, now)``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from dateutil.parser import isoparse
from dateutil.relativedelta import relativedelta

from ._errors import ArgumentTypeError, InvalidArgument
from ._redact import redact

__all__ = [
    "DEFAULT_LIFETIME",
    "ExpirySpec",
    "Relative",
    "aware_utc",
    "from_micros",
    "parse_duration",
    "parse_expires",
    "shown_duration",
    "span",
    "to_micros",
]

UTC = timezone.utc
DEFAULT_LIFETIME = timedelta(days=30)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(?:[0-9]{1,9}[smhdw])+\Z", re.ASCII)
_PART = re.compile(r"([0-9]+)([smhdw])", re.ASCII)

Relative = timedelta | relativedelta


@dataclass(frozen=True, slots=True)
class ExpirySpec:
    """What the caller asked for: ``absolute``, ``relative``, or neither (never)."""

    absolute: datetime | None = None
    relative: Relative | None = None
    is_default: bool = False

    @property
    def never(self) -> bool:
        return self.absolute is None and self.relative is None

    def resolve(self, now: datetime) -> datetime | None:
        """The absolute expiry at ``now``; ``InvalidArgument`` if unrepresentable."""
        if self.absolute is not None:
            return self.absolute
        if self.relative is None:
            return None
        try:
            return now + self.relative
        except (OverflowError, ValueError) as exc:
            raise InvalidArgument(
                "expires is too far in the future to represent; use 'never' for a "
                "token without expiry"
            ) from exc


DEFAULT_SPEC = ExpirySpec(relative=DEFAULT_LIFETIME, is_default=True)
NEVER_SPEC = ExpirySpec()


def aware_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive means UTC)."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch: how datetimes are stored."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """The aware UTC datetime ``value`` microseconds after 1970 (on the login path)."""
    return EPOCH + timedelta(0, 0, value)


def _parse_duration(text: str) -> timedelta:
    total = timedelta()
    for amount, unit in _PART.findall(text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total


def parse_expires(value: object) -> ExpirySpec:
    """Read an ``expires`` argument.

    Accepts an aware ``datetime`` (naive means UTC), a ``date`` (midnight UTC), a
    ``timedelta`` or ``relativedelta``, an ISO-8601 string, a duration such as
    ``"90m"``, ``"12h"``, ``"30d"``, ``"2w"`` (or combined, ``"1d12h"``), ``"never"`` or
    ``None``.  Raises ``InvalidArgument`` for anything unreadable (a ``TypeError`` too
    when the type is wrong).  Whether the result lies in the future is decided later,
    against the engine's clock.
    """
    if value is None:
        return NEVER_SPEC
    if isinstance(value, ExpirySpec):
        return value
    if isinstance(value, datetime):
        try:
            return ExpirySpec(absolute=aware_utc(value))
        except (OverflowError, ValueError) as exc:
            raise InvalidArgument("expires is out of the representable range") from exc
    if isinstance(value, date):
        return ExpirySpec(absolute=datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, (timedelta, relativedelta)):
        return ExpirySpec(relative=value)
    if isinstance(value, str):
        return _parse_text(value)
    raise ArgumentTypeError(
        "expires must be a datetime, a timedelta, a relativedelta, a string such as "
        f"'30d', '12h' or '2027-01-31T00:00:00Z', 'never' or None -- not "
        f"{type(value).__name__}"
    )


_UNREADABLE = (
    "is not readable: give a duration such as '90m', '12h', '30d' or '2w', an ISO-8601 "
    "time such as '2027-01-31T00:00:00Z', or 'never'"
)


_NOT_A_DURATION = (
    "is not readable: give a duration such as '90m', '12h', '30d' or '2w' (or '1d12h'), "
    "or 'never' for none"
)


def _parse_text(value: str) -> ExpirySpec:
    # Refusals below are raised outside any ``except`` block: the parser's errors quote
    # the text, which may be a token string given here by mistake, and a chained error
    # would carry it past the masking of our own message.
    text = value.strip()
    lowered = text.lower()
    if lowered == "never":
        return NEVER_SPEC
    relative: timedelta | None = None
    if _DURATION.match(lowered):
        with contextlib.suppress(OverflowError):
            relative = _parse_duration(lowered)
        if relative is None:
            raise InvalidArgument(f"expires {_shown(text)} is too long a duration")
        return ExpirySpec(relative=relative)
    if not text or len(text) > 64 or not text.isascii():
        raise InvalidArgument(f"expires {_shown(text)} {_UNREADABLE}")
    parsed: datetime | None = None
    with contextlib.suppress(ValueError, OverflowError):
        parsed = isoparse(text)
    if parsed is None:
        raise InvalidArgument(f"expires {_shown(text)} {_UNREADABLE}")
    absolute: datetime | None = None
    with contextlib.suppress(OverflowError, ValueError):
        absolute = aware_utc(parsed)
    if absolute is None:
        raise InvalidArgument(f"expires {_shown(text)} is out of the representable range")
    return ExpirySpec(absolute=absolute)


def _shown(text: str) -> str:
    """The start of an expiry text for a message, masked before it is cut."""
    return ascii(redact(text)[:40])


_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)


def parse_duration(value: object, what: str) -> Relative | None:
    """Read a duration argument (``max_lifetime``, a renewal's ``by``): a ``timedelta``
    or ``relativedelta``, a duration string such as ``"90d"``, or ``None``/``"never"``
    for none.  ``what`` names the argument in errors.  A time (a ``datetime``, an
    ISO-8601 string) is ``InvalidArgument``, and so is a duration that is not positive.
    """
    if isinstance(value, (datetime, date)) or (
        isinstance(value, str) and _parse_text_safely(value) == "absolute"
    ):
        raise InvalidArgument(
            f"{what} is a duration such as '90d' or '12h', not a point in time"
        )
    if value is not None and not isinstance(value, (str, timedelta, relativedelta)):
        raise ArgumentTypeError(
            f"{what} must be a duration such as '90d', a timedelta, a relativedelta or "
            f"None -- not {type(value).__name__}"
        )
    if isinstance(value, str):
        value = value.replace(" ", "")
    message: str | None = None
    try:
        spec = parse_expires(value)
    except InvalidArgument as exc:  # its message speaks of "expires"; masked already
        message = str(exc).removeprefix("expires ")
        # a duration cannot be a time: say only what a duration may be
        message = message.replace(_UNREADABLE, _NOT_A_DURATION)
    if message is not None:
        raise InvalidArgument(f"{what} {message}")
    if spec.relative is None:
        return None
    try:
        positive = _REFERENCE + spec.relative > _REFERENCE
    except (OverflowError, ValueError):
        positive = None
    if positive is None:
        raise InvalidArgument(f"{what} is too long a duration")
    if not positive:
        raise InvalidArgument(f"{what} must be a positive duration, such as '90d'")
    return spec.relative


def _parse_text_safely(text: str) -> str | None:
    """What kind of expiry ``text`` is ("absolute", "relative", "never"), or ``None``."""
    try:
        spec = _parse_text(text)
    except InvalidArgument:
        return None
    return "absolute" if spec.absolute else "relative" if spec.relative else "never"


def span(duration: Relative, at: datetime) -> timedelta:
    """``duration`` as a fixed length from ``at`` (a month from January 31 is 29 days
    in a leap year); ``InvalidArgument`` if unrepresentable."""
    try:
        return (at + duration) - at
    except (OverflowError, ValueError) as exc:
        raise InvalidArgument("the duration is too long to represent") from exc


def shown_duration(duration: Relative) -> str:
    """``duration`` as people write it: ``"30d"``, ``"1d12h"``, ``"90m"``; a
    ``relativedelta`` as its ``repr``."""
    if not isinstance(duration, timedelta):
        return repr(duration)
    seconds = int(duration.total_seconds())
    if seconds <= 0 or duration.microseconds:
        return str(duration)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
