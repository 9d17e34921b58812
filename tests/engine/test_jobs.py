"""Renewable tokens on every backend: renewal, who may renew, and max_lifetime.

Renewable tokens (``max_lifetime``) are extended by ``renew_auth_token`` up to their own
limit, their parent's expiry and the policy's cap, and never shortened.  Use limits are
tested in ``tests/storage/test_use_limits.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import (
    AuthToken,
    InvalidArgument,
    InvalidToken,
    PermissionDenied,
    Policy,
    Repository,
    Security,
    Session,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from authtoken._views import token_view
from authtoken.testing import FakeClock

SECRET_KEYS = ["test-key-newest", "test-key-older"]
UTC = timezone.utc


def session_of(security: Security, string: str) -> Session:
    session = Session(security)
    session.login_by_auth_token(string)
    return session


def renew_events(security: Security, key: str) -> list[tuple[str, str | None, str | None]]:
    """The renewals of ``key`` on the trail, oldest first: (outcome, reason, actor)."""
    return [(e.outcome, e.reason, e.actor)
            for e in reversed(security.audit_events(token_key=key))
            if e.action == "renew"]


# -- renewal -----------------------------------------------------------------------------
def renewable(security: Security, *, expires: object = "1d", max_lifetime: object = "7d",
              user: object = "alice") -> tuple[AuthToken, str]:
    token = AuthToken("a b", expires=expires, max_lifetime=max_lifetime)  # type: ignore[arg-type]
    string = security.authorize_token(token, user=user)  # type: ignore[arg-type]
    assert token.key is not None
    return token, string


def test_renewal_defaults_to_the_first_lifetime(security: Security, clock: FakeClock) -> None:
    """Without by, a renewal extends to now plus the token's first lifetime."""
    t0 = clock()
    token, string = renewable(security)
    assert token.max_lifetime == timedelta(days=7)
    clock.advance(hours=12)
    new = security.renew_auth_token(string)
    assert new == t0 + timedelta(hours=12, days=1)
    assert security.get_auth_token(token.key).expires == new  # type: ignore[arg-type]
    clock.advance(hours=20)
    assert security.renew_auth_token_by_key(token.key) == t0 + timedelta(hours=32, days=1)  # type: ignore[arg-type]
    assert security.login_by_auth_token(string).expires == t0 + timedelta(hours=32, days=1)


def test_renewal_stops_at_created_at_plus_max_lifetime(security: Security,
                                                       clock: FakeClock) -> None:
    """expires = min(now + by, created_at + max_lifetime), for a default and a given by."""
    t0 = clock()
    token, string = renewable(security)
    clock.advance(hours=1)
    assert security.renew_auth_token(string, by="2d") == t0 + timedelta(hours=1, days=2)
    assert security.renew_auth_token(string, by=timedelta(days=3)) \
        == t0 + timedelta(hours=1, days=3)
    clock.advance(days=2)
    assert security.renew_auth_token(string, by="30d") == t0 + timedelta(days=7)
    clock.advance(hours=20)
    assert security.renew_auth_token(string) == t0 + timedelta(days=7)
    clock.set(t0 + timedelta(days=7))
    with pytest.raises(TokenExpired):  # at created_at + max_lifetime it is over for good
        security.renew_auth_token(string)
    assert security.get_auth_token(token.key).expires == t0 + timedelta(days=7)  # type: ignore[arg-type]


def test_renewal_never_shortens(security: Security, clock: FakeClock) -> None:
    """A renewal that would end sooner than the current expiry leaves it as it is."""
    t0 = clock()
    token, string = renewable(security, expires="3d")
    clock.advance(hours=1)
    assert security.renew_auth_token(string, by="1h") == t0 + timedelta(days=3)
    assert security.renew_auth_token_by_key(token.key, by="1d") == t0 + timedelta(days=3)  # type: ignore[arg-type]
    stored = security.get_auth_token(token.key)  # type: ignore[arg-type]
    assert stored.expires == t0 + timedelta(days=3)
    # the token's expiry was moved by hand past its first lifetime; a default renewal
    # (one day) does not pull it back
    stored.expires = t0 + timedelta(days=5)
    security.update_auth_token(stored)
    assert security.renew_auth_token(string) == t0 + timedelta(days=5)


