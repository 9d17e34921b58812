"""``authtoken.issuers.spatium`` against a real Spatium-compatible authority on 127.0.0.1.

The authority (``authtoken.testing.SpatiumAuthority``) and the sessions share one
``FakeClock``: expiry is a matter of ``clock.advance`` rather than sleeping.  Nothing
in the HTTP layer is mocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authtoken import InvalidArgument, IssuerError, SessionExpired, SessionNotEstablished
from authtoken.issuers._core import Response
from authtoken.issuers.spatium import (
    AsyncAuthorizationSession,
    AsyncKeyAuthorizationSession,
    AsyncSpatiumClient,
    AuthorizationSession,
    FactorRequirement,
    KeyAuthorizationSession,
    PermissionTokens,
    SecurityToken,
    SpatiumClient,
    SpatiumProtocol,
)
from authtoken.testing import FakeClock, SpatiumAuthority

USERNAME = "CoolUser"
PASSWORD = "A.1234567-sentinel-password"
REFRESH = "permission/refresh"
ISSUE_BY_KEY = "permission/issue-by-key"
ISSUE_BY_FACTORS = "permission/issue-by-factors"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key for every authority of the run (generating one takes a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> FakeClock:
    """The clock of the authority and of the sessions."""
    return FakeClock()


@pytest.fixture
def authority(clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> Iterator[SpatiumAuthority]:
    """A running authority (15-minute permission tokens, 2-hour refresh tokens) with one
    account."""
    with SpatiumAuthority(clock=clock, private_key=rsa_key) as running:
        running.add_account(USERNAME, PASSWORD)
        yield running


@pytest.fixture
def client(authority: SpatiumAuthority) -> Iterator[SpatiumClient]:
    """A client of the authority."""
    with SpatiumClient(authority.url) as spatium:
        yield spatium


def claims(token: str, authority: SpatiumAuthority) -> dict[str, Any]:
    """The claims of an RS256 token, verified with the authority's public key."""
    return jwt.decode(token, authority.public_key_pem, algorithms=["RS256"],
                      options={"verify_exp": False, "verify_iat": False})


def unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def login(authority: SpatiumAuthority) -> SecurityToken:
    with SpatiumClient(authority.url) as spatium:
        return spatium.security_factor_credentials(USERNAME, PASSWORD)


def session(authority: SpatiumAuthority, clock: FakeClock, token_id: str = "device-1",
            **kwargs: Any) -> AuthorizationSession:
    """An established user session."""
    result = AuthorizationSession(authority.url, token_id, ["read", "secret"], clock=clock,
                                  **kwargs)
    result.establish([login(authority)])
    return result


# -- the client ----------------------------------------------------------------------------
def test_security_factor_credentials(client: SpatiumClient, authority: SpatiumAuthority,
                                     clock: FakeClock) -> None:
    """The credentials factor gives an HS256 security token with an aware UTC expiry."""
    token = client.security_factor_credentials(USERNAME, PASSWORD)
    assert isinstance(token, SecurityToken)
    assert token.issuer == "authorization-service"
    assert token.expires_at == clock() + timedelta(minutes=15)
    assert token.expires_at.tzinfo == timezone.utc
    assert jwt.get_unverified_header(token.token)["alg"] == "HS256"
    assert unverified(token.token)["magic"] == "securityTokenSchema"


def test_wrong_password_is_refused_with_status_code_and_request_id(
        client: SpatiumClient, authority: SpatiumAuthority) -> None:
    """A refusal raises IssuerError with the HTTP status, the upstream code and the
    request id that was sent."""
    with pytest.raises(IssuerError) as caught:
        client.security_factor_credentials(USERNAME, "wrong")
    error = caught.value
    assert (error.status, error.code) == (401, "INVALID_CREDENTIALS")
    assert error.request_id == authority.calls[-1].request_id
    assert uuid.UUID(str(error.request_id))


def test_probe_returns_the_factor_tree(client: SpatiumClient) -> None:
    """``probe`` parses Spatium's tree: "or" of credentials and email."""
    tree = client.probe(["read", "secret"])
    assert tree == FactorRequirement("or", None, (FactorRequirement("just", "credentials"),
                                                  FactorRequirement("just", "email")))
    assert tree.factor_types() == {"credentials", "email"}
    assert tree.satisfied_by(["email"]) and not tree.satisfied_by(["sms"])


def test_probe_parses_nested_trees(client: SpatiumClient, authority: SpatiumAuthority) -> None:
    """Nested "and"/"or" nodes become nested FactorRequirement values."""
    authority.factors = {"combination": "and", "types": [
        {"combination": "just", "type": "credentials"},
        {"combination": "or", "types": [{"combination": "just", "type": "email"},
                                        {"combination": "just", "type": "sms"}]}]}
    tree = client.probe("read")
    assert tree.combination == "and" and tree.type is None
    assert tree.types[1].types[1] == FactorRequirement("just", "sms")
    assert tree.satisfied_by({"credentials", "sms"}) and not tree.satisfied_by({"credentials"})


