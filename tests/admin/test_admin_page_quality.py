"""The token page as a person meets it, in real headless Chromium: every page passes
axe-core (WCAG 2.0/2.1 A and AA, and best practice), fits a 390 px phone without sideways
scrolling, and can be worked with the keyboard alone; the run saves a screenshot of each
page at 1280 and 390 px (``support.screens``: ``build/artifacts/screenshots/``).

A check a page fails is marked ``xfail(strict=True)`` with what fails (``_xfail``), so
it turns into an error -- a reminder to drop the mark -- the day the page passes it.

The browser and the served application are the ``chrome`` and ``site`` fixtures of
``conftest.py``; axe-core comes from npm (``support.axe``).
"""

from __future__ import annotations

import contextlib
import json
import struct
import urllib.parse
from typing import Any

import pytest
from support import axe
from support.axe import format_violations, inject_axe, run_axe
from support.screens import (
    focused,
    overflows,
    save_screenshot,
    set_width,
    tab_order,
    tab_to,
    unmarked_focus,
)

from authtoken import AuthToken, LoginError, Security, digest_binding, path_binding

pytestmark = pytest.mark.slow

DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


# -- the pages --------------------------------------------------------------------------------
def _wait_for(chrome: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(chrome, 10).until(
        ready.presence_of_element_located((By.ID, element_id)))


def _sign_in(chrome: Any, url: str, credential: str) -> None:
    from selenium.webdriver.common.by import By

    chrome.delete_all_cookies()
    chrome.get(f"{url}/ui/")
    _wait_for(chrome, "credential").send_keys(credential)
    chrome.find_element(By.ID, "sign-in").click()


def _populate(security: Security) -> str:
    """Alice's tokens, one of each kind the list shows; her root token's string."""
    root = security.authorize_token(
        AuthToken("jobs:run jobs:read reports:read reports:read,reports:write authtoken:admin",
                  description="root"), user="alice")
    pinned = f"{path_binding('/jobs/nightly report.py')} {digest_binding(DIGEST)} jobs:run"
    security.authorize_token(AuthToken(pinned, description="nightly <report>", max_uses=5),
                             user="alice")
    for name in ("weekly", "monthly"):
        security.authorize_token(AuthToken("reports:read", description=name, expires="7d",
                                           max_lifetime="90d"), user="alice")
    gone = security.authorize_token(AuthToken("jobs:read", description="old"), user="alice")
    security.revoke_auth_token(gone)
    # another user's token, and a refused login for the audit trail to explain
    bound = security.authorize_token(AuthToken(f"{path_binding('/jobs/bob.py')} jobs:run",
                                               description="bob's job"), user="bob")
    with contextlib.suppress(LoginError):
        security.login_by_auth_token(bound)
    security.flush()
    return root


def _create(chrome: Any) -> None:
    """Fill the create form with a pinned, use-limited, script-bound token and send it."""
    from selenium.webdriver.common.by import By

    # a comma in a scope is a slip the page warns about
    _wait_for(chrome, "scope").send_keys("jobs:read reports:read,reports:write")
    chrome.find_element(By.ID, "bind-paths").send_keys("/jobs/my job.py")
    chrome.find_element(By.ID, "pin-digests").send_keys(DIGEST)
    chrome.find_element(By.ID, "description").send_keys("nightly report")
    chrome.find_element(By.ID, "max-uses").send_keys("3")
    chrome.find_element(By.ID, "create-token").click()
    _wait_for(chrome, "token-string")


def open_page(chrome: Any, site: tuple[Security, str], page: str) -> None:
    """Bring ``chrome`` to ``page`` of the token page served by ``site``."""
    from selenium.webdriver.common.by import By

    security, url = site
    if page == "sign-in":
        chrome.delete_all_cookies()
        chrome.get(f"{url}/ui/")
        _wait_for(chrome, "credential")
        return
    if page == "sign-in-refused":
        _sign_in(chrome, url, "atk_aaaaaaaaaaaaaaaa." + "A" * 43 + "." + "B" * 43)
        _wait_for(chrome, "message")
        return
    root = _populate(security)
    _sign_in(chrome, url, root)
    _wait_for(chrome, "tokens")
    if page == "tokens":
        chrome.get(f"{url}/ui/?revoked=1")  # every kind of row, the revoked one too
        _wait_for(chrome, "tokens")
    elif page == "tokens-refused":  # the create form sent back with the reason
        _wait_for(chrome, "description").send_keys("no scope given")  # refused: kept
        chrome.find_element(By.ID, "create-token").click()
        _wait_for(chrome, "message")
    elif page == "created":
        _create(chrome)
    elif page == "confirm-revoke":
        key = security.restore_auth_token(root).key
        chrome.find_element(By.ID, f"token-{key}") \
            .find_element(By.CLASS_NAME, "revoke").click()
        _wait_for(chrome, "confirm-revoke")
    elif page == "edit":
        key = security.restore_auth_token(root).key
        chrome.get(f"{url}/ui/tokens/{key}/edit")
        _wait_for(chrome, "edit")
    elif page == "all":  # the admin's view, filtered to one user
        chrome.get(f"{url}/ui/all?user=bob&state=live")
        _wait_for(chrome, "tokens")
    elif page == "revoke-all":
        chrome.get(f"{url}/ui/revoke-all?user=bob")
        _wait_for(chrome, "confirm-revoke-all")
    elif page == "audit":  # the refused login explained
        chrome.get(f"{url}/ui/audit?outcome=refused&action=login")
        _wait_for(chrome, "events")
    elif page == "error":  # a token that is not there
        chrome.get(f"{url}/ui/tokens/atk_zzzzzzzzzzzzzzzz/revoke")
        _wait_for(chrome, "message")
    else:
        raise ValueError(f"no page {page!r}")


def _xfail(page: str, reason: str) -> Any:
    """``page`` as a parameter whose test fails today with an ``AssertionError`` for
    ``reason`` (any other error -- a page that no longer opens, axe that did not run --
    is a failure)."""
    return pytest.param(page, marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                                      reason=reason))


