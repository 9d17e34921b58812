"""FastAPI's TokenAuth on a real FastAPI application over a real SQLite store: the
principal, RFC 6750 refusals, scopes through Security(), the event loop left free, and
the OpenAPI security scheme."""

# No "from __future__ import annotations": FastAPI reads the Annotated dependencies of
# the routes below, which name a local TokenAuth, when they are defined.

import asyncio
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi import Security as Needs
from support.served import served
from web_support import HeldRepository, assert_no_token, forged, sqlite_security

from authtoken import AuthToken, MemoryRepository, Principal, Script, Security, SQLRepository
from authtoken.integrations.fastapi import TokenAuth
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient


def make_app(security: Security, script: Script | None = None) -> FastAPI:
    """An application with an open route, a token route, and scoped routes (one of
    them needing a scope from its router as well as its own)."""
    auth = TokenAuth(security, script=script)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    def me(principal: Annotated[Principal, Depends(auth)]) -> dict[str, Any]:
        return {"user": principal.user, "key": principal.token_key,
                "scopes": list(principal.scopes)}

    @app.get("/reports")
    def reports(principal: Annotated[Principal, Needs(auth, scopes=["reports:read"])],
                ) -> dict[str, Any]:
        return {"user": principal.user}

    @app.get("/both")
    def both(anyone: Annotated[Principal, Depends(auth)],
             reader: Annotated[Principal, Needs(auth, scopes=["reports:read"])],
             ) -> dict[str, Any]:
        return {"same": anyone is reader}

    admin = APIRouter(dependencies=[Needs(auth, scopes=["admin"])])

    @admin.get("/admin/purge")
    def purge(principal: Annotated[Principal, Needs(auth, scopes=["reports:write"])],
              ) -> dict[str, Any]:
        return {"purged_by": principal.user}

    app.include_router(admin)
    return app


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


def test_depends_gives_the_principal(security: Security, client: TestClient) -> None:
    """Depends(auth) gives the Principal of the bearer token; the scheme's case is free."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    for scheme in ("Bearer", "bearer", "BEARER"):
        answer = client.get("/me", headers={"Authorization": f"{scheme} {token}"})
        assert answer.status_code == 200
        assert answer.json() == {"user": "alice", "key": token[4:20],
                                 "scopes": ["reports:read"]}


def test_missing_header_is_401_with_a_bare_challenge(client: TestClient) -> None:
    """No Authorization header: 401 and 'WWW-Authenticate: Bearer' with no error code."""
    answer = client.get("/me")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in answer.json()["detail"]


@pytest.mark.parametrize("value", [
    "",
    "Bearer \u00e9t\u00e9",
    "Bearer {token}\u00a0",
    "Bearer\u00a0{token}",
    "Bearer\t{token}",
    'Bearer "{token}"',
    "Bearer",
    "Bearer ",
    "Bearer a b",
    "Bearer{token}",
    "Bearer {token}, Bearer {token}",
    "Token {token}",
    "{token}",
    "Basic {token}",
    "(Bearer) {token}",
    "Bearer " + "a" * 5000,
])
def test_malformed_header_is_invalid_request(security: Security, client: TestClient,
                                             value: str) -> None:
    """A header that is not exactly 'Bearer <one token>' is 401 invalid_request, and the
    token in it is never echoed."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = client.get("/me", headers={
        "Authorization": value.format(token=token).encode("latin-1")})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert_no_token([answer.text, str(answer.headers)], token)


@pytest.mark.parametrize("value", ["Basic YWxpY2U6c2VjcmV0", "Negotiate YIIB", "Digest"])
def test_another_scheme_is_no_bearer_credential(security: Security, client: TestClient,
                                                value: str) -> None:
    """A header of another scheme (a basic-auth proxy's) carries no bearer credential:
    a guarded route answers as to no credential (401, a bare 'Bearer' challenge, RFC
    6750 3.1) saying what to send; an open route is not disturbed; nothing is audited."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = client.get("/me", headers={"Authorization": value})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["detail"] == (
        "the Authorization scheme is not Bearer: "
        "send the token in an 'Authorization: Bearer <token>' header")
    assert client.get("/health", headers={"Authorization": value}).status_code == 200
    events = security.audit_events(token_key=token[4:20])
    assert [e for e in events if e.action == "login"] == []


def test_two_authorization_headers_are_refused(security: Security,
                                               client: TestClient) -> None:
    """Two Authorization headers, even both valid, are 401 invalid_request."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = client.get("/me", headers=[("Authorization", f"Bearer {token}"),
                                        ("Authorization", f"Bearer {token}")])
    assert answer.status_code == 401
    assert 'error="invalid_request"' in answer.headers["www-authenticate"]
    assert "more than one" in answer.json()["detail"]


