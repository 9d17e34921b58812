"""What the tests of the token page's views share: a browser-like client of the real
application signed in with a real token (``Browser``), and readers of the pages it
answers (the rows listed, the notice, the expiry picker's options, a field's value).
"""

from __future__ import annotations

import html
import re
import warnings
from typing import Any

from authtoken import (
    AuthToken,
    Security,
)
from authtoken.admin import DelegationTokenAuth, create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

ORIGIN = "http://testserver"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
ROW_KEY = re.compile(r'<tr id="token-([a-z2-7]{16})"')
EVENT_KEY = re.compile(r'aria-label="Events of token ([a-z2-7]{16})"')
#: The scope that makes a token's holder an admin of the page.
ADMIN = "authtoken:admin"
FORM = "application/x-www-form-urlencoded"


def client_of(security: Security) -> TestClient:
    """A browser-like client of the page: cookies kept, ``Origin`` on every request."""
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    return TestClient(app, base_url=ORIGIN, headers={"origin": ORIGIN})


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found is not None, page
    return found.group(1)


def sign_in_with(client: TestClient, token: str) -> Any:
    """Open the signed-out page and post its sign-in form with ``token``."""
    csrf = csrf_of(client.get("/ui/").text)
    return client.post("/ui/sign-in", data={"csrf": csrf, "credential": token},
                       follow_redirects=False)


class Browser:
    """A client signed in to the page with a new token of ``user``."""

    def __init__(self, security: Security, scope: str = "jobs:run reports:read",
                 user: Any = "alice", *, string: str | None = None,
                 **options: Any) -> None:
        if string is None:  # a new token; else sign in with ``string``
            token = AuthToken(scope, **options)
            string = security.authorize_token(token, user=user)
        self.token = string
        self.key: str = str(security.restore_auth_token(string).key)
        self.client = client_of(security)
        answer = sign_in_with(self.client, self.token)
        assert answer.status_code == 303, answer.text
        self.csrf = csrf_of(self.client.get("/ui/").text)

    def get(self, url: str, **params: str) -> Any:
        return self.client.get(url, params=params, follow_redirects=False)

    def post(self, url: str, data: dict[str, str] | None = None, *,
             csrf: bool = True) -> Any:
        form = dict(data or {})
        if csrf:
            form["csrf"] = self.csrf
        if not form:  # an empty form, still of the page's encoding
            return self.client.post(url, content=b"", headers={"content-type": FORM},
                                    follow_redirects=False)
        return self.client.post(url, data=form, follow_redirects=False)


def keys_listed(page: str) -> set[str]:
    return set(ROW_KEY.findall(page))


def events_listed(page: str) -> list[str]:
    """The token keys of the audit page's rows, in order (a row without a token: "")."""
    rows = re.findall(r'<tr class="event event-\w+">(.*?)</tr>', page, re.DOTALL)
    found = [EVENT_KEY.search(r) for r in rows]
    return [m.group(1) if m else "" for m in found]


def event_rows(page: str) -> list[str]:
    return re.findall(r'<tr class="event event-\w+">(.*?)</tr>', page, re.DOTALL)


def notice_of(page: str) -> str | None:
    found = re.search(r'id="notice">([^<]*)<', page)
    return None if found is None else html.unescape(found.group(1))


def options_of(page: str) -> list[str]:
    """The values the create form's expiry picker offers."""
    select = re.search(r'<select id="expires" name="expires"[^>]*>(.*?)</select>', page,
                       re.DOTALL)
    assert select is not None, page
    return re.findall(r'<option value="([^"]*)"', select.group(1))


def input_value(page: str, name: str) -> str:
    textarea = re.search(rf'<textarea [^>]*name="{name}"[^>]*>(.*?)</textarea>', page,
                         re.DOTALL)
    if textarea is not None:
        return html.unescape(textarea.group(1))
    found = re.search(rf'<input [^>]*name="{name}"[^>]*>', page)
    assert found is not None, name
    value = re.search(r'value="([^"]*)"', found.group(0))
    return "" if value is None else html.unescape(value.group(1))


def stored(security: Security, key: str) -> AuthToken:
    security.flush()
    return security.get_auth_token(key)


def authorize(security: Security, scope: str, user: Any, **options: Any) -> str:
    """A new token's key."""
    run_id = options.pop("run_id", None)
    token = AuthToken(scope, **options)
    security.authorize_token(token, user=user, run_id=run_id)
    return str(token.key)


def cookie_cleared(answer: Any) -> bool:
    return any(c.startswith('authtoken_ui=""') or
               (c.startswith("authtoken_ui=") and "max-age=0" in c.lower())
               for c in answer.headers.get_list("set-cookie"))


def create_form(**fields: str) -> dict[str, str]:
    form = {"scope": "reports:read", "bind_paths": "", "bind_keys": "", "pin_digests": "",
            "description": "", "expires": "30d", "expires_date": "", "max_uses": "",
            "max_lifetime": "", "data": ""}
    form.update(fields)
    return form
