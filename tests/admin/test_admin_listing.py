"""What the token page's lists and pickers offer (``authtoken.admin._listing``): the
filters read from any query string, a token's state at the boundaries, the expiry
picker's choices and readable bindings -- pure functions, checked with hypothesis.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import AuthToken, MemoryRepository, Security
from authtoken.admin._listing import (
    AUDIT_ACTIONS,
    EXPIRING_DAYS,
    STATES,
    AuditFilter,
    TokenFilter,
    expiry_choices,
    readable_binding,
    state_of,
)
from authtoken.admin._problems import Problem
from authtoken.testing import FakeClock

KEY = re.compile(r"[a-z2-7]{16}")
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
TOKEN_NAMES = ("user", "scope", "script", "state", "run")
AUDIT_NAMES = ("user", "token", "action", "outcome", "since", "until")
SPANS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7),
         "30d": timedelta(days=30), "90d": timedelta(days=90)}


def query(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    """Query strings: the filter names (and others), each with text, short or long,
    plausible or not."""
    values = st.one_of(
        st.text(max_size=40), st.text(min_size=290, max_size=420),
        st.sampled_from([*STATES, *AUDIT_ACTIONS, "ok", "refused", "aaaaaaaaaaaaaaaa",
                         "2030-01-01", "2030-01-01T12:00", "2030-02-30",
                         "0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00",
                         "20301301", "2030-W53-8", "T25"]),
        st.from_regex(r"\A[0-9T:+\-Z. ]{1,30}\Z"))
    return st.dictionaries(st.sampled_from([*names, "other"]), values, max_size=6)


def fixed_details(read: Any, names: tuple[str, ...]) -> frozenset[str]:
    """Every detail ``read`` says, gathered from known bad values: a detail that depends
    on nothing the caller sent but the filter's name."""
    bad = {"state": "dormant", "token": "not-a-key", "action": "logout",
           "outcome": "maybe", "since": "yesterday", "until": "yesterday"}
    details = set()
    for name in names:
        for value in ("x" * 301, bad.get(name)):
            if value is None:
                continue
            try:
                read({name: value})
            except Problem as problem:
                details.add(problem.detail)
    return frozenset(details)


TOKEN_DETAILS = fixed_details(TokenFilter.read, TOKEN_NAMES)
AUDIT_DETAILS = fixed_details(AuditFilter.read, AUDIT_NAMES)


def assert_problem_is_clean(problem: Problem, known: frozenset[str]) -> None:
    """A 422 whose detail is one of the fixed ones: nothing typed is echoed."""
    assert problem.status == 422
    assert problem.detail in known, problem.detail


@settings(max_examples=400, deadline=None)
@given(query(TOKEN_NAMES))
def test_a_token_filter_reads_any_query_or_says_422(params: dict[str, str]) -> None:
    try:
        wanted = TokenFilter.read(params)
    except Problem as problem:
        assert_problem_is_clean(problem, TOKEN_DETAILS)
        too_long = any(len(params.get(n, "").strip()) > 300 for n in TOKEN_NAMES)
        bad_state = params.get("state", "").strip() not in ("", *STATES)
        assert too_long or bad_state
        return
    assert wanted.state in ("", *STATES)
    for name in TOKEN_NAMES:
        assert getattr(wanted, name) == params.get(name, "").strip()
        assert len(getattr(wanted, name)) <= 300


@settings(max_examples=400, deadline=None)
@given(query(AUDIT_NAMES))
def test_an_audit_filter_reads_any_query_or_says_422(params: dict[str, str]) -> None:
    try:
        wanted = AuditFilter.read(params)
    except Problem as problem:
        assert_problem_is_clean(problem, AUDIT_DETAILS)
        return
    assert wanted.action in ("", *AUDIT_ACTIONS)
    assert wanted.outcome in ("", "ok", "refused")
    assert wanted.token == "" or len(wanted.token) == 16
    for moment in (wanted.since, wanted.until):
        assert moment is None or moment.utcoffset() == timedelta(0)  # read in UTC
    wanted.shown()  # what the form shows again reads too


