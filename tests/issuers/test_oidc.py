"""authtoken.issuers.oidc against a real OAuth2/OIDC provider on 127.0.0.1.

The provider (``oidc_provider.py``) is Authlib's server side behind Flask and werkzeug.
Timing that matters is driven by a ``FakeClock`` handed to the session; the few tests
that need real time use 1-second tokens.  No test asserts on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.oidc_provider import AUDIENCE, PUBLIC_CLIENT, SERVICE_CLIENT, Provider, rsa_key

from authtoken import InvalidArgument, InvalidToken, IssuerError
from authtoken.issuers._core import Response
from authtoken.issuers.oidc import (
    AsyncClientCredentialsSession,
    AsyncJWTVerifier,
    AsyncOIDCPasswordSession,
    ClientCredentialsSession,
    JWTVerifier,
    OIDCPasswordSession,
    parse_grant,
)
from authtoken.testing import FakeClock

PASSWORD = "pw-SENTINEL-3f9c1e"
SECRET = "cs-SENTINEL-77ab02"
LIFETIME = 100.0


@pytest.fixture
def provider() -> Iterator[Provider]:
    """A running provider with 100-second access tokens."""
    p = Provider(password=PASSWORD, client_secret=SECRET, lifetime=LIFETIME).start()
    yield p
    p.stop()


def password_session(provider: Provider, clock: FakeClock | None = None,
                     **kwargs: Any) -> OIDCPasswordSession:
    return OIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice", PASSWORD,
                               clock=clock, **kwargs)


def service_session(provider: Provider, clock: FakeClock | None = None,
                    **kwargs: Any) -> ClientCredentialsSession:
    return ClientCredentialsSession(provider.bs_token_url, SERVICE_CLIENT, SECRET,
                                    clock=clock, **kwargs)


def lesson(provider: Provider, auth: httpx.Auth) -> httpx.Response:
    return httpx.get(f"{provider.space_url}/api/lessons/1", auth=auth)


# -- discovery ----------------------------------------------------------------------------

def test_from_space_reads_the_space_and_the_discovery_document(provider: Provider) -> None:
    """from_space finds the authority, client id and token endpoint before any token."""
    with OIDCPasswordSession.from_space(provider.space_url, "alice", PASSWORD) as session:
        assert session.authority == provider.issuer
        assert session.client_id == PUBLIC_CLIENT
        assert session.token_endpoint == provider.token_url
        assert session.jwks_uri == provider.jwks_uri
        assert provider.counts["space"] == 1
        assert provider.counts["discovery"] == 1
        assert provider.token_requests() == 0


def test_from_space_session_reaches_the_space_api(provider: Provider) -> None:
    """A session made from the space URL calls the space's protected API."""
    with OIDCPasswordSession.from_space(provider.space_url, "alice", PASSWORD) as session:
        response = lesson(provider, session.auth)
    assert response.status_code == 200
    assert response.json()["data"]["user"] == "alice"


def test_from_space_failure_raises_issuer_error(provider: Provider) -> None:
    """A space without the OIDC pointer is an IssuerError with the HTTP status."""
    with pytest.raises(IssuerError) as info:
        OIDCPasswordSession.from_space(provider.url + "/nowhere", "alice", PASSWORD)
    assert info.value.status == 404


def test_discovery_runs_once_across_refreshes(provider: Provider, clock: FakeClock) -> None:
    """The discovery document is read once, not before every token request."""
    with password_session(provider, clock) as session:
        for _ in range(3):
            session.get_access_token()
            clock.advance(seconds=LIFETIME)
    assert provider.counts["discovery"] == 1
    assert provider.counts["refresh_token"] == 2


@pytest.mark.asyncio
async def test_async_from_space_lazily_or_awaited(provider: Provider) -> None:
    """The async from_space discovers on first use, or at once when awaited."""
    lazy = AsyncOIDCPasswordSession.from_space(provider.space_url, "alice", PASSWORD)
    async with lazy:
        assert lazy.token_endpoint is None
        assert await lazy.get_access_token()
        assert lazy.token_endpoint == provider.token_url
    async with await AsyncOIDCPasswordSession.from_space(
            provider.space_url, "alice", PASSWORD) as eager:
        assert eager.token_endpoint == provider.token_url
        async with httpx.AsyncClient(auth=eager.auth) as client:
            response = await client.get(f"{provider.space_url}/api/lessons/1")
        assert response.status_code == 200


# -- the password grant and its refresh -----------------------------------------------------

def test_password_grant_token_is_accepted_by_the_api(provider: Provider) -> None:
    """The password grant gives a Bearer token that the protected API accepts."""
    with password_session(provider) as session:
        header = session.authorization_header()
        token = session.get_access_token()
        assert header == {"Authorization": f"Bearer {token}"}
        response = httpx.get(f"{provider.space_url}/api/lessons/1", headers=header)
    assert response.status_code == 200
    assert provider.counts["password"] == 1


def test_wrong_password_is_an_issuer_error_with_status_and_code(provider: Provider) -> None:
    """A refused password grant raises IssuerError carrying the OAuth2 error code."""
    with OIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice", "not-it") as session:
        with pytest.raises(IssuerError) as info:
            session.get_access_token()
    assert info.value.status == 400
    assert info.value.code == "invalid_grant"


def test_refresh_is_due_at_nine_tenths_of_expires_in(provider: Provider,
                                                     clock: FakeClock) -> None:
    """The token is reused until 0.9 * expires_in, then refreshed with the refresh token."""
    with password_session(provider, clock) as session:
        first = session.get_access_token()
        clock.advance(seconds=LIFETIME * 0.9 - 0.01)
        assert session.get_access_token() == first
        assert provider.token_requests() == 1
        clock.advance(seconds=0.01)
        second = session.get_access_token()
    assert second != first
    assert provider.counts["password"] == 1
    assert provider.counts["refresh_token"] == 1


def test_refresh_tokens_are_rotated_and_never_reused(provider: Provider,
                                                     clock: FakeClock) -> None:
    """Each refresh sends the newest refresh token; a used one is never sent again."""
    with password_session(provider, clock) as session:
        for _ in range(5):
            session.get_access_token()
            clock.advance(seconds=LIFETIME)
    assert provider.counts["refresh_token"] == 4
    assert provider.counts["password"] == 1
    assert provider.reused_refresh_tokens == 0


