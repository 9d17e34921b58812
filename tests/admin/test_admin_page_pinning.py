"""The token page and code pinning: a pinned token's digest shown short with the full
value at hand (never among its opaque scopes), the verdict a login would get now next
to every token, and the create form's "pin to code" field -- in process over memory and
a real SQLite file, then one flow in a real headless Chromium.

Bad input (a malformed digest, an upper-case one, a token string pasted into the field)
is a 422 that shows the token page again with the reason and the fields as typed,
masked; nothing is stored.
"""

from __future__ import annotations

import hashlib
import html
import re
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtoken import AuthToken, Script, Security, find_tokens
from authtoken._scopes import parse_scope, script_matches
from authtoken.admin import DelegationTokenAuth, create_app
from authtoken.admin._checks import bound_script
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

ORIGIN = "http://testserver"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
CODE = b"#!/bin/sh\necho nightly\n"
DIGEST = hashlib.sha256(CODE).hexdigest()
OTHER = hashlib.sha256(b"echo other\n").hexdigest()


# -- helpers ----------------------------------------------------------------------------------
def signed_in(security: Security, scope: str = "jobs:run") -> tuple[TestClient, str, str]:
    """A browser-like client signed in with a new token; (client, token, csrf)."""
    token = security.authorize_token(AuthToken(scope, expires="never"), user="alice")
    client = TestClient(create_app(security, authenticate=DelegationTokenAuth(security)),
                        base_url=ORIGIN, headers={"origin": ORIGIN})
    found = CSRF.search(client.get("/ui/").text)
    assert found is not None
    answer = client.post("/ui/sign-in", data={"csrf": found.group(1), "credential": token},
                         follow_redirects=False)
    assert answer.status_code == 303
    found = CSRF.search(client.get("/ui/").text)
    assert found is not None
    return client, token, found.group(1)


def stored(security: Security, scope: str, **options: Any) -> str:
    token = AuthToken(scope, **options)
    security.authorize_token(token, user="alice")
    return str(token.key)


