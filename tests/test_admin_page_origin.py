"""The token page's same-origin rule: checked first, before anything else happens, and
comparing origins as browsers write them (case, default ports)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
import pytest

from authtoken import AuthToken, MemoryRepository, Security
from authtoken.admin import DelegationTokenAuth, FailureLimiter, create_app
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

KEYS = ["page-origin-test-key"]
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def mem(clock: FakeClock) -> Iterator[Security]:
    sec = Security(MemoryRepository(), secret_keys=KEYS, clock=clock)
    yield sec
    sec.close()


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
