"""The page, the providers and the browser steps of the token page's single sign-on
tests (``test_admin_page_sso.py``, ``test_admin_page_sso_links.py``).

The page is the admin application under uvicorn over a real SQLite file, with
``create_app(..., sign_in=OIDCSignIn(...), broker=Broker(...))``; the identity provider
is a real one on 127.0.0.1 -- the project's own (``authtoken.testing.OIDCProvider``,
``project_stage``) or panva's ``oidc-provider`` from npm (``panva_stage``) -- whose
login (and consent) pages Chromium fills in as a person would (``provider_login``).

The page is served as ``http://localhost:<port>`` and the providers answer at
``http://127.0.0.1:<port>``: two different sites, as a real page and its organisation's
provider are, so the way back from the provider is a cross-site navigation (the page's
``SameSite=Lax`` round-trip cookie must survive it) -- and both hosts are loopback, so
the browser still treats them as secure contexts.  The page's port is taken before the
provider starts, so its redirect URIs (``<page>/ui/sso/callback`` and
``<page>/ui/upstreams/callback``) can be registered there first.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.axe import format_violations, run_axe
from support.panva import ACCOUNTS, RESOURCE_SCOPE, panva_provider
from support.screens import overflows, save_screenshot, set_width

from authtoken import AuthToken, Security, Session, SQLRepository
from authtoken.admin import DelegationTokenAuth, OIDCSignIn, create_app
from authtoken.broker import Broker, OIDCUpstream, SpatiumUpstream
from authtoken.testing import OIDCProvider

KEYS = ["sso-page-test-key"]
ADMINS = "authtoken-admins"
SSO_COOKIE = "authtoken_ui_sso"
PENDING_COOKIE = "authtoken_ui_oidc"
WAIT = 15  # seconds a page may take to arrive (a navigation, the provider's round trip)


# -- the page, served on a port known before the provider starts --------------------------
@contextmanager
def _served_on(app: Any, sock: socket.socket) -> Iterator[None]:
    """``app`` under uvicorn on the already bound ``sock`` (as ``support.served`` does,
    but the port was needed earlier: the provider registers the redirect URIs)."""
    import uvicorn

    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                            ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _port() -> Iterator[tuple[socket.socket, str]]:
    """A bound loopback socket and the page's base URL on it, ``http://localhost:<port>``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock, f"http://localhost:{sock.getsockname()[1]}"
    finally:
        sock.close()


@dataclass
class Stage:
    """The served page, its engine and broker, and the provider it signs in with."""

    security: Security
    broker: Broker
    page: str  # the page's base URL: http://localhost:<port>
    kind: str  # "project" or "panva"
    provider: Any = field(repr=False)

    @property
    def ui(self) -> str:
        return f"{self.page}/ui"


@contextmanager
def _stage(tmp_path: Path, sock: socket.socket, page: str, kind: str, provider: Any,
           sign_in: OIDCSignIn, upstream: OIDCUpstream) -> Iterator[Stage]:
    security = Security(SQLRepository(f"sqlite:///{tmp_path / 'sso.db'}"), secret_keys=KEYS)
    broker = Broker(security, {
        "space": upstream,
        # Spatium links by credentials, never from a browser: the page says how instead.
        "spatium": SpatiumUpstream("http://127.0.0.1:9/spatium", "reports", ["reports:read"]),
    })
    app = create_app(security, authenticate=DelegationTokenAuth(security), sign_in=sign_in,
                     broker=broker)
    try:
        with _served_on(app, sock):
            yield Stage(security, broker, page, kind, provider)
    finally:
        _close_sign_in_client(app)
        broker.close()
        security.close()


