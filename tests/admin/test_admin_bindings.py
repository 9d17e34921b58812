"""Binding scripts by path or key without hand-escaping, and warnings about scopes that
are not what they look like -- over the admin API and on the token page."""

from __future__ import annotations

import html
import re
import warnings
from typing import Any

import pytest
from starlette.requests import Request

from authtoken import AuthToken, Script, Security, escape
from authtoken.admin import DelegationTokenAuth, Identity, create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

ORIGIN = "http://testserver"
PROBLEM = "application/problem+json"


def as_alice(request: Request) -> Identity:
    """An authenticator for a caller with no token of its own: no delegation limits."""
    return Identity("alice")


def api(security: Security) -> TestClient:
    return TestClient(create_app(security, authenticate=as_alice))


def create(security: Security, **body: Any) -> Any:
    return api(security).post("/tokens", json=body)


# -- the API ----------------------------------------------------------------------------------
def test_bind_paths_and_keys_are_added_to_the_scope(mem: Security) -> None:
    """A path with a space and a key become one binding each, escaped for the caller,
    and the token logs in from exactly those scripts."""
    answer = create(mem, scope="reports:read", bind_paths=["/jobs/my job.py", "/a/./b"],
                    bind_keys=[42])
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["scopes"] == ["reports:read", "ufs:/jobs/my%20job.py", "ufs:/a/b",
                              "vfs:ikey?42"]
    assert "warnings" not in body
    assert mem.login_by_auth_token(body["token"], script=Script(path="/jobs/my job.py"))
    assert mem.login_by_auth_token(body["token"], script=Script(key=42))


def test_bindings_alone_make_a_token(mem: Security) -> None:
    """An empty scope with a binding is a token for that script only."""
    for scope in ("", []):
        answer = create(mem, scope=scope, bind_keys=[7])
        assert answer.status_code == 201, answer.text
        assert answer.json()["scopes"] == ["vfs:ikey?7"]


@pytest.mark.parametrize(("scope", "mentions"), [
    ("ufs:/jobs/my job.py", "job.py"),
    ("reports:read,reports:write", "comma"),
    ("VFS:ikey?1", "lower case"),
    (["reports:read,reports:write"], "comma"),
])
def test_the_answer_warns_about_scopes_that_are_not_what_they_look_like(
        mem: Security, scope: Any, mentions: str) -> None:
    """The token is made as written, and the answer says what it really holds."""
    answer = create(mem, scope=scope)
    assert answer.status_code == 201, answer.text
    found = answer.json()["warnings"]
    assert len(found) == 1 and mentions in found[0]


def test_no_warnings_no_key(mem: Security) -> None:
    """A plain scope, or a script key, answers exactly the view plus the token."""
    for scope in ("reports:read", 42, ["a", 7]):
        answer = create(mem, scope=scope)
        assert answer.status_code == 201 and "warnings" not in answer.json()