def test_issue_by_key(client: SpatiumClient, authority: SpatiumAuthority,
                      clock: FakeClock) -> None:
    """``issue_by_key`` gives RS256 permission and refresh tokens with Spatium's claims."""
    tokens = client.issue_by_key("backend", ["register"], authority.merchant_key)
    assert isinstance(tokens, PermissionTokens)
    assert tokens.issuer == "authorization-service"
    assert tokens.permission_expires_at == clock() + timedelta(minutes=15)
    assert tokens.refresh_expires_at == clock() + timedelta(hours=2)
    access = claims(tokens.permission_token, authority)
    assert access["magic"] == "permissionTokenSchema"
    assert access["accountId"] is None and access["merchantId"] == authority.merchant_id
    assert access["permissions"] == ["register"]
    assert access["iss"] == "authorization-service"
    assert access["exp"] == tokens.permission_expires_at.timestamp()
    refresh = claims(tokens.refresh_token, authority)
    assert refresh["magic"] == "permissionRefreshTokenSchema"
    assert refresh["tokenId"] == "backend" and uuid.UUID(refresh["tokenRefreshId"])


def test_issue_by_key_refusals(client: SpatiumClient, authority: SpatiumAuthority) -> None:
    """A wrong key is a 401; a key without the permission a 403."""
    with pytest.raises(IssuerError) as wrong:
        client.issue_by_key("backend", ["register"], "not-a-key")
    assert (wrong.value.status, wrong.value.code) == (401, "INVALID_MERCHANT_KEY")
    limited = authority.add_merchant(permissions=["read"])
    with pytest.raises(IssuerError) as denied:
        client.issue_by_key("backend", ["register"], limited.key)
    assert (denied.value.status, denied.value.code) == (403, "PERMISSION_DENIED")


def test_issue_by_factors(client: SpatiumClient, authority: SpatiumAuthority) -> None:
    """``issue_by_factors`` takes security tokens (objects or strings) for a user's pair."""
    security = client.security_factor_credentials(USERNAME, PASSWORD)
    by_object = client.issue_by_factors("device-1", ["read", "secret"], [security])
    by_string = client.issue_by_factors("device-2", ["read"], [security.token])
    account_id = unverified(security.token)["accountId"]
    assert claims(by_object.permission_token, authority)["accountId"] == account_id
    assert claims(by_string.permission_token, authority)["permissions"] == ["read"]
    with pytest.raises(IssuerError) as caught:
        client.issue_by_factors("device-3", ["read"], ["forged.security.token"])
    assert caught.value.status == 401


def test_refresh_rotates(client: SpatiumClient, authority: SpatiumAuthority) -> None:
    """A refresh gives a new pair; the refresh token used is refused afterwards."""
    first = client.issue_by_key("backend", ["register"], authority.merchant_key)
    second = client.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert claims(second.permission_token, authority)["permissions"] == ["register"]
    with pytest.raises(IssuerError) as caught:
        client.refresh(first)
    assert (caught.value.status, caught.value.code) == (401, "INVALID_REFRESH_TOKEN")
    assert [a.accepted for a in authority.refresh_attempts] == [True, False]
    assert client.refresh(second).permission_token


def test_create_account_with_credentials(client: SpatiumClient,
                                         authority: SpatiumAuthority) -> None:
    """A register-permission token creates an account that can then log in."""
    register = client.issue_by_key("backend", ["register"], authority.merchant_key)
    account_id = client.create_account_with_credentials(
        register.permission_token, "NewUser", "N.7654321")
    assert authority.account(account_id)["username"] == "NewUser"
    token = client.security_factor_credentials("NewUser", "N.7654321")
    assert unverified(token.token)["accountId"] == account_id
    with pytest.raises(IssuerError) as taken:
        client.create_account_with_credentials(register.permission_token, "NewUser", "x")
    assert taken.value.status == 409
    reader = client.issue_by_key("backend-2", ["read"], authority.merchant_key)
    with pytest.raises(IssuerError) as denied:
        client.create_account_with_credentials(reader.permission_token, "Other", "x")
    assert denied.value.status == 403


def test_email_intent_and_confirm(client: SpatiumClient, authority: SpatiumAuthority) -> None:
    """The emailed code confirms the utility token and creates an account."""
    register = client.issue_by_key("backend", ["register"], authority.merchant_key)
    utility = client.email_intent(register.permission_token, "user@example.com")
    assert unverified(utility)["magic"] == "utilityTokenSchema"
    code = authority.email_code("user@example.com")
    assert code == authority.last_email_code
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(IssuerError) as caught:
        client.email_confirm(utility, wrong)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_CODE")
    account_id = client.email_confirm(utility, code)
    assert authority.account(account_id)["email"] == "user@example.com"


def test_each_request_has_a_fresh_uuid_request_id(client: SpatiumClient,
                                                  authority: SpatiumAuthority) -> None:
    """Every request carries its own UUID in the ``request-id`` header."""
    client.probe(["read"])
    client.probe(["read"])
    client.security_factor_credentials(USERNAME, PASSWORD)
    ids = [call.request_id for call in authority.calls]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(uuid.UUID(str(i)).version == 4 for i in ids)


def test_server_error_raises_with_status(client: SpatiumClient,
                                         authority: SpatiumAuthority) -> None:
    """A 503 raises IssuerError with status 503 and the upstream code."""
    authority.fail("permission/probe", 503)
    with pytest.raises(IssuerError) as caught:
        client.probe(["read"])
    assert (caught.value.status, caught.value.code) == (503, "SERVICE_UNAVAILABLE")
    assert client.probe(["read"]).combination == "or"


