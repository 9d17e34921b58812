"""The token management page: in-process checks of its hardening, then a real headless
Chromium driving the real page served by uvicorn.

The browser and the served application are the ``chrome`` and ``site`` fixtures of
``conftest.py``.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import httpx
import markupsafe
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.served import served

from authtoken import (
    AuthToken,
    AuthTokenError,
    ConcurrentUpdate,
    InvalidArgument,
    InvalidToken,
    IssuerError,
    MemoryRepository,
    PermissionDenied,
    PolicyViolation,
    RepositoryError,
    Script,
    Security,
    Session,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from authtoken.admin import (
    AuthenticationFailed,
    DelegationTokenAuth,
    FailureLimiter,
    Identity,
    create_app,
)
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

KEYS = ["page-test-key"]
FORM = "application/x-www-form-urlencoded"
# A token string: key, secret, signature and, since the checksum, 6 base62 characters.
TOKEN_SHAPE = re.compile(r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}"
                         r"(?:\.[A-Za-z0-9]{6})?")


ORIGIN = "http://testserver"


def browser_client(security: Security, *, origin: str | None = ORIGIN,
                   **options: Any) -> TestClient:
    """A client of the page that, like a browser, says ``Origin`` on its form posts."""
    app = create_app(security, authenticate=DelegationTokenAuth(security), **options)
    return TestClient(app, base_url=ORIGIN, client=("10.0.0.7", 5000),
                      headers={} if origin is None else {"origin": origin})


def sign_in_csrf(client: TestClient) -> str:
    """The CSRF value of the sign-in form ``client`` is shown (the page opened signed
    out, which starts its pre-session)."""
    page = client.get("/ui/")
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match is not None and 'name="credential"' in page.text, page.text
    return match.group(1)


def sign_in(client: TestClient, credential: str) -> Any:
    """Open the sign-in page and post its form with ``credential``."""
    return client.post("/ui/sign-in", data={"csrf": sign_in_csrf(client),
                                            "credential": credential},
                       follow_redirects=False)


def signed_in(security: Security, scope: str = "jobs:run jobs:read",
              user: Any = "alice") -> tuple[TestClient, str, str]:
    """A client signed in to the page with a new token; (client, token, csrf)."""
    token = security.authorize_token(AuthToken(scope), user=user)
    client = browser_client(security)
    answer = sign_in(client, token)
    assert answer.status_code == 303
    page = client.get("/ui/")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match is not None
    return client, token, match.group(1)


def message(html: str) -> str:
    found = re.search(r'id="message">([^<]*)<', html)
    assert found is not None, html
    return found.group(1)


# -- in process -------------------------------------------------------------------------------
def test_signed_out_page_asks_for_a_token(security: Security) -> None:
    answer = browser_client(security).get("/ui/")
    assert answer.status_code == 200
    assert 'name="credential"' in answer.text and 'type="password"' in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"


def test_sign_in_sets_a_strict_cookie_and_lists_the_tokens(security: Security) -> None:
    token = security.authorize_token(AuthToken("jobs:run", description="nightly"), user="al")
    client = browser_client(security)
    answer = sign_in(client, token)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    cookie = next(c for c in answer.headers.get_list("set-cookie")
                  if c.startswith("authtoken_ui="))
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui"):
        assert attribute.lower() in cookie.lower()
    page = client.get("/ui/")
    key = security.restore_auth_token(token).key
    assert f'id="token-{key}"' in page.text and "nightly" in page.text
    assert token not in page.text  # the page never shows a stored token's string


def test_a_bad_sign_in_is_401_audited_and_rate_limited(security: Security) -> None:
    limiter = FailureLimiter(limit=3, window=60)
    client = browser_client(security, limiter=limiter)
    forged = "atk_aaaaaaaaaaaaaaaa." + "A" * 43 + "." + "B" * 43
    form = {"csrf": sign_in_csrf(client), "credential": forged}
    for _ in range(4):  # blocked once an address failed *more than* 3 times
        answer = client.post("/ui/sign-in", data=form)
        assert answer.status_code == 401
        assert forged not in answer.text and "set-cookie" not in answer.headers
    answer = client.post("/ui/sign-in", data=form)
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1
    failures = [e for e in security.audit_events() if e.action == "authenticate"]
    assert sum(e.count for e in failures) == 4  # a summary event counts its attempts
    assert {e.actor for e in failures} == {"address:10.0.0.7"}


def test_the_sign_in_form_is_bound_to_a_pre_session(security: Security) -> None:
    """The signed-out page starts a pre-session (its own HttpOnly, SameSite=Strict
    cookie) that its form's CSRF value is bound to; signing in ends it."""
    client = browser_client(security)
    first = client.get("/ui/")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("authtoken_ui_pre=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui"):
        assert attribute.lower() in cookie.lower()
    csrf = sign_in_csrf(client)
    assert csrf in first.text  # one pre-session per browser: a second tab agrees
    token = security.authorize_token(AuthToken("jobs:run"), user="alice")
    answer = client.post("/ui/sign-in", data={"csrf": csrf, "credential": token},
                         follow_redirects=False)
    assert answer.status_code == 303
    cookies = answer.headers.get_list("set-cookie")
    assert any(c.startswith("authtoken_ui=atk_") for c in cookies)
    assert any(c.startswith('authtoken_ui_pre=""') for c in cookies)