PAGES = ["sign-in", "sign-in-refused", "tokens", "tokens-refused", "created",
         "confirm-revoke", "edit", "all", "revoke-all", "audit", "error"]


# -- the helpers themselves -------------------------------------------------------------------
def _data_url(body: str) -> str:
    html = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width">'
            f"<title>fixture</title></head><body><main><h1>Fixture</h1>{body}</main>"
            "</body></html>")
    return "data:text/html;charset=utf-8," + urllib.parse.quote(html)


def test_axe_finds_a_missing_alt_and_low_contrast(chrome: Any) -> None:
    chrome.get(_data_url(
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" id="picture">'
        '<p id="faint" style="color:#aaa;background:#fff">faint text</p>'))
    violations = run_axe(chrome)
    found = {v["id"]: [t for n in v["nodes"] for t in n["target"]] for v in violations}
    assert found == {"image-alt": ["#picture"], "color-contrast": ["#faint"]}, \
        format_violations(violations)
    text = format_violations(violations)
    assert "image-alt (critical)" in text and "#faint" in text and "2.32" in text
    assert run_axe(chrome, context="#faint")[0]["id"] == "color-contrast"


def test_axe_passes_a_clean_page(chrome: Any) -> None:
    chrome.get(_data_url('<p>Plain <a href="#top">text</a>.</p>'))
    violations = run_axe(chrome)
    assert violations == [], format_violations(violations)
    assert format_violations([]) == "no violations"


def test_axe_runs_under_the_pages_content_security_policy(
        chrome: Any, site: tuple[Security, str]) -> None:
    """The page allows only its own nonce'd script; axe, injected by WebDriver, runs
    all the same -- an empty answer is axe's verdict, not a script that never ran."""
    import httpx

    _, url = site
    policy = httpx.get(f"{url}/ui/").headers["content-security-policy"]
    assert "script-src 'nonce-" in policy and "unsafe-inline" not in policy
    open_page(chrome, site, "sign-in")
    lock = json.loads((axe.AXE_DIR / "package-lock.json").read_text(encoding="utf-8"))
    assert inject_axe(chrome) == lock["packages"]["node_modules/axe-core"]["version"]
    chrome.execute_script(
        "const img = document.createElement('img'); img.id = 'planted';"
        "img.src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw=';"
        "document.querySelector('main').append(img);")
    found = run_axe(chrome, context="main")
    assert [(v["id"], n["target"]) for v in found for n in v["nodes"]
            if v["id"] == "image-alt"] == [("image-alt", ["#planted"])]


