"""The admin's views in real headless Chromium: filtering every user's tokens, revoking
another user's token and then all of a user's, and the audit trail explaining a refused
login -- clicked through as a person does, over uvicorn and a real SQLite file."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest

from authtoken import AuthToken, LoginError, Script, Security, path_binding

pytestmark = pytest.mark.slow


def _by_id(chrome: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(chrome, 10).until(
        ready.presence_of_element_located((By.ID, element_id)))


def _rows_become(chrome: Any, expected: list[str]) -> list[Any]:
    """The token rows once their ids are ``expected``: a filter reloads the page, and
    until the new one is in, the old one's rows are still there (or going stale)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(driver: Any) -> list[Any] | None:
        rows = driver.find_elements(By.CSS_SELECTOR, "#tokens tbody tr")
        try:
            ids = [r.get_attribute("id") for r in rows]
        except StaleElementReferenceException:
            return None
        return rows if ids == expected else None

    rows: list[Any] = WebDriverWait(chrome, 10).until(settled)
    return rows


def _sign_in(chrome: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    chrome.delete_all_cookies()
    chrome.get(f"{url}/ui/")
    _by_id(chrome, "credential").send_keys(token)
    chrome.find_element(By.ID, "sign-in").click()
    _by_id(chrome, "create")


def test_an_admin_filters_and_revokes_another_users_tokens(
        chrome: Any, site: tuple[Security, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    security, url = site
    admin = security.authorize_token(AuthToken("authtoken:admin"), user="root")
    nightly = AuthToken(f"reports:read {path_binding('/jobs/nightly report.py')}",
                        description="nightly")
    nightly_string = security.authorize_token(nightly, user="bob")
    weekly = AuthToken("reports:read", description="weekly", expires="3d")
    security.authorize_token(weekly, user="bob")
    other = AuthToken("jobs:run", description="carol's")
    security.authorize_token(other, user="carol")

    _sign_in(chrome, url, admin)
    chrome.find_element(By.ID, "nav-all").click()
    _by_id(chrome, "filters")
    # by user, then by the script as a person writes its path
    _by_id(chrome, "f-user").send_keys("bob")
    chrome.find_element(By.ID, "f-script").send_keys("nightly report.py")
    chrome.find_element(By.ID, "filter").click()
    rows = _rows_become(chrome, [f"token-{nightly.key}"])
    assert "/jobs/nightly report.py" in rows[0].text  # readable beside the canonical form
    # by state: bob's token expiring within 7 days
    chrome.find_element(By.ID, "f-script").clear()
    Select(chrome.find_element(By.ID, "f-state")).select_by_value("expiring")
    chrome.find_element(By.ID, "filter").click()
    _rows_become(chrome, [f"token-{weekly.key}"])

    # revoke bob's nightly token, confirming; the page says so and the token is dead
    chrome.get(f"{url}/ui/all?user=bob")
    _by_id(chrome, f"token-{nightly.key}").find_element(By.CLASS_NAME, "revoke").click()
    _by_id(chrome, "confirm-revoke").click()
    notice = _by_id(chrome, "notice")
    assert f"Token {nightly.key} revoked" in notice.text
    assert "/ui/all" in chrome.current_url
    with pytest.raises(LoginError):
        security.login_by_auth_token(nightly_string,
                                     script=Script(path="/jobs/nightly report.py"))

    # revoke all of bob's, behind a confirmation; carol's token lives on
    _by_id(chrome, "revoke-all").click()
    _by_id(chrome, "confirm-revoke-all").click()
    assert "1 token of bob revoked" in _by_id(chrome, "notice").text
    assert all(t.revoked_at is not None for t in security.list_auth_tokens(user="bob",
                                                                            include_revoked=True))
    assert security.get_auth_token(str(other.key)).revoked_at is None


def test_the_audit_trail_explains_a_refused_login(chrome: Any,
                                                  site: tuple[Security, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    security, url = site
    alice = security.authorize_token(AuthToken("jobs:run"), user="alice")
    bound = AuthToken(f"jobs:run {path_binding('/jobs/export.py')}", description="export")
    bound_string = security.authorize_token(bound, user="alice")
    with contextlib.suppress(LoginError):  # the wrong script tries it
        security.login_by_auth_token(bound_string, script=Script(path="/jobs/other.py"))
    security.flush()

    _sign_in(chrome, url, alice)
    chrome.find_element(By.ID, "nav-audit").click()
    Select(_by_id(chrome, "a-outcome")).select_by_value("refused")
    Select(chrome.find_element(By.ID, "a-action")).select_by_value("login")
    chrome.find_element(By.ID, "filter").click()
    WebDriverWait(chrome, 10).until(lambda driver: "outcome=refused" in driver.current_url)
    rows = _by_id(chrome, "events").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 1
    why = rows[0].find_element(By.CLASS_NAME, "why").text
    assert "ScriptNotAuthorized" in why
    assert "bind the token to it" in why            # what to change
    assert "A login like it now" in why and "/jobs/other.py" in rows[0].text
    assert bound_string not in chrome.page_source


def test_a_file_is_pinned_by_its_digest_computed_in_the_browser(
        chrome: Any, site: tuple[Security, str], tmp_path: Path) -> None:
    """The create form's "pin to the code of a file" reads the file in the browser and
    fills in its SHA-256: the file is never uploaded."""
    from selenium.webdriver.common.by import By

    security, url = site
    script = tmp_path / "nightly.py"
    script.write_bytes(b"print('nightly')\n")
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    _sign_in(chrome, url, security.authorize_token(AuthToken("jobs:run"), user="alice"))
    chrome.find_element(By.ID, "pin-file").send_keys(str(script))
    field = chrome.find_element(By.ID, "pin-digests")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(chrome, 10).until(lambda _: digest in (field.get_attribute("value") or ""))
    chrome.find_element(By.ID, "scope").send_keys("jobs:run")
    chrome.find_element(By.ID, "create-token").click()
    string = _by_id(chrome, "token-string").get_attribute("value")
    assert string is not None
    assert f"sha256:{digest}" in security.restore_auth_token(string).scopes
