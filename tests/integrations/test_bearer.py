"""The bearer credential parser shared by the web integrations, with no application:
RFC 6750's grammar taken strictly (spaces only, no Unicode whitespace trimmed), another
scheme told apart as no credential, and, over arbitrary header values, no other error
than the refusal and no login unless the value after ``Bearer`` is exactly a token."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_support import assert_no_token

from authtoken import AuthToken, MemoryRepository, Security
from authtoken.integrations._bearer import (
    MAX_CREDENTIAL_LENGTH,
    BearerRefused,
    bearer_credential,
    login,
)

# Every character Python counts as whitespace, and the other invisible ones a copy and
# paste brings along: none of them may be trimmed from around a token.
UNICODE_SPACES = sorted({chr(c) for c in range(0x3000 + 1) if chr(c).isspace()}
                        | {"\u200b", "\u2060", "\ufeff", "\x00", "\x7f"})
B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
HOW = "send the token in an 'Authorization: Bearer <token>' header"


@pytest.fixture(scope="module")
def security() -> Iterator[Security]:
    with Security(MemoryRepository(), secret_keys=["bearer-test-key"]) as sec:
        yield sec


@pytest.fixture(scope="module")
def token(security: Security) -> str:
    return security.authorize_token(AuthToken("reports:read"), user="alice")


def refusal(value: str, query: str = "") -> BearerRefused:
    with pytest.raises(BearerRefused) as caught:
        bearer_credential([value], query)
    return caught.value


def read(value: str) -> str | BearerRefused:
    """The credential of a request with the one header ``value``, or its refusal."""
    try:
        return bearer_credential([value])
    except BearerRefused as refused:
        return refused


@pytest.mark.parametrize("value", [
    "Bearer {token}", "bearer {token}", "BEARER {token}", "Bearer   {token}",
    " \tBearer {token} \t",
])
def test_exactly_one_token_is_read(token: str, value: str) -> None:
    """The scheme in any case, one or more spaces, the token; spaces and tabs padding
    the whole value (as a server may leave them) are dropped."""
    assert bearer_credential([value.format(token=token)]) == token


@pytest.mark.parametrize(("where", "space"), [
    (where, space) for where in ("after", "before", "instead") for space in UNICODE_SPACES
    if space not in (" \t" if where != "instead" else " ")  # OWS, or the separator
], ids=lambda v: v if len(v) > 1 else f"U+{ord(v):04X}")
def test_other_whitespace_is_never_trimmed(token: str, space: str, where: str) -> None:
    """A no-break space, a line separator, a zero-width space... after the token,
    before it, or in place of the space after Bearer: refused, never trimmed away."""
    value = {"after": f"Bearer {token}{space}", "before": f"Bearer {space}{token}",
             "instead": f"Bearer{space}{token}"}[where]
    refused = refusal(value)
    assert refused.error == "invalid_request"
    assert_no_token([refused.description, str(refused), repr(refused)], token)


def test_a_tab_after_bearer_is_named(token: str) -> None:
    """'Bearer<TAB>token' is refused with a message that says what is wrong."""
    refused = refusal(f"Bearer\t{token}")
    assert refused.error == "invalid_request"
    assert refused.description == (
        f"Bearer and the token must be separated by a space, not a tab: {HOW}")


@pytest.mark.parametrize(("value", "description"), [
    ("", f"the Authorization header is empty: {HOW}"),
    (" \t ", f"the Authorization header is empty: {HOW}"),
    ("Bearer", f"no token after Bearer: {HOW}"),
    ("Bearer   ", f"no token after Bearer: {HOW}"),
    ("\u00a0Bearer {token}", f"the Authorization header does not start with a scheme: {HOW}"),
    ("Bearer{token}", f"a token must follow the scheme Bearer and a space: {HOW}"),
    ("Token {token}", f"a token must follow the scheme Bearer and a space: {HOW}"),
    ("{token}", f"a token must follow the scheme Bearer and a space: {HOW}"),
    ("Bearer {token} x", f"the Authorization header must hold one token: {HOW}"),
    ("Bearer {token},", f"the Authorization header must hold one token: {HOW}"),
    ('Bearer "{token}"', f"the Authorization header must hold one token: {HOW}"),
    ("Bearer \u00e9t\u00e9", f"the Authorization header must hold one token: {HOW}"),
    ("Bearer {token}\r\nX-Other: 1", f"the Authorization header must hold one token: {HOW}"),
])
def test_malformed_values_are_invalid_request(token: str, value: str,
                                              description: str) -> None:
    """Each malformed value is invalid_request with a message naming the fault, and
    none of them echoes the token."""
    refused = refusal(value.format(token=token))
    assert (refused.error, refused.status, refused.missing) == ("invalid_request", 401, False)
    assert refused.description == description
    assert_no_token([refused.description, refused.challenge], token)


@pytest.mark.parametrize("value", ["Basic YWxpY2U6c2VjcmV0", "basic x", "Negotiate",
                                   "Digest username=\"bob\", realm=\"x\"", "DPoP abc"])
def test_another_scheme_is_missing(value: str) -> None:
    """A scheme other than Bearer is no bearer credential: refused as 'missing', with
    the bare challenge, like no header at all."""
    refused = refusal(value)
    assert refused.missing
    assert (refused.error, refused.status, refused.challenge) == (None, 401, "Bearer")
    assert refused.description == f"the Authorization scheme is not Bearer: {HOW}"


def test_a_query_token_wins_over_another_scheme(token: str) -> None:
    """A token in the query string is refused even when the header is another scheme's,
    which alone would pass as anonymous."""
    refused = refusal("Basic YWxpY2U6c2VjcmV0", f"t={token}")
    assert refused.error == "invalid_request"
    assert "query string" in refused.description


def test_limits() -> None:
    """No header is missing; two are refused; an overlong one is refused unread."""
    with pytest.raises(BearerRefused) as none:
        bearer_credential([])
    assert none.value.missing
    with pytest.raises(BearerRefused) as two:
        bearer_credential(["Bearer a", "Bearer a"])
    assert two.value.error == "invalid_request"
    long = refusal("Bearer " + "a" * MAX_CREDENTIAL_LENGTH)
    assert long.description == "the Authorization header is too long"


_SETTINGS = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
# Text that is mostly the characters a fault would be made of.
_TRICKY = st.text(st.one_of(st.sampled_from([*UNICODE_SPACES, ",", '"', "=", "\t", " "]),
                            st.characters()), max_size=12)


@_SETTINGS
@given(value=st.text(max_size=200))
def test_any_header_value_is_read_or_refused(value: str) -> None:
    """Any header value gives a b64token or a BearerRefused, nothing else; a value read
    is 'Bearer' (any case), spaces and exactly the result, but for OWS padding."""
    credential = read(value)
    if isinstance(credential, BearerRefused):
        assert credential.status == 401
        assert credential.error in (None, "invalid_request")
        return
    assert B64TOKEN.fullmatch(credential)
    head = value.strip(" \t")
    assert head.lower().startswith("bearer ")
    assert head.endswith(credential)
    assert head[len("bearer"):-len(credential)].strip(" ") == ""


@_SETTINGS
@given(after=st.text(max_size=200), query=st.text(max_size=60))
def test_anything_after_bearer_is_read_or_refused(after: str, query: str) -> None:
    """'Bearer ' and arbitrary text, with an arbitrary query string: a BearerRefused
    or the text itself without its padding of spaces and tabs."""
    try:
        credential = bearer_credential(["Bearer " + after], query)
    except BearerRefused:
        return
    assert credential == after.strip(" \t")


@_SETTINGS
@given(before=_TRICKY, after=_TRICKY)
def test_no_login_unless_exactly_the_token(security: Security, token: str, before: str,
                                           after: str) -> None:
    """Whatever surrounds a real token after 'Bearer ', the request logs in only when
    that is nothing but spaces before it and spaces or tabs after it, and then the
    credential handed to the engine is exactly the token; anything else is refused,
    by the parser or by the engine, and no refusal echoes the token."""
    exact = before.strip(" ") == "" and after.strip(" \t") == ""
    try:
        credential = bearer_credential([f"Bearer {before}{token}{after}"])
        principal = login(security, credential, None)
    except BearerRefused as refused:
        assert not exact
        assert_no_token([refused.description, refused.challenge, repr(refused)], token)
        return
    assert exact
    assert credential == token
    assert principal.user == "alice"


@pytest.mark.parametrize("query", [
    # a string of the earlier format, with no checksum
    "report=atk_abcdefghijklmnop." + "s" * 43 + "." + "g" * 43,
    # the key and secret alone, under any name
    "x=abcdefghijklmnop." + "s" * 43,
    # percent-encoded twice
    "x=atk%255Fabcdefghijklmnop%252E" + "s" * 43,
])
def test_a_token_without_a_checksum_or_encoded_twice_in_the_query_is_refused(
        query: str) -> None:
    """What reaches an access log is refused, whatever format or encoding it came in."""
    with pytest.raises(BearerRefused) as refused:
        bearer_credential(["Bearer " + "atk_" + "a" * 16], query)
    assert refused.value.error == "invalid_request"
    assert "query string" in str(refused.value)
