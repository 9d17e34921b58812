"""The admin API's upstream routes, over real HTTP: ``GET /upstreams`` (the state of a
user's linked accounts) and ``DELETE /upstreams/{name}`` (unlink), served only when
``create_app`` is given a broker.  The accounts are linked for real at the OIDC provider
of ``authtoken.testing``; the engine runs over memory and over a SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from support.served import served

from authtoken import (
    AuthToken,
    Security,
    Session,
    SessionExpired,
    SessionNotEstablished,
    SQLRepository,
)
from authtoken.admin import DelegationTokenAuth, FailureLimiter, create_app, openapi_document
from authtoken.broker import Broker, OIDCUpstream
from authtoken.testing import FakeClock, OIDCProvider

PROBLEM = "application/problem+json"


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    with OIDCProvider(lifetime=60) as running:
        running.users["bob"] = "bob-password"
        yield running


@pytest.fixture
def broker(security: Security, provider: OIDCProvider) -> Iterator[Broker]:
    upstreams = {"space": OIDCUpstream.from_space(provider.space_url),
                 "archive": OIDCUpstream(provider.issuer, OIDCProvider.PUBLIC_CLIENT)}
    with Broker(security, upstreams) as running:
        yield running


@pytest.fixture
def url(security: Security, broker: Broker) -> Iterator[str]:
    """The admin application with the broker, under uvicorn on 127.0.0.1."""
    with served(create_app(security, authenticate=DelegationTokenAuth(security),
                           broker=broker)) as base:
        yield base


def bearer(security: Security, user: Any, scope: str = "reports:read") -> dict[str, str]:
    return {"Authorization": "Bearer " + security.authorize_token(AuthToken(scope), user=user)}


def links(url: str, headers: dict[str, str], **params: str) -> httpx.Response:
    return httpx.get(f"{url}/upstreams", headers=headers, params=params)


def is_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["detail"]
    return body


def no_secret(text: str, provider: OIDCProvider) -> None:
    assert "eyJ" not in text  # no JWT
    for secret in (provider.password, "bob-password", *provider.refresh_tokens):
        assert secret not in text


# -- reading the state -------------------------------------------------------------------------
def test_the_owner_sees_her_links_and_their_state(
        security: Security, broker: Broker, provider: OIDCProvider, url: str,
        clock: FakeClock) -> None:
    """ok after linking; needs_relink once the provider refused a refresh; ok again after
    linking again -- and never a token in the answer."""
    alice = bearer(security, "alice")
    assert links(url, alice).json() == {"links": {}}
    broker.link_password("alice", "space", "alice", provider.password)
    broker.link_password("alice", "archive", "alice", provider.password)
    answer = links(url, alice)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert answer.json() == {"links": {"archive": "ok", "space": "ok"}}
    no_secret(answer.text, provider)

    job = Session(security)
    job.login_by_auth_token(security.authorize_token(AuthToken("upstream:space"),
                                                     user="alice"))
    provider.refuse_refresh = True
    clock.advance(seconds=59)  # the access token is due
    with pytest.raises(SessionExpired):
        broker.access_token(job, "space")
    answer = links(url, alice)
    assert answer.json() == {"links": {"archive": "ok", "space": "needs_relink"}}
    no_secret(answer.text, provider)

    provider.refuse_refresh = False
    broker.link_password("alice", "space", "alice", provider.password)
    assert links(url, alice).json()["links"]["space"] == "ok"


def test_another_users_links_need_an_admin(security: Security, broker: Broker,
                                           provider: OIDCProvider, url: str) -> None:
    """bob may not read alice's links nor unlink them (403, nothing changes); an admin
    may do both; a user with no links has none."""
    broker.link_password("alice", "space", "alice", provider.password)
    broker.link_password("bob", "space", "bob", "bob-password")
    bob, root = bearer(security, "bob"), bearer(security, "root", "authtoken:admin")
    assert "only an admin" in is_problem(links(url, bob, user="alice"), 403)["detail"]
    is_problem(httpx.delete(f"{url}/upstreams/space", headers=bob,
                            params={"user": "alice"}), 403)
    assert broker.links("alice") == {"space": "ok"}
    assert links(url, bob, user="bob").json() == {"links": {"space": "ok"}}
    assert links(url, root, user="alice").json() == {"links": {"space": "ok"}}
    assert links(url, root).json() == {"links": {}}  # the admin's own user
    gone = httpx.delete(f"{url}/upstreams/space", headers=root, params={"user": "alice"})
    assert gone.status_code == 204 and gone.content == b""
    assert broker.links("alice") == {} and broker.links("bob") == {"space": "ok"}


def test_a_decimal_user_names_the_integer_user_too(security: Security, broker: Broker,
                                                   provider: OIDCProvider, url: str) -> None:
    """An admin's ?user=42 covers "42" and 42: both lists together, the worse state
    showing for a name both hold; a DELETE forgets both.  User 42 itself sees its own."""
    broker.link_password(42, "space", "alice", provider.password)
    broker.link_password("42", "archive", "alice", provider.password)
    root = bearer(security, "root", "authtoken:admin")
    assert links(url, root, user="42").json() == {"links": {"archive": "ok", "space": "ok"}}
    assert links(url, bearer(security, 42)).json() == {"links": {"space": "ok"}}
    assert links(url, bearer(security, 42), user="42").json() == {"links": {"space": "ok"}}
    assert httpx.delete(f"{url}/upstreams/space", headers=root,
                        params={"user": "42"}).status_code == 204
    assert broker.links(42) == {} and broker.links("42") == {"archive": "ok"}


# -- unlinking ---------------------------------------------------------------------------------
def test_unlink_is_idempotent_and_the_job_loses_the_account(
        security: Security, broker: Broker, provider: OIDCProvider, url: str) -> None:
    """204, then 204 again; the job's next access token is SessionNotEstablished, and the
    owner's other link stays."""
    broker.link_password("alice", "space", "alice", provider.password)
    broker.link_password("alice", "archive", "alice", provider.password)
    job = Session(security)
    job.login_by_auth_token(security.authorize_token(AuthToken("upstream:space"),
                                                     user="alice"))
    assert broker.access_token(job, "space")
    alice = bearer(security, "alice")
    for _ in range(2):
        answer = httpx.delete(f"{url}/upstreams/space", headers=alice)
        assert answer.status_code == 204 and answer.content == b""
    assert links(url, alice).json() == {"links": {"archive": "ok"}}
    with pytest.raises(SessionNotEstablished):
        broker.access_token(job, "space")
    # A name no upstream of this broker has is simply not linked: 204.
    assert httpx.delete(f"{url}/upstreams/elsewhere", headers=alice).status_code == 204