@pytest.mark.slow
def test_one_second_tokens_stay_usable_in_real_time() -> None:
    """With 1-second tokens, calls spread over several lifetimes all succeed first time."""
    provider = Provider(password=PASSWORD, lifetime=1.0).start()
    try:
        with password_session(provider) as session, httpx.Client(auth=session.auth) as api:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                assert api.get(f"{provider.space_url}/api/lessons/1").status_code == 200
                time.sleep(0.1)
        assert 401 not in provider.api_statuses
        assert provider.counts["refresh_token"] >= 2
        assert provider.counts["password"] == 1
    finally:
        provider.stop()


def test_refused_refresh_token_falls_back_to_the_password_grant(provider: Provider,
                                                                clock: FakeClock) -> None:
    """When the issuer refuses the refresh token, the password grant runs again."""
    with password_session(provider, clock) as session:
        first = session.get_access_token()
        provider.refuse_refresh = True
        clock.advance(seconds=LIFETIME)
        second = session.get_access_token()
        assert second != first
        assert lesson(provider, session.auth).status_code == 200
    assert provider.counts["refresh_token"] == 1
    assert provider.counts["password"] == 2


def test_expired_refresh_token_goes_straight_to_the_password_grant(clock: FakeClock) -> None:
    """A refresh token past Keycloak's refresh_expires_in is not even sent."""
    provider = Provider(password=PASSWORD, lifetime=LIFETIME, refresh_lifetime=50,
                        send_refresh_expires_in=True).start()
    try:
        with password_session(provider, clock) as session:
            first = session.get_access_token()
            clock.advance(seconds=LIFETIME)
            assert session.get_access_token() != first
        assert provider.counts["refresh_token"] == 0
        assert provider.counts["password"] == 2
    finally:
        provider.stop()


# -- client credentials ---------------------------------------------------------------------

def test_client_credentials_with_bsauth_header_call_whoami(provider: Provider) -> None:
    """header="bsauth" sends "bsauth: <token>", which the whoami endpoint accepts."""
    with service_session(provider, header="bsauth") as session:
        token = session.get_access_token()
        assert session.authorization_header() == {"bsauth": token}
        response = httpx.get(provider.whoami_url, auth=session.auth)
        sent = response.request.headers
    assert response.status_code == 200
    assert response.json()["data"]["userId"] == 123
    assert sent["bsauth"] == token
    assert "authorization" not in sent
    assert provider.counts["client_credentials"] == 1


def test_client_credentials_default_header_uses_the_token_type(provider: Provider) -> None:
    """The default header is Authorization with the issuer's token_type as scheme."""
    with service_session(provider) as session:
        token = session.get_access_token()
        assert session.authorization_header() == {"Authorization": f"bsauth {token}"}


def test_client_credentials_are_fetched_again_when_due(provider: Provider,
                                                       clock: FakeClock) -> None:
    """Without a refresh token, the credentials grant runs again at 0.9 * expires_in."""
    with service_session(provider, clock, header="bsauth") as session:
        first = session.get_access_token()
        clock.advance(seconds=LIFETIME * 0.9 - 0.01)
        assert session.get_access_token() == first
        clock.advance(seconds=0.01)
        assert session.get_access_token() != first
    assert provider.counts["client_credentials"] == 2
    assert provider.counts["refresh_token"] == 0


def test_wrong_client_secret_is_an_issuer_error(provider: Provider) -> None:
    """A refused client secret raises IssuerError with invalid_client."""
    with ClientCredentialsSession(provider.bs_token_url, SERVICE_CLIENT, "wrong") as session:
        with pytest.raises(IssuerError) as info:
            session.get_access_token()
    assert info.value.code == "invalid_client"
    assert info.value.status in (400, 401)


@pytest.mark.asyncio
async def test_async_client_credentials_call_whoami(provider: Provider) -> None:
    """The async client-credentials session sends bsauth through an AsyncClient."""
    async with AsyncClientCredentialsSession(provider.bs_token_url, SERVICE_CLIENT, SECRET,
                                             header="bsauth") as session:
        assert set(await session.authorization_header()) == {"bsauth"}
        async with httpx.AsyncClient(auth=session.auth) as client:
            response = await client.get(provider.whoami_url)
    assert response.status_code == 200
    assert provider.counts["client_credentials"] == 1


# -- httpx.Auth: one retry after a 401 -------------------------------------------------------

def test_auth_retries_once_with_a_fresh_token_after_a_401(provider: Provider) -> None:
    """A 401 on a still-valid token triggers one refresh and one retry, which succeeds."""
    with password_session(provider) as session:
        first = session.get_access_token()
        provider.reject_api(1)
        response = lesson(provider, session.auth)
        assert response.status_code == 200
        assert session.get_access_token() != first
    assert provider.api_statuses == [401, 200]
    assert provider.counts["refresh_token"] == 1


def test_auth_retries_only_once(provider: Provider) -> None:
    """A second 401 is returned to the caller: the request is sent at most twice."""
    with password_session(provider) as session:
        provider.reject_api(5)
        response = lesson(provider, session.auth)
    assert response.status_code == 401
    assert provider.api_statuses == [401, 401]


def test_callers_reporting_the_same_rejected_token_share_one_refresh(
        provider: Provider) -> None:
    """Many 401s for one token retire it once: exactly one refresh request."""
    with password_session(provider) as session:
        rejected = session.get_access_token()
        with ThreadPoolExecutor(16) as pool:
            fresh = set(pool.map(lambda _: session._auth_token(rejected), range(16)))
    assert len(fresh) == 1 and rejected not in fresh
    assert provider.counts["refresh_token"] == 1


@pytest.mark.asyncio
async def test_async_auth_retries_once_after_a_401(provider: Provider) -> None:
    """The async session's auth retries once with a fresh token after a 401."""
    async with AsyncOIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice",
                                        PASSWORD) as session:
        provider.reject_api(1)
        async with httpx.AsyncClient(auth=session.auth) as client:
            response = await client.get(f"{provider.space_url}/api/lessons/1")
    assert response.status_code == 200
    assert provider.api_statuses == [401, 200]


