"""The admin API: routes, statuses, problems, authenticators, rate limits.

Most tests drive the application in-process with Starlette's ``TestClient``; the
``served`` ones run it under a real uvicorn server on 127.0.0.1 and talk HTTP to it.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount, Route
from support.served import served

import authtoken.admin as admin
from authtoken import (
    AuthToken,
    InvalidArgument,
    InvalidToken,
    Principal,
    RepositoryError,
    Security,
)
from authtoken._views import VIEW_FIELDS
from authtoken.admin import (
    AuthenticationFailed,
    DelegationTokenAuth,
    FailureLimiter,
    Identity,
    JWTAuth,
    SpatiumAuth,
    create_app,
    openapi_document,
)
from authtoken.issuers.oidc import JWTVerifier, OIDCPasswordSession
from authtoken.issuers.spatium import SpatiumClient
from authtoken.testing import FakeClock, OIDCProvider, SpatiumAuthority

with warnings.catch_warnings():
    # Newer Starlette prefers httpx2 for its TestClient and warns when it falls back.
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

PROBLEM = "application/problem+json"
ADMIN = "authtoken:admin"


# -- helpers ----------------------------------------------------------------------------------
class Ticker:
    """A monotonic clock for ``FailureLimiter`` that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_for(security: Security, *, authenticate: Any = None,
               limiter: FailureLimiter | None = None, address: str = "10.0.0.1",
               **options: Any) -> TestClient:
    app = create_app(security, authenticate=authenticate or DelegationTokenAuth(security),
                     limiter=limiter, **options)
    return TestClient(app, client=(address, 50000))


def root_token(security: Security, scope: str = f"reports:read reports:write {ADMIN}",
               user: Any = "alice", **kwargs: Any) -> str:
    return security.authorize_token(AuthToken(scope, **kwargs), user=user)


def key_of(security: Security, token: str) -> str:
    """The key of the token ``token``."""
    key = security.restore_auth_token(token).key
    assert key is not None
    return key


def assert_problem(response: httpx.Response, status: int, *secrets: str) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status`` that holds none of ``secrets``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == status and body["title"] and body["detail"]
    for secret in secrets:
        assert_hidden(secret, response.text)
    return body


def assert_hidden(token: str, text: str) -> None:
    """Neither ``token`` nor any 12-character run of its secret part is in ``text``."""
    assert token not in text
    secret = token.split(".", 1)[1] if "." in token else token
    for i in range(len(secret) - 12):
        assert secret[i:i + 12] not in text


# -- the public face --------------------------------------------------------------------------
def test_public_names_are_sorted_and_exported() -> None:
    """authtoken.admin re-exports one sorted __all__, pinned here."""
    assert admin.__all__ == sorted(admin.__all__)
    assert admin.__all__ == [
        "AuthenticationFailed", "Authenticator", "DelegationTokenAuth",
        "FailureLimiter", "Identity", "JWTAuth", "OIDCSignIn", "SpatiumAuth", "bearer_token",
        "create_app", "openapi_document", "user_candidates",
    ]
    for name in admin.__all__:
        assert getattr(admin, name) is not None


