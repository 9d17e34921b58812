"""Unit tests of ``authtoken._token``: the AuthToken model, Principal and check_user."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from dateutil.relativedelta import relativedelta

from authtoken._errors import InvalidArgument, PermissionDenied, ScopeError
from authtoken._expiry import ExpirySpec
from authtoken._scopes import Script
from authtoken._token import AuthToken, Principal, check_user, same_user

UTC = timezone.utc
SENTINEL = "s3cr3t-SENTINEL-value"


def now() -> datetime:
    """The current aware UTC time (AuthToken shows relative expiries from it)."""
    return datetime.now(UTC)


def principal(*scopes: str) -> Principal:
    """A Principal holding ``scopes`` as canonical identifiers."""
    return Principal(user="alice", token_key="abcdefghijklmnop", scopes=scopes,
                     data=None, expires=None)


# -- construction ----------------------------------------------------------------------------


def test_minimal_token() -> None:
    """A token made from a scope alone has no key, user or times yet."""
    token = AuthToken("reports:read")
    assert token.scope == "reports:read"
    assert token.scopes == ("reports:read",)
    assert token.data is None
    assert token.description == ""
    assert token.key is None
    assert token.user is None
    assert token.created_at is None
    assert token.updated_at is None
    assert token.revoked_at is None
    assert token.last_used_at is None
    assert token.use_count == 0
    assert token.parent_key is None
    assert not token.revoked


def test_scope_forms() -> None:
    """The scope may be a str, an int script key or a list, and is kept canonical."""
    assert AuthToken("b  a\tb\nvfs:ikey?007").scope == "b a vfs:ikey?7"
    assert AuthToken(42).scopes == ("vfs:ikey?42",)
    token = AuthToken(["read", 7, "ufs:/a/./b"])
    assert token.scopes == ("read", "vfs:ikey?7", "ufs:/a/b")
    assert token.scope == "read vfs:ikey?7 ufs:/a/b"


def test_bindings() -> None:
    """bindings holds the vfs:/ufs: identifiers of the scope, in order."""
    assert AuthToken("read ufs:/a vfs:ikey?1").bindings == ("ufs:/a", "vfs:ikey?1")
    assert AuthToken("read").bindings == ()


@pytest.mark.parametrize("scope", ["", "   ", [], "vfs:ikey?x", "ufs:", "a\x00b", ["a b"]])
def test_bad_scope_is_scope_error(scope: object) -> None:
    """A scope that breaks the grammar is a ScopeError."""
    with pytest.raises(ScopeError):
        AuthToken(scope)  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", [None, True, 1.5, b"read", [None]])
def test_wrongly_typed_scope_is_type_error(scope: object) -> None:
    """A scope of a wrong type is a TypeError."""
    with pytest.raises(TypeError):
        AuthToken(scope)  # type: ignore[arg-type]


def test_data_is_positional_or_keyword() -> None:
    """data may be given as the second positional argument or by name."""
    assert AuthToken("a", "payload").data == "payload"
    assert AuthToken("a", data="payload").data == "payload"
    assert AuthToken("a", "").data == ""


def test_description_and_expires_are_keyword_only() -> None:
    """description and expires cannot be given positionally."""
    with pytest.raises(TypeError):
        AuthToken("a", None, "description")  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    ["x" * 65_536, "é" * 32_768, "€" * 21_845 + "x", "😀" * 16_384, "\x00" * 10],
)
def test_data_at_the_byte_limit(data: str) -> None:
    """data of exactly 65,536 UTF-8 bytes (or fewer) is accepted."""
    assert len(data.encode("utf-8")) <= 65_536
    assert AuthToken("a", data).data == data


@pytest.mark.parametrize(
    "data",
    ["x" * 65_537, "é" * 32_768 + "x", "€" * 21_845 + "é", "😀" * 16_384 + "x", "é" * 40_000],
)
def test_data_over_the_byte_limit(data: str) -> None:
    """data over 65,536 UTF-8 bytes is an InvalidArgument, even when under 65,536 characters."""
    assert len(data.encode("utf-8")) > 65_536
    with pytest.raises(InvalidArgument, match="65536"):
        AuthToken("a", data)


@pytest.mark.parametrize("data", ["\ud800", "ok\udfffok"])
def test_data_with_lone_surrogate(data: str) -> None:
    """data holding a lone surrogate is an InvalidArgument, not a UnicodeError."""
    with pytest.raises(InvalidArgument):
        AuthToken("a", data)


@pytest.mark.parametrize("data", [b"payload", 1, ["x"], {"a": 1}])
def test_data_of_wrong_type(data: object) -> None:
    """data that is neither str nor None is a TypeError."""
    with pytest.raises(TypeError):
        AuthToken("a", data)  # type: ignore[arg-type]


@pytest.mark.parametrize("description", ["", "x" * 1024, "😀" * 1024, "é" * 1024])
def test_description_at_the_limit(description: str) -> None:
    """A description of up to 1,024 characters is accepted."""
    assert AuthToken("a", description=description).description == description


@pytest.mark.parametrize("description", ["x" * 1025, "😀" * 1025])
def test_description_over_the_limit(description: str) -> None:
    """A description over 1,024 characters is an InvalidArgument."""
    with pytest.raises(InvalidArgument, match="1024"):
        AuthToken("a", description=description)


def test_description_with_lone_surrogate() -> None:
    """A description holding a lone surrogate is an InvalidArgument."""
    with pytest.raises(InvalidArgument):
        AuthToken("a", description="bad \udc80")


@pytest.mark.parametrize("description", [None, 1, b"x"])
def test_description_of_wrong_type(description: object) -> None:
    """A description that is not a str is a TypeError."""
    with pytest.raises(TypeError):
        AuthToken("a", description=description)  # type: ignore[arg-type]


# -- expiry ----------------------------------------------------------------------------------


def test_default_expiry_is_thirty_days_from_now() -> None:
    """Without expires, the token expires 30 days from now."""
    before = now()
    token = AuthToken("a")
    expires = token.expires
    after = now()
    assert expires is not None
    assert before + timedelta(days=30) <= expires <= after + timedelta(days=30)
    assert token.expiry_spec.is_default
    assert token.expiry_spec.relative == timedelta(days=30)


@pytest.mark.parametrize("value", [None, "never", "NEVER"])
def test_never_expires(value: object) -> None:
    """expires=None or 'never' means the token never expires."""
    token = AuthToken("a", expires=value)  # type: ignore[arg-type]
    assert token.expires is None
    assert token.expiry_spec.never
    assert not token.is_expired(now() + timedelta(days=100_000))


@pytest.mark.parametrize(
    ("value", "delta"),
    [
        (timedelta(hours=1), timedelta(hours=1)),
        (relativedelta(days=2), timedelta(days=2)),
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_relative_expiry_shown_from_now(value: object, delta: timedelta) -> None:
    """A relative expiry shows as measured from the current time until authorized."""
    before = now()
    token = AuthToken("a", expires=value)  # type: ignore[arg-type]
    expires = token.expires
    after = now()
    assert expires is not None
    assert before + delta <= expires <= after + delta
    assert not token.expiry_spec.is_default


def test_absolute_expiry() -> None:
    """An absolute expiry is kept as that instant in UTC; naive means UTC."""
    when = datetime(2030, 5, 1, 12, tzinfo=UTC)
    assert AuthToken("a", expires=when).expires == when
    assert AuthToken("a", expires=datetime(2030, 5, 1, 12)).expires == when
    assert AuthToken("a", expires="2030-05-01T14:00:00+02:00").expires == when


def test_expiry_in_the_past_is_accepted_until_authorized() -> None:
    """A past expiry is refused at authorization, not by the model."""
    past = datetime(2000, 1, 1, tzinfo=UTC)
    token = AuthToken("a", expires=past)
    assert token.expires == past
    assert token.is_expired(now())


@pytest.mark.parametrize("value", ["soon", "", "1.5h", "2027-02-30"])
def test_unreadable_expiry(value: str) -> None:
    """An unreadable expiry is an InvalidArgument."""
    with pytest.raises(InvalidArgument):
        AuthToken("a", expires=value)


@pytest.mark.parametrize("value", [1, 1.5, True, b"30d"])
def test_wrongly_typed_expiry(value: object) -> None:
    """An expiry of a wrong type is a TypeError."""
    with pytest.raises(TypeError):
        AuthToken("a", expires=value)  # type: ignore[arg-type]


def test_is_expired_boundary() -> None:
    """A token is expired when now >= expires, not before."""
    when = datetime(2030, 1, 1, tzinfo=UTC)
    token = AuthToken("a", expires=when)
    assert not token.is_expired(when - timedelta(microseconds=1))
    assert token.is_expired(when)
    assert token.is_expired(when + timedelta(microseconds=1))


def test_relative_expiry_is_not_expired_before_authorization() -> None:
    """An unauthorized token with a relative expiry is not expired at any time."""
    token = AuthToken("a", expires="1h")
    assert not token.is_expired(now() + timedelta(days=365))


# -- read-only attributes and setters --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["key", "user", "created_at", "updated_at", "revoked_at", "last_used_at", "use_count",
     "parent_key", "bindings", "revoked", "expiry_spec"],
)
def test_engine_attributes_are_read_only(name: str) -> None:
    """Assigning an attribute the engine owns raises AttributeError and changes nothing."""
    token = AuthToken("a")
    before = getattr(token, name)
    with pytest.raises(AttributeError):
        setattr(token, name, "changed")
    assert getattr(token, name) == before


@pytest.mark.parametrize("name", ["key", "user", "created_at"])
def test_read_only_error_is_invalid_argument(name: str) -> None:
    """The read-only error is an InvalidArgument too, with a message naming the attribute."""
    token = AuthToken("a")
    with pytest.raises(InvalidArgument, match=name):
        setattr(token, name, "changed")


def test_unknown_attribute_cannot_be_set() -> None:
    """A token has no room for attributes it does not define."""
    token = AuthToken("a")
    with pytest.raises(AttributeError):
        token.scopez = "a"  # type: ignore[attr-defined]


def test_scope_setters() -> None:
    """scope and scopes may be assigned any scope form and are kept canonical."""
    token = AuthToken("a")
    token.scope = "b a b vfs:ikey?07"
    assert token.scopes == ("b", "a", "vfs:ikey?7")
    token.scopes = [1, "x"]  # type: ignore[assignment]
    assert token.scope == "vfs:ikey?1 x"
    token.scope = 5
    assert token.scopes == ("vfs:ikey?5",)


@pytest.mark.parametrize("value", ["", "vfs:ikey?", ["a b"], None, True])
def test_bad_scope_assignment_changes_nothing(value: object) -> None:
    """A refused scope assignment raises and leaves the scope as it was."""
    token = AuthToken("keep me")
    with pytest.raises(InvalidArgument):
        token.scope = value  # type: ignore[assignment]
    with pytest.raises(InvalidArgument):
        token.scopes = value  # type: ignore[assignment]
    assert token.scopes == ("keep", "me")


def test_data_setter() -> None:
    """data may be assigned a str or None; a refused value changes nothing."""
    token = AuthToken("a", "old")
    token.data = "new"
    assert token.data == "new"
    token.data = None
    assert token.data is None
    token.data = "kept"
    with pytest.raises(InvalidArgument):
        token.data = "x" * 65_537
    with pytest.raises(TypeError):
        token.data = 5  # type: ignore[assignment]
    assert token.data == "kept"


def test_description_setter() -> None:
    """description may be assigned a str; a refused value changes nothing."""
    token = AuthToken("a", description="old")
    token.description = "new"
    assert token.description == "new"
    with pytest.raises(InvalidArgument):
        token.description = "x" * 1025
    with pytest.raises(TypeError):
        token.description = None  # type: ignore[assignment]
    assert token.description == "new"


def test_expires_setter() -> None:
    """expires may be assigned any accepted form; a refused value changes nothing."""
    token = AuthToken("a")
    token.expires = "never"
    assert token.expires is None
    when = datetime(2031, 1, 1, tzinfo=UTC)
    token.expires = when
    assert token.expires == when
    with pytest.raises(InvalidArgument):
        token.expires = "soon"
    with pytest.raises(TypeError):
        token.expires = 3  # type: ignore[assignment]
    assert token.expires == when
    token.expires = "1h"
    assert token.expiry_spec.relative == timedelta(hours=1)
    token.expires = None
    assert token.expiry_spec == ExpirySpec()


# -- repr ------------------------------------------------------------------------------------


def test_repr_holds_no_data_or_description() -> None:
    """repr and str show the scope and expiry but never the data or description."""
    token = AuthToken("reports:read", SENTINEL, description=SENTINEL + "-d")
    for text in (repr(token), str(token)):
        assert SENTINEL not in text
        assert "reports:read" in text
    assert "+30 days" in repr(token)
    assert "never" in repr(AuthToken("a", expires=None))
    assert "2030-01-01" in repr(AuthToken("a", expires=datetime(2030, 1, 1)))


def test_errors_hold_no_rejected_data() -> None:
    """The error for over-long data does not echo the data back."""
    with pytest.raises(InvalidArgument) as info:
        AuthToken("a", SENTINEL * 5000)
    assert SENTINEL not in str(info.value)
    assert SENTINEL not in repr(info.value)


# -- Principal -------------------------------------------------------------------------------


def test_principal_is_frozen() -> None:
    """A Principal cannot be changed."""
    who = principal("read")
    with pytest.raises(dataclasses.FrozenInstanceError):
        who.user = "mallory"  # type: ignore[misc]


def test_principal_fields() -> None:
    """A Principal keeps who logged in, with which token, for what, from which script."""
    when = datetime(2030, 1, 1, tzinfo=UTC)
    who = Principal(user=7, token_key="k", scopes=("read",), data="d", expires=when,
                    script=Script(key=1))
    assert (who.user, who.token_key, who.scopes, who.data, who.expires) == (
        7, "k", ("read",), "d", when)
    assert who.script == Script(key=1)
    assert principal("a").script is None


def test_has_scope_exact() -> None:
    """has_scope() is exact and case-sensitive, with no prefix matching."""
    who = principal("reports:read", "ufs:/a/b")
    assert who.has_scope("reports:read")
    assert not who.has_scope("reports:READ")
    assert not who.has_scope("reports")
    assert not who.has_scope("reports:read:all")
    assert not who.has_scope("ufs:/a")
    assert not who.has_scope("")


def test_has_scope_compares_canonically() -> None:
    """has_scope() accepts a non-canonical spelling of a binding it holds."""
    who = principal("vfs:ikey?7", "ufs:/a/b")
    assert who.has_scope("vfs:ikey?007")
    assert who.has_scope("ufs:/a/./b")
    assert who.has_scope("ufs:/a//b")
    assert not who.has_scope("vfs:ikey?8")


@pytest.mark.parametrize("scope", ["a b", "vfs:ikey?x", "ufs:%", None, 8, True,
                                   b"read"])
def test_has_scope_bad_input_is_false(scope: object) -> None:
    """has_scope() answers False, never raises, for malformed or non-str scopes."""
    assert principal("read", "vfs:ikey?7").has_scope(scope) is False  # type: ignore[arg-type]


def test_has_scope_int_means_script_key() -> None:
    """has_scope(7) asks for the binding vfs:ikey?7, as AuthToken(7) would mean."""
    assert principal("read", "vfs:ikey?7").has_scope(7)


def test_require_passes_when_all_held() -> None:
    """require() returns quietly when every scope is held, or none is asked."""
    who = principal("a", "b")
    who.require("a")
    who.require("a", "b")
    who.require()


def test_require_names_missing_scopes() -> None:
    """require() raises PermissionDenied naming exactly the missing scopes, in order."""
    who = principal("a", "b")
    with pytest.raises(PermissionDenied) as info:
        who.require("x", "a", "y", "b")
    assert info.value.missing_scopes == ("x", "y")
    assert "'x'" in str(info.value)
    assert "'y'" in str(info.value)
    assert "'a'" not in str(info.value)


# -- check_user ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user", [0, 1, -5, 2**63 - 1, -(2**63), "alice", "ünï", "x" * 256, "7", " a "]
)
def test_check_user_accepts(user: object) -> None:
    """check_user() returns valid int and str user keys unchanged."""
    assert check_user(user) == user


@pytest.mark.parametrize("user", [True, False, None, 1.5, b"alice", ["alice"]])
def test_check_user_wrong_type(user: object) -> None:
    """check_user() refuses a bool or any non-int, non-str user with TypeError."""
    with pytest.raises(TypeError):
        check_user(user)


@pytest.mark.parametrize("user", ["", "x" * 257, "a\x00b", "a\nb", "a\ud800"])
def test_check_user_bad_str(user: str) -> None:
    """check_user() refuses an empty, over-long, control-character or surrogate str."""
    with pytest.raises(InvalidArgument):
        check_user(user)


@pytest.mark.parametrize(
    "user", [2**63, -(2**63) - 1, 2**20000], ids=["2^63", "-2^63-1", "2^20000"]
)
def test_check_user_int_fits_64_bits(user: int) -> None:
    """An int user outside 64 bits is refused, since databases store it as BIGINT."""
    with pytest.raises(InvalidArgument):
        check_user(user)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("alice", "alice", True),
    (42, 42, True),
    (42, "42", False),
    ("alice", "bob", False),
    (1, True, False),
    (None, None, False),
    ("alice", None, False),
    (None, 0, False),
])
def test_same_user(a: object, b: object, same: bool) -> None:
    """The same user means the same type and value; None is nobody."""
    assert same_user(a, b) is same and same_user(b, a) is same
