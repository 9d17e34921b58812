"""The admin API's tokens for jobs: max_uses and max_lifetime in bodies and views,
``POST /tokens/{key}/renew``, ``GET /tokens?run_id=``, and policy refusals as 403s.

In-process through Starlette's ``TestClient`` over memory, a real SQLite file and (for
the counting and renewal of stored tokens) the real PostgreSQL fixture; one test runs
the application under uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.served import served

from authtoken import (
    AuthToken,
    MemoryRepository,
    Policy,
    Repository,
    Security,
    Session,
    SQLRepository,
    TokenExhausted,
)
from authtoken._views import VIEW_FIELDS, event_view
from authtoken.admin import DelegationTokenAuth, Identity, create_app
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

PROBLEM = "application/problem+json"
KEYS = ["jobs-admin-test-key"]


# -- helpers ----------------------------------------------------------------------------------
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_of(security: Security, token: str | None = None, *,
              authenticate: Any = None) -> TestClient:
    """A client of the API over ``security``, presenting ``token`` when given."""
    app = create_app(security, authenticate=authenticate or DelegationTokenAuth(security))
    return TestClient(app, headers=bearer(token) if token else {})


def problem(response: httpx.Response, status: int, *secrets: str) -> dict[str, Any]:
    """``response`` is a problem with ``status``, and none of ``secrets`` is in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status and body["detail"]
    for secret in secrets:
        assert secret not in response.text
        assert secret.split(".")[-1][:16] not in response.text
    return body


def stored(security: Security) -> list[tuple[str | None, datetime | None, object]]:
    """Every stored token's key, expiry and updated_at: to show that nothing changed."""
    return [(t.key, t.expires, t.updated_at)
            for t in security.list_auth_tokens(include_revoked=True)]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
              ) -> Iterator[Security]:
    """A Security over memory, a real SQLite file and the real PostgreSQL fixture."""
    repository: Repository
    if request.param == "memory":
        repository = MemoryRepository()
    elif request.param == "sqlite":
        repository = SQLRepository(f"sqlite:///{tmp_path / 'jobs.db'}")
    else:
        repository = SQLRepository(request.getfixturevalue("pg_url"))
    security = Security(repository, secret_keys=KEYS, clock=clock)
    yield security
    security.close()


# -- max_uses and max_lifetime in bodies and views --------------------------------------------
def test_created_limits_are_in_the_views_and_counted_exactly(any_store: Security) -> None:
    """POST takes max_uses and max_lifetime; the views show them, and the uses are
    spent exactly, without a flush, on every store."""
    root = any_store.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(any_store, root)
    made = client.post("/tokens", json={"scope": "jobs:run", "expires": "1d",
                                        "max_uses": 2, "max_lifetime": "7d"})
    assert made.status_code == 201, made.text
    view = made.json()
    assert (view["max_uses"], view["max_lifetime"], view["run_id"]) == (2, "7d", None)
    assert list(view) == [*VIEW_FIELDS, "token"]
    for _ in range(2):
        any_store.login_by_auth_token(view["token"])
    with pytest.raises(TokenExhausted):
        any_store.login_by_auth_token(view["token"])
    shown = client.get(f"/tokens/{view['key']}").json()
    assert shown["use_count"] == 2 and shown["max_uses"] == 2
    assert view["token"] not in client.get("/tokens").text


