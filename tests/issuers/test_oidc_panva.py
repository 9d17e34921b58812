"""authtoken.issuers.oidc against panva's oidc-provider, an implementation we did not write.

The server (``tests/support/panva/server.js``, started by ``support.panva``) rotates
refresh tokens and revokes a whole grant when a used one comes back, issues JWT access
tokens, and serves a protected resource that checks them.  Refresh timing is driven by a
``FakeClock`` handed to the session (the server's tokens live 30 s); two tests wait for
a real 2-second token to expire.  No test asserts on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from support.panva import (
    ACCOUNTS,
    PUBLIC_CLIENT,
    RESOURCE,
    RESOURCE_SCOPE,
    PanvaProvider,
    fingerprint,
    panva_provider,
)

from authtoken import InvalidToken, IssuerError
from authtoken.issuers.oidc import (
    AsyncOIDCPasswordSession,
    ClientCredentialsSession,
    JWTVerifier,
    OIDCPasswordSession,
)
from authtoken.testing import FakeClock

pytestmark = pytest.mark.slow

TTL = 30
WRONG_PASSWORD = "pw-SENTINEL-9d2f47"  # a sentinel that must never be echoed


@pytest.fixture(scope="module")
def panva_server() -> Iterator[PanvaProvider]:
    """One server for the module, with 30-second access tokens."""
    with panva_provider(access_ttl=TTL) as server:
        yield server


@pytest.fixture(scope="module")
def short_server() -> Iterator[PanvaProvider]:
    """A server whose access tokens live 2 seconds (1 to 2, as ``exp`` is whole seconds)."""
    with panva_provider(access_ttl=2) as server:
        yield server


def wait_until_refused(op: PanvaProvider, token: str) -> None:
    """Poll the protected resource until the server refuses ``token`` (it expired)."""
    deadline = time.monotonic() + 30
    while httpx.get(op.api_url, headers={"Authorization": f"Bearer {token}"}
                    ).status_code == 200:
        assert time.monotonic() < deadline, "a 2-second token never expired"
        time.sleep(0.2)


@pytest.fixture
def op(panva_server: PanvaProvider) -> PanvaProvider:
    """The module's server, its record emptied."""
    panva_server.reset_stats()
    return panva_server


def alice(op: PanvaProvider, clock: FakeClock | None = None, **kwargs: Any,
          ) -> OIDCPasswordSession:
    """Alice's session through the confidential client."""
    return OIDCPasswordSession(op.issuer, op.client_id, "alice", ACCOUNTS["alice"],
                               client_secret=op.client_secret, clock=clock, **kwargs)


