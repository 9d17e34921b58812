"""Unit tests of ``authtoken._expiry``: reading ``expires`` and resolving it at a time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone, tzinfo

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken._errors import InvalidArgument
from authtoken._expiry import (
    DEFAULT_LIFETIME,
    ExpirySpec,
    aware_utc,
    from_micros,
    parse_expires,
    to_micros,
)

UTC = timezone.utc
NOW = datetime(2026, 3, 15, 12, 30, 45, 123456, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


class NoOffset(tzinfo):
    """A tzinfo whose utcoffset() is None: Python treats such datetimes as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


# -- never ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "never", "NEVER", "Never", "  never\n"])
def test_never(value: object) -> None:
    """None and the string 'never' (any case, surrounding whitespace) mean no expiry."""
    spec = parse_expires(value)
    assert spec.never
    assert spec.absolute is None
    assert spec.relative is None
    assert spec.resolve(NOW) is None


# -- datetimes and dates -------------------------------------------------------------------


def test_aware_datetime_kept_as_utc() -> None:
    """An aware datetime keeps its instant and is shown in UTC."""
    value = datetime(2027, 1, 31, 2, 0, tzinfo=PLUS_TWO)
    spec = parse_expires(value)
    assert spec.absolute == value
    assert spec.absolute is not None
    assert spec.absolute.utcoffset() == timedelta(0)
    assert spec.absolute == datetime(2027, 1, 31, 0, 0, tzinfo=UTC)
    assert spec.resolve(NOW) == value


def test_naive_datetime_means_utc() -> None:
    """A naive datetime is read as UTC wall time."""
    spec = parse_expires(datetime(2027, 1, 31, 12, 0))
    assert spec.absolute == datetime(2027, 1, 31, 12, 0, tzinfo=UTC)
    assert spec.absolute is not None
    assert spec.absolute.tzinfo is not None


def test_datetime_with_no_offset_tzinfo_means_utc() -> None:
    """A datetime whose tzinfo gives no offset is treated as naive, hence UTC."""
    spec = parse_expires(datetime(2027, 1, 31, 12, 0, tzinfo=NoOffset()))
    assert spec.absolute == datetime(2027, 1, 31, 12, 0, tzinfo=UTC)


def test_date_means_midnight_utc() -> None:
    """A date means midnight UTC at its start."""
    spec = parse_expires(date(2027, 1, 31))
    assert spec.absolute == datetime(2027, 1, 31, tzinfo=UTC)


def test_absolute_ignores_now() -> None:
    """An absolute expiry resolves to itself whatever the time."""
    spec = parse_expires(datetime(2027, 1, 31, tzinfo=UTC))
    assert spec.resolve(NOW) == spec.resolve(NOW + timedelta(days=9999))


def test_past_datetime_is_read() -> None:
    """A past datetime is read; whether it is in the future is decided later."""
    spec = parse_expires(datetime(2000, 1, 1, tzinfo=UTC))
    assert spec.absolute == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),
    ],
)
def test_datetime_out_of_range_in_utc(value: datetime) -> None:
    """A datetime that cannot be represented in UTC is an InvalidArgument."""
    with pytest.raises(InvalidArgument):
        parse_expires(value)


# -- deltas ----------------------------------------------------------------------------------


def test_timedelta_is_relative() -> None:
    """A timedelta is kept relative and measured from the resolving time."""
    spec = parse_expires(timedelta(hours=5))
    assert spec.absolute is None
    assert spec.relative == timedelta(hours=5)
    assert not spec.never
    assert spec.resolve(NOW) == NOW + timedelta(hours=5)
    assert spec.resolve(NOW + timedelta(days=1)) == NOW + timedelta(days=1, hours=5)


def test_relativedelta_is_relative() -> None:
    """A relativedelta is kept relative and resolved with calendar arithmetic."""
    spec = parse_expires(relativedelta(months=1))
    jan31 = datetime(2027, 1, 31, 8, 0, tzinfo=UTC)
    assert spec.resolve(jan31) == datetime(2027, 2, 28, 8, 0, tzinfo=UTC)
    assert spec.resolve(NOW) == NOW + relativedelta(months=1)