def test_patch_changes_the_limits_within_the_rules(security: Security) -> None:
    """PATCH changes max_uses and max_lifetime; adding or removing a use limit, a
    lifetime ending before the expiry and a never-expiring renewable token are 422s
    that change nothing."""
    root = security.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(security, root)
    limited = client.post("/tokens", json={"scope": "jobs:run", "expires": "1d",
                                           "max_uses": 2, "max_lifetime": "7d"}).json()
    plain = client.post("/tokens", json={"scope": "jobs:run", "expires": "1d"}).json()
    changed = client.patch(f"/tokens/{limited['key']}",
                           json={"max_uses": 5, "max_lifetime": "14d"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["max_uses"], changed.json()["max_lifetime"]) == (5, "14d")
    before = stored(security)
    for key, body in [
        (limited["key"], {"max_uses": None}),  # a use limit cannot be taken off
        (plain["key"], {"max_uses": 3}),  # ... nor put on
        (limited["key"], {"max_lifetime": "1h"}),  # ends before the current expiry
        (limited["key"], {"expires": None}),  # a renewable token must expire
        (limited["key"], {"max_lifetime": "0d"}),
        (limited["key"], {"max_lifetime": "2031-01-01T00:00:00Z"}),  # a time
    ]:
        problem(client.patch(f"/tokens/{key}", json=body), 422, root)
    assert stored(security) == before
    assert security.get_auth_token(limited["key"]).max_uses == 5
    gone = client.patch(f"/tokens/{limited['key']}", json={"max_lifetime": None})
    assert gone.status_code == 200 and gone.json()["max_lifetime"] is None
    problem(client.post(f"/tokens/{limited['key']}/renew"), 422, root)  # not renewable now


WRONG_TYPES = [
    {"max_uses": True}, {"max_uses": False}, {"max_uses": 1.0}, {"max_uses": 2.5},
    {"max_uses": "3"}, {"max_uses": [3]}, {"max_uses": {"n": 3}},
    {"max_lifetime": 7}, {"max_lifetime": 7.5}, {"max_lifetime": True},
    {"max_lifetime": ["7d"]}, {"max_lifetime": {"d": 7}},
]


@pytest.mark.parametrize("fields", WRONG_TYPES, ids=repr)
def test_wrongly_typed_limits_are_422_and_store_nothing(mem: Security,
                                                       fields: dict[str, Any]) -> None:
    """A bool, a float, a string or a list for max_uses, a number for max_lifetime: 422,
    naming the field, in POST and PATCH alike."""
    root = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(mem, root)
    key = client.post("/tokens", json={"scope": "jobs:run", "expires": "1d",
                                       "max_uses": 1, "max_lifetime": "2d"}).json()["key"]
    before = stored(mem)
    name = next(iter(fields))
    created = problem(client.post("/tokens", json={"scope": "jobs:run", **fields}), 422, root)
    assert name in created["detail"]
    patched = problem(client.patch(f"/tokens/{key}", json=fields), 422, root)
    assert name in patched["detail"]
    assert stored(mem) == before


@pytest.mark.parametrize("fields", [
    {"max_uses": 0}, {"max_uses": -1}, {"max_uses": 2**63}, {"max_uses": 10**40},
    {"max_lifetime": "0d"}, {"max_lifetime": "soon"}, {"max_lifetime": ""},
    {"max_lifetime": "2031-01-31"}, {"max_lifetime": "9" * 5000},
    {"expires": "10d", "max_lifetime": "2d"},  # shorter than the expiry
    {"expires": None, "max_lifetime": "2d"},  # a renewable token must expire
    {"expires": "never", "max_lifetime": "2d"},
], ids=lambda f: repr(f)[:60])
def test_bad_limits_are_422_and_store_nothing(mem: Security, fields: dict[str, Any]) -> None:
    """Zero, negative and huge use limits, lifetimes that are no durations or end before
    the expiry, and a max_lifetime on a token that never expires: 422, nothing stored."""
    root = mem.authorize_token(AuthToken("jobs:run", expires="never"), user="alice")
    client = client_of(mem, root)
    before = stored(mem)
    problem(client.post("/tokens", json={"scope": "jobs:run", **fields}), 422, root)
    assert stored(mem) == before


def test_a_token_string_given_as_a_limit_is_not_echoed(mem: Security) -> None:
    """A token string pasted into max_lifetime, by or run_id is refused, masked."""
    root = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(mem, root)
    key = client.post("/tokens", json={"scope": "jobs:run", "expires": "1d",
                                       "max_lifetime": "7d"}).json()["key"]
    problem(client.post("/tokens", json={"scope": "jobs:run", "max_lifetime": root}),
            422, root)
    problem(client.patch(f"/tokens/{key}", json={"max_lifetime": root}), 422, root)
    problem(client.post(f"/tokens/{key}/renew", json={"by": root}), 422, root)
    problem(client.get("/tokens", params={"run_id": root}), 422, root)
    problem(client.post(f"/tokens/{root}/renew"), 404, root)


# -- renewal ----------------------------------------------------------------------------------
def test_renew_extends_up_to_the_max_lifetime(any_store: Security, clock: FakeClock) -> None:
    """POST /tokens/{key}/renew answers the view after renewal: by the first lifetime
    by default, by ``by`` when given, never past created_at + max_lifetime and never
    shorter; each renewal is on the audit trail."""
    root = any_store.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(any_store, root)
    made = client.post("/tokens", json={"scope": "jobs:run", "expires": "1d",
                                        "max_lifetime": "7d"}).json()
    key, created = made["key"], datetime.fromisoformat(made["created_at"])
    clock.advance(hours=12)
    renewed = client.post(f"/tokens/{key}/renew")  # no body at all
    assert renewed.status_code == 200, renewed.text
    assert list(renewed.json()) == list(VIEW_FIELDS)
    assert datetime.fromisoformat(renewed.json()["expires"]) == clock() + timedelta(days=1)
    longer = client.post(f"/tokens/{key}/renew", json={"by": "3d"}).json()
    assert datetime.fromisoformat(longer["expires"]) == clock() + timedelta(days=3)
    kept = client.post(f"/tokens/{key}/renew", json={"by": "1h"}).json()  # never shorter
    assert kept["expires"] == longer["expires"]
    clock.advance(days=2)  # 3.5 days old, 1 day of its life left
    capped = client.post(f"/tokens/{key}/renew", json={"by": "30d"}).json()
    assert datetime.fromisoformat(capped["expires"]) == created + timedelta(days=7)
    assert any_store.get_auth_token(key).expires == created + timedelta(days=7)
    renewals = [e for e in any_store.audit_events(token_key=key) if e.action == "renew"]
    assert [e.outcome for e in renewals] == ["ok"] * 4


@pytest.mark.parametrize("send", [
    {}, {"json": {}}, {"json": {"by": None}},
    {"content": b"", "headers": {"content-type": "application/json"}},
    {"content": b"", "headers": {"content-type": "text/plain"}},
], ids=["no body", "{}", "by null", "empty json", "empty text"])
def test_renew_takes_an_empty_or_missing_body(mem: Security, clock: FakeClock,
                                              send: dict[str, Any]) -> None:
    """No body, an empty one of any type, ``{}`` and ``{"by": null}`` all renew by the
    token's first lifetime."""
    root = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(mem, root)
    key = client.post("/tokens", json={"scope": "jobs:run", "expires": "2h",
                                       "max_lifetime": "1d"}).json()["key"]
    clock.advance(hours=1)
    answer = client.post(f"/tokens/{key}/renew", **send)
    assert answer.status_code == 200, answer.text
    assert datetime.fromisoformat(answer.json()["expires"]) == clock() + timedelta(hours=2)


def test_renew_refusals_change_nothing(security: Security, clock: FakeClock) -> None:
    """Not renewable 422, revoked 409, expired 409, another user's 403, unknown 404,
    a bad ``by`` 422, a bad body 415/422/413 -- and no expiry moves."""
    root = security.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(security, root)

    def make(**fields: Any) -> str:
        answer = client.post("/tokens", json={"scope": "jobs:run", **fields})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["key"])

    renewable = make(expires="1d", max_lifetime="7d")
    plain = make(expires="1d")
    revoked = make(expires="1d", max_lifetime="7d")
    expiring = make(expires="1h", max_lifetime="7d")
    client.delete(f"/tokens/{revoked}")
    bobs = security.authorize_token(AuthToken("x", expires="1d", max_lifetime="7d"),
                                    user="bob")
    clock.advance(hours=2)
    before = stored(security)
    problem(client.post(f"/tokens/{plain}/renew"), 422, root)
    assert "token-revoked" in problem(client.post(f"/tokens/{revoked}/renew"), 409,
                                      root)["type"]
    assert "token-expired" in problem(client.post(f"/tokens/{expiring}/renew"), 409,
                                      root)["type"]
    problem(client.post(f"/tokens/{security.restore_auth_token(bobs).key}/renew"), 403,
            root, bobs)
    problem(client.post("/tokens/aaaaaaaaaaaaaaaa/renew"), 404, root)
    problem(client.post("/tokens/not a key at all/renew"), 404, root)
    for body in ({"by": "0d"}, {"by": "-1d"}, {"by": "2031-01-01"},
                 {"by": "2031-01-01T00:00:00Z"}, {"by": "later"}, {"by": 7},
                 {"by": True}, {"by": ["1d"]}, {"until": "1d"}, [], "1d"):
        problem(client.post(f"/tokens/{renewable}/renew", json=body), 422, root)
    problem(client.post(f"/tokens/{renewable}/renew", content=b"by=1d",
                        headers={"content-type": "application/x-www-form-urlencoded"}),
            415, root)
    problem(client.post(f"/tokens/{renewable}/renew", content=b"{",
                        headers={"content-type": "application/json"}), 422, root)
    problem(client.post(f"/tokens/{renewable}/renew",
                        json={"by": "1d" + " " * (600 * 1024)}), 413, root)
    assert stored(security) == before
    refused = [e.reason for e in security.audit_events() if e.action == "renew"]
    assert {"InvalidArgument", "TokenRevoked", "TokenExpired", "PermissionDenied",
            "TokenNotFound"} <= set(refused)


