"""Single sign-on on the token page, in a real headless Chromium, against the project's
OpenID provider and panva's: signing in by the provider's real login form, admins by
their group, a token made with no token; what the way back refuses; the page session;
token sign-in beside it; a tour of the page signed in by single sign-on (the screenshots
of docs/admin.md).  The page, the providers and the steps are ``sso_page_support``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sso_page_support import (
    KEYS,
    PENDING_COOKIE,
    SSO_COOKIE,
    Stage,
    at,
    by_id,
    cookies,
    css,
    fresh_browser,
    nothing_kept,
    panva_stage,
    plant,
    project_stage,
    provider_login,
    shoot,
    sso_sign_in,
    status,
    wait_for,
)
from support.panva import panva_provider
from support.screens import save_screenshot, set_width

from authtoken import AuthToken, MemoryRepository, Security, TokenRevoked
from authtoken.admin import DelegationTokenAuth, OIDCSignIn, create_app

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Stage]:
    """The page signing in with the project's own provider (``project_stage``)."""
    with project_stage(tmp_path) as stage:
        yield stage


@pytest.fixture
def panva(tmp_path: Path) -> Iterator[Stage]:
    """The page signing in with panva's oidc-provider (``panva_stage``)."""
    with panva_stage(tmp_path) as stage:
        yield stage


@pytest.fixture
def browser(chrome: Any) -> Iterator[Any]:
    """The module's Chromium with no cookies from an earlier test, at 1280 px."""
    with fresh_browser(chrome) as driver:
        yield driver


# -- signing in -----------------------------------------------------------------------------
def test_sso_sign_in_with_the_projects_provider(browser: Any, project: Stage) -> None:
    """alice signs in by the provider's real login form, lands on her token page with no
    token, is an admin by her group, and creates a root token."""
    sso_sign_in(browser, project, "alice", screenshots="sso-project")
    assert project.security.list_auth_tokens() == []
    held = cookies(browser)
    assert SSO_COOKIE in held and PENDING_COOKIE not in held
    assert held[SSO_COOKIE]["httpOnly"] and held[SSO_COOKIE]["sameSite"] == "Lax"
    assert held[SSO_COOKIE]["path"] == "/ui"
    assert "Every user's tokens" in by_id(browser, "nav-all").text
    shoot(browser, "sso-project-tokens")
    # A token of her own, with no token to sign in with: a root token.
    by_id(browser, "scope").send_keys("reports:read")
    by_id(browser, "description").send_keys("nightly report")
    by_id(browser, "create-token").click()
    wait_for(browser, lambda d: css(d, "#token-string"), "no token was shown")
    string = by_id(browser, "token-string").get_attribute("value")
    assert string.startswith("atk_")
    shoot(browser, "sso-project-created")
    made = project.security.restore_auth_token(string)
    assert made.user == "alice" and made.parent_key is None
    assert list(made.scopes) == ["reports:read"]
    # The admin's view answers her.
    by_id(browser, "nav-all").click()
    at(browser, f"{project.ui}/all")
    assert css(browser, "h1")[0].text.startswith("Every user")
    shoot(browser, "sso-project-all")


def test_a_user_outside_the_admin_group_is_no_admin(browser: Any, project: Stage) -> None:
    """bob signs in the same way; he is not in the configured group: no admin's view, and
    ``/ui/all`` answers 403."""
    sso_sign_in(browser, project, "bob")
    assert css(browser, "#nav-all") == []
    assert "(admin)" not in css(browser, "header")[0].text
    browser.get(f"{project.ui}/all")
    assert "Every user" not in css(browser, "h1")[0].text
    assert status(browser) == 403


