"""The token page's cookies over HTTPS: ``__Host-`` names, so that no other host --
not even a sibling subdomain -- can plant a credential or a pre-session in the browser
(cookie tossing); path-scoped names where that prefix cannot be used."""

from __future__ import annotations

import re
import warnings

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from authtoken import AuthToken, Security
from authtoken.admin import DelegationTokenAuth, create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
HTTPS = "https://admin.example.com"


def https_client(security: Security, mount: str = "") -> TestClient:
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    if mount:
        app = Starlette(routes=[Mount(mount, app)])
    return TestClient(app, base_url=HTTPS, headers={"origin": HTTPS})


def set_cookies(answer: httpx.Response) -> dict[str, str]:
    """The Set-Cookie lines of ``answer`` by cookie name."""
    lines = answer.headers.get_list("set-cookie")
    return {line.split("=", 1)[0]: line for line in lines}


def sign_in(client: TestClient, credential: str, base: str = "/ui") -> httpx.Response:
    page = client.get(f"{base}/")
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return client.post(f"{base}/sign-in", data={"csrf": found.group(1),
                                                "credential": credential},
                       follow_redirects=False)


def test_over_https_at_the_root_both_cookies_are_host_only(mem: Security) -> None:
    """Over HTTPS at the root of its host, the pre-session and the credential live in
    ``__Host-`` cookies (Secure, Path=/, no Domain), which browsers let no other host
    set; signing out clears the right one."""
    client = https_client(mem)
    pre = set_cookies(client.get("/ui/"))["__Host-authtoken_ui_pre"]
    token = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    answer = sign_in(client, token)
    assert answer.status_code == 303
    session = set_cookies(answer)["__Host-authtoken_ui"]
    for line in (pre, session):
        lowered = line.lower()
        assert "; secure" in lowered and "; path=/;" in lowered + ";"
        assert "domain=" not in lowered and "httponly" in lowered
    assert "__Host-authtoken_ui_pre" in set_cookies(answer)  # the pre-session ends
    assert 'id="user"' in client.get("/ui/").text
    out = client.post("/ui/sign-out", follow_redirects=False)
    cleared = set_cookies(out)["__Host-authtoken_ui"].lower()
    assert "max-age=0" in cleared and "; secure" in cleared and "path=/" in cleared
    assert 'name="credential"' in client.get("/ui/").text


def test_over_https_a_tossed_cookie_is_ignored(mem: Security) -> None:
    """Cookies without the prefix -- what a sibling subdomain can set for the parent
    domain -- are not read over HTTPS: a planted credential signs nobody in, and a
    planted pre-session is not the one the form is bound to."""
    mallory = mem.authorize_token(AuthToken("jobs:run"), user="mallory")
    client = https_client(mem)
    client.cookies.set("authtoken_ui", mallory, domain="admin.example.com", path="/ui")
    page = client.get("/ui/")
    assert 'name="credential"' in page.text and "mallory" not in page.text
    planted = "p" * 43
    client.cookies.set("authtoken_ui_pre", planted, domain="admin.example.com",
                       path="/ui")
    started = set_cookies(client.get("/ui/"))
    assert "__Host-authtoken_ui_pre" not in started  # the page's own one is kept
    assert planted not in str(client.cookies.get("__Host-authtoken_ui_pre"))


def test_mounted_or_over_http_the_cookies_stay_path_scoped(mem: Security) -> None:
    """Mounted under a path, ``__Host-`` (which needs Path=/) would send the credential
    to the whole host, so the cookies keep their plain names scoped to the page."""
    client = https_client(mem, "/admin")
    pre = set_cookies(client.get("/admin/ui/"))["authtoken_ui_pre"].lower()
    assert "path=/admin/ui" in pre and "; secure" in pre
    token = mem.authorize_token(AuthToken("jobs:run"), user="alice")
    answer = sign_in(client, token, "/admin/ui")
    assert answer.status_code == 303
    assert "path=/admin/ui" in set_cookies(answer)["authtoken_ui"].lower()