def test_a_script_that_leaves_no_axe_is_an_error_not_a_clean_page(
        chrome: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    decoy = tmp_path / "axe.min.js"
    decoy.write_text("window.notAxe = 1;", encoding="utf-8")
    monkeypatch.setattr(axe, "AXE_SCRIPT", decoy)
    chrome.get(_data_url("<p>text</p>"))
    with pytest.raises(RuntimeError, match="axe-core did not load"):
        run_axe(chrome)
    assert chrome.execute_script("return window.notAxe") == 1  # the decoy did run


@pytest.mark.parametrize("ci", [False, True])
def test_without_axe_a_test_skips_locally_and_fails_in_ci(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any, ci: bool) -> None:
    monkeypatch.setattr(axe, "AXE_SCRIPT", tmp_path / "missing" / "axe.min.js")
    monkeypatch.setattr(axe, "IN_CI", ci)
    reason = axe.unavailable_reason()
    assert reason is not None and "npm ci --prefix tests/support/axe" in reason
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="axe-core is not installed"):
        axe.require_axe()


def test_overflows_names_the_element_too_wide_for_the_window(chrome: Any) -> None:
    set_width(chrome, 390)
    chrome.get(_data_url(
        '<table id="wide"><tr><td><div style="width:900px">wide</div></td></tr></table>'
        '<div style="overflow-x:auto"><table><tr><td><div style="width:900px">scrolls'
        "</div></td></tr></table></div><p>fits</p>"))
    found = overflows(chrome)
    assert len(found) == 1 and found[0].startswith("table#wide "), found
    set_width(chrome, 1280)
    assert overflows(chrome) == []


def test_tab_order_names_what_the_keyboard_reaches(chrome: Any) -> None:
    chrome.get(_data_url(
        '<label for="a">First field</label><input id="a">'
        '<button>Go</button><button aria-label=""><svg width="8" height="8"></svg></button>'
        '<a href="#x">A link</a>'))
    assert tab_order(chrome, 5) == ["First field", "Go", "", "A link", "<document>"]
    assert focused(chrome) is None
    assert tab_to(chrome, "A link").get_attribute("href").endswith("#x")
    assert focused(chrome) == "a"
    with pytest.raises(AssertionError, match="does not reach 'Nowhere'"):
        tab_to(chrome, "Nowhere")


def test_tab_order_counts_a_date_field_once_and_reports_a_trap(chrome: Any) -> None:
    chrome.get(_data_url('<label>Day <input type="date"></label><button>After</button>'))
    assert tab_order(chrome, 3) == ["Day", "After", "<document>"]
    chrome.get(_data_url(
        '<button>Before</button><label>Stuck <input onkeydown="if (event.key === '
        "'Tab') event.preventDefault()\"></label><button>Never</button>"))
    assert tab_order(chrome, 4) == ["Before", "Stuck", "<trapped in Stuck>"]