def test_a_child_renewal_stops_at_its_parent(security: Security, clock: FakeClock) -> None:
    """A renewable child is renewed no further than its parent's expiry."""
    t0 = clock()
    _parent, parent_string = renewable(security, expires="2d", max_lifetime="10d")
    session = session_of(security, parent_string)
    child = AuthToken("a", expires="1d", max_lifetime="30d")
    child_string = session.authorize_token(child)
    assert child.parent_key == _parent.key
    clock.advance(hours=20)
    assert security.renew_auth_token(child_string) == t0 + timedelta(hours=44)
    clock.advance(hours=20)
    assert security.renew_auth_token(child_string) == t0 + timedelta(days=2)
    assert security.renew_auth_token(child_string, by="5d") == t0 + timedelta(days=2)
    security.renew_auth_token(parent_string, by="4d")  # the parent now lives longer
    assert security.renew_auth_token(child_string) == t0 + timedelta(hours=64)


def test_renewal_is_capped_by_the_policy(repository: Repository, clock: FakeClock) -> None:
    """A token authorized before a policy was set is renewed no later than its cap."""
    t0 = clock()
    with Security(repository, secret_keys=SECRET_KEYS, clock=clock) as free:
        token, string = renewable(free, max_lifetime="30d")
        # a second engine on the same storage, under a policy (not closed: it would
        # close the shared repository)
        capped = Security(repository, secret_keys=SECRET_KEYS, clock=clock,
                          policy=Policy(max_lifetime="3d"))
        clock.advance(hours=12)
        assert capped.renew_auth_token(string, by="5d") == t0 + timedelta(days=3)
        assert capped.renew_auth_token(string) == t0 + timedelta(days=3)
        capped.flush()
        assert free.renew_auth_token(string, by="5d") == t0 + timedelta(days=5, hours=12)
        assert free.get_auth_token(token.key).expires == t0 + timedelta(days=5, hours=12)  # type: ignore[arg-type]


def test_renewing_what_is_not_renewable(security: Security, clock: FakeClock) -> None:
    """No max_lifetime: InvalidArgument; revoked: TokenRevoked; expired: TokenExpired."""
    plain = AuthToken("a", expires="1d")
    plain_string = security.authorize_token(plain, user=1)
    with pytest.raises(InvalidArgument, match="not renewable"):
        security.renew_auth_token(plain_string)
    with pytest.raises(InvalidArgument, match="not renewable"):
        security.renew_auth_token_by_key(plain.key)  # type: ignore[arg-type]
    revoked, revoked_string = renewable(security)
    security.revoke_auth_token(revoked_string)
    with pytest.raises(TokenRevoked) as revoked_info:
        security.renew_auth_token(revoked_string)
    assert revoked_info.value.token_key == revoked.key
    with pytest.raises(TokenRevoked):
        security.renew_auth_token_by_key(revoked.key)  # type: ignore[arg-type]
    expired, expired_string = renewable(security, expires="1h")
    clock.advance(hours=1)
    with pytest.raises(TokenExpired) as expired_info:
        security.renew_auth_token(expired_string)
    assert expired_info.value.token_key == expired.key
    with pytest.raises(TokenExpired):
        security.renew_auth_token_by_key(expired.key, by="1d")  # type: ignore[arg-type]
    assert security.get_auth_token(expired.key).expires == clock()  # type: ignore[arg-type]
    assert security.get_auth_token(plain.key).expires == plain.expires  # type: ignore[arg-type]