def test_sso_sign_in_with_panva(browser: Any, panva: Stage) -> None:
    """The same against panva's oidc-provider: its login and consent pages; alice is an
    admin by the ``groups`` claim, bob is not."""
    sso_sign_in(browser, panva, "alice", screenshots="sso-panva")
    assert css(browser, "#nav-all") and "(admin)" in css(browser, "header")[0].text
    by_id(browser, "scope").send_keys("jobs:run")
    by_id(browser, "create-token").click()
    wait_for(browser, lambda d: css(d, "#token-string"), "no token was shown")
    made = panva.security.restore_auth_token(
        by_id(browser, "token-string").get_attribute("value"))
    assert made.user == "alice" and made.parent_key is None
    by_id(browser, "sign-out").click()
    wait_for(browser, lambda d: css(d, "#sso"), "signing out did not end on the sign-in page")
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # panva's own session too
    sso_sign_in(browser, panva, "bob")
    assert css(browser, "#nav-all") == []
    browser.get(f"{panva.ui}/all")
    assert status(browser) == 403


def test_a_tampered_state_is_refused(browser: Any, project: Stage) -> None:
    """The provider's answer carried back with another ``state``: an error page, and
    nobody is signed in."""
    browser.get(f"{project.ui}/")
    by_id(browser, "sso").click()
    at(browser, project.provider.issuer)
    answer = project.provider.sign_in(browser.current_url)  # a true code, for this request
    assert set(answer) >= {"code", "state"}
    browser.get(f"{project.ui}/sso/callback?" + urlencode({**answer, "state": "forged"}))
    assert status(browser) == 400
    text = css(browser, "main")[0].text
    assert "start it again" in text and answer["code"] not in browser.page_source
    shoot(browser, "sso-error-state")
    nothing_kept(browser, project)


#: What the provider says on the way back that must sign nobody in: the person pressed
#: Cancel (``error=access_denied``); an ID token whose nonce is not this sign-in's (a
#: replayed token); a callback naming another issuer (RFC 9207: a mix-up).
REFUSALS = ("cancel", "nonce", "issuer")


def refused_at_the_callback(driver: Any, stage: Stage, refusal: str) -> None:
    """Start the sign-in and come back with the provider's refusal ``refusal``."""
    provider = stage.provider
    if refusal == "nonce":
        provider.id_token_claims = {"nonce": "another sign-in's nonce"}
    elif refusal == "issuer":
        provider.callback_iss = "http://127.0.0.1:9/realms/evil"
    driver.get(f"{stage.ui}/")
    by_id(driver, "sso").click()
    if refusal == "cancel":
        at(driver, provider.issuer)
        css(driver, 'button[value="cancel"]')[0].click()
    else:
        provider_login(driver, stage, "alice")
    at(driver, f"{stage.ui}/sso/callback")
    assert ("error=access_denied" in driver.current_url) == (refusal == "cancel")


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refusal_on_the_way_back_signs_nobody_in(browser: Any, project: Stage,
                                                   refusal: str) -> None:
    """Cancel at the provider, a replayed ID token, another issuer's callback: an error
    page, and nothing is kept."""
    refused_at_the_callback(browser, project, refusal)
    assert status(browser) >= 400 and css(browser, "#user") == []
    nothing_kept(browser, project)


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refusal_on_the_way_back_says_the_provider_did_not_sign_you_in(
        browser: Any, project: Stage, refusal: str) -> None:
    """The answer is the sign-in page (401) saying why and offering to sign in again --
    not a page saying the provider cannot be reached."""
    refused_at_the_callback(browser, project, refusal)
    if refusal == "cancel":
        shoot(browser, "sso-error-cancel")
    assert "cannot be reached" not in css(browser, "main")[0].text
    assert status(browser) == 401
    assert "did not sign you in" in by_id(browser, "message").text
    assert css(browser, "#sso"), "the answer offers to sign in again"


def test_a_callback_without_the_round_trip_cookie_is_refused(browser: Any,
                                                             project: Stage) -> None:
    """A browser that did not start the sign-in (its round-trip cookie gone) is sent the
    provider's true answer: an error page, nobody signed in."""
    browser.get(f"{project.ui}/")
    by_id(browser, "sso").click()
    at(browser, project.provider.issuer)
    assert PENDING_COOKIE in cookies(browser)
    browser.execute_cdp_cmd("Network.deleteCookies", {"name": PENDING_COOKIE,
                                                      "url": f"{project.ui}/"})
    assert PENDING_COOKIE not in cookies(browser)
    provider_login(browser, project, "alice")
    at(browser, f"{project.ui}/sso/callback")
    assert status(browser) == 400
    assert "start it again" in css(browser, "main")[0].text
    nothing_kept(browser, project)