def test_unmarked_focus_names_a_control_whose_focus_is_hidden(chrome: Any) -> None:
    chrome.get(_data_url('<button>Ringed</button><button style="outline:none">Bare</button>'
                         '<button style="outline:none;box-shadow:0 0 0 3px #005fcc">'
                         "Shadowed</button>"))
    assert unmarked_focus(chrome, 4) == ["Bare"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_save_screenshot_writes_the_whole_page(chrome: Any, tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHTOKEN_ARTIFACTS", str(tmp_path))
    chrome.get(_data_url('<div style="height:3000px">tall</div>'))
    path = save_screenshot(chrome, "fixture", 390)
    assert path == tmp_path / "screenshots" / "fixture-390.png"
    width, height = _png_size(path.read_bytes())
    assert width == 390 and height >= 3000
    with pytest.raises(ValueError, match="screenshot name"):
        save_screenshot(chrome, "../escape", 390)


# -- today's page -----------------------------------------------------------------------------
_AXE_PAGES = PAGES


@pytest.mark.parametrize("page", _AXE_PAGES)
def test_axe_finds_no_violations(chrome: Any, site: tuple[Security, str], page: str) -> None:
    open_page(chrome, site, page)
    for width in (1280, 390):
        set_width(chrome, width)
        violations = run_axe(chrome)
        assert violations == [], f"at {width} px:\n{format_violations(violations)}"


_OVERFLOW_PAGES = PAGES


@pytest.mark.parametrize("page", _OVERFLOW_PAGES)
def test_fits_a_390_px_phone_and_a_1280_px_screen(chrome: Any, site: tuple[Security, str],
                                                  page: str) -> None:
    open_page(chrome, site, page)
    for width in (390, 1280):
        set_width(chrome, width)
        found = overflows(chrome)
        assert found == [], f"at {width} px: {found}"


@pytest.mark.parametrize("page", PAGES)
def test_screenshots_at_1280_and_390_px(chrome: Any, site: tuple[Security, str],
                                        page: str) -> None:
    open_page(chrome, site, page)
    for width in (1280, 390):
        path = save_screenshot(chrome, f"page-{page}", width)
        shot_width, shot_height = _png_size(path.read_bytes())
        assert shot_width >= width and shot_height > 100, (path, shot_width, shot_height)


_CONTROLS = """
return [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]')]
  .filter(e => e.tabIndex >= 0 && !e.disabled && e.getClientRects().length > 0).length;
"""
_KEYBOARD_PAGES = [p for p in PAGES if p != "audit"]  # its token links repeat, by design


@pytest.mark.parametrize("page", _KEYBOARD_PAGES)
def test_the_keyboard_reaches_every_control_by_a_unique_name(
        chrome: Any, site: tuple[Security, str], page: str) -> None:
    """Tab walks every control once, in order, each with a name of its own and its focus
    shown, then leaves the page: nothing traps the focus, nothing is mouse-only."""
    open_page(chrome, site, page)
    set_width(chrome, 1280)
    controls = chrome.execute_script(_CONTROLS)
    assert controls > 0
    names = tab_order(chrome, controls + 1)
    assert names[-1] == "<document>", f"the focus did not leave the page: {names}"
    reached = names[:-1]
    assert "<document>" not in reached, f"fewer controls reached than exist: {names}"
    assert "" not in reached, f"a control without a name: {names}"
    assert unmarked_focus(chrome, controls) == []
    repeated = sorted({n for n in reached if reached.count(n) > 1})
    assert repeated == [], f"controls sharing a name: {repeated}"


def test_a_token_is_made_copied_and_revoked_with_the_keyboard_alone(
        chrome: Any, site: tuple[Security, str]) -> None:
    """Sign in, create a token, copy it, go back and revoke it: Tab, typing, Enter and
    Space only, never a click."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    security, url = site

    def type_keys(*keys: str) -> None:
        ActionChains(chrome).send_keys(*keys).perform()

    root = security.authorize_token(AuthToken("jobs:run jobs:read", description="root"),
                                    user="alice")
    chrome.delete_all_cookies()
    chrome.get(f"{url}/ui/")
    _wait_for(chrome, "credential")
    tab_to(chrome, "Your token")
    type_keys(root, Keys.ENTER)
    _wait_for(chrome, "tokens")
    tab_to(chrome, "Scopes")
    type_keys("jobs:read")
    tab_to(chrome, "Description")
    type_keys("by keyboard", Keys.ENTER)  # Enter in a text field sends its form
    shown = _wait_for(chrome, "token-string")
    string = shown.get_attribute("value")
    made = security.login_by_auth_token(string)
    chrome.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    tab_to(chrome, "Copy")
    type_keys(Keys.SPACE)
    WebDriverWait(chrome, 10).until(
        ready.text_to_be_present_in_element((By.ID, "copied"), "Copied"))
    tab_to(chrome, "Back to the tokens")
    type_keys(Keys.ENTER)
    _wait_for(chrome, f"token-{made.token_key}")
    # the new token's revoke control: the row's own, reached by Tab from the top
    target = chrome.find_element(By.ID, f"token-{made.token_key}") \
        .find_element(By.CLASS_NAME, "revoke")
    for _ in range(60):
        type_keys(Keys.TAB)
        if chrome.switch_to.active_element == target:
            break
    else:
        raise AssertionError("Tab never reaches the new token's revoke control")
    type_keys(Keys.ENTER)
    _wait_for(chrome, "confirm-revoke")
    tab_to(chrome, "Revoke")
    type_keys(Keys.ENTER)
    _wait_for(chrome, "tokens")
    assert security.get_auth_token(made.token_key).revoked_at is not None
    assert security.get_auth_token(security.restore_auth_token(root).key).revoked_at is None