def _forge(case: str, client: TestClient, other: TestClient, token: str
           ) -> dict[str, Any]:
    """The arguments of a sign-in post for ``case``; ``client`` opened the page."""
    csrf = sign_in_csrf(client)
    fields = {"csrf": csrf, "credential": token}
    headers = {"origin": ORIGIN}
    if case == "origin null":  # a sandboxed frame, a no-referrer page
        headers = {"origin": "null"}
    elif case == "neither origin nor fetch metadata":  # an old browser, plain HTTP
        headers = {}
    elif case == "another origin":
        headers = {"origin": "http://evil.example"}
    elif case == "cross-site fetch metadata":
        headers = {"origin": ORIGIN, "sec-fetch-site": "cross-site"}
    elif case == "no csrf":
        del fields["csrf"]
    elif case == "csrf of another pre-session":  # the attacker's own, fetched first
        fields["csrf"] = sign_in_csrf(other)
    elif case == "no pre-session":
        client.cookies.clear()
    elif case == "non-ascii csrf":
        return {"content": f"csrf=%C3%A9{csrf[2:]}&credential={token}",
                "headers": headers | {"content-type": FORM}}
    return {"data": fields, "headers": headers}


@pytest.mark.parametrize("case", [
    "origin null", "neither origin nor fetch metadata", "another origin",
    "cross-site fetch metadata", "no csrf", "csrf of another pre-session",
    "no pre-session", "non-ascii csrf",
])
def test_a_forged_sign_in_is_refused_and_sets_nothing(security: Security, case: str) -> None:
    """Login CSRF: a sign-in post that is not this browser's own form is 403, signs
    nobody in, sets no cookie and never reaches the authenticator."""
    token = security.authorize_token(AuthToken("jobs:run"), user="mallory")
    client = browser_client(security, origin=None)
    answer = client.post("/ui/sign-in", follow_redirects=False,
                         **_forge(case, client, browser_client(security), token))
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    assert 'id="user"' not in client.get("/ui/").text
    key = security.restore_auth_token(token).key
    assert [e for e in security.audit_events(token_key=key) if e.action == "login"] == []


def test_create_shows_the_string_once(security: Security) -> None:
    client, _, csrf = signed_in(security)
    answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:read",
                                              "description": "report", "expires": "2d"})
    assert answer.status_code == 200
    strings = TOKEN_SHAPE.findall(answer.text)
    assert len(set(strings)) == 1
    made = security.login_by_auth_token(strings[0])
    assert made.scopes == ("jobs:read",) and made.user == "alice"
    # ... derived from the signed-in token, and never shown again
    child = security.get_auth_token(made.token_key)
    assert child.parent_key is not None
    assert not TOKEN_SHAPE.search(client.get("/ui/").text)


def test_create_cannot_escalate(security: Security) -> None:
    client, _, csrf = signed_in(security, scope="jobs:read")
    answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:read admin:all"})
    assert answer.status_code == 403
    assert "admin:all" in message(answer.text)
    assert len(security.list_auth_tokens()) == 1


@pytest.mark.parametrize("fields", [
    {"csrf": "0" * 64, "scope": "jobs:read"},  # wrong
    {"scope": "jobs:read"},  # missing
])
def test_create_without_the_csrf_token_is_refused(security: Security,
                                                  fields: dict[str, str]) -> None:
    client, _, _ = signed_in(security)
    answer = client.post("/ui/tokens", data=fields)
    assert answer.status_code == 403
    assert len(security.list_auth_tokens()) == 1