def test_renewing_unknown_tokens(security: Security) -> None:
    """A bad string is InvalidToken, an unknown key TokenNotFound, and neither is echoed."""
    _token, string = renewable(security)
    for garbage in ("", "atk_nope", string[:-2] + "xx", "x" * 5000, b"\xff\x00"):
        with pytest.raises(InvalidToken):
            security.renew_auth_token(garbage)
    with pytest.raises(TokenNotFound):
        security.renew_auth_token_by_key("aaaaaaaaaaaaaaaa")
    with pytest.raises(TokenNotFound) as info:
        security.renew_auth_token_by_key(string)  # a token string pasted as a key
    assert string not in str(info.value) + repr(info.value)
    assert info.value.token_key is None
    with pytest.raises(TypeError):
        security.renew_auth_token_by_key(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        security.renew_auth_token(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("by", ["0d", "0s", timedelta(0), timedelta(seconds=-1), "-1d", "abc",
                                "2027-01-01T00:00:00Z", datetime(2031, 1, 1, tzinfo=UTC)])
def test_renewal_by_must_be_a_positive_duration(security: Security, by: object) -> None:
    """A by that is not a positive duration is InvalidArgument and changes nothing."""
    token, string = renewable(security)
    with pytest.raises(InvalidArgument, match="by"):
        security.renew_auth_token(string, by=by)
    assert security.get_auth_token(token.key).expires == token.expires  # type: ignore[arg-type]


@pytest.mark.parametrize("by", [1, 1.5, True, [1]])
def test_renewal_by_of_the_wrong_type(security: Security, by: object) -> None:
    """A number is not a duration: TypeError."""
    _token, string = renewable(security)
    with pytest.raises(TypeError):
        security.renew_auth_token(string, by=by)


def test_a_token_string_as_by_is_never_echoed(security: Security) -> None:
    """A token string given as by is refused without showing it."""
    _token, string = renewable(security)
    with pytest.raises(InvalidArgument) as info:
        security.renew_auth_token(string, by=string)
    assert string not in str(info.value) + repr(info.value)
    assert info.value.__cause__ is None or string not in str(info.value.__cause__)


def test_renewals_are_on_the_trail(security: Security, clock: FakeClock) -> None:
    """Every renewal, done or refused, is a renew event with its reason."""
    token, string = renewable(security, expires="1h")
    plain = AuthToken("a")
    plain_string = security.authorize_token(plain, user="alice")
    security.renew_auth_token(string)
    with pytest.raises(InvalidArgument):
        security.renew_auth_token(plain_string)
    with pytest.raises(InvalidArgument):
        security.renew_auth_token(string, by="0d")
    clock.advance(hours=2)
    with pytest.raises(TokenExpired):
        security.renew_auth_token(string)
    assert renew_events(security, token.key) == [  # type: ignore[arg-type]
        ("ok", None, None), ("refused", "InvalidArgument", None),
        ("refused", "TokenExpired", None)]
    assert renew_events(security, plain.key) == [  # type: ignore[arg-type]
        ("refused", "InvalidArgument", None)]
    renewals = [e for e in security.audit_events(user="alice") if e.action == "renew"]
    assert len(renewals) == 4 and all(e.user == "alice" for e in renewals)


def test_views_show_the_limits(security: Security) -> None:
    """A token's view shows max_uses, and max_lifetime as a duration such as 7d."""
    token = AuthToken("a", expires="1d", max_lifetime=timedelta(days=7, hours=12),
                      max_uses=4)
    security.authorize_token(token, user=1)
    view = token_view(security.get_auth_token(token.key))  # type: ignore[arg-type]
    assert (view["max_uses"], view["max_lifetime"], view["run_id"]) == (4, "7d12h", None)
    plain = AuthToken("a")
    security.authorize_token(plain, user=1)
    assert (token_view(plain)["max_uses"], token_view(plain)["max_lifetime"]) == (None, None)


# -- renewal through sessions ------------------------------------------------------------
def test_session_owner_and_admin_may_renew(security: Security, clock: FakeClock) -> None:
    """The owner's session and an admin renew; another user's session may not."""
    t0 = clock()
    token, string = renewable(security)
    clock.advance(hours=1)
    with pytest.raises(PermissionDenied):
        Session(security, user="bob").renew_auth_token(string)
    with pytest.raises(PermissionDenied):
        Session(security, user="bob").renew_auth_token_by_key(token.key)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        Session(security).renew_auth_token(string)  # no user
    assert security.get_auth_token(token.key).expires == t0 + timedelta(days=1)  # type: ignore[arg-type]
    assert Session(security, user="alice").renew_auth_token(string) \
        == t0 + timedelta(hours=1, days=1)
    clock.advance(hours=1)
    assert Session(security, admin=True).renew_auth_token_by_key(token.key) \
        == t0 + timedelta(hours=2, days=1)  # type: ignore[arg-type]
    assert renew_events(security, token.key) == [  # type: ignore[arg-type]
        ("refused", "PermissionDenied", "user:bob"),
        ("refused", "PermissionDenied", "user:bob"),
        ("refused", "PermissionDenied", None),
        ("ok", None, "user:alice"),
        ("ok", None, "admin"),
    ]


def test_a_token_session_renews_its_own_tree_only(security: Security, clock: FakeClock) -> None:
    """A token session renews its token and descendants, not its parent or a sibling."""
    t0 = clock()
    root, root_string = renewable(security, expires="10d", max_lifetime="30d")
    root_session = session_of(security, root_string)
    child = AuthToken("a", expires="1d", max_lifetime="7d")
    child_string = root_session.authorize_token(child)
    sibling = AuthToken("a", expires="1d", max_lifetime="7d")
    root_session.authorize_token(sibling)
    child_session = session_of(security, child_string)
    grandchild = AuthToken("a", expires="1d", max_lifetime="7d")
    grandchild_string = child_session.authorize_token(grandchild)
    clock.advance(hours=6)
    one_day_on = t0 + timedelta(hours=6, days=1)

    assert child_session.renew_auth_token(child_string) == one_day_on
    assert child_session.renew_auth_token_by_key(grandchild.key) == one_day_on  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        child_session.renew_auth_token(root_string)  # its parent
    with pytest.raises(PermissionDenied):
        child_session.renew_auth_token_by_key(root.key)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        child_session.renew_auth_token_by_key(sibling.key)  # type: ignore[arg-type]
    assert security.get_auth_token(root.key).expires == t0 + timedelta(days=10)  # type: ignore[arg-type]
    assert security.get_auth_token(sibling.key).expires == t0 + timedelta(days=1)  # type: ignore[arg-type]

    clock.advance(hours=6)
    later = t0 + timedelta(hours=12, days=1)
    assert root_session.renew_auth_token(child_string) == later
    assert root_session.renew_auth_token(grandchild_string) == later  # a descendant
    assert root_session.renew_auth_token_by_key(sibling.key) == later  # type: ignore[arg-type]
    assert root_session.renew_auth_token(root_string) == t0 + timedelta(hours=12, days=10)
    with pytest.raises(PermissionDenied):  # same user, but not its own tree
        session_of(security, grandchild_string).renew_auth_token(child_string)
    refused = [e for e in security.audit_events(user="alice")
               if e.action == "renew" and e.outcome == "refused"]
    assert {e.reason for e in refused} == {"PermissionDenied"} and len(refused) == 4


# -- max_lifetime: bad input -------------------------------------------------------------
@pytest.mark.parametrize("value", ["1h", timedelta(hours=23), "23h59m59s"])
def test_max_lifetime_shorter_than_the_first_lifetime(security: Security,
                                                      value: object) -> None:
    """A max_lifetime shorter than the token's first lifetime is refused at authorize."""
    with pytest.raises(InvalidArgument, match="max_lifetime"):
        security.authorize_token(AuthToken("a", expires="1d", max_lifetime=value), user=1)  # type: ignore[arg-type]
    assert security.list_auth_tokens(include_revoked=True) == []


@pytest.mark.parametrize("expires", [None, "never"])
def test_max_lifetime_without_expiry(security: Security, expires: object) -> None:
    """A renewable token must expire: expires=None with a max_lifetime is InvalidArgument."""
    with pytest.raises(InvalidArgument, match="max_lifetime"):
        security.authorize_token(AuthToken("a", expires=expires, max_lifetime="7d"), user=1)  # type: ignore[arg-type]
    assert security.list_auth_tokens(include_revoked=True) == []


def test_max_lifetime_equal_to_the_first_lifetime(security: Security, clock: FakeClock) -> None:
    """A max_lifetime equal to the first lifetime is allowed, and renews to nothing more."""
    token, string = renewable(security, expires="1d", max_lifetime="1d")
    clock.advance(hours=1)
    assert security.renew_auth_token(string) == token.expires


@pytest.mark.parametrize("value", [
    datetime(2031, 1, 1, tzinfo=UTC), "2031-01-01T00:00:00Z", "2031-01-01", "0d", "0s",
    timedelta(0), timedelta(days=-1), "-1d", "abc", "1x", "", "30 days", "1.5d",
])
def test_max_lifetime_must_be_a_positive_duration(value: object) -> None:
    """A time, a zero or negative span or an unreadable text is InvalidArgument."""
    with pytest.raises(InvalidArgument, match="max_lifetime"):
        AuthToken("a", max_lifetime=value)  # type: ignore[arg-type]
    token = AuthToken("a", expires="1d", max_lifetime="2d")
    with pytest.raises(InvalidArgument, match="max_lifetime"):
        token.max_lifetime = value  # type: ignore[assignment]
    assert token.max_lifetime == timedelta(days=2)


@pytest.mark.parametrize("value", [7, 7.0, True, b"7d", ["7d"]])
def test_max_lifetime_of_the_wrong_type(value: object) -> None:
    """A number, bytes or a list as max_lifetime is a TypeError."""
    with pytest.raises(TypeError, match="max_lifetime"):
        AuthToken("a", max_lifetime=value)  # type: ignore[arg-type]


def test_a_token_string_as_max_lifetime_is_never_echoed(security: Security) -> None:
    """A token string given as max_lifetime is refused without showing it."""
    string = security.authorize_token(AuthToken("a"), user=1)
    with pytest.raises(InvalidArgument) as info:
        AuthToken("a", max_lifetime=string)
    assert string not in str(info.value) + repr(info.value)
    assert string[-20:] not in str(info.value)


@given(st.from_regex(r"\A(?:[0-9]{1,4}[smhdw]){1,3}\Z"))
@settings(max_examples=200)
def test_duration_strings_read_as_their_sum(text: str) -> None:
    """Any duration string is its parts summed: positive ones are taken, zero refused."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    import re

    seconds = sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([smhdw])", text))
    if seconds == 0:
        with pytest.raises(InvalidArgument):
            AuthToken("a", max_lifetime=text)
    else:
        token = AuthToken("a", max_lifetime=text)
        assert token.max_lifetime == timedelta(seconds=seconds)
        assert token.max_lifetime == AuthToken("a", max_lifetime=text.upper()).max_lifetime


@given(st.text(max_size=30))
@settings(max_examples=300)
def test_any_text_as_max_lifetime_is_read_or_refused(text: str) -> None:
    """Arbitrary text gives a positive timedelta, None or InvalidArgument, nothing else."""
    try:
        token = AuthToken("a", max_lifetime=text)
    except InvalidArgument:
        return
    assert token.max_lifetime is None or token.max_lifetime > timedelta(0)


def test_max_lifetime_changed_by_update(security: Security, clock: FakeClock) -> None:
    """An update may lengthen max_lifetime, not end it before the current expiry."""
    t0 = clock()
    token, string = renewable(security, expires="2d", max_lifetime="3d")
    token.max_lifetime = "10d"
    security.update_auth_token(token)
    assert token.max_lifetime == timedelta(days=10)
    clock.advance(days=1)
    assert security.renew_auth_token(string, by="8d") == t0 + timedelta(days=9)
    shorter = security.get_auth_token(token.key)  # type: ignore[arg-type]
    shorter.max_lifetime = "5d"
    with pytest.raises(InvalidArgument):
        security.update_auth_token(shorter)
    gone = security.get_auth_token(token.key)  # type: ignore[arg-type]
    gone.expires = None
    with pytest.raises(InvalidArgument, match="max_lifetime"):
        security.update_auth_token(gone)
    stored = security.get_auth_token(token.key)  # type: ignore[arg-type]
    assert stored.max_lifetime == timedelta(days=10)
    assert stored.expires == t0 + timedelta(days=9)


def test_a_token_made_renewable_later_renews_by_a_fixed_step(security: Security,
                                                             clock: FakeClock) -> None:
    """A max_lifetime added by update fixes the default step: it does not grow with
    each renewal."""
    t0 = clock()
    token = AuthToken("a", expires="1d")
    string = security.authorize_token(token, user=1)
    token.max_lifetime = "30d"
    security.update_auth_token(token)
    for hours in (12, 24, 36, 48):
        clock.set(t0 + timedelta(hours=hours))
        assert security.renew_auth_token(string) == t0 + timedelta(hours=hours, days=1)


def test_refused_renewals_of_unknown_tokens_are_on_the_trail(security: Security) -> None:
    """A renewal of a forged string or an unknown key is a refused renew event, like a
    revocation of an unknown key is a refused revoke event."""
    with pytest.raises(InvalidToken):
        security.renew_auth_token("atk_forged")
    with pytest.raises(TokenNotFound):
        security.revoke_auth_token_by_key("aaaaaaaaaaaaaaaa")
    with pytest.raises(TokenNotFound):
        security.renew_auth_token_by_key("aaaaaaaaaaaaaaaa")
    with pytest.raises(TokenNotFound):
        Session(security, user=1).renew_auth_token_by_key("bbbbbbbbbbbbbbbb")
    refusals = sorted((e.action, e.reason, e.token_key) for e in security.audit_events()
                      if e.outcome == "refused")
    assert refusals == [
        ("renew", "InvalidToken", None),
        ("renew", "TokenNotFound", "aaaaaaaaaaaaaaaa"),
        ("renew", "TokenNotFound", "bbbbbbbbbbbbbbbb"),
        ("revoke", "TokenNotFound", "aaaaaaaaaaaaaaaa"),
    ]
