"""The browser sign-in (``AuthorizationCodeClient``) against panva's oidc-provider.

An implementation we did not write: its devInteractions login and consent pages are
played with plain httpx (``PanvaProvider.sign_in``), and the code, state and ``iss`` are
read from the redirect's Location; the redirect URI is never served.  Refresh tokens
need ``offline_access`` with ``prompt=consent`` there, as OpenID Connect says.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from support.panva import RESOURCE_SCOPE, PanvaProvider, panva_provider

from authtoken import InvalidArgument, IssuerError
from authtoken.issuers.oidc import AuthorizationCodeClient

pytestmark = pytest.mark.slow

CALLBACK = "http://127.0.0.1:9/panva-callback"
SCOPE = f"openid offline_access groups {RESOURCE_SCOPE}"


@pytest.fixture(scope="module")
def op() -> Iterator[PanvaProvider]:
    with panva_provider(redirect_uris=[CALLBACK]) as server:
        yield server


@pytest.fixture
def client(op: PanvaProvider) -> Iterator[AuthorizationCodeClient]:
    with AuthorizationCodeClient(op.issuer, op.public_client_id, scope=SCOPE) as c:
        yield c


def test_a_sign_in_gives_claims_groups_and_a_working_refresh_token(
        op: PanvaProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, prompt="consent")
    params = op.sign_in(request.url)
    assert params["iss"] == op.issuer
    result = client.finish(request, params)
    assert result.claims["sub"] == "alice"
    assert result.claims["groups"] == ["authtoken-admins"]
    assert result.claims["aud"] == op.public_client_id
    assert result.grant.refresh_token is not None
    me = httpx.get(op.api_url,
                   headers={"Authorization": f"Bearer {result.grant.access_token}"})
    assert me.json()["sub"] == "alice"
    refreshed = httpx.post(op.token_url, data={
        "grant_type": "refresh_token", "refresh_token": result.grant.refresh_token,
        "client_id": op.public_client_id})
    assert refreshed.status_code == 200, refreshed.text


def test_bob_has_no_admin_group(op: PanvaProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, prompt="consent")
    result = client.finish(request, op.sign_in(request.url, "bob"))
    assert (result.claims["sub"], result.claims.get("groups")) == ("bob", [])


def test_a_confidential_client(op: PanvaProvider) -> None:
    with AuthorizationCodeClient(op.issuer, op.client_id, client_secret=op.client_secret,
                                 scope=SCOPE) as client:
        request = client.begin(CALLBACK, prompt="consent")
        result = client.finish(request, op.sign_in(request.url))
    assert result.claims["aud"] == op.client_id


def test_a_wrong_state_is_refused_and_the_code_stays_unspent(
        op: PanvaProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, prompt="consent")
    params = op.sign_in(request.url)
    with pytest.raises(InvalidArgument, match="start the sign-in again"):
        client.finish(request, {**params, "state": "forged"})
    assert client.finish(request, params).claims["sub"] == "alice"


def test_a_replayed_code_and_a_wrong_verifier_are_refused(
        op: PanvaProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, prompt="consent")
    params = op.sign_in(request.url)
    with pytest.raises(IssuerError) as info:
        client.finish(replace(request, code_verifier="w" * 64), params)
    assert (info.value.status, info.value.code) == (400, "invalid_grant")
    client.finish(request, params)
    with pytest.raises(IssuerError) as info:
        client.finish(request, params)
    assert (info.value.status, info.value.code) == (400, "invalid_grant")
    assert params["code"] not in f"{info.value} {info.value!r}"


def test_an_aborted_sign_in_is_access_denied(op: PanvaProvider,
                                             client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, prompt="consent")
    params = op.sign_in(request.url, abort=True)
    assert params["error"] == "access_denied"
    with pytest.raises(IssuerError) as info:
        client.finish(request, params)
    assert info.value.code == "access_denied"


def test_a_wrong_password_gets_no_code(op: PanvaProvider,
                                       client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, prompt="consent")
    with pytest.raises(AssertionError, match="refused the password"):
        op.sign_in(request.url, password="not-wonderland")
