"""The token page's job fields: max uses (uses left), renewable-until and run id in the
list, max uses and max lifetime in the create form, the Renew action -- in process over
memory and a real SQLite file, then clicked through in a real headless Chromium.

A form refused for what was typed comes back as the token page, with the reason and
the fields as typed (masked); nothing is stored and no token string is echoed.
"""

from __future__ import annotations

import html
import re
import warnings
from datetime import datetime, timedelta
from typing import Any

import pytest

from authtoken import AuthToken, Policy, Security, Session
from authtoken.admin import DelegationTokenAuth, create_app
from authtoken.testing import FakeClock

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

ORIGIN = "http://testserver"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
# A token string: key, secret, signature and, since the checksum, 6 base62 characters.
TOKEN_SHAPE = re.compile(r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}"
                         r"(?:\.[A-Za-z0-9]{6})?")


# -- helpers ----------------------------------------------------------------------------------
def signed_in(security: Security, scope: str = "jobs:run", user: Any = "alice",
              **options: Any) -> tuple[TestClient, str, str]:
    """A browser-like client signed in with a new token; (client, token, csrf)."""
    token = security.authorize_token(AuthToken(scope, **options), user=user)
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


def row(page: str, key: str | None) -> str:
    """The list's row of the token ``key``."""
    found = re.search(rf'<tr id="token-{key}"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert found is not None, page
    return found.group(1)


def cell(page: str, key: str | None, name: str) -> str:
    """The text of the cell of class ``name`` in the row of ``key``, tags removed."""
    found = re.search(rf'<td class="{name}"[^>]*>(.*?)</td>', row(page, key), re.DOTALL)
    assert found is not None
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def field(page: str, name: str) -> str:
    """The value the create form's field ``name`` is filled with."""
    textarea = re.search(rf'<textarea [^>]*name="{name}"[^>]*>(.*?)</textarea>', page,
                         re.DOTALL)
    if textarea is not None:
        return html.unescape(textarea.group(1))
    select = re.search(rf'<select [^>]*name="{name}"[^>]*>(.*?)</select>', page, re.DOTALL)
    if select is not None:
        chosen = re.search(r'<option value="([^"]*)" selected>', select.group(1))
        return "" if chosen is None else html.unescape(chosen.group(1))
    found = re.search(rf'<input [^>]*name="{name}"[^>]*>', page)
    assert found is not None, name
    value = re.search(r'value="([^"]*)"', found.group(0))
    return "" if value is None else html.unescape(value.group(1))


def message(page: str) -> str:
    found = re.search(r'id="message">([^<]*)<', page)
    assert found is not None, page
    return html.unescape(found.group(1))


def stored(security: Security) -> list[tuple[str | None, datetime | None, object]]:
    return [(t.key, t.expires, t.updated_at)
            for t in security.list_auth_tokens(include_revoked=True)]


def child(security: Security, parent: str, **options: Any) -> str:
    """The key of a new token derived from ``parent`` (a token session renews only its
    own token and those derived from it)."""
    session = Session(security)
    session.login_by_auth_token(parent)
    token = AuthToken("jobs:run", **options)
    session.authorize_token(token)
    assert token.key is not None
    return token.key


def when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


# -- the list ---------------------------------------------------------------------------------
def test_the_list_shows_uses_left_renewable_until_and_run(security: Security,
                                                          clock: FakeClock) -> None:
    """Each row shows max uses with the uses left, renewable-until and the run id; only
    a live renewable token below its limit offers Renew."""
    client, root, _ = signed_in(security)
    limited = security.authorize_token(AuthToken("jobs:run", max_uses=3), user="alice")
    security.login_by_auth_token(limited)
    renewable = security.authorize_token(
        AuthToken("jobs:run", expires="1d", max_lifetime="7d"), user="alice")
    stale = security.authorize_token(
        AuthToken("jobs:run", expires="1h", max_lifetime="7d"), user="alice")
    session = Session(security)
    session.login_by_auth_token(root)
    run = session.run_token("nightly <42>")
    clock.advance(hours=2)  # the stale token has expired now
    page = client.get("/ui/").text
    keys = {name: security.restore_auth_token(string).key
            for name, string in (("root", root), ("limited", limited),
                                 ("renewable", renewable), ("stale", stale))}
    assert cell(page, keys["limited"], "max-uses") == "3 (2 left)"
    assert cell(page, keys["root"], "max-uses") == "no limit"
    created = security.get_auth_token(keys["renewable"]).created_at
    assert created is not None
    assert cell(page, keys["renewable"], "renewable-until") == when(created + timedelta(days=7))
    assert cell(page, keys["root"], "renewable-until") == "not renewable"
    assert cell(page, run.key, "run-id") == "nightly <42>"  # escaped, shown as text
    assert "nightly &lt;42&gt;" in row(page, run.key)
    assert cell(page, keys["root"], "run-id") == ""
    assert 'class="renew"' in row(page, keys["renewable"])
    for name in ("root", "limited", "stale"):
        assert 'class="renew"' not in row(page, keys[name]), name
    assert not TOKEN_SHAPE.search(page) and run.token not in page


def test_create_takes_max_uses_and_max_lifetime(security: Security) -> None:
    """The create form's max uses and max lifetime reach the token, and the answer
    says so."""
    client, _, csrf = signed_in(security)
    answer = client.post("/ui/tokens", data={
        "csrf": csrf, "scope": "jobs:run", "expires": "1d", "max_uses": " 2 ",
        "max_lifetime": "7d"})
    assert answer.status_code == 200, answer.text
    string = TOKEN_SHAPE.findall(answer.text)[0]
    made = security.restore_auth_token(string)
    assert made.max_uses == 2 and made.max_lifetime == timedelta(days=7)
    assert made.created_at is not None
    assert f"renewable until {when(made.created_at + timedelta(days=7))}" in answer.text
    assert re.search(r'id="created-max-uses">2 uses<', answer.text)
    plain = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                            "max_uses": "", "max_lifetime": ""})
    made = security.restore_auth_token(TOKEN_SHAPE.findall(plain.text)[0])
    assert made.max_uses is None and made.max_lifetime is None