def test_renew_follows_the_delegation(mem: Security) -> None:
    """A caller authenticated by a token renews that token and those derived from it,
    never past its own expiry, and no other token of its user (403)."""
    root = mem.authorize_token(AuthToken("jobs:run", expires="3d", max_lifetime="10d"),
                               user="alice")
    sibling = mem.authorize_token(AuthToken("jobs:run", expires="1d", max_lifetime="10d"),
                                  user="alice")
    client = client_of(mem, root)
    child = client.post("/tokens", json={"scope": "jobs:run", "expires": "1d",
                                         "max_lifetime": "30d"}).json()
    capped = client.post(f"/tokens/{child['key']}/renew", json={"by": "20d"})
    assert capped.status_code == 200
    own_expiry = mem.restore_auth_token(root).expires
    assert datetime.fromisoformat(capped.json()["expires"]) == own_expiry
    sibling_key = mem.restore_auth_token(sibling).key
    before = mem.get_auth_token(sibling_key).expires
    problem(client.post(f"/tokens/{sibling_key}/renew"), 403, root, sibling)
    assert mem.get_auth_token(sibling_key).expires == before
    assert client.post(f"/tokens/{mem.restore_auth_token(root).key}/renew").status_code == 200


# -- run ids ----------------------------------------------------------------------------------
def test_list_filters_by_run(security: Security) -> None:
    """GET /tokens?run_id= lists a run's tokens only; views and audit events carry the
    run id; a run token revoked at the end of its run stays listed as revoked."""
    root = security.authorize_token(AuthToken("jobs:run authtoken:admin"), user="alice")
    bob = security.authorize_token(AuthToken("jobs:run"), user="bob")
    session = Session(security)
    session.login_by_auth_token(root)
    client = client_of(security, root)
    with session.run_token("nightly 2030-01-01", scope="jobs:run") as run:
        other = session.run_token("nightly 2030-01-02", scope="jobs:run")
        listed = client.get("/tokens", params={"run_id": "nightly 2030-01-01"})
        assert [t["key"] for t in listed.json()["tokens"]] == [run.key]
        assert listed.json()["tokens"][0]["run_id"] == "nightly 2030-01-01"
        both = client.get("/tokens", params={"run_id": "nightly 2030-01-02",
                                             "user": "alice"}).json()["tokens"]
        assert [t["key"] for t in both] == [other.key]
        assert client.get("/tokens", params={"run_id": "none such"}).json() == {
            "tokens": []}
        # bob sees none of alice's runs
        assert client_of(security, bob).get(
            "/tokens", params={"run_id": "nightly 2030-01-01"}).json() == {"tokens": []}
        events = client.get("/audit", params={"token": run.key}).json()["events"]
        assert {e["run_id"] for e in events} == {"nightly 2030-01-01"}
        assert run.token not in listed.text
    after = client.get("/tokens", params={"run_id": "nightly 2030-01-01",
                                          "include_revoked": "true"}).json()["tokens"]
    assert [t["revoked_at"] is not None for t in after] == [True]
    assert client.get("/tokens", params={"run_id": "nightly 2030-01-01"}).json() == {
        "tokens": []}


