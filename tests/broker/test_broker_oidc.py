"""The broker against the real OIDC provider of ``authtoken.testing`` (Authlib, rotating
refresh tokens): linking by password (authority or space) and by refresh token, a
refresh per expiry, a refused refresh, and ``auth()`` on the space's lesson API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from broker_support import job_session

from authtoken import IssuerError, PermissionDenied, Security, SessionExpired
from authtoken.broker import Broker, OIDCUpstream
from authtoken.testing import FakeClock, OIDCProvider


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    """A running provider: one-minute access tokens, rotating refresh tokens."""
    with OIDCProvider(lifetime=60) as running:
        yield running


@pytest.fixture(params=["authority", "space"])
def broker(request: pytest.FixtureRequest, engine: Security,
           provider: OIDCProvider) -> Iterator[Broker]:
    """A broker whose ``space`` upstream is the provider, named either way."""
    upstream = (OIDCUpstream(provider.issuer, OIDCProvider.PUBLIC_CLIENT)
                if request.param == "authority" else OIDCUpstream.from_space(provider.space_url))
    with Broker(engine, {"space": upstream}) as running:
        yield running


def test_link_use_and_refresh(broker: Broker, engine: Security, provider: OIDCProvider,
                              clock: FakeClock) -> None:
    """One password grant to link; no request while fresh; one refresh per expiry, each
    refresh token presented once."""
    broker.link_password("alice", "space", "alice", provider.password)
    session, _ = job_session(engine, scope="upstream:space")
    token = broker.access_token(session, "space")
    assert provider.check(token) is not None
    assert broker.access_token(session, "space") == token
    assert provider.counts["password"] == 1 and provider.counts["refresh_token"] == 0
    for expiry in range(1, 3):
        clock.advance(seconds=55)  # past 0.9 x 60 s
        fresh = broker.access_token(session, "space")
        assert fresh != token and provider.check(fresh) is not None
        assert provider.counts["refresh_token"] == expiry
        token = fresh
    assert provider.reused_refresh_tokens == 0


def test_auth_on_the_lesson_api(broker: Broker, engine: Security,
                                provider: OIDCProvider) -> None:
    """``auth()`` reads the user's lesson with the linked account's token."""
    broker.link_password("alice", "space", "alice", provider.password)
    session, _ = job_session(engine, scope="upstream:space")
    auth = broker.auth(session, "space")
    with httpx.Client(auth=auth) as client:
        answer = client.get(f"{provider.space_url}/api/lessons/1")
    assert answer.status_code == 200
    assert "space" in repr(auth) and "Bearer" not in repr(auth)
    other, _ = job_session(engine, scope="upstream:elsewhere")
    with pytest.raises(PermissionDenied):
        broker.auth(other, "space")


def test_link_by_refresh_token_and_refusal(broker: Broker, engine: Security,
                                           provider: OIDCProvider, clock: FakeClock) -> None:
    """A refresh token handed in links the account; a refused refresh needs a relink."""
    answer = httpx.post(provider.token_url, data={
        "grant_type": "password", "client_id": OIDCProvider.PUBLIC_CLIENT,
        "username": "alice", "password": provider.password})
    refresh_token = answer.json()["refresh_token"]
    broker.link_refresh_token("alice", "space", refresh_token)
    session, _ = job_session(engine, scope="upstream:space")
    assert provider.check(broker.access_token(session, "space")) is not None
    with pytest.raises(IssuerError):  # rotated: the handed-in token is spent
        broker.link_refresh_token("bob", "space", refresh_token)
    provider.refuse_refresh = True
    clock.advance(seconds=60)
    with pytest.raises(SessionExpired):
        broker.access_token(session, "space")
    assert broker.links("alice") == {"space": "needs_relink"}
    provider.refuse_refresh = False
    broker.link_password("alice", "space", "alice", provider.password)
    assert provider.check(broker.access_token(session, "space")) is not None


def test_refused_password(broker: Broker, provider: OIDCProvider) -> None:
    """A wrong password is an IssuerError that never quotes it."""
    with pytest.raises(IssuerError) as info:
        broker.link_password("alice", "space", "alice", "not-" + provider.password)
    assert provider.password not in str(info.value)
    assert broker.links("alice") == {}