def test_sign_out_ends_the_sso_session(browser: Any, project: Stage) -> None:
    """Sign out deletes the page session: the page asks to sign in again."""
    sso_sign_in(browser, project, "alice")
    by_id(browser, "sign-out").click()
    wait_for(browser, lambda d: css(d, "#sso"), "signing out did not end on the sign-in page")
    assert SSO_COOKIE not in cookies(browser)
    browser.get(f"{project.ui}/")
    assert css(browser, "#user") == [] and css(browser, "#credential")


def test_token_sign_in_still_works_beside_sso(browser: Any, project: Stage) -> None:
    """A machine's (or break-glass) token signs in through the form under the SSO
    button; the page then says nothing about single sign-on."""
    token = project.security.authorize_token(AuthToken("jobs:run"), user="carol")
    browser.get(f"{project.ui}/")
    by_id(browser, "credential").send_keys(token)
    by_id(browser, "sign-in").click()
    wait_for(browser, lambda d: css(d, "#user"), "the token did not sign in")
    assert by_id(browser, "user").text == "carol"
    assert "single sign-on" not in css(browser, "header")[0].text
    assert SSO_COOKIE not in cookies(browser) and "authtoken_ui" in cookies(browser)




def test_a_tour_of_the_page_signed_in_by_sso(browser: Any, project: Stage) -> None:
    """What a person signed in by single sign-on does, step by step (the screenshots of
    docs/admin.md): her tokens with the verdict of a login now, edit, revoke after
    confirming; as an admin, another user's tokens filtered and all revoked after
    confirming; the audit trail explaining that user's refused login."""
    security = project.security
    security.authorize_token(AuthToken("reports:read", description="weekly report",
                                       expires="7d"), user="alice")
    security.authorize_token(AuthToken("jobs:run", description="nightly sync",
                                       expires="1d", max_lifetime="30d"), user="alice")
    security.authorize_token(AuthToken("jobs:run", description="one-off export",
                                       expires="1d", max_uses=1), user="alice")
    bobs = security.authorize_token(AuthToken("backups:write", description="backup job",
                                              expires="30d"), user="bob")
    security.authorize_token(AuthToken("reports:read", description="dashboard",
                                       expires="90d"), user="bob")
    sso_sign_in(browser, project, "alice")
    rows = css(browser, "#tokens tbody tr")
    assert len(rows) == 3
    assert all(r.find_element("css selector", ".verdict").text.startswith("ok") for r in rows)
    save_screenshot(browser, "tour-tokens", 1280)
    save_screenshot(browser, "tour-tokens", 390)
    set_width(browser, 1280)
    # Edit the weekly report's description.
    weekly = next(r for r in rows if "weekly report" in r.text)
    key = weekly.get_attribute("id").removeprefix("token-")
    css(browser, f"#token-{key} .edit")[0].click()
    wait_for(browser, lambda d: css(d, "#edit-description"), "no edit form")
    field = by_id(browser, "edit-description")
    field.clear()
    field.send_keys("weekly report (finance)")
    shoot(browser, "tour-edit")
    by_id(browser, "save").click()
    wait_for(browser, lambda d: css(d, "#notice"), "no confirmation after the edit")
    assert security.get_auth_token(key).description == "weekly report (finance)"
    # Revoke the one-off export, after confirming.
    export = next(r for r in css(browser, "#tokens tbody tr") if "one-off export" in r.text)
    export_key = export.get_attribute("id").removeprefix("token-")
    css(browser, f"#token-{export_key} .revoke")[0].click()
    wait_for(browser, lambda d: css(d, "#confirm-revoke"), "no confirmation page")
    shoot(browser, "tour-revoke")
    by_id(browser, "confirm-revoke").click()
    wait_for(browser, lambda d: css(d, "#notice"), "no confirmation after the revoke")
    assert security.get_auth_token(export_key).revoked_at is not None
    # As an admin: bob's tokens, then all of them revoked.
    by_id(browser, "nav-all").click()
    at(browser, f"{project.ui}/all")
    by_id(browser, "f-user").send_keys("bob")
    by_id(browser, "filter").click()
    wait_for(browser, lambda d: "user=bob" in d.current_url, "the filter did not apply")
    assert by_id(browser, "count").text == "2 tokens."
    shoot(browser, "tour-all")
    by_id(browser, "revoke-all").click()
    wait_for(browser, lambda d: css(d, "#confirm-revoke-all"), "no confirmation page")
    shoot(browser, "tour-revoke-all")
    by_id(browser, "confirm-revoke-all").click()
    wait_for(browser, lambda d: css(d, "#notice"), "no confirmation after revoking all")
    assert "2 tokens of bob revoked" in by_id(browser, "notice").text
    assert all(t.revoked_at is not None
               for t in security.list_auth_tokens(user="bob", include_revoked=True))
    # bob's job tries its token now: the trail says why it was refused.
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(bobs)
    security.flush()
    browser.get(f"{project.ui}/audit?user=bob&action=login&outcome=refused")
    events = css(browser, "#events tbody tr")
    assert len(events) == 1 and "TokenRevoked" in events[0].text
    shoot(browser, "tour-audit")