@pytest.mark.parametrize("query", [
    "run_id=", "run_id=" + "r" * 201, "run_id=a%01b", "run_id=a%7Fb",
    "run_id=a&run_id=b",
], ids=["empty", "too long", "control", "delete", "twice"])
def test_bad_run_id_filters_are_422(mem: Security, query: str) -> None:
    """An empty, over-long, control-character or repeated run_id filter is a 422."""
    root = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    body = problem(client_of(mem, root).get(f"/tokens?{query}"), 422, root)
    assert "run_id" in body["detail"]


# -- policy -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "fields", "rule", "limit"), [
    (Policy(max_lifetime="30d"), {"expires": "60d"}, "max_lifetime", "30d"),
    (Policy(max_lifetime="30d"), {"expires": "1d", "max_lifetime": "90d"},
     "max_lifetime", "30d"),
    (Policy(require_expiry=True), {"expires": None}, "require_expiry", True),
    (Policy(max_tokens_per_user=1), {}, "max_tokens_per_user", 1),
], ids=["expiry", "max_lifetime", "require_expiry", "count"])
def test_a_policy_refusal_is_403_naming_rule_and_limit(
        tmp_path: Path, clock: FakeClock, policy: Policy, fields: dict[str, Any],
        rule: str, limit: object) -> None:
    """A PolicyViolation is a 403 problem whose detail names the rule and its limit,
    which are members of the problem too; nothing is stored."""
    repository = SQLRepository(f"sqlite:///{tmp_path / 'policy.db'}")
    with Security(repository, secret_keys=KEYS, clock=clock, policy=policy) as security:
        security.authorize_token(AuthToken("jobs:run", expires="1d"), user="alice")
        client = client_of(security, authenticate=lambda request: Identity("alice"))
        before = stored(security)
        body = problem(client.post("/tokens", json={"scope": "jobs:run", **fields}), 403)
        assert body["type"].endswith(":policy-violation")
        assert (body["rule"], body["limit"]) == (rule, limit)
        shown = "true" if limit is True else str(limit)
        assert rule in body["detail"] and shown in body["detail"]
        assert stored(security) == before