# -- refusals keep what was typed -------------------------------------------------------------
@pytest.mark.parametrize(("fields", "said"), [
    ({"max_uses": "0"}, "max_uses"), ({"max_uses": "-1"}, "max_uses"),
    ({"max_uses": "9" * 30}, "max_uses"), ({"max_uses": "9" * 41}, "Max uses"),
    ({"max_uses": "abc"}, "Max uses"), ({"max_uses": "1.5"}, "Max uses"),
    ({"max_lifetime": "2h"}, "max_lifetime"),  # shorter than the 1d expiry
    ({"max_lifetime": "0d"}, "max_lifetime"),
    ({"max_lifetime": "2031-01-31"}, "max_lifetime"),
    ({"expires": "never", "max_lifetime": "2d"}, "expire"),
    ({"expires": "yesterday-ish"}, "expires"),
    ({"bind_keys": "4x2"}, "Script keys"),
], ids=lambda value: repr(value)[:40])
def test_a_refused_create_keeps_what_was_typed(security: Security, fields: dict[str, str],
                                               said: str) -> None:
    """Zero, negative, huge or unreadable max uses, a max lifetime that is no duration
    or ends before the expiry, a renewable token that never expires: 422, the page
    again with the reason and every field as typed, nothing stored."""
    client, _, csrf = signed_in(security, expires="never")
    typed = {"scope": "jobs:run", "description": "nightly <b>report</b>", "expires": "1d",
             "max_uses": "", "max_lifetime": "7d", "data": '{"a": 1}',
             "bind_paths": "/jobs/my job.py", "bind_keys": "", **fields}
    before = stored(security)
    answer = client.post("/ui/tokens", data={"csrf": csrf, **typed})
    assert answer.status_code == 422, answer.text
    assert said in message(answer.text)
    for name, value in typed.items():
        assert field(answer.text, name) == value, name
    assert "<b>report</b>" not in answer.text  # kept as text, escaped
    assert 'id="tokens"' in answer.text and not TOKEN_SHAPE.search(answer.text)
    assert stored(security) == before


def test_a_token_string_typed_into_a_refused_form_is_not_echoed(security: Security) -> None:
    """A token string pasted into a field of a refused form comes back masked."""
    client, root, csrf = signed_in(security)
    answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                             "description": f"mine: {root}",
                                             "max_lifetime": root, "max_uses": "x"})
    assert answer.status_code == 422
    assert root not in answer.text and root.split(".")[-1][:16] not in answer.text
    assert field(answer.text, "description").startswith("mine: atk_[redacted]")


