"""The browser sign-in (``AuthorizationCodeClient``) against the project's OIDC provider.

The provider (``authtoken.testing.OIDCProvider``) runs Authlib's authorization-code grant
with PKCE (S256, required) and OpenID Connect on 127.0.0.1; the browser is played with
plain httpx (``provider.sign_in``: GET the login form, POST it, read ``code``/``state``
from the redirect's Location without visiting the redirect URI).  The same flow against
panva's oidc-provider is in ``test_authcode_panva.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtoken import InvalidArgument, IssuerError
from authtoken.issuers._core import Response
from authtoken.issuers.oidc import (
    AuthorizationCodeClient,
    AuthorizationRequest,
    CodeGrant,
    OIDCPasswordSession,
)
from authtoken.issuers.oidc._authcode import code_exchange_flow
from authtoken.testing import OIDCProvider
from authtoken.testing._oidc import rsa_key

CALLBACK = "http://127.0.0.1:9/callback"  # never served: the code is read from the Location
SCOPE = "openid offline_access"


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    with OIDCProvider(redirect_uris={CALLBACK}) as p:
        yield p


@pytest.fixture
def op(provider: OIDCProvider) -> Iterator[OIDCProvider]:
    """The module's provider, with every misbehaviour a test set undone afterwards."""
    yield provider
    provider.id_token_claims.clear()
    provider.id_token_key = None
    provider.send_iss, provider.callback_iss = True, None
    provider.groups.clear()
    provider.discovery_overrides.clear()


@pytest.fixture
def client(op: OIDCProvider) -> Iterator[AuthorizationCodeClient]:
    with AuthorizationCodeClient(op.issuer, op.PUBLIC_CLIENT, scope=SCOPE) as c:
        yield c


def _signed_in(op: OIDCProvider, client: AuthorizationCodeClient,
               ) -> tuple[AuthorizationRequest, dict[str, str]]:
    request = client.begin(CALLBACK)
    return request, op.sign_in(request.url)


def _shown(exc: BaseException) -> str:
    return f"{exc} {exc!r} {getattr(exc, 'code', '')} {getattr(exc, 'request_id', '')}"


# -- the happy path -----------------------------------------------------------------------

def test_a_sign_in_gives_verified_claims_and_a_refresh_token(
        op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    """The code buys an access token that opens the space, a refresh token that works,
    and the ID token's claims: sub, the user's groups and this sign-in's nonce."""
    op.groups["alice"] = ["authtoken-admins"]
    request, params = _signed_in(op, client)
    assert set(params) == {"code", "state", "iss"}
    result = client.finish(request, params)
    assert isinstance(result, CodeGrant)
    assert result.claims["sub"] == "alice"
    assert result.claims["groups"] == ["authtoken-admins"]
    assert result.claims["aud"] == op.PUBLIC_CLIENT
    assert result.claims["nonce"] == request.nonce
    assert result.grant.refresh_token is not None
    lesson = httpx.get(f"{op.space_url}/api/lessons/1",
                       headers={"Authorization": f"Bearer {result.grant.access_token}"})
    assert lesson.json()["data"]["user"] == "alice"
    refreshed = httpx.post(op.token_url, data={
        "grant_type": "refresh_token", "refresh_token": result.grant.refresh_token,
        "client_id": op.PUBLIC_CLIENT})
    assert refreshed.status_code == 200 and "access_token" in refreshed.json()
    shown = f"{result!r} {result.grant!r}"
    assert result.grant.access_token not in shown
    assert result.grant.refresh_token not in shown


def test_begin_makes_a_fresh_pkce_request_and_reads_discovery_once(
        op: OIDCProvider) -> None:
    """Each request has its own state, nonce and verifier; the URL carries the S256
    challenge of the verifier and every parameter the provider needs."""
    before = op.counts["discovery"]
    with AuthorizationCodeClient(op.issuer, op.PUBLIC_CLIENT) as client:
        first, second = client.begin(CALLBACK), client.begin(CALLBACK, scope="openid",
                                                              prompt="login")
    assert op.counts["discovery"] == before + 1
    assert len({first.state, second.state, first.nonce, second.nonce}) == 4
    assert first.code_verifier != second.code_verifier
    assert 43 <= len(first.code_verifier) <= 128
    query = dict(parse_qsl(urlsplit(first.url).query))
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(first.code_verifier.encode()).digest()).rstrip(b"=").decode()
    assert query == {"response_type": "code", "client_id": op.PUBLIC_CLIENT,
                     "redirect_uri": CALLBACK, "scope": "openid", "state": first.state,
                     "nonce": first.nonce, "code_challenge": challenge,
                     "code_challenge_method": "S256"}
    assert first.url.startswith(op.authorization_url + "?")
    assert dict(parse_qsl(urlsplit(second.url).query))["prompt"] == "login"