def _close_sign_in_client(app: Any) -> None:
    """Close the HTTP connections the page's sign-in client keeps to the provider.

    The application gives no way to (see
    ``test_the_app_leaves_no_connection_to_the_provider_open``): its ``/ui/sso`` route's
    handler holds the ``SSOPages`` whose ``client`` it is.  Without this, the pool's
    sockets are left to the garbage collector, a ``ResourceWarning`` in a later test."""
    for route in app.routes:
        if getattr(route, "path", None) != "/ui/sso":
            continue
        for cell in route.endpoint.__closure__ or ():
            pages = getattr(cell.cell_contents, "__self__", None)
            client = getattr(pages, "client", None)
            if client is not None:
                client.close()
                return
    raise AssertionError("the page's sign-in client was not found to close")


@contextmanager
def project_stage(tmp_path: Path) -> Iterator[Stage]:
    """The page signing in with the project's own provider: alice in ``authtoken-admins``,
    bob in another group."""
    with _port() as (sock, page), OIDCProvider(
            users={"bob": "bob-password"},
            groups={"alice": [ADMINS], "bob": ["staff"]},
            redirect_uris={f"{page}/ui/sso/callback", f"{page}/ui/upstreams/callback"},
    ) as provider:
        sign_in = OIDCSignIn(provider.issuer, OIDCProvider.PUBLIC_CLIENT,
                             admin_claim="groups", admin_value=ADMINS, name="Test Realm")
        upstream = OIDCUpstream(provider.issuer, OIDCProvider.PUBLIC_CLIENT, scope="lessons")
        with _stage(tmp_path, sock, page, "project", provider, sign_in, upstream) as stage:
            yield stage


@contextmanager
def panva_stage(tmp_path: Path) -> Iterator[Stage]:
    """The page signing in with panva's oidc-provider (a confidential client; alice is in
    ``authtoken-admins`` when the ``groups`` scope is asked, bob is in no group)."""
    with _port() as (sock, page), panva_provider(
            redirect_uris=[f"{page}/ui/sso/callback", f"{page}/ui/upstreams/callback"],
    ) as op:
        sign_in = OIDCSignIn(op.issuer, op.client_id, client_secret=op.client_secret,
                             scope="openid profile groups", admin_claim="groups",
                             admin_value=ADMINS, name="Panva")
        upstream = OIDCUpstream(op.issuer, op.client_id, client_secret=op.client_secret,
                                scope=RESOURCE_SCOPE)
        with _stage(tmp_path, sock, page, "panva", op, sign_in, upstream) as stage:
            yield stage


# -- driving Chromium -----------------------------------------------------------------------
@contextmanager
def fresh_browser(chrome: Any) -> Iterator[Any]:
    """The module's Chromium with no cookies from an earlier test, at 1280 px."""
    chrome.execute_cdp_cmd("Network.enable", {})
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    set_width(chrome, 1280)
    yield chrome
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})


def cookies(driver: Any) -> dict[str, dict[str, Any]]:
    """Every cookie the browser holds, for every site, by name."""
    return {c["name"]: c for c in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]}