def me(op: PanvaProvider, auth: httpx.Auth) -> dict[str, Any]:
    """The protected resource's answer, which must be a 200."""
    response = httpx.get(op.api_url, auth=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def token_post(op: PanvaProvider, **form: str) -> httpx.Response:
    """A raw request at the token endpoint, as the confidential client."""
    return httpx.post(op.token_url, data={"client_id": op.client_id,
                                          "client_secret": op.client_secret, **form})


# -- discovery and the password grant -----------------------------------------------------

def test_discovery_finds_the_token_endpoint_and_the_jwks(op: PanvaProvider) -> None:
    """The authority's discovery document gives the token endpoint and JWKS, nothing sent."""
    with alice(op) as session:
        session.discover()
        assert session.token_endpoint == op.token_url
        assert session.jwks_uri == op.jwks_uri
    assert op.stats()["token_requests"] == 0


def test_password_session_reads_the_protected_resource(op: PanvaProvider) -> None:
    """The password grant's access token opens the protected resource as alice."""
    with alice(op) as session:
        body = me(op, session.auth)
    assert body == {"sub": "alice", "client_id": op.client_id, "scope": RESOURCE_SCOPE}
    stats = op.stats()
    assert stats["grants"] == {"password": 1}
    assert stats["succeeded"] == {"password": 1}


def test_from_space_logs_in_with_the_spaces_public_client(op: PanvaProvider) -> None:
    """from_space reads the pointer, discovers, and logs in with the public client."""
    with OIDCPasswordSession.from_space(op.space_url, "bob", ACCOUNTS["bob"]) as session:
        assert session.authority == op.issuer
        assert session.client_id == PUBLIC_CLIENT
        assert session.token_endpoint == op.token_url
        body = me(op, session.auth)
    assert body["sub"] == "bob"
    assert body["client_id"] == PUBLIC_CLIENT


def test_jwt_verifier_checks_the_servers_access_tokens(op: PanvaProvider) -> None:
    """JWTVerifier accepts the server's at+jwt tokens by its JWKS, and refuses others."""
    with alice(op) as session, JWTVerifier(jwks_uri=op.jwks_uri, issuer=op.issuer,
                                           audience=RESOURCE) as verifier:
        token = session.get_access_token()
        claims = verifier.verify(token)
        assert claims["sub"] == "alice"
        assert claims["client_id"] == op.client_id
        assert claims["scope"] == RESOURCE_SCOPE
        head, payload, signature = token.split(".")
        forged = f"{head}.{payload}.{signature[:-4]}AAAA"
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
    with JWTVerifier(jwks_uri=op.jwks_uri, issuer=op.issuer,
                     audience="urn:another-api") as elsewhere, pytest.raises(InvalidToken):
        elsewhere.verify(token)


# -- refresh, with rotation -------------------------------------------------------------

def test_refresh_uses_each_rotated_refresh_token_once(op: PanvaProvider,
                                                      clock: FakeClock) -> None:
    """Each refresh presents the newest refresh token; none is sent twice, none revoked."""
    seen = []
    with alice(op, clock) as session:
        for _ in range(4):
            token = session.get_access_token()
            seen.append(token)
            assert me(op, session.auth)["sub"] == "alice"
            clock.advance(seconds=TTL)
    assert len(set(seen)) == 4
    stats = op.stats()
    assert stats["grants"] == {"password": 1, "refresh_token": 3}
    assert stats["succeeded"] == stats["grants"]
    presented = stats["refresh_tokens_presented"]
    assert len(presented) == 3
    assert len(set(presented)) == 3
    assert stats["grants_revoked"] == 0


def test_the_server_refuses_a_used_refresh_token_and_revokes_its_grant(
        op: PanvaProvider) -> None:
    """Rotation is on: a used refresh token is invalid_grant, and kills its successor."""
    first = token_post(op, grant_type="password", username="alice",
                       password=ACCOUNTS["alice"]).json()["refresh_token"]
    second = token_post(op, grant_type="refresh_token", refresh_token=first)
    assert second.status_code == 200
    successor = second.json()["refresh_token"]
    assert successor != first
    again = token_post(op, grant_type="refresh_token", refresh_token=first)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    after = token_post(op, grant_type="refresh_token", refresh_token=successor)
    assert (after.status_code, after.json()["error"]) == (400, "invalid_grant")
    stats = op.stats()
    assert stats["refresh_tokens_presented"] == [fingerprint(first), fingerprint(first),
                                                 fingerprint(successor)]
    assert stats["grants_revoked"] == 1


def test_a_refused_refresh_token_falls_back_to_the_password_grant(
        op: PanvaProvider, clock: FakeClock) -> None:
    """After the server revoked the grant, the session logs in by password again."""
    with alice(op, clock) as session:
        before = session.get_access_token()
        assert op.revoke("alice") >= 1
        clock.advance(seconds=TTL)
        after = session.get_access_token()
        assert after != before
        assert me(op, session.auth)["sub"] == "alice"
    stats = op.stats()
    assert stats["grants"] == {"password": 2, "refresh_token": 1}
    assert stats["errors"] == {"invalid_grant": 1}


def test_a_refused_refresh_and_a_changed_password_raise_issuer_error(
        op: PanvaProvider, clock: FakeClock) -> None:
    """With the grant revoked and the password changed, the session raises, secret-free."""
    with OIDCPasswordSession(op.issuer, op.client_id, "bob", ACCOUNTS["bob"],
                             client_secret=op.client_secret, clock=clock) as session:
        session.get_access_token()
        op.revoke("bob")
        op.set_password("bob", "a-new-password")
        try:
            clock.advance(seconds=TTL)
            with pytest.raises(IssuerError) as info:
                session.get_access_token()
        finally:
            op.set_password("bob", ACCOUNTS["bob"])
    assert (info.value.status, info.value.code) == (400, "invalid_grant")
    assert ACCOUNTS["bob"] not in f"{info.value} {info.value!r}"
    assert op.stats()["grants"] == {"password": 2, "refresh_token": 1}


def test_a_real_expiry_is_refreshed(short_server: PanvaProvider) -> None:
    """With 2-second tokens and a real clock, the auth serves a fresh token after expiry."""
    short_server.reset_stats()
    with OIDCPasswordSession(short_server.issuer, short_server.client_id, "alice",
                             ACCOUNTS["alice"], client_secret=short_server.client_secret,
                             ) as session:
        first = session.get_access_token()
        wait_until_refused(short_server, first)
        assert me(short_server, session.auth)["sub"] == "alice"
        assert session.get_access_token() != first
    stats = short_server.stats()
    assert stats["grants"]["password"] == 1
    assert stats["grants"]["refresh_token"] >= 1
    assert "errors" not in stats or not stats["errors"]
    presented = stats["refresh_tokens_presented"]
    assert len(set(presented)) == len(presented)


def test_a_token_the_resource_refuses_is_replaced_and_retried_once(
        short_server: PanvaProvider, clock: FakeClock) -> None:
    """When the API refuses a token the session still thinks fresh (its clock lags the
    server's), the auth refreshes and retries the request once."""
    short_server.reset_stats()
    with OIDCPasswordSession(short_server.issuer, short_server.client_id, "alice",
                             ACCOUNTS["alice"], client_secret=short_server.client_secret,
                             clock=clock) as session:
        first = session.get_access_token()
        wait_until_refused(short_server, first)
        before = short_server.stats()["api_requests"]
        assert me(short_server, session.auth)["sub"] == "alice"
        assert session.get_access_token() != first
    stats = short_server.stats()
    assert stats["api_requests"] - before == 2  # the refused request and its retry
    assert stats["grants"] == {"password": 1, "refresh_token": 1}


def test_a_5xx_during_a_refresh_keeps_the_valid_token_and_retries_later(
        op: PanvaProvider, clock: FakeClock) -> None:
    """A 503 while the token is due but valid is not raised; the same refresh token,
    unused by the issuer, is sent again after the backoff and works."""
    with alice(op, clock) as session:
        first = session.get_access_token()
        op.fault("refresh_token", fail_count=1)
        clock.advance(seconds=TTL * 0.95)
        assert session.get_access_token() == first
        assert session.get_access_token() == first  # within the backoff: no request
        assert op.refresh_requests() == 1
        clock.advance(seconds=1)
        second = session.get_access_token()
    assert second != first
    stats = op.stats()
    assert stats["errors"] == {"temporarily_unavailable": 1}
    assert len(stats["refresh_tokens_presented"]) == 2
    assert len(set(stats["refresh_tokens_presented"])) == 1
    assert len(stats["refresh_tokens_processed"]) == 1
    assert stats["grants_revoked"] == 0


def test_a_refresh_answered_too_late_is_never_sent_again(op: PanvaProvider,
                                                         clock: FakeClock) -> None:
    """The issuer consumed the refresh token but the answer timed out: the session keeps
    the valid token, never presents that refresh token again (which would make the
    server revoke the grant), and logs in by password once the token has expired."""
    with alice(op, clock, timeout=0.5) as session:
        first = session.get_access_token()
        op.fault("refresh_token", delay_after=2.0)
        clock.advance(seconds=TTL * 0.95)
        assert session.get_access_token() == first
        clock.advance(seconds=TTL)
        second = session.get_access_token()
        assert me(op, session.auth)["sub"] == "alice"
    assert second != first
    stats = op.stats()
    assert stats["grants"] == {"password": 2, "refresh_token": 1}
    assert len(stats["refresh_tokens_processed"]) == 1
    assert stats["grants_revoked"] == 0


def test_many_threads_at_an_expired_token_cause_one_refresh(op: PanvaProvider,
                                                            clock: FakeClock) -> None:
    """Sixteen threads asking at once after expiry share one refresh request."""
    with alice(op, clock) as session:
        session.get_access_token()
        clock.advance(seconds=TTL)
        with ThreadPoolExecutor(16) as pool:
            tokens = set(pool.map(lambda _: session.get_access_token(), range(64)))
    assert len(tokens) == 1
    assert op.refresh_requests() == 1


@pytest.mark.asyncio
async def test_async_callers_at_an_expired_token_cause_one_refresh(
        op: PanvaProvider, clock: FakeClock) -> None:
    """asyncio.gather of many callers after expiry shares one refresh request."""
    async with AsyncOIDCPasswordSession(op.issuer, op.client_id, "alice", ACCOUNTS["alice"],
                                        client_secret=op.client_secret,
                                        clock=clock) as session:
        await session.get_access_token()
        clock.advance(seconds=TTL)
        tokens = await asyncio.gather(*(session.get_access_token() for _ in range(32)))
        async with httpx.AsyncClient(auth=session.auth) as client:
            response = await client.get(op.api_url)
    assert len(set(tokens)) == 1
    assert response.json()["sub"] == "alice"
    assert op.refresh_requests() == 1


# -- refusals --------------------------------------------------------------------------

def test_a_wrong_password_is_an_issuer_error_that_keeps_it_secret(op: PanvaProvider) -> None:
    """invalid_grant with HTTP 400; neither the password nor the secret is echoed."""
    with OIDCPasswordSession(op.issuer, op.client_id, "alice", WRONG_PASSWORD,
                             client_secret=op.client_secret) as session:
        with pytest.raises(IssuerError) as info:
            session.get_access_token()
        shown = f"{info.value} {info.value!r} {session!r}"
    assert (info.value.status, info.value.code) == (400, "invalid_grant")
    assert WRONG_PASSWORD not in shown
    assert op.client_secret not in shown


@pytest.mark.parametrize(("client_id", "secret"),
                         [("nobody", None), ("authtoken-confidential", "not-the-secret")])
def test_an_unknown_client_or_wrong_secret_is_invalid_client(
        op: PanvaProvider, client_id: str, secret: str | None) -> None:
    """The server's 401 invalid_client surfaces as IssuerError, for both grants."""
    secret = secret or op.client_secret
    with OIDCPasswordSession(op.issuer, client_id, "alice", ACCOUNTS["alice"],
                             client_secret=secret) as session, pytest.raises(IssuerError) as info:
        session.get_access_token()
    assert (info.value.status, info.value.code) == (401, "invalid_client")
    with ClientCredentialsSession(op.token_url, client_id, secret) as service, \
            pytest.raises(IssuerError) as info:
        service.get_access_token()
    assert (info.value.status, info.value.code) == (401, "invalid_client")
    assert secret not in f"{info.value} {info.value!r}"


# -- client credentials -----------------------------------------------------------------

def test_client_credentials_reach_the_resource_and_renew_when_due(
        op: PanvaProvider, clock: FakeClock) -> None:
    """The service's own token opens the resource, verifies as a JWT, and is fetched again."""
    with ClientCredentialsSession(op.token_url, op.client_id, op.client_secret,
                                  scope=RESOURCE_SCOPE, clock=clock) as service:
        body = me(op, service.auth)
        first = service.get_access_token()
        clock.advance(seconds=TTL)
        second = service.get_access_token()
    assert body == {"sub": op.client_id, "client_id": op.client_id, "scope": RESOURCE_SCOPE}
    assert first != second
    with JWTVerifier(jwks_uri=op.jwks_uri, issuer=op.issuer, audience=RESOURCE) as verifier:
        assert verifier.verify(second)["client_id"] == op.client_id
    assert op.stats()["grants"] == {"client_credentials": 2}


# -- the authorization code flow with PKCE (what a "link account" button does) -----------

def _follow_login(client: httpx.Client, url: str, username: str, password: str) -> str:
    """Drive oidc-provider's development login and consent pages; the redirect URL."""
    response = client.get(url)
    for _ in range(10):
        if response.is_redirect:
            location = response.headers["location"]
            if location.startswith("http://127.0.0.1/callback"):
                return location
            response = client.get(urljoin(str(response.url), location))
            continue
        page = response.text
        action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page).group(1))  # type: ignore[union-attr]
        fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"',
                                 page))
        if 'name="login"' in page:
            fields.update(login=username, password=password)
        response = client.post(urljoin(str(response.url), action), data=fields)
    raise AssertionError("the login never redirected to the client")