def test_the_request_survives_json_and_its_repr_masks_the_secrets(
        client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK)
    assert AuthorizationRequest.from_json(request.to_json()) == request
    shown = repr(request)
    for secret in (request.state, request.nonce, request.code_verifier):
        assert secret not in shown
    assert CALLBACK in shown


@pytest.mark.parametrize("text", [
    "", "null", "[]", "{}", '{"url": 1}', "{" * 5000, "x" * 20000,
    '{"url":"http://evil.example/a","redirect_uri":"http://127.0.0.1/cb","state":"s",'
    '"nonce":"n","code_verifier":"' + "v" * 43 + '","scope":"openid"}',
    '{"url":"http://127.0.0.1/a","redirect_uri":"http://127.0.0.1/cb","state":"s",'
    '"nonce":"n","code_verifier":"short","scope":"openid"}',
    '{"url":"http://127.0.0.1/a","redirect_uri":"http://127.0.0.1/cb","state":"s",'
    '"nonce":"n","code_verifier":"' + "v" * 43 + '","scope":"openid","extra":1}',
])
def test_a_malformed_saved_request_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="start the sign-in again"):
        AuthorizationRequest.from_json(text)


def test_from_space_reads_the_spaces_provider(op: OIDCProvider) -> None:
    with AuthorizationCodeClient.from_space(op.space_url, scope=SCOPE) as client:
        assert (client.authority, client.client_id) == (op.issuer, op.PUBLIC_CLIENT)
        request, params = _signed_in(op, client)
        assert client.finish(request, params).claims["sub"] == "alice"


def test_a_confidential_client_sends_its_secret_in_the_form(op: OIDCProvider) -> None:
    op.register_client("confidential-app", "app-secret-Xq81")
    with AuthorizationCodeClient(op.issuer, "confidential-app",
                                 client_secret="app-secret-Xq81") as client:
        request, params = _signed_in(op, client)
        assert client.finish(request, params).claims["aud"] == "confidential-app"
    with AuthorizationCodeClient(op.issuer, "confidential-app",
                                 client_secret="wrong-secret-Zr42") as client:
        request, params = _signed_in(op, client)
        with pytest.raises(IssuerError) as info:
            client.finish(request, params)
    assert (info.value.status, info.value.code) == (401, "invalid_client")
    assert "wrong-secret-Zr42" not in _shown(info.value)


def test_a_sign_in_without_openid_needs_no_id_token(op: OIDCProvider,
                                                    client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, scope="offline_access")
    result = client.finish(request, op.sign_in(request.url))
    assert result.claims == {} and result.grant.refresh_token is not None


def test_no_id_token_although_openid_was_asked_is_refused(
        op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK, scope="offline_access")  # the provider sends none
    params = op.sign_in(request.url)
    with pytest.raises(IssuerError, match="no id_token"):
        client.finish(replace(request, scope="openid offline_access"), params)


# -- a callback that is not this browser's -----------------------------------------------

@pytest.mark.parametrize("state", [None, "", "another-state", "ü" * 40, "x" * 10000])
def test_a_wrong_or_missing_state_is_refused_before_the_code_is_used(
        op: OIDCProvider, client: AuthorizationCodeClient, state: str | None) -> None:
    request, params = _signed_in(op, client)
    forged = {k: v for k, v in params.items() if k != "state"}
    if state is not None:
        forged["state"] = state
    before = op.counts["authorization_code"]
    with pytest.raises(InvalidArgument, match="start the sign-in again") as info:
        client.finish(request, forged)
    assert op.counts["authorization_code"] == before  # nothing was sent
    assert params["code"] not in _shown(info.value)
    assert client.finish(request, params).claims["sub"] == "alice"  # the real one still works