def test_unreachable_issuer_raises_status_none(authority: SpatiumAuthority) -> None:
    """A refused connection raises IssuerError with ``status=None``."""
    with SpatiumClient(authority.url, timeout=5) as spatium:
        authority.stop()
        with pytest.raises(IssuerError) as caught:
            spatium.probe(["read"])
    assert caught.value.status is None


def test_dropped_connection_raises_status_none(client: SpatiumClient,
                                               authority: SpatiumAuthority) -> None:
    """A connection closed without an answer raises IssuerError with ``status=None``."""
    authority.drop("permission/probe")
    with pytest.raises(IssuerError) as caught:
        client.probe(["read"])
    assert caught.value.status is None


@pytest.mark.parametrize(("status", "body", "detail"), [
    (200, b"<html>", "not JSON"),
    (200, b"[1, 2]", "not an object"),
    (200, b'{"requestId": "x"}', "no data object"),
    (200, b'{"data": {"permissionToken": {"permissionToken": "t"}}}', "permissionRefreshToken"),
    (200, b'{"data": {"permissionToken": {"permissionToken": "t", "expiresAt": "soon"},'
          b' "permissionRefreshToken": {"permissionRefreshToken": "r", "expiresAt": 1}}}',
     "expiresAt"),
    (200, b'{"data": {"permissionToken": {"permissionToken": "t", "expiresAt": 1e300},'
          b' "permissionRefreshToken": {"permissionRefreshToken": "r", "expiresAt": 1}}}',
     "out of range"),
])
def test_malformed_answers_raise_issuer_error(status: int, body: bytes, detail: str) -> None:
    """A malformed answer raises IssuerError naming what is wrong, with the sent request id."""
    flow = SpatiumProtocol("https://spatium.test/authorization/v1").refresh("refresh-token")
    request = next(flow)
    assert request.url == "https://spatium.test/authorization/v1/api/permission/refresh"
    assert request.json == {"permissionRefreshToken": "refresh-token"}
    with pytest.raises(IssuerError) as caught:
        flow.send(Response(status, {}, body))
    assert detail in str(caught.value)
    assert caught.value.request_id == dict(request.headers)["request-id"]


@pytest.mark.parametrize("expires_at", [1893456900, 1893456900000, "2030-01-01T00:15:00Z"])
def test_expiry_in_seconds_milliseconds_or_iso(expires_at: Any) -> None:
    """``expiresAt`` in seconds (what Spatium sends), milliseconds or ISO 8601 becomes aware
    UTC."""
    flow = SpatiumProtocol("https://spatium.test").security_factor_credentials("u", "p")
    next(flow)
    body = {"data": {"securityToken": "t", "issuer": "i", "expiresAt": expires_at}}
    with pytest.raises(StopIteration) as done:
        flow.send(Response(200, {}, json.dumps(body).encode()))
    assert done.value.value.expires_at == datetime(2030, 1, 1, 0, 15, tzinfo=timezone.utc)


def test_requests_are_built_as_spatium_expects() -> None:
    """Bearer calls send ``Authorization: Bearer``; bodies use Spatium's field names."""
    protocol = SpatiumProtocol("https://spatium.test/authorization/v1/")
    request = next(protocol.email_intent("perm-token", "a@example.com"))
    headers = dict(request.headers)
    assert headers["authorization"] == "Bearer perm-token"
    assert request.json == {"email": "a@example.com"}
    issue = next(protocol.issue_by_factors("t", "read secret", ["s1", "s2"]))
    assert issue.json == {"tokenId": "t", "permissions": ["read", "secret"],
                          "securityTokens": ["s1", "s2"]}
    assert next(protocol.email_confirm("u", 123456)).json == {"utilityToken": "u",
                                                             "code": "123456"}


@pytest.mark.parametrize(("call", "error"), [
    (lambda c: c.probe([]), InvalidArgument),
    (lambda c: c.probe(7), TypeError),
    (lambda c: c.probe(["read", 7]), TypeError),
    (lambda c: c.issue_by_key("", ["read"], "key"), InvalidArgument),
    (lambda c: c.issue_by_factors("t", ["read"], []), InvalidArgument),
    (lambda c: c.security_factor_credentials("u", None), TypeError),
])
def test_bad_arguments_raise_before_sending(call: Any, error: type[Exception],
                                            client: SpatiumClient,
                                            authority: SpatiumAuthority) -> None:
    """Bad arguments raise InvalidArgument or TypeError and send nothing."""
    with pytest.raises(error):
        call(client)
    assert authority.calls == []


def test_bad_constructor_arguments() -> None:
    """A bad URL, leeway or timeout is refused when the object is made."""
    with pytest.raises(InvalidArgument):
        SpatiumClient("ftp://spatium.test")
    with pytest.raises(InvalidArgument):
        AuthorizationSession("https://spatium.test", "t", ["read"], leeway=-1)
    with pytest.raises(TypeError):
        AuthorizationSession("https://spatium.test", "t", ["read"], leeway=True)
    with pytest.raises(InvalidArgument):
        KeyAuthorizationSession("https://spatium.test", "t", ["read"], "key", timeout=0)
    with pytest.raises(InvalidArgument):
        KeyAuthorizationSession("https://spatium.test", "t", ["read"], "")


