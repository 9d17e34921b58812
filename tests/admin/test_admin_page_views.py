"""The token page's own views, in process over memory and a real SQLite file: a page
view is no login, the edit form, the create form's expiry picker and the notices.

Each test drives the real application (``create_app`` over a real ``Security`` with
``DelegationTokenAuth``) with Starlette's TestClient, as a browser would: cookies, the
CSRF value of the page's forms, an ``Origin`` on every post (``page_views_support``).
The admin's view and the audit trail are ``test_admin_page_views_admin``'s.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import pytest
from page_views_support import (
    CSRF,
    Browser,
    authorize,
    client_of,
    cookie_cleared,
    create_form,
    csrf_of,
    input_value,
    notice_of,
    options_of,
    sign_in_with,
    stored,
)

from authtoken import (
    AuthToken,
    LoginError,
    MemoryRepository,
    Policy,
    Repository,
    Script,
    Security,
    SQLRepository,
)
from authtoken.testing import FakeClock

PIN = "sha256:" + "a" * 64


# -- 1. a page view is no login -----------------------------------------------------------
def test_browsing_the_page_spends_no_use(security: Security) -> None:
    browser = Browser(security)
    assert stored(security, browser.key).use_count == 1  # the sign-in was the login
    other = authorize(security, "reports:read", "alice")
    for _ in range(10):
        for url in ("/ui/", "/ui/audit", f"/ui/tokens/{other}/edit",
                    f"/ui/tokens/{browser.key}/edit"):
            page = browser.get(url)
            assert page.status_code == 200, url
            assert browser.token not in page.text  # the cookie's string is never shown
    assert stored(security, browser.key).use_count == 1
    logins = [e for e in security.audit_events(token_key=browser.key)
              if e.action == "login"]
    assert sum(e.count for e in logins) == 1


def test_a_single_use_token_signs_in_and_keeps_browsing(security: Security) -> None:
    browser = Browser(security, max_uses=1)
    for url in ("/ui/", "/ui/audit", f"/ui/tokens/{browser.key}/edit", "/ui/"):
        assert browser.get(url).status_code == 200, url
    assert stored(security, browser.key).use_count == 1
    # Its one use is spent: a second sign-in with it is refused.
    answer = sign_in_with(client_of(security), browser.token)
    assert answer.status_code == 401


def test_a_token_revoked_elsewhere_signs_the_page_out(security: Security) -> None:
    browser = Browser(security)
    other = client_of(security)  # a second sign-in with the same token, another browser
    assert sign_in_with(other, browser.token).status_code == 303
    csrf = csrf_of(other.get("/ui/").text)
    answer = other.post(f"/ui/tokens/{browser.key}/revoke", data={"csrf": csrf},
                        follow_redirects=False)
    assert answer.status_code == 303
    page = browser.get("/ui/")
    assert page.status_code == 401
    assert 'name="credential"' in page.text  # the sign-in form
    assert browser.token not in page.text
    assert cookie_cleared(page)
    assert browser.get("/ui/audit").status_code == 401


def test_an_expired_token_signs_the_page_out(security: Security, clock: FakeClock) -> None:
    browser = Browser(security, expires="2h")
    assert browser.get("/ui/").status_code == 200
    clock.advance(hours=2)
    page = browser.get("/ui/")
    assert page.status_code == 401 and 'name="credential"' in page.text
    assert cookie_cleared(page)
    assert stored(security, browser.key).use_count == 1


def test_a_token_bound_to_a_script_cannot_sign_in(security: Security) -> None:
    token = security.authorize_token(AuthToken("jobs:run ufs:/jobs/nightly.py"),
                                     user="alice")
    client = client_of(security)
    answer = sign_in_with(client, token)
    assert answer.status_code == 401
    assert not any(c.startswith("authtoken_ui=atk_")
                   for c in answer.headers.get_list("set-cookie"))
    assert token not in answer.text
    assert client.get("/ui/").status_code == 200 and 'name="credential"' in \
        client.get("/ui/").text


@pytest.mark.parametrize("cookie", [
    "x" * 5000, "atk_aaaaaaaaaaaaaaaa.zz", "%E9t%C3%A9", '"quoted"',
    "atk_aaaaaaaaaaaaaaaa." + "A" * 43 + "." + "B" * 43,  # well formed, forged
])
def test_a_garbled_or_forged_cookie_is_the_sign_in_page(security: Security,
                                                        cookie: str) -> None:
    client = client_of(security)
    for url in ("/ui/", "/ui/audit", "/ui/all"):
        page = client.get(url, headers={"cookie": f"authtoken_ui={cookie}"})
        assert page.status_code == 401 and 'name="credential"' in page.text, url
        assert cookie_cleared(page) and cookie not in page.text
    refused = [e for e in security.audit_events() if e.action == "authenticate"]
    assert sum(e.count for e in refused) == 3  # each view refused, counted, recorded
    assert all(e.outcome == "refused" for e in refused)


def test_revoking_the_parent_signs_out_a_page_signed_in_with_its_child(
        security: Security) -> None:
    parent = Browser(security)
    made = parent.post("/ui/tokens", create_form(description="child", expires="1d"))
    assert made.status_code == 200
    found = re.search(r'id="token-string" class="secret" value="([^"]+)"', made.text)
    assert found is not None
    child = Browser(security, string=html.unescape(found.group(1)))
    assert child.get("/ui/").status_code == 200
    security.revoke_auth_token(parent.token)
    page = child.get("/ui/")
    assert page.status_code == 401 and cookie_cleared(page)


def test_a_spent_token_cannot_open_the_page_from_a_hand_made_cookie(
        security: Security) -> None:
    token = AuthToken("jobs:run reports:read", max_uses=1)
    string = security.authorize_token(token, user="alice")
    security.login_by_auth_token(string)  # its job spent the one use; no page sign-in
    before = {t.key for t in security.list_auth_tokens(user="alice")}
    hand_made = {"cookie": f"authtoken_ui={string}"}
    client = client_of(security)
    page = client.get("/ui/", headers=hand_made)
    csrf = CSRF.search(page.text)
    if csrf is not None and page.status_code == 200:
        minted = client.post("/ui/tokens", headers=hand_made, follow_redirects=False,
                             data={**create_form(expires="1h", max_uses="1"),
                                   "csrf": csrf.group(1)})
        assert 'id="token-string"' not in minted.text
    assert page.status_code == 401
    assert token.key not in page.text
    security.flush()
    assert {t.key for t in security.list_auth_tokens(user="alice")} == before



# -- 2. edit ------------------------------------------------------------------------------
def test_edit_changes_description_and_data(security: Security) -> None:
    alice = Browser(security)
    key = authorize(security, "reports:read jobs:run", "alice", description="old")
    form = alice.get(f"/ui/tokens/{key}/edit")
    assert form.status_code == 200
    assert input_value(form.text, "description") == "old"
    answer = alice.post(f"/ui/tokens/{key}/edit", {
        "scope": "reports:read jobs:run", "description": "weekly <b>report</b>",
        "data": '{"team": 7}'})
    assert answer.status_code == 303
    token = stored(security, key)
    assert token.description == "weekly <b>report</b>" and token.data == '{"team": 7}'
    assert set(token.scopes) == {"reports:read", "jobs:run"}
    page = alice.client.get(answer.headers["location"])
    assert notice_of(page.text) == f"Token {key} updated."
    assert "weekly <b>report" not in page.text  # escaped in the list


def test_edit_narrows_the_scope(security: Security) -> None:
    alice = Browser(security)
    key = authorize(security, "reports:read jobs:run", "alice")
    answer = alice.post(f"/ui/tokens/{key}/edit",
                        {"scope": "reports:read", "description": "", "data": ""})
    assert answer.status_code == 303
    assert stored(security, key).scopes == ("reports:read",)


def test_edit_refuses_a_scope_not_held_and_keeps_what_was_typed(security: Security) -> None:
    alice = Browser(security)
    key = authorize(security, "reports:read", "alice", description="kept")
    typed = {"scope": "reports:read mail:send", "description": "new words",
             "data": "some data"}
    answer = alice.post(f"/ui/tokens/{key}/edit", typed)
    assert answer.status_code == 422
    for name, value in typed.items():
        assert input_value(answer.text, name) == value, name
    token = stored(security, key)
    assert token.scopes == ("reports:read",) and token.description == "kept"
    assert token.data is None


def test_edit_needs_the_forms_csrf(security: Security) -> None:
    alice = Browser(security)
    key = authorize(security, "reports:read", "alice", description="kept")
    form = {"scope": "reports:read", "description": "forged", "data": ""}
    assert alice.post(f"/ui/tokens/{key}/edit", form, csrf=False).status_code == 403
    assert alice.post(f"/ui/tokens/{key}/edit", {**form, "csrf": "f" * 64},
                      csrf=False).status_code == 403
    assert stored(security, key).description == "kept"


def test_a_non_admin_cannot_edit_another_users_token(security: Security) -> None:
    alice = Browser(security)
    key = authorize(security, "reports:read", "bob", description="bob's")
    assert alice.get(f"/ui/tokens/{key}/edit").status_code == 403
    answer = alice.post(f"/ui/tokens/{key}/edit",
                        {"scope": "reports:read", "description": "mine now", "data": ""})
    assert answer.status_code == 403
    assert stored(security, key).description == "bob's"


def test_edit_may_drop_one_of_two_bindings(security: Security) -> None:
    """Two scripts to one: narrower, so allowed; the dropped script is refused."""
    alice = Browser(security)
    token = AuthToken("jobs:run ufs:/jobs/a.py ufs:/jobs/b.py")
    string = security.authorize_token(token, user="alice")
    answer = alice.post(f"/ui/tokens/{token.key}/edit",
                        {"scope": "jobs:run ufs:/jobs/a.py", "description": "", "data": ""})
    assert answer.status_code == 303
    assert security.login_by_auth_token(string, script=Script(path="/jobs/a.py"))
    with pytest.raises(LoginError):
        security.login_by_auth_token(string, script=Script(path="/jobs/b.py"))


def test_edit_cannot_drop_a_tokens_last_script_binding(security: Security) -> None:
    alice = Browser(security)
    token = AuthToken("jobs:run ufs:/jobs/nightly.py")
    string = security.authorize_token(token, user="alice")
    answer = alice.post(f"/ui/tokens/{token.key}/edit",
                        {"scope": "jobs:run", "description": "", "data": ""})
    assert answer.status_code == 422
    assert input_value(answer.text, "scope") == "jobs:run"
    assert set(stored(security, str(token.key)).scopes) == {"jobs:run",
                                                            "ufs:/jobs/nightly.py"}
    with pytest.raises(LoginError):
        security.login_by_auth_token(string)


def test_edit_cannot_drop_a_tokens_code_pin(security: Security) -> None:
    alice = Browser(security)
    token = AuthToken(f"jobs:run ufs:/jobs/nightly.py {PIN}")
    string = security.authorize_token(token, user="alice")
    answer = alice.post(f"/ui/tokens/{token.key}/edit",
                        {"scope": "jobs:run ufs:/jobs/nightly.py", "description": "",
                         "data": ""})
    assert answer.status_code == 422
    assert PIN in stored(security, str(token.key)).scopes
    with pytest.raises(LoginError):
        security.login_by_auth_token(string, script=Script(path="/jobs/nightly.py",
                                                           digest="b" * 64))



# -- 3. the expiry picker -----------------------------------------------------------------
def test_a_short_lived_sign_in_offers_only_what_fits(security: Security,
                                                     clock: FakeClock) -> None:
    clock.advance(hours=20)  # 2030-01-01 20:00: the sign-in ends on the next day
    alice = Browser(security, expires="8h")
    page = alice.get("/ui/").text
    assert options_of(page) == ["1h", "date"]
    date_input = re.search(r'<input type="date" id="expires-date"[^>]*>', page)
    assert date_input is not None and 'max="2030-01-02"' in date_input.group(0)


class Guarded(NamedTuple):
    """A Security under a policy, and the string of alice's token that never expires,
    made before the policy came in."""

    security: Security
    forever: str


def guarded(tmp_path: Path, clock: FakeClock, backend: str, policy: Policy
            ) -> Iterator[Guarded]:
    repository: Repository = (MemoryRepository() if backend == "memory" else
                              SQLRepository(f"sqlite:///{tmp_path / 'policy.db'}"))
    before = Security(repository, secret_keys=["views-test-key"], clock=clock)
    forever = before.authorize_token(AuthToken("jobs:run reports:read", expires=None),
                                     user="alice")
    sec = Security(repository, secret_keys=["views-test-key"], clock=clock, policy=policy)
    yield Guarded(sec, forever)
    sec.close()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def lifetime_limited(tmp_path: Path, clock: FakeClock, backend: str) -> Iterator[Guarded]:
    yield from guarded(tmp_path, clock, backend, Policy(max_lifetime="7d"))


@pytest.fixture
def expiry_required(tmp_path: Path, clock: FakeClock, backend: str) -> Iterator[Guarded]:
    yield from guarded(tmp_path, clock, backend, Policy(require_expiry=True))


def test_a_policys_longest_lifetime_limits_the_picker(lifetime_limited: Guarded) -> None:
    alice = Browser(lifetime_limited.security, string=lifetime_limited.forever)
    page = alice.get("/ui/").text
    offered = options_of(page)
    assert {"30d", "90d", "never"}.isdisjoint(offered)
    assert offered == ["1h", "1d", "7d", "date"]
    assert 'max="2030-01-08"' in page


def test_a_required_expiry_offers_no_never(expiry_required: Guarded) -> None:
    alice = Browser(expiry_required.security, string=expiry_required.forever)
    offered = options_of(alice.get("/ui/").text)
    assert "never" not in offered
    assert offered == ["1h", "1d", "7d", "30d", "90d", "date"]


def test_never_is_offered_only_to_a_sign_in_that_never_expires(security: Security) -> None:
    forever = Browser(security, expires=None)
    assert "never" in options_of(forever.get("/ui/").text)
    mortal = Browser(security, expires="365d")
    offered = options_of(mortal.get("/ui/").text)
    assert "never" not in offered and "90d" in offered


def test_creating_with_a_date_expires_on_that_day(security: Security) -> None:
    alice = Browser(security)
    answer = alice.post("/ui/tokens", create_form(expires="date", expires_date="2030-01-20",
                                                  description="dated"))
    assert answer.status_code == 200, answer.text
    (token,) = [t for t in security.list_auth_tokens(user="alice") if t.description == "dated"]
    assert token.expires == datetime(2030, 1, 20, tzinfo=timezone.utc)


def test_creating_with_a_date_but_no_day_is_422_and_keeps_the_form(
        security: Security) -> None:
    alice = Browser(security)
    before = {t.key for t in security.list_auth_tokens(user="alice")}
    answer = alice.post("/ui/tokens", create_form(expires="date", description="typed words",
                                                  max_uses="3"))
    assert answer.status_code == 422
    assert "Pick the day" in answer.text
    assert input_value(answer.text, "description") == "typed words"
    assert input_value(answer.text, "max_uses") == "3"
    security.flush()
    assert {t.key for t in security.list_auth_tokens(user="alice")} == before


def test_a_date_past_the_sign_ins_expiry_is_refused(security: Security) -> None:
    alice = Browser(security, expires="2d")
    before = {t.key for t in security.list_auth_tokens(user="alice")}
    answer = alice.post("/ui/tokens", create_form(expires="date",
                                                  expires_date="2030-02-20",
                                                  description="too long"))
    assert answer.status_code in (403, 422)
    assert input_value(answer.text, "description") == "too long"
    assert {t.key for t in security.list_auth_tokens(user="alice")} == before


def test_every_date_the_picker_offers_can_be_chosen(security: Security,
                                                    clock: FakeClock) -> None:
    clock.advance(hours=10)  # 2030-01-01 10:00; the sign-in ends at 13:00 the same day
    alice = Browser(security, expires="3h")
    page = alice.get("/ui/").text
    date_input = re.search(r'<input type="date" id="expires-date"[^>]*>', page)
    if date_input is None:  # no whole day fits: no date is offered
        assert "date" not in options_of(page)
        return
    latest = re.search(r'max="([0-9-]{10})"', date_input.group(0))
    if "date" in options_of(page):
        assert latest is not None
        answer = alice.post("/ui/tokens", create_form(expires="date",
                                                      expires_date=latest.group(1)))
        assert answer.status_code == 200, re.findall(r'id="message">([^<]*)', answer.text)



# -- 4. notices ---------------------------------------------------------------------------
def test_revoking_says_so_on_the_list(security: Security) -> None:
    alice = Browser(security)
    key = authorize(security, "reports:read", "alice")
    confirm = alice.get(f"/ui/tokens/{key}/revoke")
    assert confirm.status_code == 200
    answer = alice.post(f"/ui/tokens/{key}/revoke")
    assert answer.status_code == 303
    page = alice.client.get(answer.headers["location"])
    assert notice_of(page.text) == \
        f"Token {key} revoked: every login with it fails from now on."
    assert stored(security, key).revoked_at is not None


@pytest.mark.parametrize("query", [
    {"done": "revoked", "key": "<script>alert(1)</script>"},
    {"done": "revoked", "key": "atk_aaaaaaaaaaaaaaaa.secret"},
    {"done": "revoked"},
    {"done": "<b>pwned</b>", "key": "aaaaaaaaaaaaaaaa"},
    {"done": "updated", "key": "AAAAAAAAAAAAAAAA"},
])
def test_a_query_never_makes_a_notice(security: Security,
                                                 query: dict[str, str]) -> None:
    alice = Browser(security)
    page = alice.get("/ui/", **query)
    assert page.status_code == 200
    assert notice_of(page.text) is None
    for value in query.values():
        if value not in ("revoked", "updated"):
            assert value not in page.text and html.escape(value) not in page.text


def test_no_link_makes_the_page_claim_an_action(security: Security) -> None:
    """The notice comes from the action (a signed cookie, shown once), not the query."""
    alice = Browser(security)
    page = alice.get("/ui/", done="updated", key="aaaaaaaaaaaaaaaa")
    assert notice_of(page.text) is None