def test_create_app_refuses_bad_arguments(mem: Security) -> None:
    """create_app checks its security, authenticator and body limit."""
    with pytest.raises(TypeError):
        create_app(object(), authenticate=DelegationTokenAuth(mem))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        create_app(mem, authenticate=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        create_app(mem, authenticate=DelegationTokenAuth(mem), max_body=0)


# -- tokens: create, list, show, update, revoke -----------------------------------------------
def test_post_returns_201_with_view_and_token_once(security: Security) -> None:
    """POST /tokens answers 201 with the view plus the token string, shown nowhere after."""
    root = root_token(security)
    client = client_for(security)
    created = client.post("/tokens", json={"scope": "reports:read", "description": "cron",
                                           "data": '{"job": 7}', "expires": "1d"},
                          headers=bearer(root))
    assert created.status_code == 201
    body = created.json()
    assert list(body) == [*VIEW_FIELDS, "token"]
    assert body["token"].startswith("atk_") and body["scopes"] == ["reports:read"]
    assert body["user"] == "alice" and body["description"] == "cron"
    assert body["data"] == '{"job": 7}' and body["revoked_at"] is None
    assert created.headers["location"].endswith(f"/tokens/{body['key']}")
    assert security.login_by_auth_token(body["token"]).user == "alice"
    shown = client.get(f"/tokens/{body['key']}", headers=bearer(root))
    assert shown.status_code == 200 and list(shown.json()) == list(VIEW_FIELDS)
    listed = client.get("/tokens", headers=bearer(root))
    assert body["token"] not in shown.text and body["token"] not in listed.text


def test_every_response_is_not_cached(mem: Security) -> None:
    """Every answer, problems included, says Cache-Control: no-store and nosniff."""
    root = root_token(mem)
    client = client_for(mem)
    for response in (client.post("/tokens", json={"scope": "reports:read"},
                                 headers=bearer(root)),
                     client.get("/tokens"), client.get("/openapi.json")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_list_is_newest_first_and_hides_revoked_by_default(
        security: Security, clock: FakeClock) -> None:
    """GET /tokens lists the caller's tokens newest first; include_revoked adds revoked ones."""
    root = root_token(security)
    client = client_for(security)
    keys = []
    for name in ("one", "two", "three"):
        clock.advance(seconds=1)
        made = client.post("/tokens", json={"scope": "reports:read", "description": name},
                           headers=bearer(root))
        keys.append(made.json()["key"])
    assert client.delete(f"/tokens/{keys[1]}", headers=bearer(root)).status_code == 204
    live = client.get("/tokens", headers=bearer(root)).json()["tokens"]
    assert [t["key"] for t in live][:2] == [keys[2], keys[0]]
    every = client.get("/tokens?include_revoked=true", headers=bearer(root)).json()["tokens"]
    assert [t["key"] for t in every][:3] == [keys[2], keys[1], keys[0]]
    assert_problem(client.get("/tokens?include_revoked=maybe", headers=bearer(root)), 422)


def test_listing_another_user_needs_admin(mem: Security) -> None:
    """A non-admin cannot list another user's tokens; an admin can."""
    bob = root_token(mem, "reports:read", user="bob")
    admin_token = root_token(mem, ADMIN, user="root")
    root_token(mem, "x", user="carol")
    client = client_for(mem)
    assert_problem(client.get("/tokens?user=carol", headers=bearer(bob)), 403, bob)
    own = client.get("/tokens?user=bob", headers=bearer(bob))
    assert own.status_code == 200 and [t["user"] for t in own.json()["tokens"]] == ["bob"]
    theirs = client.get("/tokens?user=carol", headers=bearer(admin_token)).json()["tokens"]
    assert [t["user"] for t in theirs] == ["carol"]


def test_decimal_user_matches_the_integer_user(mem: Security, clock: FakeClock) -> None:
    """?user=42 lists the tokens of "42" and of 42, merged newest first."""
    mem.authorize_token(AuthToken("int-old"), user=42)
    clock.advance(seconds=1)
    mem.authorize_token(AuthToken("str-new"), user="42")
    admin_token = root_token(mem, ADMIN, user="root")
    client = client_for(mem)
    tokens = client.get("/tokens?user=42", headers=bearer(admin_token)).json()["tokens"]
    assert [(t["user"], t["scope"]) for t in tokens] == [("42", "str-new"), (42, "int-old")]
    caller = root_token(mem, "own", user=42)
    mine = client.get("/tokens?user=42", headers=bearer(caller)).json()["tokens"]
    assert {t["user"] for t in mine} == {42}
    assert_problem(client.get("/tokens?user=" + "9" * 300, headers=bearer(admin_token)), 422)


def test_show_token_ownership_and_not_found(mem: Security) -> None:
    """GET /tokens/{key}: own token 200, another user's 403, unknown key 404."""
    alice = root_token(mem, "a")
    bob = root_token(mem, "b", user="bob")
    client = client_for(mem)
    bob_key = key_of(mem, bob)
    assert_problem(client.get(f"/tokens/{bob_key}", headers=bearer(alice)), 403, alice, bob)
    assert_problem(client.get("/tokens/aaaaaaaaaaaaaaaa", headers=bearer(alice)), 404, alice)
    assert client.get(f"/tokens/{bob_key}", headers=bearer(bob)).json()["user"] == "bob"


def test_patch_updates_only_given_fields(mem: Security, clock: FakeClock) -> None:
    """PATCH changes the fields given and answers the updated view."""
    root = root_token(mem, "reports:read reports:write", expires=None)
    child = mem.authorize_token(AuthToken("reports:read", description="old"), user="alice")
    key = key_of(mem, child)
    client = client_for(mem)
    clock.advance(minutes=5)
    patched = client.patch(f"/tokens/{key}", json={"description": "new", "expires": "2h",
                                                    "scope": ["reports:write"]},
                           headers=bearer(root))
    assert patched.status_code == 200, patched.text
    view = patched.json()
    assert view["description"] == "new" and view["scopes"] == ["reports:write"]
    assert datetime.fromisoformat(view["expires"]) == clock() + timedelta(hours=2)
    never = client.patch(f"/tokens/{key}", json={"expires": None, "data": "d"},
                         headers=bearer(root)).json()
    assert never["expires"] is None and never["data"] == "d" and never["description"] == "new"
    assert client.patch(f"/tokens/{key}", json={}, headers=bearer(root)).status_code == 200


def test_patch_of_revoked_token_is_409(mem: Security) -> None:
    """PATCH of a revoked token is a 409 TokenRevoked problem."""
    root = root_token(mem)
    child = mem.authorize_token(AuthToken("reports:read", expires="1d"), user="alice")
    key = key_of(mem, child)
    mem.revoke_auth_token_by_key(key)
    client = client_for(mem)
    problem = assert_problem(client.patch(f"/tokens/{key}", json={"description": "x"},
                                          headers=bearer(root)), 409, root, child)
    assert "revoked" in problem["type"]


def test_patch_of_another_users_token_is_403(mem: Security) -> None:
    """A non-admin cannot change another user's token, and nothing changes."""
    alice = root_token(mem, "a")
    bob_token = mem.authorize_token(AuthToken("b", description="keep"), user="bob")
    key = key_of(mem, bob_token)
    client = client_for(mem)
    assert_problem(client.patch(f"/tokens/{key}", json={"description": "mine"},
                                headers=bearer(alice)), 403, alice, bob_token)
    assert mem.get_auth_token(key).description == "keep"


def test_delete_is_idempotent_and_checks_ownership(mem: Security) -> None:
    """DELETE answers 204 twice over, 404 for an unknown key, 403 for another user's."""
    root = root_token(mem, "reports:read")
    bob_token = mem.authorize_token(AuthToken("b"), user="bob")
    client = client_for(mem)
    key = client.post("/tokens", json={"scope": "reports:read"},
                      headers=bearer(root)).json()["key"]
    for _ in range(2):
        gone = client.delete(f"/tokens/{key}", headers=bearer(root))
        assert gone.status_code == 204 and gone.content == b""
    assert mem.get_auth_token(key).revoked
    assert_problem(client.delete("/tokens/zzzzzzzzzzzzzzzz", headers=bearer(root)), 404)
    bob_key = key_of(mem, bob_token)
    assert_problem(client.delete(f"/tokens/{bob_key}", headers=bearer(root)), 403)
    assert not mem.get_auth_token(bob_key).revoked


def test_revoke_all_counts_and_covers_both_user_forms(mem: Security) -> None:
    """POST /users/42/revoke-all revokes the tokens of 42 and "42"; non-admins only their own."""
    mem.authorize_token(AuthToken("a"), user=42)
    mem.authorize_token(AuthToken("b"), user=42)
    mem.authorize_token(AuthToken("c"), user="42")
    bob = root_token(mem, "b", user="bob")
    mem.authorize_token(AuthToken("b2"), user="bob")
    admin_token = root_token(mem, ADMIN, user="root")
    client = client_for(mem)
    assert_problem(client.post("/users/42/revoke-all", headers=bearer(bob)), 403, bob)
    answer = client.post("/users/42/revoke-all", headers=bearer(admin_token))
    assert answer.status_code == 200 and answer.json() == {"revoked": 3}
    assert client.post("/users/42/revoke-all", headers=bearer(admin_token)).json() == {
        "revoked": 0}
    own = client.post("/users/bob/revoke-all", headers=bearer(bob))
    assert own.json() == {"revoked": 2}
    assert_problem(client.get("/tokens", headers=bearer(bob)), 401, bob)
    admin_key = mem.restore_auth_token(admin_token).key
    done = [(e.outcome, e.actor) for e in reversed(mem.audit_events())
            if e.action == "revoke_all"]
    bob_key = mem.restore_auth_token(bob).key
    assert done == [("refused", f"token:{bob_key}"), ("ok", f"token:{admin_key}"),
                    ("ok", f"token:{admin_key}"), ("ok", f"token:{admin_key}"),
                    ("ok", f"token:{admin_key}"), ("ok", f"token:{bob_key}")]


def test_revoke_all_by_a_non_admin_means_itself(mem: Security) -> None:
    """The integer user 42 revoking /users/42 revokes its own tokens, not those of "42";
    naming another user is refused, recorded about the user named."""
    mem.authorize_token(AuthToken("a"), user=42)
    other = mem.authorize_token(AuthToken("c"), user="42")
    caller = root_token(mem, "own", user=42)
    client = client_for(mem)
    assert_problem(client.post("/users/carol/revoke-all", headers=bearer(caller)), 403, caller)
    refused = [e for e in mem.audit_events(user="carol") if e.action == "revoke_all"]
    assert [(e.outcome, e.reason) for e in refused] == [("refused", "PermissionDenied")]
    answer = client.post("/users/42/revoke-all", headers=bearer(caller))
    assert answer.json() == {"revoked": 2}
    assert not mem.restore_auth_token(other).revoked


def test_revoke_all_for_users_with_slashes(mem: Security) -> None:
    """A user holding a slash is reachable, percent-encoded, in the revoke-all path."""
    mem.authorize_token(AuthToken("a"), user="team/ops")
    admin_token = root_token(mem, ADMIN, user="root")
    client = client_for(mem)
    answer = client.post("/users/team%2Fops/revoke-all", headers=bearer(admin_token))
    assert answer.json() == {"revoked": 1}


# -- no escalation through delegation ---------------------------------------------------------
def test_tokens_created_by_a_token_are_its_children(security: Security) -> None:
    """A token-authenticated caller creates children of its token (parent_key), no wider."""
    root = root_token(security, "reports:read reports:write", expires="10d")
    parent_key = key_of(security, root)
    client = client_for(security)
    child = client.post("/tokens", json={"scope": "reports:read vfs:ikey?42"},
                        headers=bearer(root))
    assert child.status_code == 201
    view = child.json()
    assert view["parent_key"] == parent_key
    # The default expiry is capped at the parent's.
    parent_expires = security.get_auth_token(parent_key).expires
    assert parent_expires is not None and view["expires"] == parent_expires.isoformat()
    for wider in ({"scope": "reports:read billing:write"},
                  {"scope": "reports:read", "expires": "30d"},
                  {"scope": "reports:read", "expires": None},
                  {"scope": "reports:read", "expires": "never"}):
        assert_problem(client.post("/tokens", json=wider, headers=bearer(root)), 403, root)
    grandchild = client.post("/tokens", json={"scope": "vfs:ikey?42", "expires": "1d"},
                             headers=bearer(view["token"]))
    assert grandchild.status_code == 401  # bound to a script: it cannot call the API


def test_child_of_child_stays_inside(mem: Security) -> None:
    """A child token calling the API delegates only within itself, and dies with its root."""
    root = root_token(mem, "a b c", expires="10d")
    client = client_for(mem)
    child = client.post("/tokens", json={"scope": "a b"}, headers=bearer(root)).json()
    assert_problem(client.post("/tokens", json={"scope": "c"},
                               headers=bearer(child["token"])), 403, child["token"])
    grandchild = client.post("/tokens", json={"scope": "a"},
                             headers=bearer(child["token"])).json()
    assert grandchild["parent_key"] == child["key"]
    assert client.delete(f"/tokens/{key_of(mem, root)}",
                         headers=bearer(root)).status_code == 204
    for token in (child["token"], grandchild["token"]):
        assert_problem(client.get("/tokens", headers=bearer(token)), 401, token)


def test_updates_through_a_token_cannot_widen(mem: Security) -> None:
    """PATCH by a token-authenticated caller may not widen scope or expiry; text is fine."""
    root = root_token(mem, "a b", expires="10d")
    client = client_for(mem)
    child = client.post("/tokens", json={"scope": "a", "expires": "1d"},
                        headers=bearer(root)).json()
    url = f"/tokens/{child['key']}"
    for wider in ({"scope": "a z"}, {"expires": "20d"}, {"expires": None}):
        assert_problem(client.patch(url, json=wider, headers=bearer(root)), 403, root)
    assert client.patch(url, json={"scope": "a b", "expires": "2d"},
                        headers=bearer(root)).status_code == 200
    assert client.patch(url, json={"description": "ok", "data": "x"},
                        headers=bearer(root)).json()["description"] == "ok"


def test_admin_scope_makes_a_token_admin(mem: Security) -> None:
    """A token holding the admin scope manages other users' tokens; a custom scope works too."""
    bob = mem.authorize_token(AuthToken("b"), user="bob")
    bob_key = key_of(mem, bob)
    boss = root_token(mem, "ops:boss", user="boss")
    plain = client_for(mem)
    assert_problem(plain.get(f"/tokens/{bob_key}", headers=bearer(boss)), 403)
    custom = client_for(mem, authenticate=DelegationTokenAuth(mem, admin_scope="ops:boss"))
    assert custom.get(f"/tokens/{bob_key}", headers=bearer(boss)).json()["user"] == "bob"
    nobody = client_for(mem, authenticate=DelegationTokenAuth(mem, admin_scope=None))
    assert_problem(nobody.get(f"/tokens/{bob_key}", headers=bearer(boss)), 403)


# -- 401 / 413 / 415 / 422 / 429 and secrets ---------------------------------------------------
def test_401_without_or_with_bad_credentials(mem: Security, clock: FakeClock) -> None:
    """No, malformed, forged, revoked or expired credentials are a 401 with a challenge."""
    root = root_token(mem, expires="1h")
    revoked = root_token(mem, "x")
    mem.revoke_auth_token(revoked)
    forged = root[:-2] + ("AA" if not root.endswith("AA") else "BB")
    client = client_for(mem)
    missing = client.get("/tokens")
    assert_problem(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for headers in ({"Authorization": "Basic dXNlcjpwYXNz"}, bearer("garbage"), bearer(forged),
                    bearer(revoked), {"Authorization": "Bearer"}):
        answer = client.get("/tokens", headers=headers)
        assert_problem(answer, 401, root, revoked)
        assert "Bearer" in answer.headers["www-authenticate"]
    clock.advance(hours=2)
    assert_problem(client.get("/tokens", headers=bearer(root)), 401, root)


def test_415_for_bodies_that_are_not_json(mem: Security) -> None:
    """A body sent as anything but application/json is a 415, before it is read."""
    root = root_token(mem)
    client = client_for(mem)
    body = json.dumps({"scope": "reports:read"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "application/json; charset=latin-1", None):
        headers = bearer(root) | ({"Content-Type": content_type} if content_type else {})
        assert_problem(client.post("/tokens", content=body, headers=headers), 415, root)
        key = key_of(mem, root)
        assert_problem(client.patch(f"/tokens/{key}", content=body, headers=headers), 415)
    ok = client.post("/tokens", content=body,
                     headers=bearer(root) | {"Content-Type": "application/json; charset=UTF-8"})
    assert ok.status_code == 201


def test_413_for_bodies_too_large(mem: Security) -> None:
    """A body over the limit is a 413, by Content-Length and while streaming a chunked one."""
    root = root_token(mem)
    client = client_for(mem, max_body=1024)
    big = json.dumps({"scope": "reports:read", "data": root * 20})
    headers = bearer(root) | {"Content-Type": "application/json"}
    assert_problem(client.post("/tokens", content=big, headers=headers), 413, root)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 100):
            yield big[i:i + 100].encode()

    assert_problem(client.post("/tokens", content=chunks(), headers=headers), 413, root)
    assert len(mem.list_auth_tokens()) == 1


def test_default_limit_takes_the_largest_data(mem: Security) -> None:
    """The default body limit admits a token with the largest data, even JSON-escaped."""
    root = root_token(mem)
    client = client_for(mem)
    data = "\x01" * 65_536  # six bytes each once escaped
    made = client.post("/tokens", json={"scope": "reports:read", "data": data},
                       headers=bearer(root))
    assert made.status_code == 201
    too_much = client.post("/tokens", json={"scope": "reports:read", "data": data + "x"},
                           headers=bearer(root))
    assert_problem(too_much, 422, root)


@pytest.mark.parametrize("body", [
    b"not json",
    b"[1, 2]",
    b'"scope"',
    b'{"scope": "a", "scope": "b"}',
    b'{"scope": NaN}',
    b"\xff\xfe",
    b"[" * 100_000,
    b'{"scope": true}',
    b'{"scope": ["a", null]}',
    b'{"scope": 1.5}',
    b'{"scope": "a", "data": 5}',
    b'{"scope": "a", "description": null}',
    b'{"scope": "a", "expires": 30}',
    b'{"scope": "a", "user": "bob"}',
    b'{"description": "no scope"}',
    b'{"scope": ""}',
    b'{"scope": "vfs:ikey?x"}',
    b'{"scope": "a", "expires": "soon"}',
    b'{"scope": "a", "expires": "2001-01-01T00:00:00Z"}',
    b'{"scope": "a", "description": "' + b"d" * 1025 + b'"}',
])
def test_422_for_bad_bodies(mem: Security, body: bytes) -> None:
    """Unparsable, non-object, unknown, wrongly typed or invalid bodies are 422 problems."""
    root = root_token(mem, "a")
    client = client_for(mem, max_body=1 << 20)
    answer = client.post("/tokens", content=body,
                         headers=bearer(root) | {"Content-Type": "application/json"})
    assert_problem(answer, 422, root)
    assert len(mem.list_auth_tokens()) == 1


def test_problems_never_carry_a_token_string(mem: Security) -> None:
    """Token strings sent in odd places never come back in a problem body."""
    root = root_token(mem, "a")
    victim = mem.authorize_token(AuthToken("v"), user="bob")
    client = client_for(mem, max_body=4096)
    json_headers = bearer(root) | {"Content-Type": "application/json"}
    answers = [
        client.get(f"/tokens/{victim}", headers=bearer(root)),
        client.delete(f"/tokens/{victim}", headers=bearer(root)),
        client.patch(f"/tokens/{victim}", json={"description": "x"}, headers=bearer(root)),
        client.get("/tokens", params={"user": victim}, headers=bearer(root)),
        client.post(f"/users/{victim}/revoke-all", headers=bearer(root)),
        client.post("/tokens", json={"scope": "a", "expires": victim}, headers=bearer(root)),
        client.post("/tokens", json={victim: 1}, headers=bearer(root)),
        client.post("/tokens", content=victim, headers=bearer(root)),
        client.post("/tokens", content=victim * 100, headers=json_headers),
        client.get("/tokens", headers=bearer(victim + "x")),
        client.get("/tokens", headers={"Authorization": victim}),
        client.get(f"/{victim}", headers=bearer(root)),
    ]
    for answer in answers:
        assert answer.status_code >= 400
        assert answer.headers["content-type"].startswith(PROBLEM)
        assert_hidden(victim, answer.text)
        assert_hidden(root, answer.text)
    assert not mem.restore_auth_token(victim).revoked


def test_unknown_routes_and_methods_are_problems(mem: Security) -> None:
    """The router's 404 and 405 answers are problems too."""
    client = client_for(mem)
    assert_problem(client.get("/nowhere"), 404)
    not_allowed = client.put("/tokens")
    assert_problem(not_allowed, 405)
    assert "GET" in not_allowed.headers["allow"]


def test_429_after_too_many_failures_from_one_address(mem: Security) -> None:
    """Past N failures a minute an address gets 429 with Retry-After; others are unaffected."""
    root = root_token(mem)
    ticker = Ticker()
    limiter = FailureLimiter(limit=3, window=60, clock=ticker)
    attacker = client_for(mem, limiter=limiter, address="192.0.2.7")
    neighbour = client_for(mem, limiter=limiter, address="192.0.2.8")
    for _ in range(4):
        assert_problem(attacker.get("/tokens", headers=bearer("atk_guess")), 401)
    blocked = attacker.get("/tokens", headers=bearer(root))  # even good credentials wait
    assert_problem(blocked, 429, root)
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert neighbour.get("/tokens", headers=bearer(root)).status_code == 200
    ticker.now += 61
    assert attacker.get("/tokens", headers=bearer(root)).status_code == 200


def test_429_over_a_real_connection(mem: Security) -> None:
    """Under uvicorn, the client address 127.0.0.1 is limited after N failures."""
    root = root_token(mem)
    app = create_app(mem, authenticate=DelegationTokenAuth(mem),
                     limiter=FailureLimiter(limit=2))
    with served(app) as url, httpx.Client(base_url=url) as http:
        statuses = [http.get("/tokens", headers=bearer("nope")).status_code
                    for _ in range(3)]
        assert statuses == [401, 401, 401]
        blocked = http.get("/tokens", headers=bearer(root))
        assert_problem(blocked, 429, root)
        assert int(blocked.headers["retry-after"]) >= 1


def test_failure_limiter_is_bounded_and_checks_its_limit() -> None:
    """The limiter keeps at most max_addresses addresses and refuses limits over 100."""
    ticker = Ticker()
    limiter = FailureLimiter(limit=1, window=60, max_addresses=3, clock=ticker)
    for i in range(10):
        for _ in range(2):
            limiter.failed(f"10.0.0.{i}")
    assert len(limiter._failures) == 3
    assert limiter.retry_after("10.0.0.9") is not None
    assert limiter.retry_after("10.0.0.0") is None  # forgotten, oldest first
    limiter.reset()
    assert limiter.retry_after("10.0.0.9") is None
    for bad in (0, 101, True):
        with pytest.raises(InvalidArgument):
            FailureLimiter(limit=bad)


def test_failed_authentications_are_audited(mem: Security) -> None:
    """Each failed API authentication is an 'authenticate' event, refused, with a reason."""
    admin_token = root_token(mem, ADMIN, user="root")
    client = client_for(mem, address="198.51.100.9")
    client.get("/tokens", headers=bearer("atk_nothing"))
    client.get("/tokens")
    events = client.get("/audit", headers=bearer(admin_token)).json()["events"]
    failures = [e for e in events if e["action"] == "authenticate"]
    assert len(failures) == 2
    assert {e["outcome"] for e in failures} == {"refused"}
    assert {e["reason"] for e in failures} == {"InvalidToken", "AuthenticationFailed"}
    assert all("198.51.100.9" in (e["actor"] or "") for e in failures)


def test_storage_failure_during_authentication_is_503_not_401(mem: Security) -> None:
    """An authenticator that cannot reach storage gives 503 and is not counted as a failure."""
    def down(request: Request) -> Identity:
        raise RepositoryError("the database is down")

    limiter = FailureLimiter(limit=1)
    client = client_for(mem, authenticate=down, limiter=limiter)
    for _ in range(3):
        assert_problem(client.get("/tokens"), 503)
    assert limiter.retry_after("10.0.0.1") is None


# -- the audit trail --------------------------------------------------------------------------
def test_audit_events_shape_and_filters(mem: Security, clock: FakeClock) -> None:
    """GET /audit lists events newest first with the documented fields, filtered as asked."""
    admin_token = root_token(mem, ADMIN, user="root")
    alice = root_token(mem, "reports:read", user="alice")
    client = client_for(mem)
    clock.advance(minutes=1)
    since = clock()
    key = client.post("/tokens", json={"scope": "reports:read"},
                      headers=bearer(alice)).json()["key"]
    client.patch(f"/tokens/{key}", json={"description": "d"}, headers=bearer(alice))
    client.delete(f"/tokens/{key}", headers=bearer(alice))
    answer = client.get("/audit", params={"token": key}, headers=bearer(admin_token))
    assert answer.status_code == 200
    events = answer.json()["events"]
    assert all(list(e) == ["at", "actor", "action", "token_key", "run_id", "script", "outcome",
                           "reason"]
               for e in events)
    assert [e["action"] for e in events] == ["revoke", "update", "authorize"]
    assert all(e["token_key"] == key and e["outcome"] == "ok" for e in events)
    recent = client.get("/audit", params={"since": since.isoformat()},
                        headers=bearer(admin_token)).json()["events"]
    assert all(datetime.fromisoformat(e["at"]) >= since for e in recent)
    assert any(e["action"] == "login" for e in recent)
    limited = client.get("/audit?limit=2", headers=bearer(admin_token)).json()["events"]
    assert len(limited) == 2
    for bad in ("since=yesterday", "limit=0", "limit=x"):
        assert_problem(client.get(f"/audit?{bad}", headers=bearer(admin_token)), 422)


def test_audit_of_a_non_admin_is_its_own(mem: Security) -> None:
    """A non-admin sees only events about its own user's tokens and cannot ask for others."""
    alice = root_token(mem, "a", user="alice")
    bob = root_token(mem, "b", user="bob")
    client = client_for(mem)
    client.post("/tokens", json={"scope": "b"}, headers=bearer(bob))
    client.post("/tokens", json={"scope": "a"}, headers=bearer(alice))
    events = client.get("/audit", headers=bearer(alice)).json()["events"]
    assert events
    bob_keys = {t.key for t in mem.list_auth_tokens(user="bob")}
    assert not any(e["token_key"] in bob_keys for e in events)
    assert_problem(client.get("/audit?user=bob", headers=bearer(alice)), 403, alice)
    assert client.get("/audit?user=alice", headers=bearer(alice)).status_code == 200


def test_refused_actions_over_the_api_are_audited(mem: Security) -> None:
    """A refused authorize and a refused revoke-all appear in the trail as refused."""
    alice = root_token(mem, "a", user="alice")
    admin_token = root_token(mem, ADMIN, user="root")
    client = client_for(mem)
    client.post("/tokens", json={"scope": "z"}, headers=bearer(alice))
    client.post("/users/bob/revoke-all", headers=bearer(alice))
    events = client.get("/audit", headers=bearer(admin_token)).json()["events"]
    refused = {(e["action"], e["reason"]) for e in events if e["outcome"] == "refused"}
    assert {("authorize", "PermissionDenied"), ("revoke_all", "PermissionDenied")} <= refused


# -- other authenticators -----------------------------------------------------------------------
def test_custom_authenticator_plugs_in(mem: Security) -> None:
    """Any callable request -> Identity is an authenticator; AuthenticationFailed is a 401."""
    def by_header(request: Request) -> Identity:
        user = request.headers.get("x-user")
        if not user:
            raise AuthenticationFailed("who are you?", challenge='Custom realm="x"',
                                       presented=False)
        return Identity(user, admin=user == "root")

    client = client_for(mem, authenticate=by_header)
    answer = client.post("/tokens", json={"scope": "a", "expires": "never"},
                         headers={"X-User": "alice"})
    assert answer.status_code == 201 and answer.json()["expires"] is None
    assert answer.json()["parent_key"] is None
    denied = client.get("/tokens")
    assert_problem(denied, 401)
    assert denied.headers["www-authenticate"] == 'Custom realm="x"'
    assert len(client.get("/tokens?user=alice", headers={"X-User": "root"}).json()["tokens"]) == 1


def test_problem_details_mask_every_secret_shape(mem: Security) -> None:
    """A detail holding a token in capitals, a token body without its prefix or a URL
    password comes back masked, as everywhere else in the package."""
    body = "abcdefghijklmnop." + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0X1c"
    shouted = "ATK_ABCDEFGHIJKLMNOP.SECRETPART"

    def leaky(request: Request) -> Identity:
        raise AuthenticationFailed(f"refused {shouted} and {body} "
                                   "(store postgresql://svc:hunter2@db/tokens)")

    answer = client_for(mem, authenticate=leaky).get("/tokens")
    detail = assert_problem(answer, 401)["detail"]
    for secret in ("SECRETPART", body[:20], body[-20:], "hunter2"):
        assert secret not in detail
    assert "refused" in detail


def test_identity_checks_its_fields(mem: Security) -> None:
    """Identity refuses bad users and a principal of another user."""
    principal = Principal(user="bob", token_key="a" * 16, scopes=("x",), data=None,
                          expires=None)
    with pytest.raises(InvalidArgument):
        Identity("alice", principal=principal)
    with pytest.raises(TypeError):
        Identity(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Identity("alice", admin="yes")  # type: ignore[arg-type]
    session = Identity("bob", principal=principal).session(mem)
    assert session.user == "bob" and session.principal is principal


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    """A running OIDC provider."""
    with OIDCProvider(lifetime=300) as running:
        yield running


@pytest.fixture
def verifier(provider: OIDCProvider) -> Iterator[JWTVerifier]:
    """A verifier of the provider's access tokens, checking iss and aud."""
    with JWTVerifier(jwks_uri=provider.jwks_uri, issuer=provider.issuer,
                     audience=provider.AUDIENCE) as v:
        yield v


def test_jwt_auth_with_oidc_access_tokens(mem: Security, provider: OIDCProvider,
                                          verifier: JWTVerifier) -> None:
    """JWTAuth takes the user from sub and admin rights from a roles claim."""
    client = client_for(mem, authenticate=JWTAuth(verifier, admin_claim="roles",
                                                   admin_value="authtoken-admin"))
    with OIDCPasswordSession(provider.issuer, provider.PUBLIC_CLIENT, provider.username,
                             provider.password) as session:
        access = session.get_access_token()
    made = client.post("/tokens", json={"scope": "lessons:read", "expires": "never"},
                       headers=bearer(access))
    assert made.status_code == 201, made.text
    assert made.json()["user"] == "alice" and made.json()["parent_key"] is None
    mem.authorize_token(AuthToken("b"), user="bob")
    assert_problem(client.get("/tokens?user=bob", headers=bearer(access)), 403, access)
    boss = provider.mint({"sub": "boss", "roles": ["staff", "authtoken-admin"]})
    theirs = client.get("/tokens?user=bob", headers=bearer(boss))
    assert [t["user"] for t in theirs.json()["tokens"]] == ["bob"]


def test_jwt_auth_refuses_bad_tokens(mem: Security, provider: OIDCProvider,
                                     verifier: JWTVerifier) -> None:
    """Expired, foreign-audience, unsigned-by-provider or subject-less JWTs are 401s."""
    from authtoken.testing._oidc import rsa_key

    client = client_for(mem, authenticate=JWTAuth(verifier))
    bad = [
        provider.mint({"sub": "alice"}, lifetime=-10),
        provider.mint({"sub": "alice", "aud": "someone-else"}),
        provider.mint({"sub": "alice"}, key=rsa_key(5)),
        provider.mint({"sub": None}),
        provider.mint({"sub": ["alice"]}),
        "eyJ.not.a-jwt",
    ]
    for token in bad:
        assert_problem(client.get("/tokens", headers=bearer(token)), 401, token)


def test_jwt_auth_admin_from_a_scope_string(mem: Security, provider: OIDCProvider,
                                            verifier: JWTVerifier) -> None:
    """admin_value matches one word of a space-separated scope claim, and dotted paths work."""
    mem.authorize_token(AuthToken("b"), user="bob")
    by_scope = client_for(mem, authenticate=JWTAuth(verifier, admin_claim="scope",
                                                    admin_value="authtoken:admin"))
    token = provider.mint({"sub": "ops", "scope": "openid authtoken:admin"})
    assert by_scope.get("/tokens?user=bob", headers=bearer(token)).status_code == 200
    nested = client_for(mem, authenticate=JWTAuth(verifier, user_claim="ext.uid",
                                                  admin_claim="realm_access.roles",
                                                  admin_value="admin"))
    token = provider.mint({"ext": {"uid": 7}, "realm_access": {"roles": ["admin"]}})
    mine = nested.post("/tokens", json={"scope": "x"}, headers=bearer(token)).json()
    assert mine["user"] == 7
    assert nested.get("/tokens?user=bob", headers=bearer(token)).status_code == 200


def test_jwt_auth_checks_its_arguments(provider: OIDCProvider) -> None:
    """JWTAuth wants a synchronous verifier and non-empty claim names."""
    from authtoken.issuers.oidc import AsyncJWTVerifier

    with pytest.raises(TypeError):
        JWTAuth(AsyncJWTVerifier(jwks_uri=provider.jwks_uri))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        JWTAuth(object())  # type: ignore[arg-type]
    with JWTVerifier(jwks_uri=provider.jwks_uri) as verifier, pytest.raises(TypeError):
        JWTAuth(verifier, user_claim="")


def spatium_tokens(authority: SpatiumAuthority, username: str,
                   permissions: list[str]) -> tuple[str, str]:
    """A user's (permission token, refresh token) from the authority, by password."""
    with SpatiumClient(authority.url) as spatium:
        factor = spatium.security_factor_credentials(username, "pw-" + username)
        pair = spatium.issue_by_factors(f"device-{username}", permissions, [factor])
    return pair.permission_token, pair.refresh_token


def test_spatium_auth_with_permission_tokens(mem: Security) -> None:
    """SpatiumAuth takes the user from accountId and admin from the permissions."""
    clock = FakeClock(datetime.now(timezone.utc))
    with SpatiumAuthority(clock=clock) as authority:
        alice_id = authority.add_account("alice", "pw-alice")
        authority.add_account("boss", "pw-boss")
        alice, refresh = spatium_tokens(authority, "alice", ["lessons"])
        boss, _ = spatium_tokens(authority, "boss", ["lessons", "authtoken:admin"])
        with SpatiumClient(authority.url) as spatium:
            backend = spatium.issue_by_key("svc", ["lessons"], authority.merchant_key)
        auth = SpatiumAuth(authority.public_key_pem, clock=clock)
        client = client_for(mem, authenticate=auth)
        made = client.post("/tokens", json={"scope": "lessons"}, headers=bearer(alice))
        assert made.status_code == 201 and made.json()["user"] == alice_id
        assert_problem(client.get("/tokens?user=bob", headers=bearer(alice)), 403, alice)
        assert client.get(f"/tokens?user={alice_id}", headers=bearer(boss)).status_code == 200
        for refused in (refresh, backend.permission_token, "garbage"):
            assert_problem(client.get("/tokens", headers=bearer(refused)), 401, refused)
        clock.advance(hours=1)
        assert_problem(client.get("/tokens", headers=bearer(alice)), 401, alice)


def test_spatium_auth_refuses_other_keys_and_bad_arguments() -> None:
    """A token signed by another key is refused; a bad public key is InvalidArgument."""
    from authtoken.testing._oidc import rsa_key

    other = rsa_key(3)
    forged = jwt.encode({"magic": "permissionTokenSchema", "accountId": "x",
                         "permissions": ["authtoken:admin"], "iss": "authorization-service",
                         "exp": int(time.time()) + 60}, other, algorithm="RS256")
    with SpatiumAuthority() as authority:
        auth = SpatiumAuth(authority.public_key_pem)
        scope = {"type": "http", "headers": [(b"authorization", f"Bearer {forged}".encode())]}
        with pytest.raises(InvalidToken):
            auth(Request(scope))
    with pytest.raises(InvalidArgument):
        SpatiumAuth("not a pem")


# -- the OpenAPI document -----------------------------------------------------------------------
def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document_describes_every_route(mem: Security) -> None:
    """GET /openapi.json is OpenAPI 3.1 JSON naming every route, body and error response."""
    app = create_app(mem, authenticate=DelegationTokenAuth(mem))
    answer = TestClient(app).get("/openapi.json")
    assert answer.status_code == 200
    document = json.loads(answer.text)
    assert document["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item if method in ("get", "post", "patch", "delete")}
    served_routes = set()
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == "/ui" or route.path.startswith("/ui/"):
            continue  # the HTML page (tests/admin/test_admin_page.py), not the JSON API
        path = route.path.replace(":path}", "}")
        served_routes |= {(path, m) for m in (route.methods or ()) if m != "HEAD"}
    assert documented == served_routes
    for ref in set(_refs(document)):
        assert _resolve(document, ref) is not None
    create = document["paths"]["/tokens"]["post"]
    assert "requestBody" in create
    assert {"201", "401", "403", "413", "415", "422", "429"} <= set(create["responses"])
    problem = document["components"]["responses"]["422"]["content"]
    assert PROBLEM in problem
    patch = document["paths"]["/tokens/{key}"]["patch"]
    assert {"200", "404", "409"} <= set(patch["responses"])
    assert openapi_document("/admin")["servers"] == [{"url": "/admin"}]


# -- a real server -----------------------------------------------------------------------------
def test_life_cycle_over_a_real_server(security: Security) -> None:
    """Under uvicorn, mounted at /admin: create, show, update, list, revoke, audit."""
    root = root_token(security)
    api = create_app(security, authenticate=DelegationTokenAuth(security))
    app = Starlette(routes=[Mount("/admin", app=api)])
    with served(app) as url, httpx.Client(base_url=url + "/admin",
                                          headers=bearer(root)) as http:
        made = http.post("/tokens", json={"scope": "reports:read", "expires": "1d"})
        assert made.status_code == 201
        key = made.json()["key"]
        assert made.headers["location"] == f"{url}/admin/tokens/{key}"
        assert http.get(f"/tokens/{key}").json()["scope"] == "reports:read"
        assert http.patch(f"/tokens/{key}", json={"description": "d"}).json()[
            "description"] == "d"
        assert key in [t["key"] for t in http.get("/tokens").json()["tokens"]]
        assert http.delete(f"/tokens/{key}").status_code == 204
        assert http.get(f"/tokens/{key}").json()["revoked_at"] is not None
        actions = [e["action"] for e in http.get(f"/audit?token={key}").json()["events"]]
        assert actions == ["revoke", "update", "authorize"]
        document = http.get("/openapi.json").json()
        assert document["servers"] == [{"url": "/admin"}]


def test_body_limits_over_a_real_server(mem: Security) -> None:
    """Under uvicorn, an oversized body is a 413 and a non-JSON one a 415."""
    root = root_token(mem)
    app = create_app(mem, authenticate=DelegationTokenAuth(mem), max_body=2048)
    with served(app) as url, httpx.Client(base_url=url, headers=bearer(root)) as http:
        big = http.post("/tokens", json={"scope": "reports:read", "data": "x" * 4096})
        assert_problem(big, 413, root)
        plain = http.post("/tokens", content=b"scope=a",
                          headers={"Content-Type": "text/plain"})
        assert_problem(plain, 415, root)
        assert http.post("/tokens", json={"scope": "reports:read"}).status_code == 201