@pytest.mark.parametrize("credential", [
    "forged", "atk_", "atk_short", "not-a-token", "atk_" + "a" * 300,
])
def test_refused_token_is_invalid_token(security: Security, client: TestClient,
                                        credential: str) -> None:
    """Forged, truncated or garbage credentials of the right alphabet are 401
    invalid_token: the engine refused them."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    value = forged(token) if credential == "forged" else credential
    answer = client.get("/me", headers={"Authorization": f"Bearer {value}".encode("latin-1")})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="the token is invalid"')
    assert_no_token([answer.text], token, value if credential == "forged" else token)


def test_revocation_is_seen_at_once(security: Security, client: TestClient) -> None:
    """A revoked token is refused by the very next request, saying it was revoked."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    assert client.get("/me", headers=bearer(token)).status_code == 200
    security.revoke_auth_token(token)
    answer = client.get("/me", headers=bearer(token))
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert answer.json()["detail"] == "the token was revoked"


def test_expired_token_is_refused(security: Security, client: TestClient,
                                  clock: FakeClock) -> None:
    """A token past its expiry (by the engine's clock) is 401 invalid_token."""
    token = security.authorize_token(AuthToken("reports:read", expires="1h"), user="alice")
    assert client.get("/me", headers=bearer(token)).status_code == 200
    clock.advance(hours=1)
    answer = client.get("/me", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json()["detail"] == "the token has expired"


def test_script_binding_is_enforced(security: Security) -> None:
    """A TokenAuth for script 7 takes tokens bound to 7 or unbound, and refuses one
    bound to another script (401); one with no script refuses any bound token."""
    as_seven = TestClient(make_app(security, Script(key=7)))
    as_none = TestClient(make_app(security))
    bound_7 = security.authorize_token(AuthToken([7, "reports:read"]), user="alice")
    bound_8 = security.authorize_token(AuthToken([8, "reports:read"]), user="alice")
    free = security.authorize_token(AuthToken("reports:read"), user="alice")
    assert as_seven.get("/me", headers=bearer(bound_7)).status_code == 200
    assert as_seven.get("/me", headers=bearer(free)).status_code == 200
    refused = as_seven.get("/me", headers=bearer(bound_8))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the token is not for this service"
    assert as_none.get("/me", headers=bearer(bound_7)).status_code == 401


def test_missing_scope_is_403_insufficient_scope(security: Security,
                                                 client: TestClient) -> None:
    """Security(auth, scopes=[...]) answers 403 insufficient_scope naming the scope
    needed, and 200 when the token holds it exactly."""
    writer = security.authorize_token(AuthToken("reports:write"), user="alice")
    reader = security.authorize_token(AuthToken("reports:read"), user="bob")
    answer = client.get("/reports", headers=bearer(writer))
    assert answer.status_code == 403
    assert answer.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", '
        'error_description="the token lacks a required scope", scope="reports:read"')
    assert client.get("/reports", headers=bearer(reader)).json() == {"user": "bob"}
    prefix = security.authorize_token(AuthToken("reports"), user="carol")
    assert client.get("/reports", headers=bearer(prefix)).status_code == 403


def test_scopes_of_router_and_route_add_up(security: Security, client: TestClient) -> None:
    """A route's scopes and its router's are all required; the 403 names those missing."""
    only_write = security.authorize_token(AuthToken("reports:write"), user="alice")
    both = security.authorize_token(AuthToken("admin reports:write"), user="alice")
    answer = client.get("/admin/purge", headers=bearer(only_write))
    assert answer.status_code == 403
    assert 'scope="admin"' in answer.headers["www-authenticate"]
    assert client.get("/admin/purge", headers=bearer(both)).json() == {"purged_by": "alice"}


@pytest.mark.parametrize("path", ["/admin/purge", "/both"])
def test_one_request_is_one_login(security: Security, client: TestClient,
                                  path: str) -> None:
    """A request whose dependencies name the same TokenAuth several times (a router's
    scopes and a route's, or Depends beside Security) logs in once: one use of a
    max_uses token, one audit event, the same Principal everywhere."""
    token = security.authorize_token(
        AuthToken("admin reports:read reports:write", max_uses=4), user="alice")
    key = token[4:20]
    for spent in range(1, 5):
        assert client.get(path, headers=bearer(token)).status_code == 200
        security.flush()
        assert security.get_auth_token(key).use_count == spent
    logins = [e for e in security.audit_events(token_key=key) if e.action == "login"]
    assert [e.outcome for e in logins] == ["ok"] * 4
    assert client.get("/both", headers=bearer(token)).json() == {
        "detail": "the token has no use left"}
    assert client.get(path, headers=bearer(token)).status_code == 401
    security.flush()
    assert security.get_auth_token(key).use_count == 4
    refused = [e for e in security.audit_events(token_key=key)
               if e.action == "login" and e.outcome == "refused"]
    assert sum(e.count for e in refused) == 2  # a summary event counts its attempts