def test_async_session_auth_refuses_a_sync_client(provider: Provider) -> None:
    """Using an async session's auth in a sync httpx.Client says what to use instead."""
    session = AsyncOIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice", PASSWORD)
    with pytest.raises(RuntimeError, match="AsyncClient"):
        lesson(provider, session.auth)
    asyncio.run(session.close())


# -- background refresh ---------------------------------------------------------------------

@pytest.mark.slow
def test_background_refresh_keeps_the_token_fresh_without_callers() -> None:
    """start() refreshes 1-second tokens on its own; stop() ends it."""
    provider = Provider(password=PASSWORD, lifetime=1.0).start()
    try:
        with password_session(provider) as session:
            session.start()
            session.start()  # idempotent
            time.sleep(2.4)
            assert provider.counts["password"] == 1
            assert provider.counts["refresh_token"] >= 2
            assert lesson(provider, session.auth).status_code == 200
            session.stop()
            settled = provider.token_requests()
            time.sleep(1.2)
            assert provider.token_requests() == settled
        assert 401 not in provider.api_statuses
    finally:
        provider.stop()


def test_background_refresh_survives_failures(provider: Provider,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Failed background rounds are logged and retried with backoff until one succeeds."""
    provider.fail_token_requests(2)
    with caplog.at_level(logging.WARNING, logger="authtoken"):
        with password_session(provider) as session:
            session.start()
            deadline = time.monotonic() + 10
            while session.expires_at is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert session.expires_at is not None
    assert provider.counts["password"] == 3
    assert "background refresh failed" in caplog.text


@pytest.mark.slow
@pytest.mark.asyncio
async def test_async_background_refresh_keeps_the_token_fresh() -> None:
    """The async session's start() runs an asyncio task that refreshes on its own."""
    provider = Provider(password=PASSWORD, lifetime=1.0).start()
    try:
        async with AsyncOIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice",
                                            PASSWORD) as session:
            await session.start()
            await asyncio.sleep(1.5)
            assert provider.counts["password"] == 1
            assert provider.counts["refresh_token"] >= 1
            await session.stop()
            settled = provider.token_requests()
            await asyncio.sleep(1.0)
            assert provider.token_requests() == settled
    finally:
        provider.stop()


# -- one refresh at a time --------------------------------------------------------------------

@pytest.mark.parametrize("phase", ["first", "expired"])
def test_64_threads_make_exactly_one_token_request(provider: Provider, clock: FakeClock,
                                                   phase: str) -> None:
    """64 threads asking at once, before the first token or across an expiry: one request."""
    with password_session(provider, clock) as session:
        before = None
        if phase == "expired":
            before = session.get_access_token()
            clock.advance(seconds=LIFETIME + 1)
        provider.token_delay = 0.2
        barrier = threading.Barrier(64)

        def call(_: int) -> str:
            barrier.wait()
            return session.get_access_token()

        with ThreadPoolExecutor(64) as pool:
            tokens = set(pool.map(call, range(64)))
    assert len(tokens) == 1 and before not in tokens
    assert provider.token_requests() == (1 if phase == "first" else 2)
    assert provider.counts["refresh_token"] == (0 if phase == "first" else 1)


@pytest.mark.asyncio
@pytest.mark.parametrize("phase", ["first", "expired"])
async def test_64_coroutines_make_exactly_one_token_request(provider: Provider,
                                                            clock: FakeClock,
                                                            phase: str) -> None:
    """64 coroutines gathered at once, before the first token or across an expiry: one."""
    async with AsyncOIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice", PASSWORD,
                                        clock=clock) as session:
        before = None
        if phase == "expired":
            before = await session.get_access_token()
            clock.advance(seconds=LIFETIME + 1)
        provider.token_delay = 0.2
        tokens = set(await asyncio.gather(*(session.get_access_token() for _ in range(64))))
    assert len(tokens) == 1 and before not in tokens
    assert provider.token_requests() == (1 if phase == "first" else 2)


@pytest.mark.asyncio
async def test_a_caller_cancelled_mid_refresh_does_not_waste_the_refresh_token(
        provider: Provider, clock: FakeClock) -> None:
    """A caller that times out while the refresh is in flight leaves; the refresh still
    completes and is kept: no refresh token is presented twice, no password grant again."""
    async with AsyncOIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice", PASSWORD,
                                        clock=clock) as session:
        first = await session.get_access_token()
        clock.advance(seconds=LIFETIME * 0.95)
        provider.token_delay = 0.5
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(session.get_access_token(), 0.05)
        provider.token_delay = 0.0
        second = await session.get_access_token()
        assert second != first
    assert provider.counts["password"] == 1
    assert provider.counts["refresh_token"] == 1
    assert provider.reused_refresh_tokens == 0


# -- transient failures ----------------------------------------------------------------------

def test_503_while_the_token_is_valid_is_not_raised(provider: Provider,
                                                    clock: FakeClock) -> None:
    """A 503 from the token endpoint is absorbed while the token lives, raised after."""
    with password_session(provider, clock) as session:
        first = session.get_access_token()
        provider.fail_token_requests(10)
        clock.advance(seconds=LIFETIME * 0.95)
        assert session.get_access_token() == first
        assert session.get_access_token() == first  # backing off: no second request
        assert provider.counts["refresh_token"] == 1
        clock.advance(seconds=LIFETIME * 0.1)
        with pytest.raises(IssuerError) as info:
            session.get_access_token()
        assert info.value.status == 503
        assert info.value.code == "temporarily_unavailable"
        provider.fail_token_requests(0)
        clock.advance(seconds=60)
        assert session.get_access_token() != first
    assert provider.counts["password"] == 1  # the refresh token survived the 503s
    assert provider.reused_refresh_tokens == 0


def test_stopped_provider_while_the_token_is_valid_is_not_raised(provider: Provider,
                                                                 clock: FakeClock) -> None:
    """Connection refused is absorbed while the token lives, then IssuerError(status=None)."""
    with password_session(provider, clock) as session:
        first = session.get_access_token()
        provider.stop()
        clock.advance(seconds=LIFETIME * 0.95)
        assert session.get_access_token() == first
        assert session.authorization_header() == {"Authorization": f"Bearer {first}"}
        clock.advance(seconds=LIFETIME * 0.1)
        with pytest.raises(IssuerError) as info:
            session.get_access_token()
    assert info.value.status is None