@pytest.mark.parametrize("name", ["-space", "_space", "a" * 65, "sp%20ace", "sp%C3%A4ce"])
def test_a_malformed_link_name_is_422(security: Security, broker: Broker,
                                      provider: OIDCProvider, url: str, name: str) -> None:
    """A name that cannot be a link's is refused by name and changes nothing."""
    broker.link_password("alice", "space", "alice", provider.password)
    answer = httpx.delete(f"{url}/upstreams/{name}", headers=bearer(security, "alice"))
    assert "link name" in is_problem(answer, 422)["detail"]
    assert broker.links("alice") == {"space": "ok"}


# -- what every route of the API does -------------------------------------------------------
def test_callers_and_queries_are_checked(security: Security, broker: Broker,
                                         provider: OIDCProvider, url: str) -> None:
    """No or a bad credential is 401 with a challenge; a revoked token too; a user given
    twice or no valid user is 422; a GET on the name route is 405."""
    broker.link_password("alice", "space", "alice", provider.password)
    answer = httpx.get(f"{url}/upstreams")
    is_problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith("Bearer")
    is_problem(httpx.delete(f"{url}/upstreams/space"), 401)
    is_problem(httpx.get(f"{url}/upstreams", headers={"Authorization": "Bearer atk_x"}), 401)
    string = security.authorize_token(AuthToken("reports:read"), user="alice")
    security.revoke_auth_token(string)
    is_problem(httpx.delete(f"{url}/upstreams/space",
                            headers={"Authorization": f"Bearer {string}"}), 401)
    assert broker.links("alice") == {"space": "ok"}
    alice = bearer(security, "alice")
    is_problem(httpx.get(f"{url}/upstreams?user=alice&user=bob", headers=alice), 422)
    is_problem(links(url, alice, user="a\x01b"), 422)
    is_problem(httpx.get(f"{url}/upstreams/space", headers=alice), 405)


