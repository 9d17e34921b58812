"""Starlette's TokenAuthBackend under the real AuthenticationMiddleware over a real
SQLite store: request.user and request.auth, @requires, bearer_challenge, refusals."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from web_support import HeldRepository, assert_no_token, forged, sqlite_security

from authtoken import AuthToken, MemoryRepository, Script, Security, SQLRepository
from authtoken.integrations.starlette import (
    TokenAuthBackend,
    TokenAuthenticationError,
    TokenUser,
    bearer_challenge,
)
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient


async def whoami(request: Request) -> JSONResponse:
    user = request.user
    if not user.is_authenticated:
        return JSONResponse({"anonymous": True})
    assert isinstance(user, TokenUser)
    return JSONResponse({"user": user.principal.user, "name": user.display_name,
                         "identity": user.identity, "scopes": request.auth.scopes})


@requires("reports:read")
async def reports(request: Request) -> JSONResponse:
    return JSONResponse({"reader": request.user.display_name})


def make_app(security: Security, *, script: Script | None = None,
             challenge: bool = True) -> Starlette:
    options = {"on_error": bearer_challenge} if challenge else {}
    return Starlette(
        routes=[Route("/me", whoami), Route("/reports", reports)],
        middleware=[Middleware(AuthenticationMiddleware,
                               backend=TokenAuthBackend(security, script=script), **options)],
    )


@pytest.fixture
def security(tmp_path: Path, clock: FakeClock) -> Iterator[Security]:
    sec = sqlite_security(tmp_path, clock)
    yield sec
    sec.close()


@pytest.fixture
def client(security: Security) -> TestClient:
    return TestClient(make_app(security))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_request_user_and_auth(security: Security, client: TestClient) -> None:
    """request.user is a TokenUser with the principal; request.auth.scopes its scopes."""
    token = security.authorize_token(AuthToken("reports:read files:list"), user=42)
    answer = client.get("/me", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.json() == {"user": 42, "name": "42", "identity": token[4:20],
                             "scopes": ["reports:read", "files:list"]}


def test_requires_uses_the_scopes(security: Security, client: TestClient) -> None:
    """@requires passes a token holding the scope and answers 403 to one without."""
    reader = security.authorize_token(AuthToken("reports:read"), user="alice")
    other = security.authorize_token(AuthToken("reports:write"), user="alice")
    assert client.get("/reports", headers=bearer(reader)).json() == {"reader": "alice"}
    assert client.get("/reports", headers=bearer(other)).status_code == 403


def test_no_header_stays_anonymous(client: TestClient) -> None:
    """Without an Authorization header the request is anonymous; @requires refuses it."""
    assert client.get("/me").json() == {"anonymous": True}
    assert client.get("/reports").status_code == 403


@pytest.mark.parametrize("value", [
    "", "Bearer", "Bearer a b", "Bearer {token}, Bearer {token}", "Token {token}",
    "{token}", "Bearer{token}", "Bearer {token}\u00a0", "Bearer\t{token}",
])
def test_malformed_header_is_401_invalid_request(security: Security, client: TestClient,
                                                 value: str) -> None:
    """With bearer_challenge, a malformed header is 401 invalid_request, not echoed."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = client.get("/me", headers={
        "Authorization": value.format(token=token).encode("latin-1")})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert_no_token([answer.text], token)


@pytest.mark.parametrize("value", ["Basic YWxpY2U6c2VjcmV0", "Negotiate YIIB", "Digest"])
def test_another_scheme_stays_anonymous(security: Security, client: TestClient,
                                        value: str) -> None:
    """A header of another scheme (a basic-auth proxy in front of the app) is no bearer
    credential: the request is anonymous, so open endpoints answer and @requires
    refuses as it refuses anyone anonymous; nothing is audited."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    assert client.get("/me", headers={"Authorization": value}).json() == {"anonymous": True}
    assert client.get("/reports", headers={"Authorization": value}).status_code == 403
    events = security.audit_events(token_key=token[4:20])
    assert [e for e in events if e.action == "login"] == []


def test_two_headers_are_refused(security: Security, client: TestClient) -> None:
    """Two Authorization headers are refused, even when both are valid."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = client.get("/me", headers=[("Authorization", f"Bearer {token}")] * 2)
    assert answer.status_code == 401
    assert "more than one" in answer.json()["detail"]