def test_a_replayed_code_is_refused(op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    request, params = _signed_in(op, client)
    client.finish(request, params)
    reused = op.reused_codes
    with pytest.raises(IssuerError) as info:
        client.finish(request, params)
    assert (info.value.status, info.value.code) == (400, "invalid_grant")
    assert op.reused_codes == reused + 1
    assert params["code"] not in _shown(info.value)


def test_a_wrong_verifier_is_refused(op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    request, params = _signed_in(op, client)
    with pytest.raises(IssuerError) as info:
        client.finish(replace(request, code_verifier="v" * 64), params)
    assert (info.value.status, info.value.code) == (400, "invalid_grant")
    assert request.code_verifier not in _shown(info.value)


def test_a_cancelled_sign_in_is_the_providers_refusal(
        op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK)
    params = op.sign_in(request.url, cancel=True)
    assert params["error"] == "access_denied" and "code" not in params
    with pytest.raises(IssuerError) as info:
        client.finish(request, params)
    assert info.value.code == "access_denied"
    assert "access_denied" in str(info.value)


def test_an_error_description_is_shown_masked(client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK)
    leaked = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    with pytest.raises(IssuerError) as info:
        client.finish(request, {"state": request.state, "error": "server_error",
                                "error_description": f"token {leaked}\r\nleaked"})
    assert info.value.code == "server_error"
    assert leaked not in _shown(info.value) and "\n" not in str(info.value)
    with pytest.raises(IssuerError) as info:
        client.finish(request, {"state": request.state, "error": 'bad"code\\' + leaked})
    assert info.value.code == "invalid_error" and leaked not in _shown(info.value)


def test_a_callback_naming_another_issuer_is_refused(
        op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    """RFC 9207: a code from another provider (a mix-up) is not sent to this one."""
    op.callback_iss = "http://127.0.0.1:1/realms/evil"
    request, params = _signed_in(op, client)
    before = op.counts["authorization_code"]
    with pytest.raises(IssuerError, match="another issuer"):
        client.finish(request, params)
    assert op.counts["authorization_code"] == before
    op.send_iss = False  # a provider that does not send iss at all is accepted
    request, params = _signed_in(op, client)
    assert "iss" not in params
    assert client.finish(request, params).claims["sub"] == "alice"


# -- a forged ID token --------------------------------------------------------------------

@pytest.mark.parametrize(("claims", "reason"), [
    ({"nonce": "not-this-sign-ins-nonce"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"aud": "another-client"}, "audience"),
    ({"aud": ["space", "another-client"], "azp": "another-client"}, "azp"),
    ({"azp": "another-client"}, "azp"),
    ({"iss": "http://127.0.0.1:1/realms/evil"}, "issuer"),
    ({"exp": 1_000_000_000}, "expired"),
    ({"iat": 4_000_000_000}, "not valid yet"),
    ({"iat": None}, "lacks a required claim"),
    ({"sub": None}, "lacks a required claim"),
])
def test_a_forged_id_token_is_refused(op: OIDCProvider, client: AuthorizationCodeClient,
                                      claims: dict[str, object], reason: str) -> None:
    op.id_token_claims.update(claims)
    request, params = _signed_in(op, client)
    with pytest.raises(IssuerError, match=reason) as info:
        client.finish(request, params)
    assert request.nonce not in _shown(info.value)


def test_an_id_token_signed_by_another_key_is_refused(
        op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    op.id_token_key = rsa_key(3)
    request, params = _signed_in(op, client)
    with pytest.raises(IssuerError, match="ID token was refused"):
        client.finish(request, params)


# -- URLs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("authority", ["http://id.example.com/realms/x", "ftp://127.0.0.1/x",
                                       "https://user:pw@id.example.com", "not a url"])
def test_an_authority_in_clear_or_malformed_is_refused(authority: str) -> None:
    with pytest.raises(InvalidArgument, match="authority"):
        AuthorizationCodeClient(authority, "space")


def test_a_redirect_uri_in_clear_is_refused(client: AuthorizationCodeClient) -> None:
    with pytest.raises(InvalidArgument, match="redirect_uri"):
        client.begin("http://app.example.com/callback")


def test_an_authorization_endpoint_in_clear_is_refused(op: OIDCProvider) -> None:
    op.discovery_overrides["authorization_endpoint"] = "http://id.example.com/auth"
    with AuthorizationCodeClient(op.issuer, op.PUBLIC_CLIENT) as client, \
            pytest.raises(IssuerError, match="authorization_endpoint"):
        client.begin(CALLBACK)


@pytest.mark.parametrize(("field", "reason"), [("authorization_endpoint", "authorization_endpoint"),
                                               ("jwks_uri", "no jwks_uri")])
def test_a_discovery_document_without_what_the_flow_needs_is_refused(
        op: OIDCProvider, field: str, reason: str) -> None:
    op.discovery_overrides[field] = None
    with AuthorizationCodeClient(op.issuer, op.PUBLIC_CLIENT) as client, \
            pytest.raises(IssuerError, match=reason):
        client.begin(CALLBACK)


@pytest.mark.parametrize("id_token", [42, "", ["a.b.c"], "x" * 70000])
def test_an_unusable_id_token_in_the_token_answer_is_refused(id_token: object) -> None:
    """The exchange flow, driven by hand (it is sans-IO): a token answer whose id_token
    is no JWT text is an IssuerError, not a crash further on."""
    flow = code_exchange_flow("https://id.example/token", [("code", "c")], lambda: 0.0)
    request = next(flow)
    assert request.method == "POST" and request.url == "https://id.example/token"
    body = json.dumps({"access_token": "at", "token_type": "Bearer", "expires_in": 60,
                       "id_token": id_token}).encode()
    with pytest.raises(IssuerError, match="unusable id_token"):
        flow.send(Response(200, {"content-type": "application/json"}, body))


@pytest.mark.parametrize("kwargs", [{"client_id": ""}, {"client_id": "a b"},
                                    {"scope": "openid\nx"}, {"scope": ""},
                                    {"timeout": 0}])
def test_bad_arguments_are_refused(op: OIDCProvider, kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"client_id": op.PUBLIC_CLIENT, **kwargs}
    with pytest.raises(InvalidArgument):
        AuthorizationCodeClient(op.issuer, **arguments)  # type: ignore[arg-type]


# -- hostile callbacks --------------------------------------------------------------------

_TEXT = st.one_of(st.text(max_size=60), st.sampled_from(["", "\x00", "access_denied",
                                                           "a" * 70000]))
_VALUES = st.one_of(_TEXT, st.none(), st.integers(), st.lists(st.text(max_size=5),
                                                              max_size=2))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["state", "code", "error", "iss",
                                               "error_description", "session_state"]),
                              _VALUES, max_size=6),
       real_state=st.booleans())