@pytest.mark.parametrize(("params", "field"), [
    ({"action": "logout"}, "action"),
    ({"outcome": "maybe"}, "outcome"), ({"token": "not-a-key"}, "token"),
    ({"since": "yesterday"}, "since"), ({"until": "2030-13-01"}, "until"),
])
def test_each_bad_audit_filter_says_which(params: dict[str, str], field: str) -> None:
    with pytest.raises(Problem) as caught:
        AuditFilter.read(params)
    assert caught.value.status == 422 and field in caught.value.detail


def test_audit_moments_are_utc_when_no_offset_is_given() -> None:
    wanted = AuditFilter.read({"since": "2030-01-02", "until": "2030-01-03T04:05"})
    assert wanted.since == datetime(2030, 1, 2, tzinfo=timezone.utc)
    assert wanted.until == datetime(2030, 1, 3, 4, 5, tzinfo=timezone.utc)
    assert wanted.shown()["until"] == "2030-01-03T04:05"


# -- state_of at the boundaries -----------------------------------------------------------
def token_expiring(at: datetime | None, *, revoked: bool = False) -> AuthToken:
    """A stored token expiring ``at`` (authorized at ``NOW`` - 1 hour)."""
    clock = FakeClock(NOW - timedelta(hours=1))
    security = Security(MemoryRepository(), secret_keys=["listing-test-key"], clock=clock)
    token = AuthToken("reports:read", expires=at)
    security.authorize_token(token, user="alice")
    assert token.key is not None
    if revoked:
        security.revoke_auth_token_by_key(token.key)
    stored = security.get_auth_token(token.key)
    security.close()
    return stored


@pytest.mark.parametrize(("expires", "state"), [
    (NOW + timedelta(days=EXPIRING_DAYS), "expiring"),  # exactly 7 days left
    (NOW + timedelta(days=EXPIRING_DAYS, microseconds=1), "live"),
    (NOW + timedelta(days=EXPIRING_DAYS, seconds=1), "live"),
    (NOW + timedelta(microseconds=1), "expiring"),
    (NOW, "expired"),  # exactly expired: a login now is refused
    (NOW - timedelta(microseconds=1), "expired"),
    (None, "live"),
])
def test_state_at_the_boundaries(expires: datetime | None, state: str) -> None:
    assert state_of(token_expiring(expires), NOW) == state


def test_a_revoked_token_is_revoked_whatever_its_expiry() -> None:
    assert state_of(token_expiring(NOW, revoked=True), NOW) == "revoked"
    assert state_of(token_expiring(None, revoked=True), NOW) == "revoked"


# -- the expiry picker --------------------------------------------------------------------
limits = st.one_of(st.none(), st.timedeltas(min_value=timedelta(0),
                                            max_value=timedelta(days=400)))


@settings(max_examples=300, deadline=None)
@given(limits, st.booleans(), st.datetimes(min_value=datetime(2000, 1, 1),
                                           max_value=datetime(2100, 1, 1),
                                           timezones=st.just(timezone.utc)))