def test_503_on_the_password_fallback_keeps_the_valid_token(provider: Provider,
                                                            clock: FakeClock) -> None:
    """Refresh token refused, then the password grant 503s: the valid token is kept."""
    with password_session(provider, clock) as session:
        first = session.get_access_token()
        provider.refuse_refresh = True
        provider.fail_token_requests(1, grant_type="password")
        clock.advance(seconds=LIFETIME * 0.95)
        assert session.get_access_token() == first
        clock.advance(seconds=1)
        second = session.get_access_token()
    assert second != first
    assert provider.counts["refresh_token"] == 1
    assert provider.counts["password"] == 3


@pytest.mark.asyncio
async def test_async_client_credentials_outage_keeps_the_valid_token(
        provider: Provider, clock: FakeClock) -> None:
    """An async client-credentials session rides out a stopped provider while valid."""
    async with AsyncClientCredentialsSession(provider.bs_token_url, SERVICE_CLIENT, SECRET,
                                             clock=clock) as session:
        first = await session.get_access_token()
        provider.stop()
        clock.advance(seconds=LIFETIME * 0.95)
        assert await session.get_access_token() == first
        clock.advance(seconds=LIFETIME * 0.1)
        with pytest.raises(IssuerError):
            await session.get_access_token()


# -- no secret anywhere -----------------------------------------------------------------------

