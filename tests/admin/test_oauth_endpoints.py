"""RFC 7662 ``POST /introspect`` and RFC 7009 ``POST /revoke``, called as a service in
another language calls them: the admin application under uvicorn on 127.0.0.1 over a
real SQLite file, a plain ``urllib`` client sending form bodies with the service's own
bearer credential -- and Authlib's OAuth 2.0 client, a real RFC 7662/7009 client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.served import served

from authtoken import (
    AuthToken,
    MemoryRepository,
    Script,
    Security,
    Session,
    SQLRepository,
)
from authtoken.admin import (
    DelegationTokenAuth,
    FailureLimiter,
    Identity,
    create_app,
    openapi_document,
)
from authtoken.testing import FakeClock

FORM = "application/x-www-form-urlencoded"
PROBLEM = "application/problem+json"
ADMIN = "authtoken:admin"
INACTIVE = b'{"active":false}'
ACTIVE_KEYS = {"active", "sub", "scope", "exp", "iat", "token_type", "authtoken_key",
               "run_id", "chain"}


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Service:
    """The served admin application, its store and clock, and two callers: ``ops`` (an
    admin) and ``alice`` (a user)."""

    url: str
    security: Security
    clock: FakeClock
    ops: str
    alice: str

    def post(self, path: str, form: Mapping[str, str] | str | bytes | None = None, *,
             caller: str | None = None, content_type: str | None = FORM,
             headers: Mapping[str, str] | None = None) -> Answer:
        """POST as a plain HTTP client would: ``urllib``, a form body, a bearer header."""
        data = form if isinstance(form, bytes) else (
            form if isinstance(form, str) else urlencode(form or {})).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        if caller is not None:
            request.add_header("Authorization", f"Bearer {caller}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read())

    def introspect(self, form: Mapping[str, str] | str | bytes | None = None, *,
                   caller: str | None = None, **options: Any) -> Answer:
        return self.post("/introspect", form, caller=caller or self.ops, **options)

    def revoke(self, form: Mapping[str, str] | str | bytes | None = None, *,
               caller: str | None = None, **options: Any) -> Answer:
        return self.post("/revoke", form, caller=caller or self.ops, **options)

    def authorize(self, scope: str = "reports:read", user: Any = "alice",
                  **options: Any) -> str:
        return self.security.authorize_token(AuthToken(scope, **options), user=user)


def assert_hidden(answer: Answer, *tokens: str) -> None:
    """No token, nor its secret part, in the answer's body or headers."""
    text = answer.body.decode("utf-8", "replace") + json.dumps(dict(answer.headers))
    for token in tokens:
        assert token not in text
        assert token.split(".")[1] not in text


def assert_no_cache(answer: Answer) -> None:
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["pragma"] == "no-cache"


