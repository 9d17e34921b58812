"""``GET /tokens/{key}/check``: why a login with one of the caller's tokens would be
refused now -- the engine's verdict through the caller's session, over memory and a real
SQLite file; the statuses of another user's token, an unknown key and malformed
parameters; and no token string in any answer, whatever was pasted into the query.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtoken import AuthToken, Security, find_tokens
from authtoken.admin import DelegationTokenAuth, create_app, openapi_document
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

CODE = b"print('nightly report')\n"
DIGEST = hashlib.sha256(CODE).hexdigest()
OTHER = hashlib.sha256(b"print('something else')\n").hexdigest()


def client(security: Security, user: Any = "alice") -> tuple[TestClient, str]:
    """A client authenticated as ``user`` by a new token; (client, its token string)."""
    caller = security.authorize_token(AuthToken("reports:read reports:write"), user=user)
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    return TestClient(app, headers={"Authorization": f"Bearer {caller}"}), caller


def stored(security: Security, scope: str, user: Any = "alice", **options: Any) -> str:
    """The key of a new token of ``user`` (made by the engine, not through the API)."""
    token = AuthToken(scope, **options)
    security.authorize_token(token, user=user)
    return str(token.key)


def check(api: TestClient, key: str, **query: str) -> Any:
    return api.get(f"/tokens/{key}/check", params=query)


# -- the verdicts -----------------------------------------------------------------------------
def test_a_pinned_token_passes_only_for_its_code(security: Security) -> None:
    api, _ = client(security)
    key = stored(security, f"reports:read sha256:{DIGEST}")
    answer = check(api, key)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"ok", "reason", "message"}
    assert body["ok"] is False and body["reason"] == "ScriptNotAuthorized"
    assert check(api, key, script_digest=OTHER).json()["reason"] == "ScriptNotAuthorized"
    passed = check(api, key, script_digest=DIGEST).json()
    assert passed["ok"] is True and passed["reason"] is None and passed["message"]
    # the binding as the scope writes it is read too
    assert check(api, key, script_digest=f"sha256:{DIGEST}").json()["ok"] is True


def test_script_and_code_bindings_are_both_asked(security: Security) -> None:
    api, _ = client(security)
    key = stored(security, f"vfs:ikey?42 sha256:{DIGEST}")
    assert check(api, key, script_key="42", script_digest=DIGEST).json()["ok"] is True
    assert check(api, key, script_key="43", script_digest=DIGEST).json()["ok"] is False
    assert check(api, key, script_key="42").json()["reason"] == "ScriptNotAuthorized"
    path_key = stored(security, "ufs:/jobs/my%20job.py")
    assert check(api, path_key, script_path="/jobs/my job.py").json()["ok"] is True
    assert check(api, path_key, script_path="/jobs/other.py").json()["ok"] is False


def test_revoked_expired_and_exhausted(security: Security, clock: FakeClock) -> None:
    api, _ = client(security)
    revoked = stored(security, "reports:read")
    security.revoke_auth_token_by_key(revoked)
    assert check(api, revoked).json()["reason"] == "TokenRevoked"
    short = stored(security, "reports:read", expires="1h")
    assert check(api, short).json()["ok"] is True
    clock.advance(hours=1)  # expired when now >= expires: the boundary itself
    expired = check(api, short).json()
    assert expired["reason"] == "TokenExpired" and "expired at" in expired["message"]
    once = AuthToken("reports:read", max_uses=1)
    string = security.authorize_token(once, user="alice")
    security.login_by_auth_token(string)
    exhausted = check(api, str(once.key)).json()
    assert exhausted["reason"] == "TokenExhausted"
    assert string not in str(exhausted)


def test_a_check_reads_only(security: Security) -> None:
    api, _ = client(security)
    once = AuthToken("reports:read", max_uses=1)
    string = security.authorize_token(once, user="alice")
    security.flush()
    before = security.audit_events(token_key=str(once.key))
    for _ in range(3):
        assert check(api, str(once.key)).json()["ok"] is True
    security.flush()
    # the caller's own logins are recorded; nothing about the token asked of
    assert security.audit_events(token_key=str(once.key)) == before
    assert security.get_auth_token(str(once.key)).use_count == 0
    security.login_by_auth_token(string)  # its one use was never spent by a check


# -- who may ask, and bad input ---------------------------------------------------------------
def test_another_users_token_is_403_an_unknown_key_404(security: Security) -> None:
    api, _ = client(security)
    theirs = stored(security, f"sha256:{DIGEST}", user="bob")
    answer = check(api, theirs, script_digest=DIGEST)
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert check(api, "a" * 16).status_code == 404
    assert TestClient(create_app(security, authenticate=DelegationTokenAuth(security))) \
        .get(f"/tokens/{theirs}/check").status_code == 401


@pytest.mark.parametrize(("query", "named"), [
    ({"script_digest": DIGEST.upper()}, "upper-case"),
    ({"script_digest": DIGEST[:-1]}, "63 characters"),
    ({"script_digest": DIGEST[:-1] + "g"}, "not hex digits"),
    ({"script_digest": ""}, "0 characters"),
    ({"script_digest": "SHA256:" + DIGEST}, "71 characters"),
    ({"script_key": "forty-two"}, "script_key"),
    ({"script_key": "4.2"}, "script_key"),
    ({"script_path": ""}, "script_path"),
    ({"script_path": "/jobs/a\x00b"}, "script_path"),
])
def test_malformed_parameters_are_422(security: Security, query: dict[str, str],
                                      named: str) -> None:
    api, _ = client(security)
    key = stored(security, f"sha256:{DIGEST}")
    answer = check(api, key, **query)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]


def test_a_malformed_key_is_422_and_a_repeated_parameter_too(security: Security) -> None:
    api, caller = client(security)
    for key in ("short", "A" * 16, "a" * 17, "1" * 16):
        answer = check(api, key)
        assert answer.status_code == 422 and key not in answer.json()["detail"]
    key = stored(security, "reports:read")
    answer = api.get(f"/tokens/{key}/check?script_key=1&script_key=2")
    assert answer.status_code == 422
    # a token string where a key goes: refused, never echoed
    answer = api.get(f"/tokens/{caller}/check")
    assert answer.status_code in (404, 422) and caller not in answer.text


def test_a_token_string_in_any_parameter_is_never_echoed(security: Security) -> None:
    api, caller = client(security)
    key = stored(security, f"ufs:/jobs/x.py sha256:{DIGEST}")
    for query in ({"script_digest": caller}, {"script_key": caller},
                  {"script_path": caller}, {"script_path": f"/jobs/{caller}.py",
                                            "script_digest": DIGEST}):
        answer = check(api, key, **query)
        assert answer.status_code in (200, 422)
        assert caller not in answer.text and not find_tokens(answer.text), query


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(min_size=1, max_size=80), key=st.text(max_size=30),
       digest=st.text(max_size=80))
def test_any_query_is_an_answer_not_a_crash(mem: Security, path: str, key: str,
                                            digest: str) -> None:
    api, caller = client(mem)
    token = stored(mem, f"vfs:ikey?7 sha256:{DIGEST}")
    answer = check(api, token, script_path=f"{path}{caller}", script_key=key,
                   script_digest=digest)
    assert answer.status_code in (200, 422), answer.text
    assert caller not in answer.text and not find_tokens(answer.text)


# -- the document ---------------------------------------------------------------------------
def test_the_route_is_in_the_openapi_document(mem: Security) -> None:
    document = openapi_document()
    operation = document["paths"]["/tokens/{key}/check"]["get"]
    assert operation["operationId"] == "checkToken"
    assert {p["name"] for p in operation["parameters"]} == {
        "script_key", "script_path", "script_digest"}
    assert set(operation["responses"]) >= {"200", "403", "404", "422"}
    schema = document["components"]["schemas"]["LoginCheck"]
    assert set(schema["required"]) == {"ok", "reason", "message"}
    assert "ScriptNotAuthorized" in schema["properties"]["reason"]["enum"]
    api, _ = client(mem)
    assert api.get("/openapi.json").json() == document


def test_an_admin_may_check_anyones_token(security: Security) -> None:
    caller = security.authorize_token(AuthToken("authtoken:admin"), user="root")
    api = TestClient(create_app(security, authenticate=DelegationTokenAuth(security)),
                     headers={"Authorization": f"Bearer {caller}"})
    theirs = stored(security, f"sha256:{DIGEST}", user="bob")
    assert check(api, theirs, script_digest=DIGEST).json()["ok"] is True
    assert check(api, theirs).json()["reason"] == "ScriptNotAuthorized"