def test_a_non_ascii_csrf_value_is_refused_not_an_error(security: Security) -> None:
    client, _, _ = signed_in(security)
    answer = client.post("/ui/tokens", content="csrf=%C3%A9&scope=jobs:read",
                         headers={"content-type": FORM})
    assert answer.status_code == 403


def test_csrf_token_of_another_credential_is_refused(security: Security) -> None:
    client, _, _ = signed_in(security)
    _, _, other_csrf = signed_in(security, user="bob")
    answer = client.post("/ui/tokens", data={"csrf": other_csrf, "scope": "jobs:read"})
    assert answer.status_code == 403


def test_cross_origin_posts_are_refused(security: Security) -> None:
    client, _, csrf = signed_in(security)
    key = security.list_auth_tokens()[0].key
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        answer = client.post(f"/ui/tokens/{key}/revoke", data={"csrf": csrf}, headers=headers)
        assert answer.status_code == 403
    assert security.get_auth_token(key).revoked_at is None


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; b=x",
                                          "text/plain"])
def test_forms_of_another_type_are_415(security: Security, content_type: str) -> None:
    client, _, csrf = signed_in(security)
    answer = client.post("/ui/tokens", content=f"csrf={csrf}&scope=jobs:read",
                         headers={"content-type": content_type})
    assert answer.status_code == 415


def test_oversized_and_strange_forms_are_refused(security: Security) -> None:
    client, _, csrf = signed_in(security)
    big = client.post("/ui/tokens", content=b"scope=" + b"a" * (600 * 1024),
                      headers={"content-type": FORM})
    assert big.status_code == 413
    unknown = client.post("/ui/tokens", data={"csrf": csrf, "scope": "x", "user": "bob"})
    assert unknown.status_code == 422
    twice = client.post("/ui/tokens", content=f"csrf={csrf}&scope=a&scope=b",
                        headers={"content-type": FORM})
    assert twice.status_code == 422
    bad_utf8 = client.post("/ui/tokens", content=b"csrf=" + csrf.encode() + b"&scope=%ff",
                           headers={"content-type": FORM})
    assert bad_utf8.status_code == 422
    bad_expiry = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:read",
                                                 "expires": "yesterday-ish"})
    assert bad_expiry.status_code == 422
    assert len(security.list_auth_tokens()) == 1


def test_revoke_asks_first_then_revokes(security: Security) -> None:
    client, _, csrf = signed_in(security)
    other = security.authorize_token(AuthToken("jobs:read", description="spare"), user="alice")
    key = security.restore_auth_token(other).key
    confirm = client.get(f"/ui/tokens/{key}/revoke")
    assert confirm.status_code == 200 and "spare" in confirm.text
    assert security.get_auth_token(key).revoked_at is None  # asking changes nothing
    answer = client.post(f"/ui/tokens/{key}/revoke", data={"csrf": csrf},
                         follow_redirects=False)
    assert answer.status_code == 303
    assert security.get_auth_token(key).revoked_at is not None
    assert f'id="token-{key}"' not in client.get("/ui/").text
    assert f'id="token-{key}"' in client.get("/ui/?revoked=1").text


def test_other_users_tokens_cannot_be_revoked(security: Security) -> None:
    client, _, csrf = signed_in(security)
    theirs = security.authorize_token(AuthToken("jobs:read"), user="bob")
    key = security.restore_auth_token(theirs).key
    assert client.get(f"/ui/tokens/{key}/revoke").status_code == 403
    assert client.post(f"/ui/tokens/{key}/revoke", data={"csrf": csrf}).status_code == 403
    assert client.get("/ui/tokens/nosuchkeyatall00/revoke").status_code == 404
    assert security.get_auth_token(key).revoked_at is None


def test_a_revoked_credential_signs_the_browser_out(security: Security) -> None:
    client, token, _ = signed_in(security)
    security.revoke_auth_token(token)
    answer = client.get("/ui/")
    assert answer.status_code == 401 and 'name="credential"' in answer.text
    assert "authtoken_ui=" in answer.headers["set-cookie"]  # the cookie is cleared


def test_sign_out_clears_the_cookie(security: Security) -> None:
    client, _, _ = signed_in(security)
    answer = client.post("/ui/sign-out", follow_redirects=False)
    assert answer.status_code == 303 and 'authtoken_ui=""' in answer.headers["set-cookie"]