def test_without_a_broker_there_are_no_upstream_routes(security: Security) -> None:
    """The token routes alone: /upstreams is a 404 problem and the document omits it."""
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    with served(app) as base:
        answer = httpx.get(f"{base}/upstreams", headers=bearer(security, "alice"))
        is_problem(answer, 404)
        document = httpx.get(f"{base}/openapi.json").json()
    assert not any(path.startswith("/upstreams") for path in document["paths"])
    assert "UpstreamLinks" not in document["components"]["schemas"]


def test_a_broker_that_is_not_one_is_refused(security: Security) -> None:
    with pytest.raises(TypeError, match=r"broker must be an authtoken\.broker\.Broker"):
        create_app(security, authenticate=DelegationTokenAuth(security),
                   broker=object())  # type: ignore[arg-type]


def test_the_openapi_document_names_the_upstream_routes(security: Security,
                                                        broker: Broker, url: str) -> None:
    """With a broker, the document served names exactly the routes served, the upstream
    ones included, with their schema and problems."""
    document = json.loads(httpx.get(f"{url}/openapi.json").text)
    assert document == openapi_document(upstreams=True)
    app = create_app(security, authenticate=DelegationTokenAuth(security), broker=broker)
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item if method in ("get", "post", "patch", "delete")}
    served_routes = set()
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == "/ui" or route.path.startswith("/ui/"):
            continue
        path = route.path.replace(":path}", "}")
        served_routes |= {(path, m) for m in (route.methods or ()) if m != "HEAD"}
    assert documented == served_routes
    assert {("/upstreams", "GET"), ("/upstreams/{name}", "DELETE")} <= documented
    listing = document["paths"]["/upstreams"]["get"]["responses"]
    assert {"200", "401", "403", "422", "429"} <= set(listing)
    unlink = document["paths"]["/upstreams/{name}"]["delete"]["responses"]
    assert {"204", "401", "403", "422"} <= set(unlink)
    schema = document["components"]["schemas"]["UpstreamLinks"]
    assert schema["properties"]["links"]["additionalProperties"] == {
        "enum": ["ok", "needs_relink"]}


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_on_the_upstream_routes(
        tmp_path: Path, provider: OIDCProvider) -> None:
    """Requests generated from the document (valid and not) at the upstream routes get
    no 5xx and answers that match the document."""
    from test_admin_schema import _schemathesis

    command = _schemathesis()
    security = Security(SQLRepository(f"sqlite:///{tmp_path / 'api.db'}"),
                        secret_keys=["schema-test"])
    admin = security.authorize_token(AuthToken("authtoken:admin", expires="never"),
                                     user="alice")
    config = tmp_path / "schemathesis.toml"
    config.write_text('[headers]\nAuthorization = "Bearer ${AUTHTOKEN_SCHEMA_TEST_TOKEN}"\n')
    environment = {**os.environ, "AUTHTOKEN_SCHEMA_TEST_TOKEN": admin,
                   "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    try:
        with Broker(security, {"space": OIDCUpstream.from_space(provider.space_url)}) \
                as broker:
            broker.link_password("alice", "space", "alice", provider.password)
            app = create_app(security, authenticate=DelegationTokenAuth(security),
                             limiter=FailureLimiter(limit=100, window=1), broker=broker)
            with served(app) as url:
                run = subprocess.run(
                    [command, "--config-file", str(config), "run", f"{url}/openapi.json",
                     "--include-path-regex", "^/upstreams", "--exclude-checks",
                     "positive_data_acceptance", "--phases", "coverage,fuzzing",
                     "--max-examples", "40", "--seed", "1", "--no-color"],
                    capture_output=True, text=True, timeout=480, env=environment,
                    cwd=tmp_path, check=False)
    finally:
        security.close()
    report = run.stdout + run.stderr
    assert admin not in report and provider.password not in report
    assert run.returncode == 0, report[-6000:]
    assert "Tested: 2" in report and "No issues found" in report, report[-3000:]