def test_results_are_frozen_and_validated() -> None:
    """Result values are frozen, and naive datetimes are refused."""
    token = SecurityToken("t", "iss", datetime(2030, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.token = "other"  # type: ignore[misc]
    with pytest.raises(InvalidArgument):
        SecurityToken("t", "iss", datetime(2030, 1, 1))
    with pytest.raises(InvalidArgument):
        FactorRequirement("just")


def test_a_given_httpx_client_is_left_open(authority: SpatiumAuthority) -> None:
    """A client passed in is used and not closed by ``close()``."""
    with httpx.Client() as http:
        with SpatiumClient(authority.url, client=http) as spatium:
            assert spatium.probe(["read"]).combination == "or"
        assert not http.is_closed
        with session(authority, FakeClock(), client=http) as user:
            assert user.get_permission_token()
        assert not http.is_closed


@pytest.mark.asyncio
async def test_async_client(authority: SpatiumAuthority) -> None:
    """The async client makes the same calls with the same results."""
    async with AsyncSpatiumClient(authority.url) as spatium:
        security, tree = await asyncio.gather(
            spatium.security_factor_credentials(USERNAME, PASSWORD), spatium.probe(["read"]))
        assert tree.satisfied_by(["credentials"])
        user = await spatium.issue_by_factors("device-1", ["read"], [security])
        renewed = await spatium.refresh(user)
        assert claims(renewed.permission_token, authority)["accountId"]
        register = await spatium.issue_by_key("backend", ["register"], authority.merchant_key)
        assert await spatium.create_account_with_credentials(
            register.permission_token, "AsyncUser", "pw")
        utility = await spatium.email_intent(register.permission_token, "b@example.com")
        assert await spatium.email_confirm(utility, authority.email_code("b@example.com"))
        with pytest.raises(IssuerError) as caught:
            await spatium.refresh(user)
        assert caught.value.status == 401


# -- AuthorizationSession ------------------------------------------------------------------
def test_session_life_cycle(authority: SpatiumAuthority, clock: FakeClock) -> None:
    """A token is served without requests until ``leeway`` before expiry, then refreshed;
    ``refresh()`` refreshes at once."""
    with session(authority, clock) as user:
        first = user.get_permission_token()
        assert claims(first, authority)["permissions"] == ["read", "secret"]
        clock.advance(minutes=13)
        assert user.get_permission_token() == first
        assert authority.count(REFRESH) == 0
        clock.advance(minutes=1, seconds=1)  # within the default 60 s leeway
        second = user.get_permission_token()
        assert second != first and authority.count(REFRESH) == 1
        assert user.expires_at == clock() + timedelta(minutes=15)
        clock.advance(seconds=1)  # tokens of the same second and claims are identical
        user.refresh()
        assert user.get_permission_token() not in (first, second)
        assert authority.count(REFRESH) == 2


def test_leeway_accepts_seconds_and_timedelta(authority: SpatiumAuthority,
                                              clock: FakeClock) -> None:
    """``leeway`` as a ``timedelta`` or seconds moves the refresh point."""
    with session(authority, clock, leeway=timedelta(minutes=5)) as user:
        first = user.get_permission_token()
        clock.advance(minutes=9, seconds=59)
        assert user.get_permission_token() == first
        clock.advance(seconds=2)
        assert user.get_permission_token() != first
    with session(authority, clock, "device-2", leeway=0) as exact:
        first = exact.get_permission_token()
        clock.advance(minutes=14, seconds=59)
        assert exact.get_permission_token() == first


def test_short_tokens_are_not_refreshed_on_every_call(
        clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> None:
    """A token shorter-lived than the leeway is still kept for half its life."""
    with SpatiumAuthority(clock=clock, private_key=rsa_key, permission_lifetime=20) as short:
        short.add_account(USERNAME, PASSWORD)
        with session(short, clock) as user:
            first = user.get_permission_token()
            clock.advance(seconds=9)
            assert user.get_permission_token() == first
            clock.advance(seconds=2)
            assert user.get_permission_token() != first
            assert short.count(REFRESH) == 1


def test_not_established(authority: SpatiumAuthority) -> None:
    """Before ``establish`` every call raises SessionNotEstablished and sends nothing."""
    with AuthorizationSession(authority.url, "device-1", ["read"]) as user:
        with pytest.raises(SessionNotEstablished):
            user.get_permission_token()
        with pytest.raises(SessionNotEstablished):
            user.refresh()
        assert user.expires_at is None
    assert authority.calls == []


@pytest.mark.asyncio
async def test_async_not_established(authority: SpatiumAuthority) -> None:
    """The async session raises SessionNotEstablished before ``establish`` too."""
    async with AsyncAuthorizationSession(authority.url, "device-1", ["read"]) as user:
        with pytest.raises(SessionNotEstablished):
            await user.get_permission_token()
        with pytest.raises(SessionNotEstablished):
            await user.refresh()


def test_establish_replaces_the_previous_session(authority: SpatiumAuthority,
                                                 clock: FakeClock) -> None:
    """A second ``establish`` gets a new pair; the old refresh token is stale upstream."""
    with session(authority, clock) as user:
        first = user.get_permission_token()
        user.establish([login(authority)])
        assert authority.count(ISSUE_BY_FACTORS) == 2
        clock.advance(minutes=14, seconds=30)
        assert user.get_permission_token() != first
        assert [a.accepted for a in authority.refresh_attempts] == [True]


def test_failed_establish_keeps_the_previous_session(authority: SpatiumAuthority,
                                                     clock: FakeClock) -> None:
    """A refused ``establish`` raises and leaves the previous session working."""
    with session(authority, clock) as user:
        first = user.get_permission_token()
        with pytest.raises(IssuerError) as caught:
            user.establish(["forged.security.token"])
        assert caught.value.status == 401
        assert user.get_permission_token() == first


def test_expired_refresh_token_expires_the_session(authority: SpatiumAuthority,
                                                   clock: FakeClock) -> None:
    """Past the refresh token's own expiry: SessionExpired, without sending it, until
    ``establish`` again."""
    with session(authority, clock) as user:
        clock.advance(hours=2, seconds=1)
        with pytest.raises(SessionExpired):
            user.get_permission_token()
        with pytest.raises(SessionExpired):
            user.get_permission_token()
        with pytest.raises(SessionExpired):
            user.refresh()
        assert authority.count(REFRESH) == 0
        assert "expired" in repr(user)
        user.establish([login(authority)])
        assert claims(user.get_permission_token(), authority)["permissions"]


def test_refused_refresh_token_expires_the_session(authority: SpatiumAuthority,
                                                   clock: FakeClock) -> None:
    """A refresh token the authority refuses (revoked) gives SessionExpired with the
    status, and no further request is made with it."""
    with session(authority, clock) as user:
        authority.revoke("device-1")
        clock.advance(minutes=14, seconds=30)
        with pytest.raises(SessionExpired) as caught:
            user.get_permission_token()
        assert (caught.value.status, caught.value.code) == (401, "INVALID_REFRESH_TOKEN")
        clock.advance(minutes=5)
        with pytest.raises(SessionExpired):
            user.get_permission_token()
        assert authority.count(REFRESH) == 1


def test_a_refresh_token_is_never_sent_twice(authority: SpatiumAuthority,
                                             clock: FakeClock) -> None:
    """Over many refreshes each refresh token goes out once and is accepted."""
    with session(authority, clock, leeway=30) as user:
        tokens = {user.get_permission_token()}
        for _ in range(12):
            clock.advance(minutes=14, seconds=40)
            tokens.add(user.get_permission_token())
            user.get_permission_token()
        user.refresh()
    attempts = authority.refresh_attempts
    assert len(attempts) == 13 and all(a.accepted for a in attempts)
    assert len({a.refresh_id for a in attempts}) == 13
    assert len(tokens) == 13


def test_dropped_refresh_is_not_resent(authority: SpatiumAuthority, clock: FakeClock) -> None:
    """A refresh whose connection dropped after sending is never retried with the same
    refresh token; the valid token still serves, then the session expires."""
    with session(authority, clock) as user:
        first = user.get_permission_token()
        authority.drop(REFRESH)
        clock.advance(minutes=14, seconds=10)
        assert user.get_permission_token() == first
        clock.advance(seconds=30)
        assert user.get_permission_token() == first
        with pytest.raises(SessionExpired):
            user.refresh()
        assert authority.count(REFRESH) == 1
        clock.advance(minutes=1)
        with pytest.raises(SessionExpired):
            user.get_permission_token()
        assert authority.count(REFRESH) == 1


# -- transient failures --------------------------------------------------------------------
def test_server_errors_keep_the_valid_token_then_raise(authority: SpatiumAuthority,
                                                       clock: FakeClock) -> None:
    """503s while the token is valid: the token is served, attempts back off; once it has
    expired the 503 is raised; when the authority recovers, so does the session."""
    with session(authority, clock) as user:
        first = user.get_permission_token()
        authority.fail(REFRESH, 503, times=1000)
        clock.advance(minutes=14, seconds=10)
        assert user.get_permission_token() == first
        assert authority.count(REFRESH) == 1
        assert user.get_permission_token() == first  # backing off: no request
        assert authority.count(REFRESH) == 1
        clock.advance(seconds=1)
        assert user.get_permission_token() == first
        assert authority.count(REFRESH) == 2
        with pytest.raises(IssuerError) as manual:
            user.refresh()
        assert manual.value.status == 503
        clock.advance(minutes=1)
        with pytest.raises(IssuerError) as caught:
            user.get_permission_token()
        assert caught.value.status == 503
        assert not isinstance(caught.value, SessionExpired)
        authority.clear_faults()
        clock.advance(minutes=1)
        assert user.get_permission_token() != first
    assert [a.accepted for a in authority.refresh_attempts] == [True]


def test_unreachable_authority_keeps_the_valid_token_then_raises(
        authority: SpatiumAuthority, clock: FakeClock) -> None:
    """With the authority down the token is served while valid, then IssuerError with
    ``status=None``; after a restart the same refresh token still works."""
    with session(authority, clock, timeout=5) as user:
        first = user.get_permission_token()
        authority.stop()
        clock.advance(minutes=14, seconds=10)
        assert user.get_permission_token() == first
        clock.advance(minutes=1)
        with pytest.raises(IssuerError) as caught:
            user.get_permission_token()
        assert caught.value.status is None
        authority.start()
        clock.advance(minutes=1)
        assert user.get_permission_token() != first
    assert [a.accepted for a in authority.refresh_attempts] == [True]


# -- KeyAuthorizationSession ---------------------------------------------------------------
def test_key_session_issues_on_first_use(authority: SpatiumAuthority, clock: FakeClock) -> None:
    """The first call issues by key (no establish); later calls reuse the token."""
    with KeyAuthorizationSession(authority.url, "backend", ["register"],
                                 authority.merchant_key, clock=clock) as backend:
        token = backend.get_permission_token()
        assert backend.get_permission_token() == token
        assert claims(token, authority)["merchantId"] == authority.merchant_id
        assert authority.count(ISSUE_BY_KEY) == 1
        clock.advance(minutes=14, seconds=30)
        assert backend.get_permission_token() != token
        assert (authority.count(REFRESH), authority.count(ISSUE_BY_KEY)) == (1, 1)


def test_key_session_reissues_when_refused(authority: SpatiumAuthority,
                                           clock: FakeClock) -> None:
    """A refused refresh token is replaced by a new pair issued by key."""
    with KeyAuthorizationSession(authority.url, "backend", ["register"],
                                 authority.merchant_key, clock=clock) as backend:
        first = backend.get_permission_token()
        authority.revoke("backend")
        clock.advance(minutes=14, seconds=30)
        second = backend.get_permission_token()
        assert second != first and claims(second, authority)["permissions"] == ["register"]
        assert (authority.count(REFRESH), authority.count(ISSUE_BY_KEY)) == (1, 2)
        clock.advance(minutes=14, seconds=30)
        assert backend.get_permission_token() != second
        assert (authority.count(REFRESH), authority.count(ISSUE_BY_KEY)) == (2, 2)


def test_key_session_reissues_when_refresh_token_expired(authority: SpatiumAuthority,
                                                         clock: FakeClock) -> None:
    """A refresh token past its expiry is not sent: the pair is issued by key again."""
    with KeyAuthorizationSession(authority.url, "backend", ["register"],
                                 authority.merchant_key, clock=clock) as backend:
        first = backend.get_permission_token()
        clock.advance(hours=3)
        assert backend.get_permission_token() != first
        assert (authority.count(REFRESH), authority.count(ISSUE_BY_KEY)) == (0, 2)


def test_key_session_wrong_key(authority: SpatiumAuthority) -> None:
    """A refused merchant key raises IssuerError with the status and code."""
    with KeyAuthorizationSession(authority.url, "backend", ["register"], "wrong-key",
                                 ) as backend, pytest.raises(IssuerError) as caught:
        backend.get_permission_token()
    assert (caught.value.status, caught.value.code) == (401, "INVALID_MERCHANT_KEY")


@pytest.mark.asyncio
async def test_async_key_session(authority: SpatiumAuthority, clock: FakeClock) -> None:
    """The async key session issues, refreshes and re-issues like the sync one."""
    async with AsyncKeyAuthorizationSession(authority.url, "backend", ["register"],
                                            authority.merchant_key, clock=clock) as backend:
        first = await backend.get_permission_token()
        clock.advance(seconds=1)  # tokens of the same second and claims are identical
        await backend.refresh()
        second = await backend.get_permission_token()
        assert second != first
        authority.revoke("backend")
        clock.advance(seconds=1)
        await backend.refresh()
        assert await backend.get_permission_token() != second
        assert (authority.count(REFRESH), authority.count(ISSUE_BY_KEY)) == (2, 2)


@pytest.mark.asyncio
async def test_async_session_life_cycle(authority: SpatiumAuthority, clock: FakeClock) -> None:
    """The async session establishes, refreshes, and expires when refused."""
    async with AsyncAuthorizationSession(authority.url, "device-1", ["read"],
                                         clock=clock) as user:
        await user.establish(login(authority))
        first = await user.get_permission_token()
        clock.advance(minutes=14, seconds=30)
        assert await user.get_permission_token() != first
        authority.revoke("device-1")
        with pytest.raises(SessionExpired):
            await user.refresh()
        with pytest.raises(SessionExpired):
            await user.get_permission_token()
        await user.establish([login(authority)])
        assert await user.get_permission_token()


# -- one refresh at a time -----------------------------------------------------------------
def test_64_threads_share_one_refresh(authority: SpatiumAuthority, clock: FakeClock) -> None:
    """64 threads asking across an expiry cause exactly one refresh request."""
    with session(authority, clock) as user:
        first = user.get_permission_token()
        clock.advance(minutes=14, seconds=30)
        authority.delay(REFRESH, 0.2)  # keep the refresh in flight while the others arrive
        barrier = threading.Barrier(64)
        results: list[str] = []
        errors: list[BaseException] = []

        def worker() -> None:
            barrier.wait()
            try:
                results.append(user.get_permission_token())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(results) == 64 and len(set(results)) == 1 and results[0] != first
        assert authority.count(REFRESH) == 1


def test_64_threads_share_one_issue_by_key(authority: SpatiumAuthority,
                                           clock: FakeClock) -> None:
    """64 threads on a new key session cause exactly one issue-by-key request."""
    with KeyAuthorizationSession(authority.url, "backend", ["register"],
                                 authority.merchant_key, clock=clock) as backend:
        authority.delay(ISSUE_BY_KEY, 0.2)
        barrier = threading.Barrier(64)
        results: list[str] = []

        def worker() -> None:
            barrier.wait()
            results.append(backend.get_permission_token())

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 64 and len(set(results)) == 1
        assert authority.count(ISSUE_BY_KEY) == 1


@pytest.mark.asyncio
async def test_64_coroutines_share_one_refresh(authority: SpatiumAuthority,
                                               clock: FakeClock) -> None:
    """64 coroutines gathered across an expiry cause exactly one refresh request."""
    async with AsyncAuthorizationSession(authority.url, "device-1", ["read"],
                                         clock=clock) as user:
        await user.establish([login(authority)])
        first = await user.get_permission_token()
        clock.advance(minutes=14, seconds=30)
        authority.delay(REFRESH, 0.2)
        results = await asyncio.gather(*(user.get_permission_token() for _ in range(64)))
        assert len(set(results)) == 1 and results[0] != first
        assert authority.count(REFRESH) == 1


# -- no secrets ----------------------------------------------------------------------------
def test_no_secret_in_messages_reprs_or_logs(authority: SpatiumAuthority, clock: FakeClock,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """No password, merchant key or token appears in any message, repr or log record."""
    caplog.set_level(logging.DEBUG, logger="authtoken")
    secrets_seen: list[str] = [PASSWORD, authority.merchant_key]
    texts: list[str] = []

    def record(*objects: object) -> None:
        for obj in objects:
            texts.extend((repr(obj), str(obj)))
            if isinstance(obj, BaseException):
                texts.extend(str(arg) for arg in obj.args)
                cause = obj.__cause__ or obj.__context__
                if cause is not None:
                    texts.extend((repr(cause), str(cause)))

    def expect_error(call: Any) -> None:
        with pytest.raises(IssuerError) as caught:
            call()
        record(caught.value)

    with SpatiumClient(authority.url) as spatium:
        security = spatium.security_factor_credentials(USERNAME, PASSWORD)
        tokens = spatium.issue_by_key("backend", ["register"], authority.merchant_key)
        renewed = spatium.refresh(tokens)
        utility = spatium.email_intent(renewed.permission_token, "c@example.com")
        secrets_seen += [security.token, tokens.permission_token, tokens.refresh_token,
                         renewed.permission_token, renewed.refresh_token, utility,
                         authority.email_code("c@example.com")]
        record(spatium, security, tokens, renewed)
        expect_error(lambda: spatium.security_factor_credentials(USERNAME, PASSWORD + "x"))
        expect_error(lambda: spatium.refresh(tokens))
        expect_error(lambda: spatium.issue_by_key("b", ["x"], authority.merchant_key + "x"))
        expect_error(lambda: spatium.email_confirm(utility, "not-the-code"))
    with session(authority, clock) as user, KeyAuthorizationSession(
            authority.url, "backend", ["register"], authority.merchant_key,
            clock=clock) as backend:
        secrets_seen += [user.get_permission_token(), backend.get_permission_token()]
        record(user, backend)
        authority.fail(REFRESH, 503)
        clock.advance(minutes=14, seconds=30)
        secrets_seen += [backend.get_permission_token()]
        authority.revoke_all()
        clock.advance(minutes=1)
        expect_error(user.get_permission_token)
        secrets_seen += [backend.get_permission_token()]
        record(user, backend)
    texts.extend(r.getMessage() for r in caplog.records)
    texts.extend(str(r.args) for r in caplog.records)
    assert any("Spatium" in r.getMessage() for r in caplog.records)
    # A JWT's header is public and shared; its signature part is what must not leak.
    needles = [s.rsplit(".", 1)[-1] for s in secrets_seen]
    for text in texts:
        for needle in needles:
            assert needle not in text


# -- extras --------------------------------------------------------------------------------
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
try:
    import {target}
except ImportError as exc:
    print(exc)
"""


@pytest.mark.parametrize(("module", "target", "extra"), [
    ("httpx", "authtoken.issuers.spatium", "authtoken[issuers]"),
    ("jwt", "authtoken.testing._spatium", "authtoken[testing]"),
    ("passlib", "authtoken.testing._spatium", "authtoken[testing]"),
])
def test_a_missing_extra_names_it(module: str, target: str, extra: str) -> None:
    """Without its dependencies a module says which extra to install."""
    result = subprocess.run([sys.executable, "-c", BLOCK.format(module=module, target=target)],
                            capture_output=True, text=True, timeout=60, check=True)
    assert extra in result.stdout


def test_authtoken_testing_stays_light() -> None:
    """``import authtoken.testing`` loads neither the HTTP server nor PyJWT nor libpass."""
    code = ("import sys, authtoken.testing; print(sorted(m for m in "
            "('jwt', 'passlib', 'httpx', 'http.server') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# -- credentials only over https -------------------------------------------------------------
def refuse_into(built: list[httpx.Request]) -> Any:
    """A MockTransport handler that records each request it is given and answers 500."""
    def handler(request: httpx.Request) -> httpx.Response:
        built.append(request)
        return httpx.Response(500)
    return handler


@pytest.mark.parametrize("url", ["http://spatium.example.test/authorization/v1",
                                 "http://10.1.2.3", "http://127.0.0.1.example.test",
                                 f"https://u:{PASSWORD}@spatium.example.test",
                                 f"http://u:{PASSWORD}@127.0.0.1:1"])
def test_every_spatium_face_needs_https_away_from_loopback(url: str) -> None:
    """Clients and sessions refuse plain http off loopback and URLs holding credentials,
    before any request is built, without echoing a password."""
    built: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(refuse_into(built))) as client:
        for make in (lambda: SpatiumClient(url, client=client),
                     lambda: AuthorizationSession(url, "t", ["read"], client=client),
                     lambda: KeyAuthorizationSession(url, "t", ["read"], "merchant-key",
                                                     client=client)):
            with pytest.raises(InvalidArgument) as info:
                make()
            assert PASSWORD not in str(info.value)
    for make_async in (lambda: AsyncSpatiumClient(url),
                       lambda: AsyncAuthorizationSession(url, "t", ["read"]),
                       lambda: AsyncKeyAuthorizationSession(url, "t", ["read"], "k")):
        with pytest.raises(InvalidArgument):
            make_async()
    assert built == []


def test_spatium_accepts_https_and_loopback_http() -> None:
    """https:// anywhere and http:// on a loopback host are accepted."""
    for url in ("https://cloud.spatium.net/authorization/v1", "http://localhost:8080",
                "http://[::1]:8080/v1", "http://127.0.0.2"):
        SpatiumClient(url).close()


# -- failures stay bounded and typed ---------------------------------------------------------
def test_a_garbled_refresh_answer_keeps_the_valid_token(authority: SpatiumAuthority,
                                                        clock: FakeClock) -> None:
    """A refresh answered 200 with a page that is not JSON neither ends the session nor
    takes the still-valid token away; the failure surfaces only as IssuerError."""
    with session(authority, clock) as user:
        first = user.get_permission_token()
        authority.garble(REFRESH)
        clock.advance(minutes=14, seconds=10)
        assert user.get_permission_token() == first
        with pytest.raises(IssuerError) as manual:
            user.refresh()
        assert not isinstance(manual.value, SessionExpired)
        assert user.get_permission_token() == first


def test_a_garbled_answer_to_a_key_session_is_retried_later(authority: SpatiumAuthority,
                                                            clock: FakeClock) -> None:
    """A key session keeps its token through a garbled refresh, then gets a new pair."""
    with KeyAuthorizationSession(authority.url, "backend", ["register"],
                                 authority.merchant_key, clock=clock) as backend:
        first = backend.get_permission_token()
        authority.garble(REFRESH)
        clock.advance(minutes=14, seconds=10)
        assert backend.get_permission_token() == first
        clock.advance(seconds=5)
        assert backend.get_permission_token() != first


@pytest.mark.parametrize("when", ["first use", "refresh token dead"])
def test_key_session_outage_is_not_hammered(authority: SpatiumAuthority, clock: FakeClock,
                                            when: str) -> None:
    """With issue-by-key failing and no valid token, a caller every 10 ms for 4 seconds
    (and 8 threads at once) make a few requests a second, each failure an IssuerError."""
    with KeyAuthorizationSession(authority.url, "backend", ["register"],
                                 authority.merchant_key, clock=clock) as backend:
        if when != "first use":
            backend.get_permission_token()
            clock.advance(hours=3)
        authority.fail(ISSUE_BY_KEY, 503, times=10**6)
        before = authority.count(ISSUE_BY_KEY)
        for _ in range(400):
            clock.advance(seconds=0.01)
            with pytest.raises(IssuerError):
                backend.get_permission_token()
        assert authority.count(ISSUE_BY_KEY) - before <= 4 * 2 + 1
        clock.advance(minutes=1)
        before = authority.count(ISSUE_BY_KEY)
        errors: list[BaseException] = []

        def caller() -> None:
            for _ in range(20):
                try:
                    backend.get_permission_token()
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(errors) == 160 and all(isinstance(e, IssuerError) for e in errors)
        assert authority.count(ISSUE_BY_KEY) - before == 1
        authority.clear_faults()
        clock.advance(minutes=1)
        assert backend.get_permission_token()


@pytest.mark.asyncio
async def test_a_caller_cancelled_mid_refresh_does_not_end_the_session(
        authority: SpatiumAuthority, clock: FakeClock) -> None:
    """A caller that gives up while the refresh is in flight (asyncio.wait_for) leaves;
    the refresh still completes and is kept, so its refresh token is never sent again and
    the session lives on."""
    async with AsyncAuthorizationSession(authority.url, "device-1", ["read"],
                                         clock=clock) as user:
        await user.establish(login(authority))
        first = await user.get_permission_token()
        clock.advance(minutes=14, seconds=30)
        authority.delay(REFRESH, 0.5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(user.get_permission_token(), 0.05)
        second = await user.get_permission_token()
        assert second != first
        assert await user.get_permission_token() == second
        await asyncio.sleep(0.6)  # the delayed request has surely been answered by now
    attempts = authority.refresh_attempts
    assert len(attempts) == 1 and attempts[0].accepted