@pytest.mark.parametrize(
    "value",
    [timedelta.max, relativedelta(years=9000), relativedelta(days=10**9), "999999999d",
     "99999999w"],
)
def test_resolve_overflow_is_invalid_argument(value: object) -> None:
    """A relative expiry too far in the future to represent is InvalidArgument on resolve."""
    spec = parse_expires(value)
    with pytest.raises(InvalidArgument, match="never"):
        spec.resolve(NOW)


def test_resolve_underflow_is_invalid_argument() -> None:
    """A negative relative expiry before year 1 is InvalidArgument, not OverflowError."""
    spec = parse_expires(timedelta.min)
    with pytest.raises(InvalidArgument):
        spec.resolve(NOW)


def test_spec_passes_through() -> None:
    """An ExpirySpec given back to parse_expires is returned as is."""
    spec = ExpirySpec(relative=timedelta(days=1))
    assert parse_expires(spec) is spec


def test_default_lifetime_is_thirty_days() -> None:
    """The default lifetime is 30 days."""
    assert timedelta(days=30) == DEFAULT_LIFETIME


# -- strings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-31T00:00:00Z", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-31T00:00:00+00:00", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-31T02:00:00+02:00", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-30T19:00:00-05:00", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-31T12:00", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31T12:00:05.250", datetime(2027, 1, 31, 12, 0, 5, 250000, tzinfo=UTC)),
        ("2027-01-31", datetime(2027, 1, 31, tzinfo=UTC)),
        ("20270131T000000Z", datetime(2027, 1, 31, tzinfo=UTC)),
        ("  2027-01-31T00:00:00Z\n", datetime(2027, 1, 31, tzinfo=UTC)),
    ],
)
def test_iso_strings(text: str, expected: datetime) -> None:
    """An ISO-8601 string is an absolute expiry in UTC (no offset means UTC)."""
    spec = parse_expires(text)
    assert spec.absolute == expected
    assert spec.absolute is not None
    assert spec.absolute.utcoffset() == timedelta(0)
    assert spec.relative is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("0001d", timedelta(days=1)),
        (" 30d ", timedelta(days=30)),
    ],
)
def test_duration_strings(text: str, expected: timedelta) -> None:
    """A duration string is a relative expiry of that length."""
    spec = parse_expires(text)
    assert spec.absolute is None
    assert spec.relative == expected
    assert spec.resolve(NOW) == NOW + expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "soon",
        "tomorrow",
        "30",
        "30x",
        "d30",
        "30 d",
        "1.5h",
        "-1d",
        "+1d",
        "1e5",
        "\u0663\u0660d",
        "\uff13\uff10d",
        "never!",
        "nevermore",
        "2027-13-01",
        "2027-02-30",
        "2027-01-31T25:00",
        "2027-01-31T00:00:00+24:00",
        "0000-01-01",
        "2027-01-31 garbage",
        "x" * 100,
        "2027-01-31T00:00:00Z" + " " * 10 + "x" * 50,
        "é",
        "\x00",
        "\ud800",
        "999999999w",
        "999999999d999999999d",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_garbage_strings_are_invalid_argument(text: str) -> None:
    """An unreadable or unrepresentable expiry string is an InvalidArgument."""
    with pytest.raises(InvalidArgument):
        parse_expires(text)


def test_invalid_message_says_what_to_give() -> None:
    """The message for an unreadable expiry lists the accepted forms."""
    with pytest.raises(InvalidArgument) as info:
        parse_expires("soon")
    message = str(info.value)
    assert "'soon'" in message
    assert "30d" in message
    assert "never" in message


@pytest.mark.parametrize("value", [1, 0, 1.5, True, False, b"30d", ["30d"], {}, object()])
def test_wrong_types_are_type_error(value: object) -> None:
    """A value of a wrong type is a TypeError that is also an InvalidArgument."""
    with pytest.raises(TypeError) as info:
        parse_expires(value)
    assert isinstance(info.value, InvalidArgument)


# -- aware_utc, to_micros, from_micros ------------------------------------------------------


def test_aware_utc() -> None:
    """aware_utc() makes naive datetimes UTC and converts aware ones to UTC."""
    assert aware_utc(datetime(2027, 1, 1)) == datetime(2027, 1, 1, tzinfo=UTC)
    converted = aware_utc(datetime(2027, 1, 1, 2, tzinfo=PLUS_TWO))
    assert converted == datetime(2027, 1, 1, tzinfo=UTC)
    assert converted.tzinfo == UTC