def test_no_secret_in_messages_reprs_or_logs(provider: Provider, clock: FakeClock,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Passwords, client secrets and tokens appear in no message, repr or log line."""
    seen: list[str] = []
    tokens: list[str] = []

    def record(exc: BaseException) -> None:
        while exc is not None:
            seen.extend([str(exc), repr(exc)])
            exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]

    caplog.set_level(logging.DEBUG)
    with password_session(provider, clock) as session:
        tokens.append(session.get_access_token())
        provider.refuse_refresh = True
        clock.advance(seconds=LIFETIME)
        tokens.append(session.get_access_token())
        provider.refuse_refresh = False
        clock.advance(seconds=LIFETIME)
        tokens.append(session.get_access_token())
        tokens.extend(r.refresh_token for r in provider.refresh_tokens.values())
        seen.extend([repr(session), str(session), repr(session.auth),
                     repr(session._refresher.grant)])
        provider.fail_token_requests(1)
        clock.advance(seconds=LIFETIME * 2)
        with pytest.raises(IssuerError) as info:
            session.get_access_token()
        record(info.value)
    with service_session(provider, header="bsauth") as service:
        tokens.append(service.get_access_token())
        seen.append(repr(service))
    for wrong in (OIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice", PASSWORD + "x"),
                  ClientCredentialsSession(provider.bs_token_url, SERVICE_CLIENT, SECRET + "x")):
        with wrong, pytest.raises(IssuerError) as info:
            wrong.get_access_token()
        record(info.value)
        seen.append(repr(wrong))
    provider.stop()
    with password_session(provider) as dead, pytest.raises(IssuerError) as info:
        dead.get_access_token()
    record(info.value)
    ours = [r.getMessage() for r in caplog.records
            if r.name.startswith(("authtoken", "httpx", "httpcore"))]
    assert ours  # the session did log
    text = "\n".join(seen + ours)
    for secret in (PASSWORD, SECRET, *tokens):
        assert secret not in text


def test_bad_arguments_are_refused_without_echoing_them() -> None:
    """Wrong types are TypeError, bad values InvalidArgument; secrets never echoed."""
    with pytest.raises(TypeError):
        OIDCPasswordSession("https://id.example", "space", "alice", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as info:
        OIDCPasswordSession("ftp://" + PASSWORD, "space", "alice", PASSWORD)
    assert PASSWORD not in str(info.value)
    with pytest.raises(InvalidArgument) as info:
        OIDCPasswordSession.from_space(f"https://u:{PASSWORD}@space.example", "a", "b")
    assert PASSWORD not in str(info.value)
    with pytest.raises(InvalidArgument):
        ClientCredentialsSession("https://id.example/token", "c", SECRET, header="bad header")
    with pytest.raises(InvalidArgument):
        ClientCredentialsSession("https://id.example/token", "c", SECRET, timeout=0)
    with pytest.raises(TypeError):
        ClientCredentialsSession("https://id.example/token", "c", SECRET,
                                 client=httpx.AsyncClient())  # type: ignore[arg-type]


def test_closed_session_refuses_and_a_given_client_stays_open(provider: Provider) -> None:
    """close() ends the session; an httpx.Client passed in is left for its owner."""
    with httpx.Client() as client:
        with password_session(provider, client=client) as session:
            assert session.get_access_token()
        with pytest.raises(RuntimeError):
            session.get_access_token()
        session.close()  # idempotent
        assert not client.is_closed


# -- JWTVerifier ----------------------------------------------------------------------------

@pytest.fixture
def verifier(provider: Provider) -> Iterator[JWTVerifier]:
    """A verifier that fetches the provider's JWKS, checking iss and aud."""
    with JWTVerifier(jwks_uri=provider.jwks_uri, issuer=provider.issuer,
                     audience=AUDIENCE) as v:
        yield v


def test_verifier_accepts_a_token_from_the_provider(provider: Provider,
                                                    verifier: JWTVerifier) -> None:
    """A token issued by the password grant verifies; the claims come back."""
    with password_session(provider) as session:
        token = session.get_access_token()
    claims = verifier.verify(token)
    assert claims["sub"] == "alice" and claims["iss"] == provider.issuer
    assert verifier.verify(token.encode()) == claims
    assert provider.counts["jwks"] == 1


def test_verifier_refuses_an_expired_token_beyond_the_leeway(provider: Provider,
                                                             verifier: JWTVerifier) -> None:
    """exp in the past is InvalidToken unless within the configured leeway."""
    token = provider.mint(lifetime=-30)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    lenient = JWTVerifier(jwks_uri=provider.jwks_uri, leeway=timedelta(minutes=1))
    assert lenient.verify(token)["sub"] == "alice"
    lenient.close()


def test_verifier_refuses_a_token_not_yet_valid(provider: Provider,
                                                verifier: JWTVerifier) -> None:
    """nbf in the future is InvalidToken."""
    with pytest.raises(InvalidToken):
        verifier.verify(provider.mint({"nbf": time.time() + 60}))


@pytest.mark.parametrize("claims", [{"iss": "https://elsewhere.example"},
                                    {"aud": "another-api"}, {"aud": None}])
def test_verifier_refuses_wrong_issuer_or_audience(provider: Provider, verifier: JWTVerifier,
                                                   claims: dict[str, Any]) -> None:
    """A configured issuer and audience must match."""
    claims = {k: v for k, v in claims.items() if v is not None}
    token = provider.mint(claims) if claims else jwt.encode(
        {"iss": provider.issuer, "exp": time.time() + 60}, provider.keys[-1][1],
        algorithm="RS256", headers={"kid": provider.keys[-1][0]})
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_verifier_without_issuer_or_audience_does_not_check_them(provider: Provider) -> None:
    """issuer=None and audience=None leave iss and aud unchecked."""
    token = provider.mint({"iss": "https://elsewhere.example", "aud": "another-api"})
    with JWTVerifier(jwks_uri=provider.jwks_uri) as verifier:
        assert verifier.verify(token)["aud"] == "another-api"


def test_verifier_refuses_a_token_signed_with_another_key(provider: Provider,
                                                          verifier: JWTVerifier) -> None:
    """A stranger's signature under a known kid is InvalidToken."""
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify(provider.mint(key=rsa_key(1)))


def test_verifier_refetches_the_jwks_for_an_unknown_kid(provider: Provider,
                                                        verifier: JWTVerifier) -> None:
    """After the issuer rotates its key, the first token with the new kid refetches."""
    assert verifier.verify(provider.mint())
    kid = provider.rotate_key()
    token = provider.mint()
    assert jwt.get_unverified_header(token)["kid"] == kid
    assert verifier.verify(token)["sub"] == "alice"
    assert provider.counts["jwks"] == 2
    provider.rotate_key()
    assert verifier.verify(provider.mint())  # a second rotation is found as well
    assert provider.counts["jwks"] == 3


def test_a_flood_of_unknown_kids_does_not_hammer_the_jwks(provider: Provider,
                                                          verifier: JWTVerifier) -> None:
    """Made-up kids cost one refetch, then a cooldown; every one is InvalidToken."""
    assert verifier.verify(provider.mint())
    for i in range(50):
        with pytest.raises(InvalidToken):
            verifier.verify(provider.mint(kid=f"made-up-{i}"))
    assert provider.counts["jwks"] == 2


GARBAGE: list[str | bytes] = [
    "", " ", "abc", "a.b.c", "a.b", "....", "\x00", "é.é.é", "x" * 100_000,
    b"\xff\xfe", b"", "eyJhbGciOiJSUzI1NiJ9.e30.",
    jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256"),
    jwt.encode({"sub": "x"}, None, algorithm="none"),
]


@pytest.mark.parametrize("token", GARBAGE)
def test_verifier_refuses_garbage_without_fetching(provider: Provider, verifier: JWTVerifier,
                                                   token: str | bytes) -> None:
    """Anything that is not an acceptable JWT is InvalidToken, and costs no JWKS request."""
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert provider.counts["jwks"] == 0


def test_verifier_refuses_a_mangled_token(provider: Provider, verifier: JWTVerifier) -> None:
    """Truncated or re-ordered parts of a good token are InvalidToken."""
    token = provider.mint()
    head, body, sig = token.split(".")
    for bad in (token[:-5], f"{head}.{body}.", f"{body}.{head}.{sig}", token + "x",
                f"{head}.{body}x.{sig}"):
        with pytest.raises(InvalidToken):
            verifier.verify(bad)


@pytest.mark.parametrize("token", [None, 42, 4.2, ["a.b.c"], bytearray(b"a.b.c")])
def test_verifier_raises_type_error_for_non_str_bytes(verifier: JWTVerifier,
                                                      token: object) -> None:
    """A token that is neither str nor bytes is a TypeError."""
    with pytest.raises(TypeError):
        verifier.verify(token)  # type: ignore[arg-type]


def test_verifier_requires_exp_by_default(provider: Provider, verifier: JWTVerifier) -> None:
    """A token without exp would never expire: refused unless require=() says otherwise."""
    token = jwt.encode({"sub": "x"}, provider.keys[-1][1], algorithm="RS256",
                       headers={"kid": provider.keys[-1][0]})
    with pytest.raises(InvalidToken, match="claim"):
        verifier.verify(token)
    with JWTVerifier(jwks_uri=provider.jwks_uri, require=()) as lax:
        assert lax.verify(token) == {"sub": "x"}


def test_verifier_with_static_keys(provider: Provider) -> None:
    """keys= takes a JWKS dict, a JWK, or PEM keys (RSA and EC alike), without fetching."""
    rsa_pem = rsa_key(0).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ec_private = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    token = provider.mint(kid=None)
    es_token = provider.mint(key=ec_private, algorithm="ES256", kid=None)
    for keys in (provider.jwks(), provider.jwks()["keys"][0], [rsa_pem, ec_pem]):
        verifier = JWTVerifier(keys=keys, issuer=provider.issuer, audience=AUDIENCE)
        assert verifier.verify(token)["sub"] == "alice"
    assert verifier.verify(es_token)["sub"] == "alice"
    with pytest.raises(InvalidToken):
        JWTVerifier(keys=[ec_pem]).verify(token)
    assert provider.counts["jwks"] == 0


def test_verifier_arguments_are_checked() -> None:
    """A verifier needs keys or a JWKS URL; unusable keys are refused up front."""
    with pytest.raises(InvalidArgument):
        JWTVerifier()
    with pytest.raises(InvalidArgument):
        JWTVerifier(keys=["not a pem"])
    with pytest.raises(InvalidArgument):
        JWTVerifier(keys={"keys": []})
    with pytest.raises(InvalidArgument):
        JWTVerifier(jwks_uri="https://id.example/jwks", algorithms=["none"])
    with pytest.raises(InvalidArgument):
        JWTVerifier(jwks_uri="https://id.example/jwks", leeway=-1)


def test_verifier_with_unreachable_jwks_raises_issuer_error(provider: Provider) -> None:
    """No key known and the JWKS cannot be fetched: IssuerError, not InvalidToken."""
    token = provider.mint()
    provider.stop()
    with JWTVerifier(jwks_uri=provider.jwks_uri) as verifier:
        with pytest.raises(IssuerError):
            verifier.verify(token)
        with pytest.raises(IssuerError):  # within the failure gap: no new request
            verifier.verify(token)
        assert verifier.fetches == 1


@pytest.mark.asyncio
async def test_async_verifier(provider: Provider) -> None:
    """AsyncJWTVerifier verifies, refetches after a rotation and refuses garbage."""
    async with AsyncJWTVerifier(jwks_uri=provider.jwks_uri, issuer=provider.issuer,
                                audience=AUDIENCE) as verifier:
        assert (await verifier.verify(provider.mint()))["sub"] == "alice"
        provider.rotate_key()
        tokens = [provider.mint() for _ in range(8)]
        claims = await asyncio.gather(*(verifier.verify(t) for t in tokens))
        assert all(c["sub"] == "alice" for c in claims)
        with pytest.raises(InvalidToken):
            await verifier.verify("garbage")
        with pytest.raises(TypeError):
            await verifier.verify(None)  # type: ignore[arg-type]
    assert provider.counts["jwks"] == 2


def test_verifier_tries_the_keys_for_a_token_without_kid(provider: Provider,
                                                          verifier: JWTVerifier) -> None:
    """A token naming no kid is checked against every fitting key of the JWKS."""
    provider.rotate_key()
    assert verifier.verify(provider.mint(kid=None))["sub"] == "alice"
    with pytest.raises(InvalidToken):
        verifier.verify(provider.mint(kid=None, key=rsa_key(5)))


def test_stale_jwks_is_refetched_and_kept_when_the_issuer_is_down(provider: Provider) -> None:
    """Past cache_lifespan the JWKS is fetched again; if that fails, known keys still work."""
    token = provider.mint()
    with JWTVerifier(jwks_uri=provider.jwks_uri, cache_lifespan=0) as verifier:
        verifier.verify(token)
        verifier.verify(token)
        assert provider.counts["jwks"] == 2
        provider.stop()
        time.sleep(0.01)
        assert verifier.verify(token)["sub"] == "alice"
        assert verifier.fetches == 3


def test_verifier_static_key_forms(provider: Provider) -> None:
    """keys= also takes PyJWK objects and PEM bytes; encryption keys are refused."""
    jwk = dict(provider.jwks()["keys"][0])
    pem = rsa_key(0).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for keys in ([jwt.PyJWK.from_dict(jwk)], pem, [pem]):
        assert JWTVerifier(keys=keys).verify(provider.mint())["sub"] == "alice"
    with pytest.raises(InvalidArgument):
        JWTVerifier(keys=[{**jwk, "use": "enc"}])
    with pytest.raises(InvalidArgument):
        JWTVerifier(keys=[{"kty": "nope"}])
    with pytest.raises(TypeError):
        JWTVerifier(keys=[42])


@pytest.mark.asyncio
async def test_sync_session_auth_works_in_an_async_client(provider: Provider) -> None:
    """The sync session's auth also drives an httpx.AsyncClient, retry included."""
    with password_session(provider) as session:
        provider.reject_api(1)
        async with httpx.AsyncClient(auth=session.auth) as client:
            response = await client.get(f"{provider.space_url}/api/lessons/1")
    assert response.status_code == 200
    assert provider.api_statuses == [401, 200]


def test_refresh_forces_a_new_token(provider: Provider) -> None:
    """refresh() gets a new token now, with the refresh grant."""
    with password_session(provider) as session:
        first = session.get_access_token()
        assert session.refresh() != first
        assert session.expires_at is not None
    assert provider.counts["refresh_token"] == 1


# -- the token response, as data (no I/O) -----------------------------------------------------

def _answer(body: Any, status: int = 200) -> Response:
    return Response(status, {"content-type": "application/json"}, json.dumps(body).encode())


def test_parse_grant_reads_a_token_response() -> None:
    """expires_in becomes absolute times: refresh due at 0.9 of the lifetime."""
    grant = parse_grant(_answer({"access_token": "a.b.c", "token_type": "bearer",
                                 "expires_in": "3600", "refresh_token": "r",
                                 "refresh_expires_in": 0, "scope": "openid"}), "t", 1000.0)
    assert grant.token_type == "Bearer"
    assert grant.expires_at == 4600.0 and grant.refresh_at == 1000.0 + 3240.0
    assert grant.refresh_token == "r" and grant.refresh_expires_at is None
    assert parse_grant(_answer({"access_token": "x"}), "t", 0.0).expires_at > 0


@pytest.mark.parametrize("body", [
    [], {"token_type": "Bearer"}, {"access_token": "two words"},
    {"access_token": "x\r\nInjected: 1"}, {"access_token": 42},
    {"access_token": "x", "token_type": "bad type"}, {"access_token": "x", "expires_in": -5},
    {"access_token": "x", "expires_in": "soon"}, {"access_token": "x", "refresh_token": 1},
])
def test_parse_grant_refuses_unusable_answers(body: Any) -> None:
    """An answer that is not a usable token response is IssuerError, never a crash."""
    with pytest.raises(IssuerError) as info:
        parse_grant(_answer(body), "the grant", 0.0)
    assert info.value.status == 200
    with pytest.raises(IssuerError):
        parse_grant(Response(200, {}, b"not json"), "the grant", 0.0)


# -- credentials only over https ---------------------------------------------------------------

def refuse_into(built: list[httpx.Request]) -> Any:
    """A MockTransport handler that records each request it is given and answers 500."""
    def handler(request: httpx.Request) -> httpx.Response:
        built.append(request)
        return httpx.Response(500)
    return handler


class Recording(httpx.BaseTransport):
    """Records every request; passes loopback ones to a real transport and fails the rest
    as a connection error without touching the network."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if request.url.host not in ("127.0.0.1", "localhost", "::1"):
            raise httpx.ConnectError("not on this machine", request=request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

    def hosts(self) -> set[str]:
        return {httpx.URL(url).host for url in self.urls}


def test_space_naming_a_plain_http_authority_elsewhere_is_refused(provider: Provider) -> None:
    """A space that names an http:// authority on another machine is refused before
    anything (discovery, password) is sent there."""
    provider.space_authority = "http://auth.example.test/realms/test"
    recording = Recording()
    with httpx.Client(transport=recording) as client, \
            pytest.raises(IssuerError) as info:
        OIDCPasswordSession.from_space(provider.space_url, "alice", PASSWORD, client=client)
    assert recording.hosts() == {"127.0.0.1"}
    assert recording.urls == [provider.space_url + "/api/.well-known/oidc"]
    message = str(info.value)
    assert "https://" in message and "auth.example.test" in message
    assert PASSWORD not in message


def test_https_space_naming_an_http_authority_is_a_downgrade() -> None:
    """An https space that names an http authority is refused, even on loopback: no
    request is built for the authority."""
    built: list[str] = []

    def space(request: httpx.Request) -> httpx.Response:
        built.append(str(request.url))
        return httpx.Response(200, json={"data": {
            "authority": "http://127.0.0.1:9/realms/test", "client_id": PUBLIC_CLIENT}})

    with httpx.Client(transport=httpx.MockTransport(space)) as client, \
            pytest.raises(IssuerError) as info:
        OIDCPasswordSession.from_space("https://space.example.test", "alice", PASSWORD,
                                       client=client)
    assert built == ["https://space.example.test/api/.well-known/oidc"]
    assert "https" in str(info.value)


@pytest.mark.asyncio
async def test_async_https_space_naming_an_http_authority_is_refused() -> None:
    """The async session applies the same rule: nothing built for the http authority."""
    built: list[str] = []

    def space(request: httpx.Request) -> httpx.Response:
        built.append(str(request.url))
        return httpx.Response(200, json={"data": {
            "authority": "http://id.example.test/realms/test", "client_id": PUBLIC_CLIENT}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(space)) as client:
        session = AsyncOIDCPasswordSession.from_space("https://space.example.test", "alice",
                                                      PASSWORD, client=client)
        async with session:
            with pytest.raises(IssuerError):
                await session.get_access_token()
    assert built == ["https://space.example.test/api/.well-known/oidc"]


@pytest.mark.parametrize("endpoint", ["http://auth.example.test/token",
                                      "ftp://127.0.0.1/token",
                                      "http://user:pw@127.0.0.1/token"])
def test_discovered_token_endpoint_must_be_usable_for_credentials(
        provider: Provider, endpoint: str) -> None:
    """A discovery document naming a plain-http token endpoint elsewhere (or a URL with
    credentials in it) is refused; the password goes nowhere."""
    provider.discovery_overrides["token_endpoint"] = endpoint
    recording = Recording()
    with httpx.Client(transport=recording) as client, \
            password_session(provider, client=client) as session, \
            pytest.raises(IssuerError) as info:
        session.get_access_token()
    assert recording.hosts() == {"127.0.0.1"}
    assert provider.token_requests() == 0
    assert not any("token" in url for url in recording.urls)
    assert PASSWORD not in str(info.value) and "pw" not in str(info.value)


UNUSABLE_ENDPOINTS = ["https://a..b/token", "https://" + "a" * 64 + ".example/token",
                      "https://999.1.1.1/token", "https://xn--a.example/token"]


@pytest.mark.parametrize("endpoint", UNUSABLE_ENDPOINTS)
def test_discovered_token_endpoint_no_client_can_use_is_an_issuer_error(
        provider: Provider, endpoint: str) -> None:
    """A discovered https token endpoint whose host no resolver takes (an empty or
    64-character label, a bad dotted quad, a broken xn-- label) is an IssuerError, not a
    UnicodeError from deep inside the HTTP client."""
    provider.discovery_overrides["token_endpoint"] = endpoint
    with password_session(provider) as session, pytest.raises(IssuerError) as info:
        session.get_access_token()
    assert "token_endpoint" in str(info.value)
    assert provider.token_requests() == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", UNUSABLE_ENDPOINTS)
async def test_async_discovered_token_endpoint_no_client_can_use_is_an_issuer_error(
        provider: Provider, endpoint: str) -> None:
    """The async session refuses the same endpoints the same way."""
    provider.discovery_overrides["token_endpoint"] = endpoint
    async with AsyncOIDCPasswordSession(provider.issuer, PUBLIC_CLIENT, "alice",
                                        PASSWORD) as session:
        with pytest.raises(IssuerError) as info:
            await session.get_access_token()
    assert "token_endpoint" in str(info.value)
    assert provider.token_requests() == 0


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:1/realms/test", "https://evil.example",
                                    None])
def test_discovery_issuer_must_be_the_authority(provider: Provider, issuer: str | None) -> None:
    """A discovery document whose issuer is not the authority it was fetched for is refused
    with IssuerError, and no token is requested."""
    provider.discovery_overrides["issuer"] = issuer
    with password_session(provider) as session, pytest.raises(IssuerError) as info:
        session.get_access_token()
    assert "issuer" in str(info.value)
    assert provider.token_requests() == 0
    with pytest.raises(IssuerError):
        OIDCPasswordSession.from_space(provider.space_url, "alice", PASSWORD)
    assert provider.token_requests() == 0


def test_discovery_issuer_spelt_like_the_authority_is_accepted(provider: Provider) -> None:
    """An authority given with an upper-case scheme and host and a trailing slash is the
    issuer the document names: the session works."""
    authority = provider.issuer.replace("http://", "HTTP://") + "/"
    with OIDCPasswordSession(authority, PUBLIC_CLIENT, "alice", PASSWORD) as session:
        assert session.get_access_token()
    provider.discovery_overrides["issuer"] = provider.issuer.replace("/realms/test",
                                                                     "/realms/TEST")
    with password_session(provider) as session, pytest.raises(IssuerError):
        session.get_access_token()


def test_discovered_jwks_uri_is_held_to_the_same_rule(provider: Provider) -> None:
    """A discovery document naming an http JWKS on another machine is refused."""
    provider.discovery_overrides["jwks_uri"] = "http://keys.example.test/certs"
    with pytest.raises(IssuerError):
        OIDCPasswordSession.from_space(provider.space_url, "alice", PASSWORD)
    assert provider.token_requests() == 0


@pytest.mark.parametrize("url", ["http://auth.example.test/token", "http://10.0.0.1/token",
                                 "http://127.0.0.1.example.test/token",
                                 "https://user:pw@auth.example.test/token"])
def test_client_credentials_need_https_away_from_loopback(url: str) -> None:
    """A client secret is never sent in clear: http:// is refused off loopback, before any
    request is built."""
    built: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(refuse_into(built))) as client:
        with pytest.raises(InvalidArgument) as info:
            ClientCredentialsSession(url, SERVICE_CLIENT, SECRET, client=client)
    assert built == []
    assert SECRET not in str(info.value) and "pw" not in str(info.value)
    with pytest.raises(InvalidArgument):
        AsyncClientCredentialsSession(url, SERVICE_CLIENT, SECRET)


@pytest.mark.parametrize("make", [
    lambda url: OIDCPasswordSession(url, PUBLIC_CLIENT, "alice", PASSWORD),
    lambda url: AsyncOIDCPasswordSession(url, PUBLIC_CLIENT, "alice", PASSWORD),
    lambda url: AsyncOIDCPasswordSession.from_space(url, "alice", PASSWORD),
    lambda url: JWTVerifier(jwks_uri=url),
    lambda url: AsyncJWTVerifier(jwks_uri=url),
])
def test_every_oidc_url_argument_needs_https_away_from_loopback(make: Any) -> None:
    """Authorities, spaces and JWKS URLs must be https, except on a loopback host."""
    with pytest.raises(InvalidArgument) as info:
        make("http://id.example.test/realms/x")
    assert "https://" in str(info.value)
    with pytest.raises(InvalidArgument):
        make("https://user:pw@id.example.test/realms/x")
    for good in ("https://id.example.test/x", "http://localhost:1/x", "http://[::1]:1/x",
                 "http://127.8.9.10:1/x", "HTTP://LocalHost:1/x"):
        assert make(good) is not None


def test_from_space_needs_https_away_from_loopback() -> None:
    """from_space refuses a plain-http space off loopback before reading it."""
    built: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(refuse_into(built))) as client, \
            pytest.raises(InvalidArgument):
        OIDCPasswordSession.from_space("http://space.example.test", "alice", PASSWORD,
                                       client=client)
    assert built == []


def test_https_urls_and_loopback_http_are_accepted(provider: Provider) -> None:
    """https:// anywhere and http:// on loopback are fine; the sessions work as before."""
    ClientCredentialsSession("https://auth.example.test/token", SERVICE_CLIENT, SECRET).close()
    JWTVerifier(jwks_uri="https://id.example.test/certs").close()
    localhost = provider.token_url.replace("127.0.0.1", "localhost")
    with ClientCredentialsSession(provider.bs_token_url.replace("127.0.0.1", "localhost"),
                                  SERVICE_CLIENT, SECRET) as session:
        assert session.get_access_token()
    assert localhost.startswith("http://localhost:")


# -- failures stay bounded and typed ----------------------------------------------------------

HTML = b"<html><body>Welcome to the proxy</body></html>"


def count_attempts(session: Any, clock: FakeClock, *, steps: int, step: float) -> int:
    """Call ``get_access_token`` ``steps`` times, moving the clock ``step`` between calls;
    every failure must be an IssuerError.  Returns how many calls raised."""
    raised = 0
    for _ in range(steps):
        clock.advance(seconds=step)
        try:
            session.get_access_token()
        except IssuerError:
            raised += 1
    return raised


@pytest.mark.parametrize("kind", ["client_credentials", "password"])
def test_outage_after_expiry_is_not_hammered(provider: Provider, clock: FakeClock,
                                             kind: str) -> None:
    """An expired token and a failing token endpoint: a caller every 10 ms for 4 seconds
    (and 8 threads at once) make a few requests a second, not one per call."""
    make = service_session if kind == "client_credentials" else password_session
    with make(provider, clock) as session:
        session.get_access_token()
        provider.refuse_refresh = True  # the password session falls back to its grant
        provider.fail_token_requests(10**6, grant_type=kind)
        clock.advance(seconds=LIFETIME * 2)
        before = provider.counts[kind]
        assert count_attempts(session, clock, steps=400, step=0.01) == 400
        assert provider.counts[kind] - before <= 4 * 2 + 1
        before = provider.counts[kind]
        clock.advance(seconds=60)

        def caller(_: int) -> int:
            return count_attempts(session, clock, steps=20, step=0)

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(caller, range(8))) == 160
        assert provider.counts[kind] - before == 1
        provider.fail_token_requests(0)
        clock.advance(seconds=60)
        assert session.get_access_token()


