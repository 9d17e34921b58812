"""The token page's same-origin rule: checked first, before anything else happens, and
comparing origins as browsers write them (case, default ports)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest

from authtoken import AuthToken, Security
from authtoken.admin import DelegationTokenAuth, FailureLimiter, create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def client_for(security: Security, base_url: str = "http://testserver", *,
               host: str | None = None, limiter: FailureLimiter | None = None) -> TestClient:
    app = create_app(security, authenticate=DelegationTokenAuth(security),
                     **({} if limiter is None else {"limiter": limiter}))
    return TestClient(app, base_url=base_url, client=("10.0.0.9", 5000),
                      headers={} if host is None else {"host": host})


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found is not None, page
    return found.group(1)


@pytest.mark.parametrize("route", ["/ui/tokens", "/ui/tokens/{key}/revoke", "/ui/sign-out",
                                   "/ui/sign-in"])
def test_a_cross_site_post_is_refused_before_the_credential_is_looked_at(
        mem: Security, route: str) -> None:
    """A post from another site is 403 whatever cookie comes with it: the credential is
    not authenticated (no failure counted, nothing audited) and no cookie is set or
    cleared -- not even when that cookie is a dead credential."""
    limiter = FailureLimiter(limit=1, window=60)
    token = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    key = mem.restore_auth_token(token).key
    mem.revoke_auth_token(token)
    client = client_for(mem, limiter=limiter)
    for _ in range(3):
        client.cookies.set("authtoken_ui", token, path="/ui")
        answer = client.post(route.format(key=key), data={"csrf": "0" * 64, "scope": "x"},
                             headers={"origin": "https://evil.example"},
                             follow_redirects=False)
        assert answer.status_code == 403, answer.text
        assert "set-cookie" not in answer.headers
    assert limiter.retry_after("10.0.0.9") is None
    assert [e for e in mem.audit_events() if e.action in ("authenticate", "login")] == []


@pytest.mark.parametrize(("base_url", "host", "origin"), [
    ("https://admin.example.com", "admin.example.com:443", "https://admin.example.com"),
    ("http://admin.example.com", "admin.example.com:80", "http://admin.example.com"),
    ("https://admin.example.com", "Admin.Example.COM", "https://admin.example.com"),
    ("https://admin.example.com", "admin.example.com", "https://admin.example.com:443"),
    ("https://admin.example.com", "admin.example.com", "HTTPS://Admin.example.com"),
    ("http://[::1]:8181", "[::1]:8181", "http://[::1]:8181"),
])
def test_the_same_origin_written_another_way_is_the_same_origin(
        mem: Security, base_url: str, host: str, origin: str) -> None:
    """A default port spelled out (a proxy sending ``Host: x:443``) and a host in
    another case name the same origin, as browsers see it."""
    token = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_for(mem, base_url, host=host)
    csrf = csrf_of(client.get("/ui/").text)
    answer = client.post("/ui/sign-in", data={"csrf": csrf, "credential": token},
                         headers={"origin": origin}, follow_redirects=False)
    assert answer.status_code == 303, answer.text


@pytest.mark.parametrize(("base_url", "host", "origin"), [
    ("https://admin.example.com", "admin.example.com", "http://admin.example.com"),
    ("https://admin.example.com", "admin.example.com", "https://admin.example.com:8443"),
    ("https://admin.example.com", "admin.example.com:8443", "https://admin.example.com"),
    ("https://admin.example.com", "admin.example.com", "https://admin.example.com."),
    ("https://admin.example.com", "admin.example.com", "https://evil.example.com"),
    ("https://admin.example.com", "admin.example.com", "https://admin.example.com/ui"),
    ("https://admin.example.com", "admin.example.com",
     "https://user@admin.example.com"),
    ("https://admin.example.com", "admin.example.com", "https://admin.example.com:x"),
    ("https://admin.example.com", "admin.example.com", "null"),
    ("https://admin.example.com", "admin.example.com", ""),
])
def test_another_origin_is_refused(mem: Security, base_url: str, host: str,
                                   origin: str) -> None:
    """Another scheme, port or host -- or anything that is not an origin -- is 403."""
    token = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_for(mem, base_url, host=host)
    csrf = csrf_of(client.get("/ui/").text)
    answer = client.post("/ui/sign-in", data={"csrf": csrf, "credential": token},
                         headers={"origin": origin}, follow_redirects=False)
    assert answer.status_code == 403, answer.text
    assert "set-cookie" not in answer.headers


def test_page_errors_never_echo_what_was_sent(mem: Security) -> None:
    """A form field the page does not know is refused without repeating its name, which
    could be anything -- a token string pasted in the wrong place included."""
    secret_holder = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    client = client_for(mem)
    csrf = csrf_of(client.get("/ui/").text)
    body: dict[str, Any] = {"csrf": csrf, secret_holder.split(".", 1)[1]: "x"}
    answer = client.post("/ui/sign-in", data=body,
                         headers={"origin": "http://testserver"})
    assert answer.status_code == 422
    for part in secret_holder.split("."):
        assert part[:12] not in answer.text