def test_micros_known_values() -> None:
    """to_micros() counts microseconds since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert to_micros(epoch) == 0
    assert from_micros(0) == epoch
    assert to_micros(epoch + timedelta(seconds=1, microseconds=5)) == 1_000_005
    assert to_micros(epoch - timedelta(microseconds=1)) == -1
    assert to_micros(datetime(1970, 1, 1, 1, tzinfo=PLUS_TWO)) == -3_600_000_000
    assert from_micros(-1) == epoch - timedelta(microseconds=1)


@settings(max_examples=150, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_micros_round_trip_datetimes(value: datetime) -> None:
    """from_micros(to_micros(dt)) == dt for every aware UTC datetime."""
    back = from_micros(to_micros(value))
    assert back == value
    assert back.utcoffset() == timedelta(0)


@settings(max_examples=150, deadline=None)
@given(st.integers(to_micros(datetime.min.replace(tzinfo=UTC)),
                   to_micros(datetime.max.replace(tzinfo=UTC))))
def test_micros_round_trip_integers(value: int) -> None:
    """to_micros(from_micros(n)) == n over the whole datetime range."""
    assert to_micros(from_micros(value)) == value


@settings(max_examples=150, deadline=None)
@given(st.datetimes(), st.datetimes())
def test_micros_preserve_order(a: datetime, b: datetime) -> None:
    """to_micros() preserves the order of instants."""
    a, b = a.replace(tzinfo=UTC), b.replace(tzinfo=UTC)
    assert (a < b) == (to_micros(a) < to_micros(b))


# -- properties ----------------------------------------------------------------------------

units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**5), st.sampled_from(sorted(units))),
                min_size=1, max_size=5))
def test_duration_property(parts: list[tuple[int, str]]) -> None:
    """Any concatenation of '<n><unit>' parts is the sum of those durations."""
    text = "".join(f"{n}{u}" for n, u in parts)
    expected = sum((timedelta(**{units[u]: n}) for n, u in parts), timedelta())
    assert parse_expires(text).relative == expected


@settings(max_examples=200, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, PLUS_TWO, timezone(-timedelta(hours=9))])))
def test_iso_string_property(value: datetime) -> None:
    """The isoformat() of an aware datetime reads back as the same instant."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        with pytest.raises(InvalidArgument):
            parse_expires(value.isoformat())
        return
    if value.year < 1 or len(value.isoformat()) > 64:
        return
    assert parse_expires(value.isoformat()).absolute == value


expiry_text = st.one_of(
    st.text(max_size=70),
    st.text(alphabet="0123456789-:T.+Z W,smhdwneverNEVER", max_size=40),
)


@settings(max_examples=250, deadline=None)
@given(expiry_text, st.datetimes(timezones=st.just(UTC)))
def test_text_reads_or_invalid_argument(text: str, now: datetime) -> None:
    """Any text gives a spec or InvalidArgument, and the spec resolves or InvalidArgument."""
    try:
        spec = parse_expires(text)
    except InvalidArgument:
        return
    assert isinstance(spec, ExpirySpec)
    try:
        resolved = spec.resolve(now)
    except InvalidArgument:
        assert spec.relative is not None
        return
    if resolved is not None:
        assert resolved.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("text", "hours"), [("30D", 720), ("12H", 12), ("1D12h", 36)])
def test_duration_units_in_any_case(text: str, hours: int) -> None:
    """Duration units may be written in upper case too."""
    assert parse_expires(text).relative == timedelta(hours=hours)


# -- no secret through the error or its chain ------------------------------------------------
_SECRET = "L5KGk8k9mmF8sFEnk-cNOv5Ivj7YzUucdwWpbWEgrao"


@pytest.mark.parametrize("text", [
    _SECRET, "2027-01-31 " + _SECRET, "atk_smyct2ckg5dup553." + _SECRET,
    " " + _SECRET + " ", "20270131T000000 " + _SECRET,
])
def test_unreadable_expiry_shows_no_secret_and_chains_nothing(text: str) -> None:
    """A secret given as expires is masked and no parser error carrying it is chained."""
    with pytest.raises(InvalidArgument) as info:
        parse_expires(text)
    error = info.value
    assert error.__cause__ is None and error.__context__ is None
    for shown in (str(error), repr(error), repr(error.args)):
        assert _SECRET[:12] not in shown and _SECRET[-12:] not in shown