def test_the_sso_session_is_a_signed_cookie_and_nothing_else(browser: Any,
                                                             project: Stage) -> None:
    """The page keeps no server state for a single sign-on: revoking the user's tokens
    does not end it; sign-out deletes the cookie from the browser, but a copy of it still
    signs in until it expires; a cookie altered by one character signs in nobody, and is
    cleared."""
    sso_sign_in(browser, project, "alice")
    session = cookies(browser)[SSO_COOKIE]["value"]
    project.security.authorize_token(AuthToken("jobs:run"), user="alice")
    assert project.security.revoke_user_tokens("alice") == 1
    browser.get(f"{project.ui}/")
    assert by_id(browser, "user").text == "alice"
    by_id(browser, "sign-out").click()
    wait_for(browser, lambda d: css(d, "#sso"), "signing out did not end on the sign-in page")
    assert SSO_COOKIE not in cookies(browser)
    plant(browser, project, session)
    browser.get(f"{project.ui}/")
    assert by_id(browser, "user").text == "alice"
    # Not the last character: its low bits may be base64 padding, which decodes the same.
    altered = session[:-5] + ("A" if session[-5] != "A" else "B") + session[-4:]
    plant(browser, project, altered)
    browser.get(f"{project.ui}/")
    assert status(browser) == 401 and css(browser, "#user") == []
    assert "sign in again" in by_id(browser, "message").text
    assert SSO_COOKIE not in cookies(browser)


def test_the_sso_button_looks_like_the_main_way_in(browser: Any, project: Stage) -> None:
    """The "Sign in with …" button has the page's primary colour."""
    browser.get(f"{project.ui}/")
    colour = by_id(browser, "sso").value_of_css_property("background-color")
    assert colour == "rgba(11, 87, 208, 1)"  # #0b57d0, as button.primary


def test_the_app_leaves_no_connection_to_the_provider_open() -> None:
    """An application that started a sign-in and is dropped leaves no socket open."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
        from starlette.testclient import TestClient

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # panva keeps connections alive, as most providers do (the project's closes each).
        with panva_provider() as op:
            security = Security(MemoryRepository(), secret_keys=KEYS)
            app = create_app(security, authenticate=DelegationTokenAuth(security),
                             sign_in=OIDCSignIn(op.issuer, op.client_id,
                                                client_secret=op.client_secret))
            with TestClient(app, base_url="http://localhost") as client:
                away = client.get("/ui/sso", follow_redirects=False)
            assert away.status_code == 303
            assert away.headers["location"].startswith(op.issuer)
            del app, client
            gc.collect()
            security.close()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