def test_refused_tokens_are_401_invalid_token(security: Security, client: TestClient,
                                              clock: FakeClock) -> None:
    """Forged, revoked and expired tokens get 401 invalid_token; a revocation is seen
    by the next request."""
    token = security.authorize_token(AuthToken("reports:read", expires="1h"), user="alice")
    later = security.authorize_token(AuthToken("reports:read", expires="2h"), user="alice")
    details = []
    for value in (forged(token), "atk_nonsense"):
        answer = client.get("/me", headers=bearer(value))
        assert answer.status_code == 401
        details.append(answer.json()["detail"])
    assert client.get("/me", headers=bearer(token)).status_code == 200
    security.revoke_auth_token(token)
    details.append(client.get("/me", headers=bearer(token)).json()["detail"])
    clock.advance(hours=2)
    expired = client.get("/me", headers=bearer(later))
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    details.append(expired.json()["detail"])
    assert details == ["the token is invalid", "the token is invalid",
                       "the token was revoked", "the token has expired"]


def test_script_binding(security: Security) -> None:
    """A backend for script 7 refuses a token bound to script 8."""
    client = TestClient(make_app(security, script=Script(key=7)))
    assert client.get("/me", headers=bearer(
        security.authorize_token(AuthToken([7]), user="a"))).status_code == 200
    assert client.get("/me", headers=bearer(
        security.authorize_token(AuthToken([8]), user="a"))).status_code == 401


def test_token_in_query_string_is_refused(security: Security, client: TestClient) -> None:
    """A token in the query string is refused and never echoed, header or not."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    for url, headers in ((f"/me?access_token={token}", {}), (f"/me?t={token}", bearer(token))):
        answer = client.get(url, headers=headers)
        assert answer.status_code == 401
        assert "query string" in answer.json()["detail"]
        assert_no_token([answer.text, str(answer.headers)], token)


def test_unreachable_store_is_503(clock: FakeClock) -> None:
    """With the store unreachable, bearer_challenge answers 503 with Retry-After."""
    with Security(MemoryRepository(), secret_keys=["k"]) as elsewhere:
        token = elsewhere.authorize_token(AuthToken("reports:read"), user="alice")
    repository = SQLRepository("postgresql://svc:s3cret-pw@127.0.0.1:1/none", timeout=2)
    answer = TestClient(make_app(Security(repository, secret_keys=["k"], clock=clock))).get(
        "/me", headers=bearer(token))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "s3cret-pw" not in answer.text
    assert_no_token([answer.text], token)


def test_default_on_error_is_starlettes_400(security: Security) -> None:
    """Without bearer_challenge Starlette's default answer (400) is kept; the text is
    the refusal's description, never the token."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    client = TestClient(make_app(security, challenge=False))
    answer = client.get("/me", headers=bearer(forged(token)))
    assert answer.status_code == 400
    assert answer.text == "the token is invalid"


def test_bearer_challenge_answers_other_errors_plainly() -> None:
    """Another backend's AuthenticationError gets a bare 401 Bearer, its text unsaid."""
    from starlette.authentication import AuthenticationError

    answer = bearer_challenge(None, AuthenticationError("secret detail"))  # type: ignore[arg-type]
    assert answer.status_code == 401
    assert b"secret detail" not in bytes(answer.body)
    assert issubclass(TokenAuthenticationError, AuthenticationError)


def test_constructor_checks_its_arguments(security: Security) -> None:
    """A backend needs a Security and a Script (or None)."""
    with pytest.raises(TypeError):
        TokenAuthBackend(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TokenAuthBackend(security, script="/srv/x")  # type: ignore[arg-type]


def test_logins_counted_audited_and_not_logged(security: Security, client: TestClient,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Each request is a counted, audited login; no log line holds the token."""
    caplog.set_level(logging.DEBUG)
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    for _ in range(2):
        client.get("/me", headers=bearer(token))
    security.flush()
    key = token[4:20]
    assert security.get_auth_token(key).use_count == 2
    assert any(e.action == "login" and e.outcome == "ok"
               for e in security.audit_events(token_key=key))
    assert_no_token([caplog.text], token)


@pytest.mark.asyncio
async def test_login_does_not_block_the_event_loop(tmp_path: Path, clock: FakeClock) -> None:
    """While one login waits on storage, another request is answered in the same loop."""
    security = sqlite_security(tmp_path, clock, held=True)
    repository = security.repository
    assert isinstance(repository, HeldRepository)
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    transport = httpx.ASGITransport(app=make_app(security))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            repository.hold()
            slow = asyncio.ensure_future(client.get("/me", headers=bearer(token)))
            await asyncio.to_thread(repository.entered.wait, 20)
            anonymous = await asyncio.wait_for(client.get("/me"), 20)
            assert anonymous.json() == {"anonymous": True}
            assert not slow.done()
            repository.release()
            assert (await asyncio.wait_for(slow, 20)).status_code == 200
    finally:
        repository.release()
        security.close()