@pytest.mark.parametrize("kind", ["client_credentials", "password"])
def test_a_200_that_is_not_json_keeps_the_valid_token(provider: Provider, clock: FakeClock,
                                                      kind: str) -> None:
    """A refresh answered 200 with an HTML page leaves the still-valid token in service;
    a later attempt, after the backoff, gets a new one."""
    make = service_session if kind == "client_credentials" else password_session
    with make(provider, clock) as session:
        first = session.get_access_token()
        provider.fail_token_requests(3, status=200, body=HTML)
        clock.advance(seconds=LIFETIME * 0.95)
        assert session.get_access_token() == first
        assert session.authorization_header()
        provider.fail_token_requests(0)
        clock.advance(seconds=1)
        second = session.get_access_token()
    assert second != first
    assert provider.reused_refresh_tokens == 0


def test_a_200_that_is_not_json_after_expiry_is_an_issuer_error(provider: Provider,
                                                                clock: FakeClock) -> None:
    """Once the token has expired, the unreadable answer surfaces as IssuerError."""
    with service_session(provider, clock) as session:
        session.get_access_token()
        provider.fail_token_requests(10, status=200, body=HTML)
        clock.advance(seconds=LIFETIME * 2)
        with pytest.raises(IssuerError) as info:
            session.get_access_token()
    assert info.value.status == 200


def test_unreachable_authority_in_from_space_is_an_issuer_error(provider: Provider) -> None:
    """A space naming an authority that cannot be reached raises IssuerError(status=None)."""
    dead = Provider().start()
    dead.stop()
    provider.space_authority = dead.issuer
    with pytest.raises(IssuerError) as info:
        OIDCPasswordSession.from_space(provider.space_url, "alice", PASSWORD)
    assert info.value.status is None