def test_hostile_callback_parameters_give_only_our_errors(
        client: AuthorizationCodeClient, params: dict[str, object],
        real_state: bool) -> None:
    """Whatever the callback holds: InvalidArgument or IssuerError, never another
    exception, and never the verifier, nonce, state or code in a message."""
    request = client.begin(CALLBACK)
    if real_state:
        params["state"] = request.state
    with pytest.raises((InvalidArgument, IssuerError)) as info:
        client.finish(request, params)  # type: ignore[arg-type]
    shown = _shown(info.value)
    for secret in (request.code_verifier, request.nonce, request.state):
        assert secret not in shown
    code = params.get("code")
    if isinstance(code, str) and len(code) >= 8:
        assert code not in shown


def test_finish_refuses_what_is_not_a_request_or_a_mapping(
        client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK)
    with pytest.raises(TypeError):
        client.finish(request.to_json(), {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.finish(request, [("state", request.state)])  # type: ignore[arg-type]


def test_the_password_session_still_works_beside_the_code_flow(op: OIDCProvider) -> None:
    """The public client gained a grant; its password grant is as before."""
    with OIDCPasswordSession(op.issuer, op.PUBLIC_CLIENT, "alice", op.password) as session:
        assert session.get_access_token()


# -- the test provider's side ---------------------------------------------------------------

def test_the_provider_sends_no_code_to_an_unregistered_redirect_uri(
        op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin("http://127.0.0.1:9/not-registered")
    page = httpx.get(request.url)
    assert page.status_code == 400 and "location" not in page.headers


def test_the_provider_requires_pkce_by_s256(op: OIDCProvider,
                                            client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK)
    query = dict(parse_qsl(urlsplit(request.url).query))
    for change in ({"code_challenge_method": "plain"}, {"code_challenge": None,
                                                        "code_challenge_method": None}):
        asked = {k: v for k, v in {**query, **change}.items() if v is not None}
        answer = httpx.get(op.authorization_url, params=asked)
        assert answer.status_code == 302
        assert dict(parse_qsl(urlsplit(answer.headers["location"]).query))["error"] == (
            "invalid_request")


def test_the_login_form_is_labelled_and_refuses_a_wrong_password(
        op: OIDCProvider, client: AuthorizationCodeClient) -> None:
    request = client.begin(CALLBACK)
    page = httpx.get(request.url).text
    for field in ("username", "password"):
        assert f'<label for="{field}">' in page and f'id="{field}"' in page
    assert ">Sign in</button>" in page and ">Cancel</button>" in page
    with pytest.raises(AssertionError, match="401"):
        op.sign_in(request.url, password="not-" + op.password)