def wait_for(driver: Any, what: Callable[[Any], Any], message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(what, message)


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def at(driver: Any, prefix: str) -> Any:
    """Wait until the browser shows a page whose URL starts with ``prefix``."""
    return wait_for(driver, lambda d: d.current_url.startswith(prefix) and
                    d.execute_script("return document.readyState") == "complete",
                    f"the browser never reached {prefix} (it is at {driver.current_url})")


def shoot(driver: Any, name: str) -> None:
    """Screenshots of the page as it is, at 1280 and 390 px; at 390 px nothing overflows."""
    save_screenshot(driver, name, 1280)
    save_screenshot(driver, name, 390)
    assert overflows(driver) == [], f"{name} at 390 px"
    set_width(driver, 1280)


def provider_login(driver: Any, stage: Stage, username: str, password: str | None = None,
                   *, screenshot: str | None = None) -> None:
    """Fill in the provider's real login form as a person would (and panva's consent
    page), and press its buttons."""
    if stage.kind == "project":
        at(driver, stage.provider.issuer)
        by_id(driver, "username").send_keys(username)
        by_id(driver, "password").send_keys(password or
                                            stage.provider.users[username])
        if screenshot:
            shoot(driver, screenshot)
        css(driver, 'button[value="login"]')[0].click()
        return
    at(driver, stage.provider.issuer)
    wait_for(driver, lambda d: css(d, 'input[name="login"]'), "panva shows no login form")
    css(driver, 'input[name="login"]')[0].send_keys(username)
    css(driver, 'input[name="password"]')[0].send_keys(password or ACCOUNTS[username])
    if screenshot:
        shoot(driver, screenshot)
    css(driver, 'button[type="submit"]')[0].click()
    # The consent page (oidc-provider's devInteractions) follows: continue.
    wait_for(driver, lambda d: not d.current_url.startswith(stage.provider.issuer)
             or (css(d, 'button[type="submit"]') and not css(d, 'input[name="login"]')),
             "panva's consent page did not come")
    if driver.current_url.startswith(stage.provider.issuer):
        if screenshot:
            shoot(driver, f"{screenshot}-consent")
        css(driver, 'button[type="submit"]')[0].click()


def sso_sign_in(driver: Any, stage: Stage, username: str, *, screenshots: str | None = None
                ) -> None:
    """From the signed-out page: "Sign in with …", the provider's login, back to the
    token page signed in as ``username`` by single sign-on."""
    driver.get(f"{stage.ui}/")
    button = by_id(driver, "sso")
    if screenshots:
        shoot(driver, f"{screenshots}-signin")
    button.click()
    provider_login(driver, stage, username,
                   screenshot=None if screenshots is None else f"{screenshots}-provider")
    at(driver, f"{stage.ui}/")
    wait_for(driver, lambda d: css(d, "#user"), "the page did not sign in")
    assert by_id(driver, "user").text == username
    assert "by single sign-on" in css(driver, "header")[0].text


def status(driver: Any) -> int:
    """The HTTP status of the page the browser shows (Navigation Timing's)."""
    answer: int = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].responseStatus")
    return answer


def nothing_kept(driver: Any, stage: Stage) -> None:
    """No page session in the browser, no token made, no account linked."""
    held = cookies(driver)
    assert SSO_COOKIE not in held, "a refused sign-in left a page session"
    assert "authtoken_ui" not in held
    assert stage.security.list_auth_tokens(include_revoked=True) == []
    assert stage.broker.links("alice") == {}
    driver.get(f"{stage.ui}/")
    assert css(driver, "#sso") and css(driver, "#user") == []


def plant(driver: Any, stage: Stage, value: str) -> None:
    """Put a page session cookie with ``value`` in the browser, as the page sets it."""
    driver.execute_cdp_cmd("Network.setCookie", {
        "name": SSO_COOKIE, "value": value, "url": f"{stage.ui}/", "path": "/ui",
        "httpOnly": True, "sameSite": "Lax"})


def link_state(driver: Any, name: str) -> str:
    return str(css(driver, f"#link-{name} .link-state")[0].text)


def no_axe_violations(driver: Any, what: str) -> None:
    violations = run_axe(driver)
    assert violations == [], f"{what}: {format_violations(violations)}"


def job_session(security: Security, user: str, scope: str) -> Session:
    """A job's session, logged in by a token of ``user`` holding ``scope``."""
    token = security.authorize_token(AuthToken(scope, description="a job"), user=user)
    session = Session(security)
    session.login_by_auth_token(token)
    return session


def link_from_the_page(driver: Any, stage: Stage, *, screenshots: str | None = None) -> None:
    """Press "Link account" for ``space``, pass the provider's login, come back to the
    token page."""
    link = css(driver, "#link-space .link")[0]
    name = link.accessible_name
    assert name.startswith("Link") and "space" in name  # one per upstream: it says which
    link.click()
    provider_login(driver, stage, "alice",
                   screenshot=None if screenshots is None else f"{screenshots}-provider")
    # by way of the "continue" page and the same-site finishing step
    wait_for(driver, lambda d: css(d, "#notice") and "linked" in css(d, "#notice")[0].text,
             f"the token page never said the account is linked (at {driver.current_url})")
    wait_for(driver, lambda d: css(d, "#links"), "the token page lists no links")
