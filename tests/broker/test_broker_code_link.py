"""Linking an OIDC upstream from a browser: ``begin_link`` / ``finish_link`` (the
authorization-code flow with PKCE), against the project's OIDC provider (authority and
space) and panva's oidc-provider.  The browser is played with plain httpx; the redirect
URI is never served (the code and state are read from the redirect's Location)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from broker_support import job_session
from support.panva import RESOURCE_SCOPE, PanvaProvider, panva_provider

from authtoken import InvalidArgument, IssuerError, Security, SessionExpired
from authtoken.broker import Broker, OIDCUpstream, SpatiumUpstream
from authtoken.testing import FakeClock, OIDCProvider, SpatiumAuthority

CALLBACK = "http://127.0.0.1:9/link/callback"


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    with OIDCProvider(lifetime=60, redirect_uris={CALLBACK}) as running:
        yield running


@pytest.fixture(params=["authority", "space"])
def broker(request: pytest.FixtureRequest, engine: Security,
           provider: OIDCProvider) -> Iterator[Broker]:
    upstream = (OIDCUpstream(provider.issuer, OIDCProvider.PUBLIC_CLIENT, scope="lessons")
                if request.param == "authority" else OIDCUpstream.from_space(provider.space_url))
    with Broker(engine, {"space": upstream}) as running:
        yield running


def _link(broker: Broker, provider: OIDCProvider, user: str = "alice") -> None:
    request = broker.begin_link(user, "space", CALLBACK)
    broker.finish_link(user, "space", request, provider.sign_in(request.url))


def test_link_by_code_then_use_and_refresh(broker: Broker, engine: Security,
                                           provider: OIDCProvider, clock: FakeClock) -> None:
    """The code links the account; the job gets its access token, and a refreshed one
    after expiry (one refresh grant, by the refresh token the code bought)."""
    request = broker.begin_link("alice", "space", CALLBACK)
    query = dict(parse_qsl(urlsplit(request.url).query))
    assert query["scope"].split()[:2] == ["openid", "offline_access"]
    assert query["prompt"] == "consent"
    broker.finish_link("alice", "space", request, provider.sign_in(request.url))
    assert broker.links("alice") == {"space": "ok"}
    assert provider.counts["authorization_code"] == 1 and provider.counts["password"] == 0
    session, _ = job_session(engine, scope="upstream:space")
    token = broker.access_token(session, "space")
    assert provider.check(token) is not None
    clock.advance(seconds=55)  # past 0.9 x 60 s
    fresh = broker.access_token(session, "space")
    assert fresh != token and provider.check(fresh) is not None
    assert provider.counts["refresh_token"] == 1
    with httpx.Client(auth=broker.auth(session, "space")) as client:
        assert client.get(f"{provider.space_url}/api/lessons/1").json()["data"]["user"] == "alice"


def test_the_upstreams_own_scope_is_asked_too(engine: Security,
                                              provider: OIDCProvider) -> None:
    upstream = OIDCUpstream(provider.issuer, OIDCProvider.PUBLIC_CLIENT,
                            scope="openid lessons profile")
    with Broker(engine, {"space": upstream}) as broker:
        request = broker.begin_link("alice", "space", CALLBACK)
    assert dict(parse_qsl(urlsplit(request.url).query))["scope"] == (
        "openid offline_access lessons profile")


def test_a_bad_state_or_a_refused_code_leaves_the_link_as_it_was(
        broker: Broker, engine: Security, provider: OIDCProvider) -> None:
    broker.link_password("alice", "space", "alice", provider.password)
    session, _ = job_session(engine, scope="upstream:space")
    before = broker.access_token(session, "space")
    request = broker.begin_link("alice", "space", CALLBACK)
    params = provider.sign_in(request.url)
    with pytest.raises(InvalidArgument, match="start the sign-in again"):
        broker.finish_link("alice", "space", request, {**params, "state": "forged"})
    assert broker.links("alice") == {"space": "ok"}
    assert broker.access_token(session, "space") == before
    provider.codes.clear()  # the provider forgot the code: it refuses it
    with pytest.raises(IssuerError) as info:
        broker.finish_link("alice", "space", request, params)
    assert info.value.code == "invalid_grant"
    assert broker.access_token(session, "space") == before
    cancelled = broker.begin_link("alice", "space", CALLBACK)
    with pytest.raises(IssuerError):
        broker.finish_link("alice", "space", cancelled,
                           provider.sign_in(cancelled.url, cancel=True))
    assert broker.access_token(session, "space") == before
    assert provider.counts["authorization_code"] == 1


def test_a_code_link_heals_needs_relink(broker: Broker, engine: Security,
                                        provider: OIDCProvider, clock: FakeClock) -> None:
    _link(broker, provider)
    session, _ = job_session(engine, scope="upstream:space")
    provider.refuse_refresh = True
    clock.advance(seconds=60)
    with pytest.raises(SessionExpired, match="begin_link"):
        broker.access_token(session, "space")
    assert broker.links("alice") == {"space": "needs_relink"}
    provider.refuse_refresh = False
    _link(broker, provider)
    assert broker.links("alice") == {"space": "ok"}
    assert provider.check(broker.access_token(session, "space")) is not None


def test_spatium_links_by_credentials_only(engine: Security,
                                           authority: SpatiumAuthority) -> None:
    with Broker(engine, {"spatium": SpatiumUpstream(authority.url, "nightly",
                                                     ["reports:read"])}) as broker:
        with pytest.raises(InvalidArgument, match=r"Spatium.*credentials"):
            broker.begin_link("alice", "spatium", CALLBACK)
        with pytest.raises(InvalidArgument, match="no upstream is named"):
            broker.begin_link("alice", "elsewhere", CALLBACK)
        assert broker.links("alice") == {}



def test_the_upstreams_are_listed_read_only(broker: Broker) -> None:
    """What a page lists: each link name and whether a browser can link it."""
    assert list(broker.upstreams) == ["space"]
    assert isinstance(broker.upstreams["space"], OIDCUpstream)
    with pytest.raises(TypeError):
        broker.upstreams["other"] = broker.upstreams["space"]  # type: ignore[index]


# -- panva ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def panva() -> Iterator[PanvaProvider]:
    with panva_provider(redirect_uris=[CALLBACK]) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("client", ["public", "confidential"])
def test_link_by_code_at_panva(panva: PanvaProvider, engine: Security, clock: FakeClock,
                               client: str) -> None:
    upstream = (OIDCUpstream(panva.issuer, panva.public_client_id, scope=RESOURCE_SCOPE)
                if client == "public" else
                OIDCUpstream(panva.issuer, panva.client_id, client_secret=panva.client_secret,
                             scope=RESOURCE_SCOPE))
    with Broker(engine, {"me": upstream}) as broker:
        request = broker.begin_link("alice", "me", CALLBACK)
        broker.finish_link("alice", "me", request, panva.sign_in(request.url))
        session, _ = job_session(engine, scope="upstream:me")
        with httpx.Client(auth=broker.auth(session, "me")) as http:
            assert http.get(panva.api_url).json()["sub"] == "alice"
        refreshes = panva.refresh_requests()
        token = broker.access_token(session, "me")
        clock.advance(seconds=panva.access_ttl)
        fresh = broker.access_token(session, "me")
        assert fresh != token and panva.refresh_requests() == refreshes + 1
        with httpx.Client(auth=broker.auth(session, "me")) as http:
            assert http.get(panva.api_url).json()["sub"] == "alice"
        stale = broker.begin_link("alice", "me", CALLBACK)
        params = panva.sign_in(stale.url)
        with pytest.raises(InvalidArgument):
            broker.finish_link("alice", "me", stale, {**params, "state": "x"})
        assert broker.access_token(session, "me") == fresh
