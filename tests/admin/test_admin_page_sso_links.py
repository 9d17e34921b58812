"""Linked accounts on the token page, in a real headless Chromium: "Link account" through
the provider's login (signed in by single sign-on, and by a token), a job's access token
that the provider's API accepts, Unlink, the Spatium hint; axe on the sign-in and the
linked-accounts pages.  The page, the providers and the steps are ``sso_page_support``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sso_page_support import (
    Stage,
    at,
    by_id,
    css,
    fresh_browser,
    job_session,
    link_from_the_page,
    link_state,
    no_axe_violations,
    panva_stage,
    project_stage,
    shoot,
    sso_sign_in,
    wait_for,
)
from support.screens import set_width

from authtoken import AuthToken

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


# -- linked accounts ------------------------------------------------------------------------
def test_link_an_account_from_the_page(browser: Any, project: Stage) -> None:
    """Signed in by single sign-on, alice links her ``space`` account through the
    provider's login; a job holding ``upstream:space`` then gets an access token the
    provider's API accepts; Unlink forgets it.  The Spatium upstream shows the command
    line instead of a button."""
    sso_sign_in(browser, project, "alice")
    assert link_state(browser, "space") == "not linked"
    assert css(browser, "#link-spatium .link") == []
    assert "authtoken upstream link spatium" in by_id(browser, "link-spatium").text
    assert css(browser, "#link-space button.unlink") == []
    shoot(browser, "links-none")  # axe: test_the_unlinked_accounts_page_passes_axe
    link_from_the_page(browser, project, screenshots="links")
    assert link_state(browser, "space") == "linked"
    assert css(browser, "#link-space .link")[0].accessible_name.startswith("Link again")
    assert project.broker.links("alice") == {"space": "ok"}
    no_axe_violations(browser, "the linked accounts, one linked")
    shoot(browser, "links-linked")
    # A job of alice's uses the link: the provider's API takes the access token.
    session = job_session(project.security, "alice", "upstream:space")
    access = project.broker.access_token(session, "space")
    lesson = httpx.get(f"{project.provider.space_url}/api/lessons/1",
                       headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert lesson.status_code == 200 and lesson.json()["data"]["user"] == "alice"
    assert access not in browser.page_source
    # Unlink.
    unlink = css(browser, "#link-space button.unlink")[0]
    assert unlink.accessible_name.startswith("Unlink") and "space" in unlink.accessible_name
    unlink.click()
    at(browser, f"{project.ui}/")
    wait_for(browser, lambda d: css(d, "#link-space"), "the links are gone")
    assert link_state(browser, "space") == "not linked"
    assert project.broker.links("alice") == {}


def test_link_while_signed_in_by_token_at_panva(browser: Any, panva: Stage) -> None:
    """Signed in by a token (a strict cookie, which the provider's cross-site redirect
    does not carry), alice links her account at panva through its login and consent
    pages; the "continue" page brings her back signed in, the link made; panva's API
    accepts the job's access token."""
    # The token holds the scope that uses the link: a narrower one should not be able to
    # swap the account the user's jobs act as.
    token = panva.security.authorize_token(AuthToken("jobs:run upstream:space"),
                                           user="alice")
    browser.get(f"{panva.ui}/")
    by_id(browser, "credential").send_keys(token)
    by_id(browser, "sign-in").click()
    wait_for(browser, lambda d: css(d, "#links"), "the token page lists no links")
    assert link_state(browser, "space") == "not linked"
    link_from_the_page(browser, panva, screenshots="links-panva")
    assert by_id(browser, "user").text == "alice"
    assert link_state(browser, "space") == "linked"
    session = job_session(panva.security, "alice", "upstream:space")
    access = panva.broker.access_token(session, "space")
    me = httpx.get(panva.provider.api_url, headers={"Authorization": f"Bearer {access}"},
                   timeout=10)
    assert me.status_code == 200 and me.json()["sub"] == "alice"


def test_the_unlinked_accounts_page_passes_axe(browser: Any, project: Stage) -> None:
    """The token page listing an upstream not linked yet: no axe violations."""
    sso_sign_in(browser, project, "alice")
    assert link_state(browser, "space") == "not linked"
    no_axe_violations(browser, "the linked accounts, none linked")


def test_the_sso_sign_in_page_passes_axe(browser: Any, project: Stage) -> None:
    """The sign-in page with its "Sign in with …" button: no axe violations, at 1280 px
    and at 390 px."""
    browser.get(f"{project.ui}/")
    assert by_id(browser, "sso").text == "Sign in with Test Realm"
    no_axe_violations(browser, "the sign-in page at 1280 px")
    set_width(browser, 390)
    no_axe_violations(browser, "the sign-in page at 390 px")