def row(page: str, key: str) -> str:
    found = re.search(rf'<tr id="token-{key}"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert found is not None, page
    return found.group(1)


def cell(page: str, key: str, name: str) -> str:
    """The text of the cell of class ``name`` in the row of ``key``, tags removed."""
    found = re.search(rf'<td class="{name}"[^>]*>(.*?)</td>', row(page, key), re.DOTALL)
    assert found is not None
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def scopes_cell(page: str, key: str) -> str:
    """The row's scopes: its third cell."""
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row(page, key), re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", cells[2]))


def field(page: str, name: str) -> str:
    textarea = re.search(rf'<textarea [^>]*name="{name}"[^>]*>(.*?)</textarea>', page,
                         re.DOTALL)
    if textarea is not None:
        return html.unescape(textarea.group(1))
    found = re.search(rf'<input [^>]*name="{name}"[^>]*>', page)
    assert found is not None, name
    value = re.search(r'value="([^"]*)"', found.group(0))
    return "" if value is None else html.unescape(value.group(1))


def message(page: str) -> str:
    found = re.search(r'id="message">([^<]*)<', page)
    assert found is not None, page
    return html.unescape(found.group(1))


def keys(security: Security) -> set[str | None]:
    return {t.key for t in security.list_auth_tokens(include_revoked=True)}


# -- the list ---------------------------------------------------------------------------------
def test_a_pinned_token_shows_its_digest_short_with_the_full_value(security: Security
                                                                   ) -> None:
    client, _, _ = signed_in(security)
    key = stored(security, f"jobs:run sha256:{DIGEST} sha256:{OTHER}")
    page = client.get("/ui/").text
    line = row(page, key)
    for digest in (DIGEST, OTHER):
        short = f"sha256:{digest[:8]}…"
        assert f'title="sha256:{digest}">{short}</code>' in line
        assert f'<code class="full-digest">sha256:{digest}</code>' in line
    assert "pinned to code" in cell(page, key, "scripts")
    # never listed with the opaque scopes
    assert "sha256" not in scopes_cell(page, key) and "jobs:run" in scopes_cell(page, key)


def test_an_unpinned_token_says_any_script(security: Security) -> None:
    client, root, _ = signed_in(security)
    key = str(security.restore_auth_token(root).key)
    page = client.get("/ui/").text
    assert cell(page, key, "scripts") == "any"
    assert "pinned" not in row(page, key)


def test_the_verdict_of_a_login_now(security: Security, clock: FakeClock) -> None:
    """Next to each token: ok, or the reason and what to change, by its bound script or
    by none."""
    client, root, _ = signed_in(security)
    plain = str(security.restore_auth_token(root).key)
    pinned = stored(security, f"vfs:ikey?42 sha256:{DIGEST}")
    spaced = stored(security, "ufs:/jobs/my%20job.py")
    short = stored(security, "jobs:run", expires="1h")
    once = AuthToken("jobs:run", max_uses=1)
    string = security.authorize_token(once, user="alice")
    security.login_by_auth_token(string)
    revoked = stored(security, "jobs:run")
    security.revoke_auth_token_by_key(revoked)
    clock.advance(hours=1)
    page = client.get("/ui/?revoked=1").text
    assert cell(page, plain, "verdict") == "ok (by no script)"
    assert cell(page, pinned, "verdict") == "ok (by its script)"
    assert cell(page, spaced, "verdict") == "ok (by its script)"
    expired = cell(page, short, "verdict")
    assert expired.startswith("TokenExpired: expired at") and "(by no script)" in expired
    assert cell(page, str(once.key), "verdict").startswith("TokenExhausted:")
    assert cell(page, revoked, "verdict").startswith("TokenRevoked:")
    assert root not in page and string not in page and not find_tokens(page)


@pytest.mark.parametrize("scope", [
    f"sha256:{DIGEST}", "vfs:ikey?7", "vfs:ikey?-7 vfs:ikey?8", "ufs:/a/b%20c.py",
    "ufs:/x%25y/%u00e9t%u00e9.py", f"ufs:/j.py vfs:ikey?3 sha256:{DIGEST}",
    "ufs:/a/../b.py", "reports:read",
])
def test_a_tokens_own_script_passes_its_bindings(scope: str) -> None:
    """The script rebuilt from a token's bindings is one its login lets in."""
    scopes = parse_scope(scope)
    script = bound_script(scopes)
    if scope == "reports:read":
        assert script is None
        return
    assert isinstance(script, Script)
    assert script_matches(scopes, script)


# -- the create form --------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [
    DIGEST, f"  {DIGEST}\r\n", f"sha256:{DIGEST}", f"{DIGEST}\r\n{OTHER}", f"{DIGEST}, {OTHER}",
])
def test_create_pins_a_token_to_code(security: Security, typed: str) -> None:
    client, _, csrf = signed_in(security)
    before = keys(security)
    answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                             "pin_digests": typed})
    assert answer.status_code == 200, answer.text
    (key,) = keys(security) - before
    assert key is not None
    made = security.get_auth_token(key)
    wanted = [f"sha256:{d}" for d in (DIGEST, OTHER) if d in typed]
    assert [s for s in made.scopes if s.startswith("sha256:")] == wanted
    assert "jobs:run" in made.scopes


def test_a_pin_alone_is_enough_for_a_token(security: Security) -> None:
    client, _, csrf = signed_in(security)
    before = keys(security)
    answer = client.post("/ui/tokens", data={"csrf": csrf, "pin_digests": DIGEST})
    assert answer.status_code == 200, answer.text
    (key,) = keys(security) - before
    assert key is not None
    assert security.get_auth_token(key).scopes == (f"sha256:{DIGEST}",)