@pytest.mark.parametrize(("error", "status"), [
    (PermissionDenied("no"), 403),
    (TokenNotFound("gone"), 404),
    (TokenRevoked("revoked"), 409),
    # a token acted on has expired (a renewal); the caller's own is the authenticator's
    (TokenExpired("expired"), 409),
    (PolicyViolation("the policy says no", rule="max_tokens_per_user", limit=3), 403),
    (ConcurrentUpdate("changed meanwhile", token_key="aaaaaaaaaaaaaaaa"), 409),
    (InvalidToken("bad"), 401),
    (AuthenticationFailed("who are you?"), 401),
    (InvalidArgument("wrong"), 422),
    (RepositoryError("down"), 503),
    (IssuerError("down"), 503),
    # The two faces used to disagree here: the page answered 400, the API 500.
    (AuthTokenError("odd"), 500),
    # ... and here the page had no answer of its own (the server's plain 500).
    (RuntimeError("a bug"), 500),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_page_and_api_answer_an_error_with_the_same_status(
        security: Security, monkeypatch: pytest.MonkeyPatch, error: Exception,
        status: int) -> None:
    """An error raised while acting gets the same status on the page as in the API:
    one table for both."""
    def failing(self: Session, **options: Any) -> Any:
        raise error

    monkeypatch.setattr(Session, "list_auth_tokens", failing)
    client = TestClient(create_app(security, authenticate=lambda request: Identity("alice")),
                        base_url=ORIGIN, raise_server_exceptions=False)
    api = client.get("/tokens")
    signed = client.post("/ui/sign-in", data={"csrf": sign_in_csrf(client), "credential": "x"},
                         headers={"origin": ORIGIN}, follow_redirects=False)
    assert signed.status_code == 303  # this authenticator takes any credential
    page = client.get("/ui/")
    assert api.status_code == page.status_code == status, (api.text, page.text)
    assert api.headers["content-type"].startswith("application/problem+json")
    assert page.headers["content-type"].startswith("text/html")
    if status == 503:
        assert api.headers["retry-after"] == page.headers["retry-after"]
    if status == 401:
        assert 'name="credential"' in page.text  # the sign-in form, with the reason
        assert api.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("error", [
    InvalidToken("bad"), TokenRevoked("revoked"), TokenExpired("expired"),
    AuthenticationFailed("who are you?"),
], ids=lambda error: type(error).__name__)
def test_every_refused_credential_is_401_on_both_faces(security: Security,
                                                       error: Exception) -> None:
    """Whatever the authenticator refuses with -- a revoked token included, which is a
    409 while acting -- both faces answer 401 and count the failure."""
    def refusing(request: Any) -> Any:
        raise error

    limiter = FailureLimiter(limit=10)
    client = TestClient(create_app(security, authenticate=refusing, limiter=limiter),
                        base_url=ORIGIN, client=("10.0.0.9", 5000))
    api = client.get("/tokens", headers={"authorization": "Bearer x"})
    page = client.post("/ui/sign-in", data={"csrf": sign_in_csrf(client), "credential": "x"},
                       headers={"origin": ORIGIN})
    assert api.status_code == page.status_code == 401
    assert "Bearer" in api.headers["www-authenticate"]
    assert 'name="credential"' in page.text
    failures = [e for e in security.audit_events() if e.action == "authenticate"]
    assert {e.reason for e in failures} == {type(error).__name__}
    assert sum(e.count for e in failures) == 2  # a summary event counts its attempts


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(description=st.text(alphabet=st.sampled_from("<>&\"' ab/=script"), min_size=1,
                           max_size=60))
def test_page_escapes_whatever_tokens_hold(clock: FakeClock, description: str) -> None:
    """A hostile description comes back escaped: none of its markup survives."""
    with Security(MemoryRepository(), secret_keys=KEYS, clock=clock) as security:
        string = security.authorize_token(AuthToken("jobs:run", description=description),
                                          user="alice")
        key = security.restore_auth_token(string).key
        stored = security.get_auth_token(key).description
        client, _, _ = signed_in(security)
        page = client.get("/ui/").text
        cell = re.search(rf'id="token-{key}"[^>]*>.*?<td class="description"[^>]*>(.*?)</td>',
                         page, re.DOTALL)
        assert cell is not None
        assert cell.group(1) == str(markupsafe.escape(stored))
        assert "<" not in cell.group(1) and ">" not in cell.group(1)


# -- in a real browser ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_page_in_chromium(chrome: Any, site: tuple[Security, str]) -> None:
    """Sign in, create a token and copy it, revoke one with confirmation, sign out --
    clicking through the real page, checking storage after each step."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    security, url = site
    wait = WebDriverWait(chrome, 10)
    root = security.authorize_token(AuthToken("jobs:run jobs:read", description="root"),
                                    user="alice")
    chrome.get(f"{url}/ui")
    field = wait.until(ready.presence_of_element_located((By.ID, "credential")))
    field.send_keys(root)
    chrome.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.ID, "tokens")))
    assert chrome.find_element(By.ID, "user").text == "alice"
    root_key = security.restore_auth_token(root).key
    assert "root" in chrome.find_element(By.ID, f"token-{root_key}").text
    # the cookie is out of the page's scripts' reach
    assert "authtoken_ui" not in chrome.execute_script("return document.cookie")

    # create a token: the string is shown once, and the copy button copies it
    chrome.find_element(By.ID, "scope").send_keys("jobs:read")
    chrome.find_element(By.ID, "description").send_keys("nightly <report>")
    chrome.find_element(By.ID, "expires").send_keys("7d")
    chrome.find_element(By.ID, "create-token").click()
    shown = wait.until(ready.presence_of_element_located((By.ID, "token-string")))
    string = shown.get_attribute("value")
    assert string is not None and TOKEN_SHAPE.fullmatch(string)
    chrome.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    chrome.find_element(By.ID, "copy").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "copied"), "Copied"))
    copied = chrome.execute_async_script(
        "const done = arguments[0];"
        "navigator.clipboard.readText().then(done, e => done('error: ' + e));")
    assert copied == string
    made = security.login_by_auth_token(string)
    assert made.user == "alice" and made.scopes == ("jobs:read",)
    assert security.get_auth_token(made.token_key).parent_key == root_key

    # back on the list: the new token, its description escaped, its string nowhere
    chrome.find_element(By.ID, "back").click()
    row = wait.until(ready.presence_of_element_located((By.ID, f"token-{made.token_key}")))
    assert "nightly <report>" in row.text
    assert string not in chrome.page_source

    # revoke asks first: cancel changes nothing
    row.find_element(By.CLASS_NAME, "revoke").click()
    wait.until(ready.presence_of_element_located((By.ID, "confirm-revoke")))
    chrome.find_element(By.ID, "cancel").click()
    wait.until(ready.presence_of_element_located((By.ID, "tokens")))
    assert security.get_auth_token(made.token_key).revoked_at is None
    # ... and confirming revokes
    chrome.find_element(By.ID, f"token-{made.token_key}") \
        .find_element(By.CLASS_NAME, "revoke").click()
    wait.until(ready.element_to_be_clickable((By.ID, "confirm-revoke"))).click()
    wait.until(ready.presence_of_element_located((By.ID, "tokens")))
    assert security.get_auth_token(made.token_key).revoked_at is not None
    assert not chrome.find_elements(By.ID, f"token-{made.token_key}")

    # the page ran without a Content-Security-Policy complaint or script error
    problems = [entry["message"] for entry in chrome.get_log("browser")
                if entry["level"] == "SEVERE"]
    assert problems == []

    # sign out: back to the sign-in form, and the old page no longer opens
    chrome.find_element(By.ID, "sign-out").click()
    wait.until(ready.presence_of_element_located((By.ID, "credential")))
    chrome.get(f"{url}/ui/")
    assert chrome.find_elements(By.ID, "credential")
    events = security.audit_events(token_key=made.token_key)
    assert [e.action for e in events if e.outcome == "ok"][:1] == ["revoke"]


@pytest.mark.slow
def test_a_cross_site_form_cannot_revoke(chrome: Any, site: tuple[Security, str]) -> None:
    """A page of another site posting the revoke form (even with a stolen CSRF value)
    changes nothing: the cookie stays home (SameSite=Strict) and the origin is refused."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    security, url = site
    wait = WebDriverWait(chrome, 10)
    token = security.authorize_token(AuthToken("jobs:read"), user="alice")
    key = security.restore_auth_token(token).key
    chrome.get(f"{url}/ui/")
    wait.until(ready.presence_of_element_located((By.ID, "credential"))).send_keys(token)
    chrome.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.ID, "tokens")))
    csrf = chrome.find_element(By.NAME, "csrf").get_attribute("value")

    async def attack(request: Any) -> HTMLResponse:
        return HTMLResponse(
            f'<form id="f" method="post" action="{url}/ui/tokens/{key}/revoke">'
            f'<input name="csrf" value="{csrf}"><button id="go">go</button></form>')

    evil = Starlette(routes=[Route("/", attack)])
    with served(evil, host="localhost") as evil_url:  # another site than 127.0.0.1
        chrome.get(evil_url)
        chrome.find_element(By.ID, "go").click()
        wait.until(lambda d: d.current_url.startswith(url))
        assert security.get_auth_token(key).revoked_at is None
        assert chrome.find_elements(By.ID, "credential") or \
            "another site" in chrome.page_source