def test_two_requests_log_in_twice(security: Security, client: TestClient) -> None:
    """The kept login lives for one request only: the next request logs in afresh and
    sees a revocation made in between."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    assert client.get("/both", headers=bearer(token)).json() == {"same": True}
    security.revoke_auth_token(token)
    assert client.get("/both", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("query", [
    "access_token={token}", "ACCESS_TOKEN=x", "q={token}", "q={quoted}", "{token}",
    "a=1&b=%20{token}%20",
])
def test_token_in_query_string_is_refused(security: Security, client: TestClient,
                                          query: str) -> None:
    """A token in the query string is refused (401 invalid_request) even beside a valid
    header, the answer says to use the header, and the token is never echoed."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    quoted = "".join(f"%{ord(c):02X}" for c in token)
    answer = client.get("/me?" + query.format(token=token, quoted=quoted),
                        headers=bearer(token))
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert "query string" in answer.json()["detail"]
    assert "Authorization" in answer.json()["detail"]
    assert_no_token([answer.text, str(answer.headers)], token)


def test_ordinary_query_strings_pass(security: Security, client: TestClient) -> None:
    """Query strings without a token do not disturb the login."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = client.get("/me?" + quote("page=2&q=atk_ not a token", safe="=&"),
                        headers=bearer(token))
    assert answer.status_code == 200


def test_logins_are_counted_and_audited(security: Security, client: TestClient,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Each request is a login: use_count after flush, ok and refused events on the
    trail; no log line holds the token."""
    caplog.set_level(logging.DEBUG)
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    key = token[4:20]
    for _ in range(3):
        assert client.get("/me", headers=bearer(token)).status_code == 200
    security.flush()
    assert security.get_auth_token(key).use_count == 3
    security.revoke_auth_token(token)
    assert client.get("/me", headers=bearer(token)).status_code == 401
    events = security.audit_events(token_key=key)
    logins = [(e.outcome, e.reason) for e in events if e.action == "login"]
    assert ("ok", None) in logins
    assert ("refused", "TokenRevoked") in logins
    assert_no_token([r.getMessage() for r in caplog.records] + [caplog.text], token)


def test_unreachable_storage_is_503(clock: FakeClock) -> None:
    """When the store cannot be reached the answer is 503 with Retry-After, not 401,
    and neither the token nor the database password is in it."""
    with Security(MemoryRepository(), secret_keys=["k"]) as elsewhere:
        token = elsewhere.authorize_token(AuthToken("reports:read"), user="alice")
    repository = SQLRepository("postgresql://nobody:s3cret-pw@127.0.0.1:1/none", timeout=2)
    security = Security(repository, secret_keys=["k"], clock=clock)
    answer = TestClient(make_app(security)).get("/me", headers=bearer(token))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "s3cret-pw" not in answer.text
    assert_no_token([answer.text], token)


def test_openapi_shows_a_bearer_scheme(security: Security) -> None:
    """The OpenAPI document has an HTTP bearer scheme and each guarded operation names
    it with its scopes; open routes name none."""
    document = make_app(security).openapi()
    scheme = document["components"]["securitySchemes"]["TokenAuth"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "authtoken"
    paths = document["paths"]
    assert paths["/me"]["get"]["security"] == [{"TokenAuth": []}]
    assert paths["/reports"]["get"]["security"] == [{"TokenAuth": ["reports:read"]}]
    assert "security" not in paths["/health"]["get"]


def test_constructor_checks_its_arguments(security: Security) -> None:
    """A TokenAuth needs a Security and a Script (or None)."""
    with pytest.raises(TypeError):
        TokenAuth("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TokenAuth(security, script=7)  # type: ignore[arg-type]
    assert "TokenAuth" in repr(TokenAuth(security, script=Script(key=7)))


@pytest.mark.asyncio
async def test_login_does_not_block_the_event_loop(tmp_path: Path, clock: FakeClock) -> None:
    """While one request's login waits on storage, another request on the same app,
    in the same event loop, is answered; then the first completes."""
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
            assert repository.entered.is_set()
            quick = await asyncio.wait_for(client.get("/health"), 20)
            assert quick.status_code == 200
            assert not slow.done()
            repository.release()
            assert (await asyncio.wait_for(slow, 20)).status_code == 200
    finally:
        repository.release()
        security.close()


@pytest.mark.slow
def test_served_by_uvicorn(security: Security) -> None:
    """Under a real uvicorn server: the principal, two real Authorization headers
    refused, and a token in the query string refused."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    with served(make_app(security)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/reports", headers=bearer(token)).json() == {"user": "alice"}
        twice = http.get("/me", headers=[("Authorization", f"Bearer {token}")] * 2)
        assert twice.status_code == 401
        leaked = http.get(f"/me?access_token={token}")
        assert leaked.status_code == 401
        assert_no_token([twice.text, leaked.text], token)