@pytest.mark.parametrize(("typed", "said"), [
    (DIGEST.upper(), "upper-case"),
    (DIGEST[:-1], "63 characters"),
    (DIGEST + "0", "65 characters"),
    (DIGEST[:-1] + "z", "not hex digits"),
    (f"{DIGEST}\n{OTHER[:10]}", "second digest has 10 characters"),
    (f"SHA256:{DIGEST}", "71 characters"),
    (f"sha256:{DIGEST.upper()}", "upper-case"),
])
def test_a_malformed_digest_keeps_what_was_typed(security: Security, typed: str,
                                                 said: str) -> None:
    client, _, csrf = signed_in(security)
    before = keys(security)
    fields = {"scope": "jobs:run", "description": "nightly", "pin_digests": typed,
              "bind_paths": "/jobs/my job.py"}
    answer = client.post("/ui/tokens", data={"csrf": csrf, **fields})
    assert answer.status_code == 422, answer.text
    assert "Pin to code" in message(answer.text) and said in message(answer.text)
    for name, value in fields.items():
        assert field(answer.text, name) == value, name
    assert keys(security) == before


def test_a_token_string_in_the_pin_field_is_masked(security: Security) -> None:
    client, root, csrf = signed_in(security)
    before = keys(security)
    answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                             "pin_digests": root})
    assert answer.status_code == 422
    assert root not in answer.text and not find_tokens(answer.text)
    assert root.split(".")[1][:16] not in answer.text  # no piece of its secret either
    assert field(answer.text, "pin_digests").startswith("atk_[redacted]")
    assert keys(security) == before


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_pin_field_is_a_token_or_a_422(mem: Security, text: str) -> None:
    client, root, csrf = signed_in(mem)
    answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                             "pin_digests": f"{text}{root}"})
    assert answer.status_code == 422
    assert root not in answer.text and not find_tokens(answer.text)
    answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                             "pin_digests": text})
    assert answer.status_code in (200, 422)


# -- in a real browser ------------------------------------------------------------------------
@pytest.mark.slow
def test_pinning_in_chromium(chrome: Any, site: tuple[Security, str]) -> None:
    """Type an upper-case digest and see it refused with the field kept; correct it,
    create the token, and find it in the list pinned, its digest short with the full
    value in the title and behind the details, and its verdict ok by its script."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    security, url = site
    wait = WebDriverWait(chrome, 10)
    root = security.authorize_token(AuthToken("jobs:run"), user="alice")
    chrome.get(f"{url}/ui/")
    wait.until(ready.presence_of_element_located((By.ID, "credential"))).send_keys(root)
    chrome.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.ID, "create")))
    chrome.get_log("browser")

    chrome.find_element(By.ID, "scope").send_keys("jobs:run")
    chrome.find_element(By.ID, "pin-digests").send_keys(DIGEST.upper())
    chrome.find_element(By.ID, "create-token").click()
    said = wait.until(ready.presence_of_element_located((By.ID, "message")))
    assert "upper-case" in said.text
    assert chrome.find_element(By.ID, "pin-digests").get_attribute("value") == DIGEST.upper()
    assert len(security.list_auth_tokens()) == 1
    # the browser logs the 422 itself, and nothing else: no script error, no CSP refusal
    severe = [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    assert all("status of 422" in m for m in severe), severe

    chrome.find_element(By.ID, "pin-digests").clear()
    chrome.find_element(By.ID, "pin-digests").send_keys(DIGEST)
    chrome.find_element(By.ID, "create-token").click()
    wait.until(ready.presence_of_element_located((By.ID, "token-string")))
    chrome.find_element(By.ID, "back").click()
    pinned = next(t for t in security.list_auth_tokens() if f"sha256:{DIGEST}" in t.scopes)
    line = wait.until(ready.presence_of_element_located((By.ID, f"token-{pinned.key}")))
    shown = line.find_element(By.CLASS_NAME, "digest")
    assert shown.text == f"sha256:{DIGEST[:8]}…"
    assert shown.get_attribute("title") == f"sha256:{DIGEST}"
    full = line.find_element(By.CLASS_NAME, "full-digest")
    assert not full.is_displayed()
    shown.click()  # the summary opens the details
    assert full.is_displayed() and full.text == f"sha256:{DIGEST}"
    assert line.find_element(By.CLASS_NAME, "verdict").text == "ok (by its script)"
    assert root not in chrome.page_source
    assert [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"] == []