def test_the_picker_offers_only_what_ends_by_the_limit(
        left: timedelta | None, never_allowed: bool, now: datetime) -> None:
    limit = None if left is None else now + left
    choices = expiry_choices(now, limit, never_allowed=never_allowed)
    values = [o["value"] for o in choices["options"]]
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    # a day is offered exactly when its 00:00 UTC, from tomorrow's on, fits the limit
    assert choices["dates"] == (limit is None or tomorrow <= limit)
    assert ("date" in values) == choices["dates"]
    if choices["dates"]:
        assert values[-1] == "date" and values.count("date") == 1
        assert choices["date_min"] == tomorrow.strftime("%Y-%m-%d")
    # with a limit no fixed choice fits, the longest allowed is offered
    assert ("" in values) == (limit is not None and now + SPANS["1h"] > limit)
    assert len(set(values)) == len(values)
    for value in values:
        if value in SPANS and limit is not None:
            assert now + SPANS[value] <= limit, value
    assert ("never" in values) == (never_allowed and limit is None)
    offered = [v for v in SPANS if v in values]
    expected = [v for v, span in SPANS.items() if limit is None or now + span <= limit]
    assert offered == expected  # every duration that fits is offered, in order
    assert choices["default"] in values
    if "30d" in values:
        assert choices["default"] == "30d"
    if limit is None:
        assert choices["date_max"] == "" and choices["limit"] == ""
    elif choices["dates"]:
        assert choices["date_max"] == limit.strftime("%Y-%m-%d")
        assert datetime.strptime(choices["date_max"], "%Y-%m-%d").replace(
            tzinfo=timezone.utc) <= limit  # the latest date offered, at 00:00, fits


def test_the_picker_with_a_limit_under_an_hour_offers_the_longest_allowed() -> None:
    choices = expiry_choices(NOW, NOW + timedelta(minutes=59), never_allowed=True)
    assert [o["value"] for o in choices["options"]] == [""]  # no day fits either
    assert choices["default"] == "" and not choices["dates"]


def test_the_picker_offers_a_duration_ending_exactly_at_the_limit() -> None:
    choices = expiry_choices(NOW, NOW + timedelta(days=7), never_allowed=False)
    assert [o["value"] for o in choices["options"]] == ["1h", "1d", "7d", "date"]
    assert choices["default"] == "7d"


# -- readable bindings --------------------------------------------------------------------
@pytest.mark.parametrize(("binding", "readable"), [
    ("ufs:/jobs/a%20b.py", "/jobs/a b.py"),
    ("ufs:/jobs/plain.py", None),
    ("vfs:ikey?42", "script 42"),
    ("jobs:run", None),
])
def test_a_binding_as_a_person_reads_it(binding: str, readable: str | None) -> None:
    assert readable_binding(binding) == readable


def test_the_fixed_details_are_all_gathered() -> None:
    assert len(TOKEN_DETAILS) == len(TOKEN_NAMES) + 1  # each too long, a bad state
    assert len(AUDIT_DETAILS) == len(AUDIT_NAMES) + 5  # and token, action, outcome, times


@pytest.mark.parametrize("moment", ["0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00"])
def test_an_audit_moment_past_the_calendars_ends_is_refused(moment: str) -> None:
    """In UTC such a time is no date at all: a 422 here, not an overflow later."""
    with pytest.raises(Problem) as caught:
        AuditFilter.read({"since": moment})
    assert caught.value.status == 422 and moment not in caught.value.detail


def test_an_audit_moment_with_an_offset_is_read_in_utc() -> None:
    wanted = AuditFilter.read({"since": "2030-01-01T05:30+05:30",
                               "until": "2029-12-31T19:00-05:00"})
    assert wanted.since == wanted.until == NOW
    assert wanted.since is not None and wanted.since.utcoffset() == timedelta(0)
    assert wanted.shown()["since"] == "2030-01-01T00:00"


# -- where a revoke from the admin view returns -------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80),
                 st.builds(lambda q: "all?" + q, st.text(max_size=80)),
                 st.sampled_from(["all", "all?", "//evil.example/", "all/../..",
                                  "all?user=bob&next=//evil.example",
                                  "allx?user=bob", "all?user=bob&user=eve"])))
def test_back_names_only_the_admin_views_filters(back: str) -> None:
    from authtoken.admin._listing import FILTERS
    from authtoken.admin._page import back_to

    filters = back_to(back)
    if back != "all" and not back.startswith("all?"):
        assert filters is None
        return
    assert filters is not None
    assert set(filters) <= set(FILTERS)
    assert all(isinstance(v, str) and v for v in filters.values())