def test_a_policy_refusal_keeps_the_form_and_names_the_rule(tmp_path: Any,
                                                           clock: FakeClock) -> None:
    """Under a policy, a create it forbids is a 403 page naming the rule and its limit,
    the fields as typed."""
    from authtoken import SQLRepository

    repository = SQLRepository(f"sqlite:///{tmp_path / 'policy.db'}")
    with Security(repository, secret_keys=["k"], clock=clock,
                  policy=Policy(max_lifetime="10d")) as security:
        client, _, csrf = signed_in(security, expires="5d")
        before = stored(security)
        answer = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                                 "expires": "1d", "max_lifetime": "30d"})
        assert answer.status_code == 403
        said = message(answer.text)
        assert "max_lifetime" in said and "10d" in said
        assert field(answer.text, "max_lifetime") == "30d"
        assert stored(security) == before


# -- renew ------------------------------------------------------------------------------------
def test_renew_posts_then_confirms(security: Security, clock: FakeClock) -> None:
    """Renew posts with the page's CSRF value, moves the expiry through the caller's
    session and comes back to the list with a note naming the new expiry."""
    client, root, csrf = signed_in(security)
    key = child(security, root, expires="1d", max_lifetime="7d")
    clock.advance(hours=12)
    answer = client.post(f"/ui/tokens/{key}/renew", data={"csrf": csrf, "by": ""},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    assert security.get_auth_token(key).expires == clock() + timedelta(days=1)
    page = client.get(answer.headers["location"]).text
    notice = re.search(r'id="notice">(.*?)</p>', page, re.DOTALL)
    assert notice is not None and key in notice.group(1)
    assert when(clock() + timedelta(days=1)) in notice.group(1)
    by = client.post(f"/ui/tokens/{key}/renew", data={"csrf": csrf, "by": "3d"})
    assert by.status_code == 200 and 'id="notice"' in by.text
    assert security.get_auth_token(key).expires == clock() + timedelta(days=3)
    events = [e for e in security.audit_events(token_key=key) if e.action == "renew"]
    assert [e.outcome for e in events] == ["ok", "ok"]
    assert events[0].actor is not None and events[0].actor.startswith("token:")


def test_no_link_makes_the_page_say_a_token_was_renewed(security: Security) -> None:
    """The notice comes from the action itself (a signed cookie), never from the query:
    ``?renewed=`` shows nothing and echoes no text."""
    client, root, _ = signed_in(security)
    for value in ("aaaaaaaaaaaaaaaa", "<script>alert(1)</script>", root):
        page = client.get("/ui/", params={"renewed": value}).text
        assert 'id="notice"' not in page and "alert(1)" not in page and root not in page


@pytest.mark.parametrize("by", ["0d", "-1d", "2031-01-31", "2031-01-31T00:00:00Z", "soon"])
def test_a_bad_renewal_keeps_what_was_typed(security: Security, by: str) -> None:
    """A ``by`` that is no positive duration: 422, the list again with the reason and
    the value typed in that row, the expiry unchanged."""
    client, root, csrf = signed_in(security)
    key = child(security, root, expires="1d", max_lifetime="7d")
    before = stored(security)
    answer = client.post(f"/ui/tokens/{key}/renew", data={"csrf": csrf, "by": by})
    assert answer.status_code == 422
    assert "by" in message(answer.text)
    kept = re.search(r'name="by"[^>]*value="([^"]*)"', row(answer.text, key))
    assert kept is not None and html.unescape(kept.group(1)) == by
    assert stored(security) == before


def test_renew_refusals(security: Security, clock: FakeClock) -> None:
    """Not renewable 422, revoked 409, expired 409, another user's 403, a token of the
    same user not derived from the signed-in one 403, unknown 404, a token string as
    ``by`` 422 and masked -- with the page's status and nothing moved."""
    client, root, csrf = signed_in(security)
    plain = child(security, root, expires="1d")
    revoked = child(security, root, expires="1d", max_lifetime="7d")
    security.revoke_auth_token_by_key(revoked)
    expired = child(security, root, expires="1h", max_lifetime="7d")
    renewable = child(security, root, expires="1d", max_lifetime="7d")
    bobs = security.restore_auth_token(security.authorize_token(
        AuthToken("x", expires="1d", max_lifetime="7d"), user="bob")).key
    sibling = security.restore_auth_token(security.authorize_token(
        AuthToken("x", expires="1d", max_lifetime="7d"), user="alice")).key
    clock.advance(hours=2)
    before = stored(security)
    for key, status in ((plain, 422), (revoked, 409), (expired, 409), (bobs, 403),
                        (sibling, 403), ("aaaaaaaaaaaaaaaa", 404)):
        answer = client.post(f"/ui/tokens/{key}/renew", data={"csrf": csrf})
        assert answer.status_code == status, (key, answer.text)
        assert message(answer.text)
    masked = client.post(f"/ui/tokens/{renewable}/renew", data={"csrf": csrf, "by": root})
    assert masked.status_code == 422 and root not in masked.text
    assert stored(security) == before


@pytest.mark.parametrize("case", ["no csrf", "wrong csrf", "another origin", "json"])
def test_a_forged_renewal_is_refused(security: Security, case: str) -> None:
    """Renew without the page's CSRF value, from another origin or not as a form: 403
    or 415, and the expiry does not move."""
    client, root, csrf = signed_in(security)
    key = child(security, root, expires="1d", max_lifetime="7d")
    before = stored(security)
    url = f"/ui/tokens/{key}/renew"
    if case == "no csrf":
        answer = client.post(url, data={"by": "2d"})
    elif case == "wrong csrf":
        answer = client.post(url, data={"csrf": "0" * 64, "by": "2d"})
    elif case == "another origin":
        answer = client.post(url, data={"csrf": csrf}, headers={"origin": "http://evil.test"})
    else:
        answer = client.post(url, json={"csrf": csrf, "by": "2d"})
    assert answer.status_code == (415 if case == "json" else 403)
    assert stored(security) == before


# -- in a real browser ------------------------------------------------------------------------
@pytest.mark.slow
def test_job_fields_in_chromium(chrome: Any, site: tuple[Security, str]) -> None:
    """Create a renewable, use-limited token through the form, see a refusal keep the
    typed fields, then renew from the list and read the confirmation."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    security, url = site
    wait = WebDriverWait(chrome, 10)
    root = security.authorize_token(AuthToken("jobs:run"), user="alice")
    chrome.get(f"{url}/ui/")
    wait.until(ready.presence_of_element_located((By.ID, "credential"))).send_keys(root)
    chrome.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.ID, "create")))
    chrome.get_log("browser")  # forget what came before (a 401 of an older cookie)

    # a refusal: the reason, and every field as typed
    typed = {"scope": "jobs:run", "description": "nightly", "expires": "1d",
             "max-uses": "0", "max-lifetime": "7d"}
    for name, value in typed.items():
        if name == "expires":  # the expiry picker: a choice, not typing
            Select(chrome.find_element(By.ID, name)).select_by_value(value)
        else:
            chrome.find_element(By.ID, name).send_keys(value)
    chrome.find_element(By.ID, "create-token").click()
    said = wait.until(ready.presence_of_element_located((By.ID, "message")))
    assert "max_uses" in said.text
    for name, value in typed.items():
        assert chrome.find_element(By.ID, name).get_attribute("value") == value, name
    assert len(security.list_auth_tokens()) == 1
    # the browser logs the 422 itself, and nothing else: no script error, no CSP refusal
    severe = [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    assert all("status of 422" in m for m in severe), severe

    # corrected, it is made
    chrome.find_element(By.ID, "max-uses").clear()
    chrome.find_element(By.ID, "max-uses").send_keys("2")
    chrome.find_element(By.ID, "create-token").click()
    string = wait.until(ready.presence_of_element_located((By.ID, "token-string"))) \
        .get_attribute("value")
    assert string is not None and TOKEN_SHAPE.fullmatch(string)
    made = security.restore_auth_token(string)
    assert made.max_uses == 2 and made.max_lifetime == timedelta(days=7)
    security.login_by_auth_token(string)

    # the list: uses left and renewable-until; renew by three days
    chrome.find_element(By.ID, "back").click()
    line = wait.until(ready.presence_of_element_located((By.ID, f"token-{made.key}")))
    assert line.find_element(By.CLASS_NAME, "max-uses").text == "2 (1 left)"
    assert made.created_at is not None
    until = when(made.created_at + timedelta(days=7))
    assert line.find_element(By.CLASS_NAME, "renewable-until").text == until
    first = security.get_auth_token(str(made.key)).expires
    assert first is not None
    line.find_element(By.CLASS_NAME, "by").send_keys("3d")
    line.find_element(By.CLASS_NAME, "renew").click()
    notice = wait.until(ready.presence_of_element_located((By.ID, "notice")))
    renewed = security.get_auth_token(str(made.key)).expires
    assert renewed is not None and renewed > first + timedelta(days=1)
    assert str(made.key) in notice.text and when(renewed) in notice.text
    assert string not in chrome.page_source and root not in chrome.page_source
    assert [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"] == []