@pytest.mark.parametrize("body", [
    {"scope": "a", "bind_paths": "/jobs/x.py"},
    {"scope": "a", "bind_paths": [1]},
    {"scope": "a", "bind_paths": [None]},
    {"scope": "a", "bind_paths": [["/x"]]},
    {"scope": "a", "bind_paths": None},
    {"scope": "a", "bind_keys": 42},
    {"scope": "a", "bind_keys": ["42"]},
    {"scope": "a", "bind_keys": [True]},
    {"scope": "a", "bind_keys": [1.5]},
    {"scope": "a", "bind_keys": [None]},
    {"scope": "a", "bind_paths": [""]},
    {"scope": "a", "bind_paths": ["/a\x00b"]},
    {"scope": "a", "bind_paths": ["/" + "x" * 600]},
    {"scope": "a", "bind_keys": [10 ** 600]},
    {"bind_keys": [1]},
])
def test_bind_fields_are_strictly_typed(mem: Security, body: dict[str, Any]) -> None:
    """Wrongly typed or unusable bind fields are 422 problems, and nothing is made."""
    answer = create(mem, **body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert mem.list_auth_tokens(user="alice") == []


@pytest.mark.parametrize(("field", "many"), [
    ("bind_paths", [f"/jobs/{i}.py" for i in range(257)]),
    ("bind_paths", [f"/{i:x}" for i in range(10_000)]),
    ("bind_keys", list(range(257))),
])
def test_more_scripts_than_a_scope_holds_are_refused_by_name(
        mem: Security, field: str, many: list[Any]) -> None:
    """A list of more scripts than a token can be bound to is a 422 that names the
    field, before any of them is escaped; the document says so too."""
    answer = create(mem, scope="a", **{field: many})
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"] and "256" in answer.json()["detail"]
    assert mem.list_auth_tokens(user="alice") == []
    document = api(mem).get("/openapi.json").json()
    assert document["components"]["schemas"]["CreateToken"]["properties"][field][
        "maxItems"] == 256


def test_bind_fields_are_only_for_creating(mem: Security) -> None:
    """PATCH takes the four fields it always took: a bind field is unknown there."""
    key = create(mem, scope="a").json()["key"]
    answer = api(mem).patch(f"/tokens/{key}", json={"bind_keys": [1]})
    assert answer.status_code == 422
    assert mem.get_auth_token(key).scopes == ("a",)


def test_the_openapi_document_describes_bindings_and_warnings(mem: Security) -> None:
    """CreateToken names the bind fields (UpdateToken does not); NewToken's warnings are
    required."""
    schemas = api(mem).get("/openapi.json").json()["components"]["schemas"]
    create_fields = schemas["CreateToken"]["properties"]
    assert create_fields["bind_paths"]["items"]["type"] == "string"
    assert create_fields["bind_keys"]["items"]["type"] == "integer"
    assert "bind_paths" not in schemas["UpdateToken"]["properties"]
    new_token = schemas["NewToken"]["allOf"][1]
    assert new_token["required"] == ["token"]
    assert new_token["properties"]["warnings"]["items"]["type"] == "string"


# -- the page ---------------------------------------------------------------------------------
def page_client(security: Security, scope: str) -> tuple[TestClient, str]:
    """A browser signed in with a new token of ``scope``; (client, CSRF value)."""
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    client = TestClient(app, base_url=ORIGIN, headers={"origin": ORIGIN})
    token = security.authorize_token(AuthToken(scope), user="alice")
    signed_out = client.get("/ui/").text
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', signed_out)
    form = {"credential": token} | ({"csrf": found.group(1)} if found else {})
    assert client.post("/ui/sign-in", data=form, follow_redirects=False).status_code == 303
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/ui/").text)
    assert found is not None
    return client, found.group(1)


def test_the_page_binds_scripts_by_path_and_key(mem: Security) -> None:
    """The create form takes script paths (one a line) and keys (spaces or commas)."""
    client, csrf = page_client(mem, "jobs:run jobs:read")
    page = client.get("/ui/").text
    assert 'name="bind_paths"' in page and 'name="bind_keys"' in page
    answer = client.post("/ui/tokens", data={
        "csrf": csrf, "scope": "jobs:read", "bind_paths": "/jobs/my job.py\r\n\r\n /b.py ",
        "bind_keys": "42, 7"})
    assert answer.status_code == 200, answer.text
    made = next(t for t in mem.list_auth_tokens(user="alice") if t.parent_key)
    assert made.scopes == ("jobs:read", "ufs:/jobs/my%20job.py", "ufs:/b.py",
                           "vfs:ikey?42", "vfs:ikey?7")
    assert 'id="warnings"' not in answer.text


def test_the_page_takes_bindings_without_a_scope_and_refuses_bad_keys(
        mem: Security) -> None:
    """Scripts alone make a token; a key that is not an integer is a 422 page."""
    client, csrf = page_client(mem, "jobs:run")
    answer = client.post("/ui/tokens", data={"csrf": csrf, "bind_keys": "12"})
    assert answer.status_code == 200, answer.text
    bad = client.post("/ui/tokens", data={"csrf": csrf, "scope": "jobs:run",
                                          "bind_keys": "twelve"})
    assert bad.status_code == 422
    assert len(mem.list_auth_tokens(user="alice")) == 2


def test_the_page_shows_warnings_escaped_and_without_token_strings(mem: Security) -> None:
    """After creating, the page lists the warnings: escaped, and with any token string
    in the scope masked."""
    other = mem.authorize_token(AuthToken("x"), user="bob")
    odd = f"VFS:<b>{other}"
    client, csrf = page_client(mem, f"jobs:run job.py {odd} a,b")
    answer = client.post("/ui/tokens", data={
        "csrf": csrf, "scope": f"ufs:/jobs/my job.py {odd} a,b"})
    assert answer.status_code == 200, answer.text
    shown = re.search(r'<ul id="warnings"[^>]*>(.*?)</ul>', answer.text, re.DOTALL)
    assert shown is not None
    items = re.findall(r"<li>(.*?)</li>", shown.group(1), re.DOTALL)
    assert len(items) == 3
    assert "<b>" not in shown.group(1) and "&lt;b&gt;" in shown.group(1)
    assert other not in html.unescape(shown.group(1))
    assert other.split(".", 1)[1] not in html.unescape(shown.group(1))


@pytest.mark.parametrize("odd", ["\u2028", "\u2029", "\x85", "\x1c", "\x1e", "\x0b", "\x0c"])
def test_the_page_splits_script_paths_at_line_ends_only(mem: Security, odd: str) -> None:
    """A path holding a character that Python also counts as a line end (U+2028, NEL,
    the file separators...) is one path: it never becomes bindings to other scripts."""
    client, csrf = page_client(mem, "jobs:run")
    path = f"/jobs/a{odd}/etc/b.py"
    answer = client.post("/ui/tokens", data={"csrf": csrf,
                                              "bind_paths": f"{path}\r\n/c.py\n/d.py"})
    assert answer.status_code == 200, answer.text
    made = next(t for t in mem.list_auth_tokens(user="alice") if t.parent_key)
    assert made.scopes == ("ufs:" + escape(path), "ufs:/c.py", "ufs:/d.py")


def test_a_script_bound_caller_cannot_bind_other_scripts(mem: Security) -> None:
    """A caller acting as a token bound to scripts binds a child only to those: another
    path or key is the engine's PermissionDenied, a 403 problem, and nothing is made."""
    parent = mem.authorize_token(AuthToken("jobs:run ufs:/a vfs:ikey?1"), user="alice")

    def as_parent(request: Request) -> Identity:
        return Identity("alice", principal=mem.login_by_auth_token(
            parent, script=Script(path="/a")))

    client = TestClient(create_app(mem, authenticate=as_parent))
    for extra in ({"bind_paths": ["/b"]}, {"bind_keys": [2]},
                  {"bind_paths": ["/a", "/b"]}, {"bind_paths": ["/a/../b"]}):
        answer = client.post("/tokens", json={"scope": "jobs:run", **extra})
        assert answer.status_code == 403, (extra, answer.text)
        assert answer.headers["content-type"].startswith(PROBLEM)
    assert len(mem.list_auth_tokens(user="alice")) == 1
    allowed = client.post("/tokens", json={"scope": "", "bind_paths": ["/x/../a"]})
    assert allowed.status_code == 201 and allowed.json()["scopes"] == ["ufs:/a"]