# -- the document and a real server -----------------------------------------------------------
def test_the_document_describes_the_job_fields(mem: Security) -> None:
    """The OpenAPI document names every view field (as served), the limits in both
    bodies, the renew route with its optional body, the run_id filter, the renew audit
    action and a policy problem's members."""
    root = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_of(mem, root)
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    view = schemas["TokenView"]
    assert list(view["properties"]) == list(VIEW_FIELDS) == view["required"]
    served_view = client.post("/tokens", json={"scope": "jobs:run"}).json()
    assert set(served_view) - {"token"} == set(view["properties"])
    for body in ("CreateToken", "UpdateToken"):
        properties = schemas[body]["properties"]
        assert properties["max_uses"]["type"] == ["integer", "null"]
        assert properties["max_uses"]["minimum"] == 1
        assert properties["max_lifetime"]["type"] == ["string", "null"]
    renew = document["paths"]["/tokens/{key}/renew"]["post"]
    assert renew["requestBody"]["required"] is False
    assert {"200", "403", "404", "409", "415", "422"} <= set(renew["responses"])
    assert schemas["RenewToken"]["additionalProperties"] is False
    assert set(schemas["RenewToken"]["properties"]) == {"by"}
    parameters = document["paths"]["/tokens"]["get"]["parameters"]
    assert "run_id" in {p["name"] for p in parameters}
    event = schemas["AuditEvent"]
    assert "renew" in event["properties"]["action"]["enum"]
    sample = mem.audit_events()[0]
    assert set(event_view(sample)) <= set(event["properties"])
    assert set(event["required"]) <= set(event_view(sample))
    assert {"rule", "limit"} <= set(schemas["Problem"]["properties"])


def test_renew_over_a_real_server(security: Security, clock: FakeClock) -> None:
    """Under uvicorn: create a renewable token, renew it with no body and with one."""
    root = security.authorize_token(AuthToken("jobs:run"), user="alice")
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    with served(app) as url, httpx.Client(base_url=url, headers=bearer(root)) as http:
        made = http.post("/tokens", json={"scope": "jobs:run", "expires": "1h",
                                          "max_lifetime": "1d", "max_uses": 3})
        assert made.status_code == 201
        key = made.json()["key"]
        clock.advance(minutes=30)
        bare = http.post(f"/tokens/{key}/renew")
        assert bare.status_code == 200, bare.text
        assert datetime.fromisoformat(bare.json()["expires"]) == clock() + timedelta(hours=1)
        given = http.post(f"/tokens/{key}/renew", json={"by": "6h"})
        assert datetime.fromisoformat(given.json()["expires"]) == clock() + timedelta(hours=6)
        assert root not in given.text and made.json()["token"] not in given.text


def test_a_caller_whose_own_token_expires_during_the_request_gets_a_401(
        any_store: Security, clock: FakeClock) -> None:
    """The caller's own credentials died: a 401 with a challenge, as before renewals
    gave TokenExpired a 409 for the token acted on."""
    caller = any_store.authorize_token(AuthToken("jobs:run", expires="1h"), user="alice")
    target = AuthToken("jobs:run", expires="30m")
    any_store.authorize_token(target, user="alice")
    inner = DelegationTokenAuth(any_store)

    def late(request: Any) -> Identity:
        identity = inner(request)
        clock.advance(hours=2)  # the caller's token expires between auth and the call
        return identity

    client = client_of(any_store, caller, authenticate=late)
    answer = client.patch(f"/tokens/{target.key}", json={"description": "d"})
    problem(answer, 401, caller)
    assert answer.headers["www-authenticate"].startswith("Bearer")