def assert_problem(answer: Answer, status: int, *tokens: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["detail"]
    assert_hidden(answer, *tokens)
    return body


def assert_inactive(answer: Answer, *tokens: str) -> None:
    """200, exactly ``{"active": false}``, no-store, nothing echoed."""
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert answer.body == INACTIVE
    assert_no_cache(answer)
    assert_hidden(answer, *tokens)


def key_of(token: str) -> str:
    return token[4:20]


@contextmanager
def build(tmp_path: Path, clock: FakeClock, **options: Any) -> Iterator[Service]:
    security = Security(SQLRepository(f"sqlite:///{tmp_path / 'oauth.db'}"),
                        secret_keys=["oauth-test"], clock=clock)
    ops = security.authorize_token(AuthToken(ADMIN, expires="never"), user="ops")
    alice = security.authorize_token(AuthToken("reports:read", expires="never"),
                                     user="alice")
    app = create_app(security, authenticate=DelegationTokenAuth(security), **options)
    with served(app) as url:
        yield Service(url, security, clock, ops, alice)
    security.close()


@pytest.fixture
def service(tmp_path: Path, clock: FakeClock) -> Iterator[Service]:
    with build(tmp_path, clock) as built:
        yield built


# -- /introspect: active ------------------------------------------------------------------------
def test_an_active_token_has_exactly_the_documented_members(service: Service) -> None:
    """sub (text, even for an integer user), scope, exp and iat (integer seconds),
    token_type, authtoken_key, run_id, chain; no-store; the token never echoed."""
    token = service.authorize("reports:read reports:write", user=42, expires="1d")
    stored = service.security.get_auth_token(key_of(token))
    answer = service.introspect({"token": token, "token_type_hint": "access_token"})
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    assert_no_cache(answer)
    assert_hidden(answer, token, service.ops)
    body = answer.json()
    assert set(body) == ACTIVE_KEYS
    assert stored.expires is not None and stored.created_at is not None
    assert body == {"active": True, "sub": "42", "scope": "reports:read reports:write",
                    "exp": int(stored.expires.timestamp()),
                    "iat": int(stored.created_at.timestamp()),
                    "token_type": "atk", "authtoken_key": key_of(token), "run_id": None,
                    "chain": [key_of(token)]}
    assert type(body["exp"]) is int and type(body["iat"]) is int
    assert body["exp"] - body["iat"] == 86400


def test_a_token_that_never_expires_has_no_exp(service: Service) -> None:
    body = service.introspect({"token": service.authorize(expires="never")}).json()
    assert body["active"] is True and "exp" not in body and set(body) == ACTIVE_KEYS - {"exp"}


def test_a_run_token_shows_its_run_and_chain(service: Service) -> None:
    """A run token made from a standing token: run_id, and the chain root → run token."""
    standing = service.authorize("reports:read", expires="7d")
    session = Session(service.security)
    session.login_by_auth_token(standing)
    with session.run_token("nightly-42") as run:
        body = service.introspect({"token": run.token}).json()
        assert body["run_id"] == "nightly-42"
        assert body["chain"] == [key_of(standing), run.key]
        assert body["authtoken_key"] == run.key and body["sub"] == "alice"
    assert_inactive(service.introspect({"token": run.token}), run.token)


def test_each_introspection_is_a_login_counted_and_audited(service: Service) -> None:
    """Three introspections are three uses, on the audit trail as logins."""
    token = service.authorize()
    for _ in range(3):
        assert service.introspect({"token": token}).json()["active"] is True
    service.security.flush()
    assert service.security.get_auth_token(key_of(token)).use_count == 3
    logins = [e for e in service.security.audit_events(token_key=key_of(token))
              if e.action == "login"]
    assert sum(getattr(e, "count", 1) or 1 for e in logins if e.outcome == "ok") == 3


def test_max_uses_is_spent_by_introspection(service: Service) -> None:
    """A two-use token is active twice, then inactive; its use_count is exact at once."""
    token = service.authorize(max_uses=2)
    assert [service.introspect({"token": token}).json()["active"] for _ in range(2)] == [
        True, True]
    assert_inactive(service.introspect({"token": token}), token)
    assert service.security.get_auth_token(key_of(token)).use_count == 2
    reasons = {e.reason for e in service.security.audit_events(token_key=key_of(token))
               if e.action == "login" and e.outcome == "refused"}
    assert reasons == {"TokenExhausted"}


def test_the_script_decides(service: Service) -> None:
    """A token bound to a script is active only for that script; blank script fields
    name no script; an unbound token is active for any script or none."""
    bound = service.authorize("reports:read vfs:ikey?7 ufs:/jobs/report.py")
    assert_inactive(service.introspect({"token": bound}), bound)
    assert_inactive(service.introspect({"token": bound, "script_key": "",
                                        "script_path": ""}), bound)
    assert_inactive(service.introspect({"token": bound, "script_key": "8"}), bound)
    assert_inactive(service.introspect({"token": bound, "script_path": "/jobs/other.py"}),
                    bound)
    assert service.introspect({"token": bound, "script_key": "7"}).json()["active"]
    assert service.introspect({"token": bound, "script_path": "/jobs/./report.py"}
                              ).json()["active"]
    reasons = {e.reason for e in service.security.audit_events(token_key=key_of(bound))
               if e.outcome == "refused"}
    assert reasons == {"ScriptNotAuthorized"}
    free = service.authorize()
    assert service.introspect({"token": free, "script_key": "8"}).json()["active"]


def test_a_malformed_script_field_is_422_and_spends_nothing(service: Service) -> None:
    token = service.authorize(max_uses=1)
    for form in ({"token": token, "script_key": "seven"},
                 {"token": token, "script_key": " 7"},
                 {"token": token, "script_path": "/a\x00b"},
                 {"token": token, "script_digest": "ABC"}):
        assert_problem(service.introspect(form), 422, token)
    assert service.security.get_auth_token(key_of(token)).use_count == 0


# -- /introspect: inactive ----------------------------------------------------------------------
def test_revocation_and_expiry_are_seen_at_once(service: Service) -> None:
    token = service.authorize(expires="1h")
    assert service.introspect({"token": token}).json()["active"] is True
    service.security.revoke_auth_token(token)
    assert_inactive(service.introspect({"token": token}), token)
    later = service.authorize(expires="1h")
    service.clock.advance(hours=1)
    assert_inactive(service.introspect({"token": later}), later)


def test_every_refusal_is_exactly_inactive(service: Service) -> None:
    """Missing, empty, over-long, garbage, forged (another key), unknown and truncated
    tokens: ``{"active": false}`` and nothing more."""
    token = service.authorize()
    with Security(MemoryRepository(), secret_keys=["another-key"]) as other:
        forged = other.authorize_token(AuthToken("reports:read"), user="alice")
    with Security(MemoryRepository(), secret_keys=["oauth-test"]) as same_key:
        unknown = same_key.authorize_token(AuthToken("reports:read"), user="alice")
    for form in ({}, {"token": ""}, {"token": "x" * 100_000}, {"token": "garbage"},
                 {"token": forged}, {"token": unknown}, {"token": token[:-1]},
                 {"token": " " + token}, {"token": token.upper()}, {"token": "é\u2028"},
                 {"other": token}):
        assert_inactive(service.introspect(form), token, forged, unknown)


def test_a_token_in_the_query_string_is_not_read(service: Service) -> None:
    """/introspect?token=… is not a request to introspect it: inactive, no use spent."""
    token = service.authorize()
    answer = service.post(f"/introspect?{urlencode({'token': token})}", {},
                          caller=service.ops)
    assert_inactive(answer, token)
    service.security.flush()
    assert service.security.get_auth_token(key_of(token)).use_count == 0


def test_a_store_that_cannot_be_reached_is_503_not_inactive(clock: FakeClock) -> None:
    """An outage is a 503 problem with Retry-After, never ``active: false``: a service
    must not take it for a revocation.  A forged string is still inactive."""
    with Security(MemoryRepository(), secret_keys=["k"]) as elsewhere:
        token = elsewhere.authorize_token(AuthToken("reports:read"), user="alice")
    repository = SQLRepository("postgresql://nobody:s3cret-pw@127.0.0.1:1/none", timeout=2)
    security = Security(repository, secret_keys=["k"], clock=clock)
    app = create_app(security, authenticate=lambda request: Identity("svc"))
    with served(app) as url:
        down = Service(url, security, clock, "", "")
        answer = down.post("/introspect", {"token": token}, caller=None)
        body = assert_problem(answer, 503, token)
        assert answer.headers["retry-after"] == "5" and "s3cret-pw" not in body["detail"]
        assert_no_cache(answer)
        assert_inactive(down.post("/introspect", {"token": "atk_forged"}, caller=None))
        assert_problem(down.post("/revoke", {"token": token}, caller=None), 503, token)


# -- /revoke -------------------------------------------------------------------------------------
def test_a_user_revokes_its_own_token(service: Service) -> None:
    """200 with an empty body; the token is inactive at once; audited as a revoke by
    alice."""
    token = service.authorize()
    answer = service.revoke({"token": token, "token_type_hint": "access_token"},
                            caller=service.alice)
    assert (answer.status, answer.body) == (200, b"")
    assert_no_cache(answer)
    assert service.security.get_auth_token(key_of(token)).revoked_at is not None
    assert_inactive(service.introspect({"token": token}), token)
    revokes = [e for e in service.security.audit_events(token_key=key_of(token))
               if e.action == "revoke"]
    assert [(e.outcome, e.actor) for e in revokes] == [("ok", f"token:{key_of(service.alice)}")]


def test_a_user_may_not_revoke_another_users_token(service: Service) -> None:
    """403, the token unchanged and still active, the refusal audited."""
    bobs = service.authorize(user="bob")
    assert_problem(service.revoke({"token": bobs}, caller=service.alice), 403, bobs)
    assert service.security.get_auth_token(key_of(bobs)).revoked_at is None
    assert service.introspect({"token": bobs}).json()["active"] is True
    refused = [e for e in service.security.audit_events(token_key=key_of(bobs))
               if e.action == "revoke"]
    assert [e.outcome for e in refused] == ["refused"]


def test_an_admin_revokes_anyones_token_and_its_children(service: Service) -> None:
    """Revoking a standing token revokes, transitively, what was derived from it."""
    standing = service.authorize("reports:read reports:write", user="bob", expires="7d")
    session = Session(service.security)
    session.login_by_auth_token(standing)
    child = session.authorize_token(AuthToken("reports:read", expires="1d"))
    grandchild_session = Session(service.security)
    grandchild_session.login_by_auth_token(child)
    grandchild = grandchild_session.authorize_token(AuthToken("reports:read", expires="1h"))
    assert service.revoke({"token": standing}).status == 200
    for token in (standing, child, grandchild):
        assert_inactive(service.introspect({"token": token}), token)


def test_unknown_and_garbage_are_200(service: Service) -> None:
    """RFC 7009 §2.2: a string that is no token, or is unknown, is a 200 all the same;
    nothing else changes."""
    with Security(MemoryRepository(), secret_keys=["oauth-test"]) as same_key:
        unknown = same_key.authorize_token(AuthToken("reports:read"), user="alice")
    for form in ({"token": unknown}, {"token": "garbage"}, {"token": ""},
                 {"token": "y" * 100_000}, {"token": "atk_\u00e9"}):
        answer = service.revoke(form, caller=service.alice)
        assert (answer.status, answer.body) == (200, b"")
    assert service.introspect({"token": service.alice}).json()["active"] is True


def test_revoke_needs_the_token_field(service: Service) -> None:
    body = assert_problem(service.revoke({"token_type_hint": "access_token"}), 422)
    assert "token" in body["detail"]


def test_revoking_twice_is_idempotent(service: Service) -> None:
    token = service.authorize()
    assert service.revoke({"token": token}, caller=service.alice).status == 200
    assert service.revoke({"token": token}, caller=service.alice).status == 200


# -- the caller and the request ------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_a_caller_is_required(service: Service, path: str) -> None:
    """No credential, a bad one, or the token itself as a query: 401 with a Bearer
    challenge; nothing revoked, nothing spent."""
    token = service.authorize(max_uses=5)
    answer = service.post(path, {"token": token})
    assert_problem(answer, 401, token)
    assert answer.headers["www-authenticate"].startswith("Bearer")
    bad = service.post(path, {"token": token}, caller="atk_not-a-token")
    assert_problem(bad, 401, token)
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    stored = service.security.get_auth_token(key_of(token))
    assert stored.revoked_at is None and stored.use_count == 0


def test_failed_callers_are_rate_limited(tmp_path: Path, clock: FakeClock) -> None:
    """After N failed authentications the address gets 429 with Retry-After, on both
    routes, whatever credential it sends next."""
    with build(tmp_path, clock, limiter=FailureLimiter(limit=2)) as service:
        for _ in range(3):
            assert service.introspect({"token": "x"}, caller="atk_wrong").status == 401
        for path in ("/introspect", "/revoke"):
            answer = service.post(path, {"token": service.alice}, caller=service.ops)
            assert_problem(answer, 429, service.alice, service.ops)
            assert int(answer.headers["retry-after"]) >= 1


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_the_body_must_be_a_form(service: Service, path: str) -> None:
    """JSON, text, an empty type, or a charset other than UTF-8: 415, nothing done."""
    token = service.authorize()
    for body, content_type in ((json.dumps({"token": token}), "application/json"),
                               (f"token={token}", "text/plain"),
                               (f"token={token}", ""),
                               (f"token={token}", f"{FORM}; charset=latin-1")):
        answer = service.post(path, body, content_type=content_type, caller=service.ops)
        assert_problem(answer, 415, token)
    assert service.introspect(f"token={token}", content_type=f"{FORM}; charset=UTF-8"
                              ).json()["active"] is True
    assert service.security.get_auth_token(key_of(token)).revoked_at is None


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_a_huge_body_is_413(tmp_path: Path, clock: FakeClock, path: str) -> None:
    with build(tmp_path, clock, max_body=1024) as service:
        token = service.authorize()
        answer = service.post(path, {"token": token, "token_type_hint": "x" * 4096},
                              caller=service.ops)
        assert_problem(answer, 413, token)
        assert service.security.get_auth_token(key_of(token)).revoked_at is None


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_a_field_given_twice_is_422(service: Service, path: str) -> None:
    token = service.authorize()
    answer = service.post(path, f"token={token}&token=garbage", caller=service.ops)
    assert_problem(answer, 422, token)
    assert service.security.get_auth_token(key_of(token)).revoked_at is None


def test_only_post(service: Service) -> None:
    answer = httpx.get(f"{service.url}/introspect",
                       headers={"Authorization": f"Bearer {service.ops}"})
    assert answer.status_code == 405


def test_the_openapi_document_describes_both_forms() -> None:
    paths = openapi_document()["paths"]
    for path, schema in (("/introspect", "IntrospectionRequest"),
                         ("/revoke", "RevocationRequest")):
        operation = paths[path]["post"]
        assert operation["requestBody"]["content"] == {
            FORM: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
        assert {"200", "401", "413", "415", "422", "429", "503"} <= set(
            operation["responses"])
    assert "403" in paths["/revoke"]["post"]["responses"]


# -- a real OAuth client --------------------------------------------------------------------------
def test_authlib_introspects_and_revokes(service: Service) -> None:
    """Authlib's RFC 7662 and RFC 7009 client, sending the service's credential with our
    ``authtoken.requests.DelegationAuth``."""
    from authlib.integrations.requests_client import OAuth2Session

    from authtoken.requests import DelegationAuth

    token = service.authorize(expires="1d")
    with OAuth2Session(client_id="reports-service") as oauth:
        auth = DelegationAuth(service.alice)
        answer = oauth.introspect_token(f"{service.url}/introspect", token=token,
                                        token_type_hint="access_token", auth=auth)
        assert answer.status_code == 200
        assert answer.json()["active"] is True and answer.json()["sub"] == "alice"
        revoked = oauth.revoke_token(f"{service.url}/revoke", token=token,
                                     token_type_hint="access_token", auth=auth)
        assert (revoked.status_code, revoked.content) == (200, b"")
        again = oauth.introspect_token(f"{service.url}/introspect", token=token, auth=auth)
        assert again.json() == {"active": False}
        assert answer.request.headers["Authorization"] == f"Bearer {service.alice}"


# -- anything at all ------------------------------------------------------------------------------
# What a form can carry: UTF-8 cannot encode a lone surrogate, so no client sends one.
_SENDABLE = st.characters(blacklist_categories=("Cs",))
_FIELD_NAMES = st.sampled_from(["token", "token_type_hint", "script_key", "script_path",
                                "script_digest", "access_token", "x"])


@pytest.mark.slow
def test_arbitrary_forms_are_inactive_or_a_problem(tmp_path: Path, clock: FakeClock) -> None:
    """Whatever form arrives -- random fields, random values, mutations of a real
    token -- the answer is 200 inactive, 200 active for the real token only, or a 4xx
    problem: never a 5xx, never the token echoed."""
    with build(tmp_path, clock) as service:
        real = service.authorize(expires="never")
        http = httpx.Client(base_url=service.url,
                            headers={"Authorization": f"Bearer {service.ops}"})

        mutated = st.builds(
            lambda i, c: real[:i % len(real)] + c + real[i % len(real) + 1:],
            st.integers(min_value=0), _SENDABLE)
        values = st.one_of(st.text(_SENDABLE, max_size=300), mutated, st.just(real))

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.lists(st.tuples(_FIELD_NAMES, values), max_size=6), st.booleans())
        def check(fields: list[tuple[str, str]], raw: bool) -> None:
            body = urlencode(fields).encode() if not raw else "&".join(
                f"{n}={v}" for n, v in fields).encode("utf-8", "surrogatepass")
            answer = http.post("/introspect", content=body, headers={"Content-Type": FORM})
            assert answer.status_code < 500, answer.text
            text = answer.text + json.dumps(dict(answer.headers))
            assert real not in text and real.split(".")[1] not in text
            if answer.status_code == 200:
                payload = answer.json()
                if payload != {"active": False}:
                    assert payload["authtoken_key"] == key_of(real)
                    assert dict(fields).get("token") == real
            else:
                assert 400 <= answer.status_code < 500
                assert answer.headers["content-type"].startswith(PROBLEM)

        try:
            check()
        finally:
            http.close()


def test_the_login_is_the_engine_s(service: Service) -> None:
    """What introspection says of a pinned token is what a login by that script gets."""
    digest = "a" * 64
    token = service.authorize(f"reports:read sha256:{digest}")
    assert_inactive(service.introspect({"token": token}), token)
    assert service.introspect({"token": token, "script_digest": digest}).json()["active"]
    assert service.security.login_by_auth_token(token, script=Script(digest=digest))