def test_authorization_code_with_pkce_end_to_end(op: PanvaProvider) -> None:
    """A browser-like login gives a code; with its PKCE verifier the code gives tokens."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).rstrip(b"=").decode()
    state = secrets.token_urlsafe(12)
    query = httpx.QueryParams(client_id=op.public_client_id, response_type="code",
                              redirect_uri=op.redirect_uri, state=state,
                              scope=f"openid offline_access {RESOURCE_SCOPE}",
                              code_challenge=challenge, code_challenge_method="S256",
                              prompt="consent")
    with httpx.Client(follow_redirects=False) as browser:
        callback = _follow_login(browser, f"{op.issuer}/auth?{query}", "alice",
                                 ACCOUNTS["alice"])
    answer = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    assert answer["state"] == state
    form = {"grant_type": "authorization_code", "code": answer["code"],
            "redirect_uri": op.redirect_uri, "client_id": op.public_client_id}
    refused = httpx.post(op.token_url, data={**form, "code_verifier": "x" * 43})
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    tokens = httpx.post(op.token_url, data={**form, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    grant = tokens.json()
    assert "refresh_token" in grant and "id_token" in grant
    body = httpx.get(op.api_url, headers={"Authorization": f"Bearer {grant['access_token']}"})
    assert body.json()["sub"] == "alice"
    replayed = httpx.post(op.token_url, data={**form, "code_verifier": verifier})
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_grant")