@pytest.mark.slow
def test_a_cross_site_form_cannot_sign_in(chrome: Any, site: tuple[Security, str]) -> None:
    """Login CSRF: a page of another site posting the sign-in form with the attacker's
    own token (and a CSRF value of the attacker's own pre-session) signs the browser in
    to nothing -- neither with its Origin, nor with ``Origin: null`` from a no-referrer
    page to a host that gets no fetch metadata."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    security, served_url = site
    url = served_url.replace("127.0.0.1", "admin.test")
    wait = WebDriverWait(chrome, 10)
    mallory = security.authorize_token(AuthToken("jobs:read"), user="mallory")
    # the attacker's own pre-session and form, fetched first
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"',
                     httpx.get(f"{served_url}/ui/", timeout=10).text)
    chrome.get(f"{url}/ui/")  # the victim has the page open, signed out
    wait.until(ready.presence_of_element_located((By.ID, "credential")))

    async def attack(request: Any) -> HTMLResponse:
        policy = '<meta name="referrer" content="no-referrer">' \
            if request.query_params.get("quiet") else ""
        field = f'<input name="csrf" value="{csrf.group(1)}">' if csrf else ""
        return HTMLResponse(
            f"<html><head>{policy}</head><body>"
            f'<form id="f" method="post" action="{url}/ui/sign-in">{field}'
            f'<input name="credential" value="{mallory}"><button id="go">go</button>'
            "</form></body></html>")

    evil = Starlette(routes=[Route("/", attack)])
    with served(evil, host="evil.test") as evil_url:
        for page in (evil_url, f"{evil_url}/?quiet=1"):
            chrome.get(page)
            chrome.find_element(By.ID, "go").click()
            wait.until(lambda d: d.current_url.startswith(url))
            chrome.get(f"{url}/ui/")
            wait.until(ready.presence_of_element_located((By.TAG_NAME, "main")))
            assert chrome.find_elements(By.ID, "credential"), page
            assert not chrome.find_elements(By.ID, "user"), page
    key = security.restore_auth_token(mallory).key
    assert [e for e in security.audit_events(token_key=key) if e.action == "login"] == []


@pytest.mark.slow
def test_warnings_and_bindings_in_chromium(chrome: Any, site: tuple[Security, str]) -> None:
    """Markup in a scope comes back in the warnings as text: no element is made from
    it and no handler runs; a path typed with a space binds that very script."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    security, url = site
    wait = WebDriverWait(chrome, 10)
    hostile = ["x,<img/src=x/onerror=window.pwned=1>", "VFS:<svg/onload=window.pwned=2>"]
    root = security.authorize_token(AuthToken(hostile), user="alice")
    chrome.get(f"{url}/ui/")
    wait.until(ready.presence_of_element_located((By.ID, "credential"))).send_keys(root)
    chrome.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.ID, "create")))
    chrome.find_element(By.ID, "scope").send_keys(" ".join(hostile))
    chrome.find_element(By.ID, "bind-paths").send_keys("/jobs/my job.py")
    chrome.get_log("browser")  # forget what came before (a 401 of an older cookie)
    chrome.find_element(By.ID, "create-token").click()
    shown = wait.until(ready.presence_of_element_located((By.ID, "warnings")))
    items = [li.text for li in shown.find_elements(By.TAG_NAME, "li")]
    assert len(items) == 2 and "<img/src=x/onerror=" in items[0], items
    assert "<svg/onload=" in items[1], items
    assert chrome.find_elements(By.CSS_SELECTOR, "#warnings img, #warnings svg") == []
    assert chrome.execute_script("return window.pwned === undefined")
    string = chrome.find_element(By.ID, "token-string").get_attribute("value")
    assert string is not None
    made = security.login_by_auth_token(string, script=Script(path="/jobs/my job.py"))
    assert made.scopes == (*hostile, "ufs:/jobs/my%20job.py")
    assert [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"] == []
