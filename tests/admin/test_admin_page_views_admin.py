"""The token page's wider views, in process over memory and a real SQLite file: an
admin's view of every user's tokens and its filters, revoking from it, revoke-all
behind a confirmation, and the audit trail with its filters and explanations.

Driven as ``test_admin_page_views`` drives the page (``page_views_support``).
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from page_views_support import (
    ADMIN,
    Browser,
    authorize,
    event_rows,
    events_listed,
    keys_listed,
    notice_of,
    stored,
)

from authtoken import AuthToken, LoginError, Script, Security
from authtoken.testing import FakeClock


# -- 1. every user's tokens ---------------------------------------------------------------
@pytest.fixture
def people(security: Security, clock: FakeClock) -> dict[str, str]:
    """Tokens of alice, bob and the integer user 42 in every state; keys by name."""
    keys = {
        "alice_reports": authorize(security, "reports:read", "alice",
                                   description="alice's reports"),
        "alice_nightly": authorize(security, "jobs:run ufs:/jobs/nightly%20report.py",
                                   "alice", run_id="run-7"),
        "bob_expiring": authorize(security, "reports:read", "bob", expires="3d"),
        "bob_revoked": authorize(security, "mail:send", "bob"),
        "bob_expired": authorize(security, "mail:send", "bob", expires="1h"),
        "int_42": authorize(security, "reports:read", 42),
    }
    security.revoke_auth_token_by_key(keys["bob_revoked"])
    clock.advance(hours=2)
    return keys


def test_a_non_admin_cannot_see_every_users_tokens(security: Security,
                                                    people: dict[str, str]) -> None:
    browser = Browser(security)
    answer = browser.get("/ui/all")
    assert answer.status_code == 403
    assert not keys_listed(answer.text)
    assert browser.get("/ui/all", user="bob").status_code == 403


def test_an_admin_sees_every_users_tokens(security: Security,
                                          people: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/all")
    assert page.status_code == 200
    assert set(people.values()) | {admin.key} == keys_listed(page.text)


@pytest.mark.parametrize(("filters", "expected"), [
    ({"user": "alice"}, {"alice_reports", "alice_nightly"}),
    ({"user": "bob"}, {"bob_expiring", "bob_revoked", "bob_expired"}),
    ({"user": "42"}, {"int_42"}),  # the decimal text matches the integer user
    ({"scope": "reports:read"}, {"alice_reports", "bob_expiring", "int_42"}),
    ({"script": "/jobs/nightly report.py"}, {"alice_nightly"}),  # as a person writes it
    ({"script": "nightly%20report"}, {"alice_nightly"}),  # as it is stored
    ({"state": "live", "user": "alice"}, {"alice_reports", "alice_nightly"}),
    ({"state": "expiring"}, {"bob_expiring"}),
    ({"state": "expired"}, {"bob_expired"}),
    ({"state": "revoked"}, {"bob_revoked"}),
    ({"run": "run-7"}, {"alice_nightly"}),
    ({"user": "bob", "scope": "mail:send", "state": "revoked"}, {"bob_revoked"}),
    ({"user": "nobody"}, set()),
])
def test_each_filter_narrows_the_admin_view(security: Security, people: dict[str, str],
                                            filters: dict[str, str],
                                            expected: set[str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/all", **filters)
    assert page.status_code == 200
    assert keys_listed(page.text) == {people[name] for name in expected}
    count = re.search(r'id="count">(\d+) token', page.text)
    assert count is not None and int(count.group(1)) == len(expected)


@pytest.mark.parametrize("filters", [
    {"state": "dormant"}, {"state": "<b>live</b>"}, {"user": "a" * 400},
    {"scope": "s" * 400}, {"script": "/" * 400}, {"run": "r" * 400},
])
def test_a_bad_admin_filter_is_422(security: Security, people: dict[str, str],
                                   filters: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    answer = admin.get("/ui/all", **filters)
    assert answer.status_code == 422
    assert not keys_listed(answer.text)
    (value,) = filters.values()
    assert value not in answer.text and html.escape(value) not in answer.text


def test_hostile_filter_text_is_escaped(security: Security, people: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    hostile = '"><script>alert(1)</script>'
    for name in ("user", "scope", "script", "run"):
        page = admin.get("/ui/all", **{name: hostile})
        assert page.status_code == 200, name
        assert "<script>alert(1)" not in page.text, name
        assert "&lt;script&gt;alert(1)" in page.text, name
        assert not keys_listed(page.text)


def test_an_admin_revokes_from_the_admin_view_and_returns_to_it(
        security: Security, people: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    key = people["bob_expiring"]
    confirm = admin.get(f"/ui/tokens/{key}/revoke", back="all")
    assert confirm.status_code == 200
    back = re.search(r'name="back" value="(all[^"]*)"', confirm.text)
    assert back is not None, confirm.text
    answer = admin.post(f"/ui/tokens/{key}/revoke", {"back": html.unescape(back.group(1))})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/all?")
    page = admin.client.get(answer.headers["location"])
    assert notice_of(page.text) == \
        f"Token {key} revoked: every login with it fails from now on."
    assert stored(security, key).revoked_at is not None


def test_a_non_admin_cannot_revoke_another_users_token(security: Security,
                                                       people: dict[str, str]) -> None:
    alice = Browser(security)
    key = people["bob_expiring"]
    assert alice.get(f"/ui/tokens/{key}/revoke").status_code == 403
    assert alice.post(f"/ui/tokens/{key}/revoke").status_code == 403
    assert alice.post(f"/ui/tokens/{key}/revoke", {"back": "all"}).status_code == 403
    assert stored(security, key).revoked_at is None


def test_revoking_from_a_filtered_admin_view_returns_to_it(
        security: Security, people: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    view = admin.get("/ui/all", user="bob", state="expiring")
    key = people["bob_expiring"]
    link = re.search(rf'href="(/ui/tokens/{key}/revoke\?[^"]*)"', view.text)
    assert link is not None, view.text
    confirm = admin.client.get(html.unescape(link.group(1)))
    back = re.search(r'name="back" value="([^"]*)"', confirm.text)
    assert back is not None
    answer = admin.post(f"/ui/tokens/{key}/revoke", {"back": html.unescape(back.group(1))})
    location = urlsplit(answer.headers["location"])
    assert location.path == "/ui/all" and not location.netloc
    assert dict(parse_qsl(location.query)) == {"user": "bob", "state": "expiring"}
    page = admin.client.get(answer.headers["location"])
    assert notice_of(page.text) == f"Token {key} revoked: every login with it fails from now on."


@pytest.mark.parametrize("back", ["//evil.example/", "https://evil.example/all",
                                  "all?next=https://evil.example&done=pwned&user=bob",
                                  "../all", "all/../../x"])
def test_a_forged_back_leads_nowhere_else(security: Security, people: dict[str, str],
                                          back: str) -> None:
    admin = Browser(security, ADMIN, user="root")
    key = people["alice_reports"]
    answer = admin.post(f"/ui/tokens/{key}/revoke", {"back": back})
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert not location.scheme and not location.netloc
    assert location.path in ("/ui/", "/ui/all")
    query = dict(parse_qsl(location.query))
    assert set(query) <= {"user", "scope", "script", "state", "run"}



# -- 2. revoke every token of a user ------------------------------------------------------
def live_keys(security: Security, user: Any) -> set[str]:
    security.flush()
    return {str(t.key) for t in security.list_auth_tokens(user=user)}


def test_revoke_all_asks_first_then_needs_the_forms_csrf(security: Security,
                                                         people: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    before = live_keys(security, "bob")
    assert before  # bob has live tokens
    confirm = admin.get("/ui/revoke-all", user="bob")
    assert confirm.status_code == 200
    assert 'id="confirm-revoke-all"' in confirm.text and admin.csrf in confirm.text
    assert live_keys(security, "bob") == before  # asking revokes nothing

    refused = admin.post("/ui/revoke-all", {"user": "bob"}, csrf=False)
    assert refused.status_code == 403
    refused = admin.post("/ui/revoke-all", {"user": "bob", "csrf": "0" * 64}, csrf=False)
    assert refused.status_code == 403
    assert live_keys(security, "bob") == before

    done = admin.post("/ui/revoke-all", {"user": "bob"})
    assert done.status_code == 303
    assert live_keys(security, "bob") == set()
    assert live_keys(security, "alice") == {people["alice_reports"], people["alice_nightly"]}
    page = admin.client.get(done.headers["location"])
    assert page.status_code == 200
    assert notice_of(page.text) == f"{len(before)} tokens of bob revoked."


def test_a_non_admin_cannot_revoke_all(security: Security, people: dict[str, str]) -> None:
    alice = Browser(security)
    before = live_keys(security, "bob")
    assert alice.get("/ui/revoke-all", user="bob").status_code == 403
    answer = alice.post("/ui/revoke-all", {"user": "bob"})
    assert answer.status_code == 403
    assert live_keys(security, "bob") == before
    # Not even their own, this way: the admin's action is the admin's.
    assert alice.post("/ui/revoke-all", {"user": "alice"}).status_code == 403
    assert alice.key in live_keys(security, "alice")



def test_a_link_cannot_make_the_admin_view_claim_a_revocation(
        security: Security, people: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/all", user="bob", revoked_all="999")
    assert page.status_code == 200
    assert notice_of(page.text) is None


# -- 3. the audit trail -------------------------------------------------------------------
@pytest.fixture
def trail(security: Security, clock: FakeClock) -> dict[str, Any]:
    """Logins of alice and bob on 2030-01-01, then of bob's script-bound token refused
    on 2030-01-03 (no script, another script)."""
    alice = security.authorize_token(AuthToken("reports:read"), user="alice")
    bob = security.authorize_token(AuthToken("reports:read"), user="bob")
    bound = AuthToken("jobs:run ufs:/jobs/nightly.py")
    bound_string = security.authorize_token(bound, user="bob")
    security.login_by_auth_token(alice)
    security.login_by_auth_token(bob)
    clock.advance(days=2)
    for script in (None, Script(path="/jobs/other.py")):
        with pytest.raises(LoginError):
            security.login_by_auth_token(bound_string, script=script)
    security.flush()
    return {"alice": security.restore_auth_token(alice).key,
            "bob": security.restore_auth_token(bob).key, "bound": bound.key}


def test_a_non_admin_reads_only_events_about_its_own_tokens(
        security: Security, trail: dict[str, Any]) -> None:
    alice = Browser(security)
    page = alice.get("/ui/audit")
    assert page.status_code == 200
    listed = set(events_listed(page.text)) - {""}
    assert trail["alice"] in listed and alice.key in listed
    assert not listed & {trail["bob"], trail["bound"]}
    assert alice.get("/ui/audit", user="bob").status_code == 403
    answer = alice.get("/ui/audit", token=trail["bob"])
    assert answer.status_code in (200, 403)
    assert trail["bob"] not in events_listed(answer.text)


def test_an_admin_reads_every_event(security: Security, trail: dict[str, Any]) -> None:
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/audit")
    assert page.status_code == 200
    listed = set(events_listed(page.text))
    assert {trail["alice"], trail["bob"], trail["bound"]} <= listed
    only_bob = set(events_listed(admin.get("/ui/audit", user="bob").text)) - {""}
    assert only_bob == {trail["bob"], trail["bound"]}


@pytest.mark.parametrize(("filters", "expected"), [
    ({"action": "login"}, {"alice", "bob", "bound"}),
    ({"action": "login", "outcome": "ok"}, {"alice", "bob"}),
    ({"outcome": "refused"}, {"bound"}),
    ({"action": "revoke"}, set()),
    ({"since": "2030-01-02"}, {"bound"}),
    ({"since": "2030-01-02T00:00"}, {"bound"}),
    ({"until": "2030-01-02", "action": "login"}, {"alice", "bob"}),
    ({"since": "2030-01-04"}, set()),
    ({"since": "2030-01-03", "outcome": "refused"}, {"bound"}),  # since: from, inclusive
    ({"until": "2030-01-03", "outcome": "refused"}, set()),  # until: before, exclusive
])
def test_the_audit_filters(security: Security, trail: dict[str, Any],
                           filters: dict[str, str], expected: set[str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/audit", **filters)
    assert page.status_code == 200
    listed = set(events_listed(page.text)) - {"", admin.key}
    assert listed == {trail[name] for name in expected}


def test_the_audit_token_filter(security: Security, trail: dict[str, Any]) -> None:
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/audit", token=trail["bound"])
    assert page.status_code == 200
    listed = events_listed(page.text)
    assert listed and set(listed) == {trail["bound"]}


def test_a_refused_login_says_why_and_what_a_login_would_get_now(
        security: Security, trail: dict[str, Any]) -> None:
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/audit", token=trail["bound"], outcome="refused")
    rows = event_rows(page.text)
    assert len(rows) >= 1
    for row in rows:
        text = html.unescape(re.sub(r"<[^>]+>", "", row))
        assert "ScriptNotAuthorized" in text
        assert "bind the token to it" in text  # the advice
        assert "A login like it now:" in text
    assert any("/jobs/other.py" in r for r in rows)  # the script of the attempt


@pytest.mark.parametrize("filters", [
    {"action": "<b>evil-action-xyz</b>"}, {"action": "LOGIN"},
    {"outcome": "maybe-later-qq"},
    {"token": "not-a-key-zzz"}, {"token": "ATK_AAAAAAAAAAAAAAAA"},
    {"since": "yesterday-ish-qq"}, {"until": "2030-13-45"}, {"since": "9" * 40},
    {"user": "u" * 400},
])
def test_a_bad_audit_filter_is_422_without_the_input(security: Security,
                                                     filters: dict[str, str]) -> None:
    admin = Browser(security, ADMIN, user="root")
    answer = admin.get("/ui/audit", **filters)
    assert answer.status_code == 422
    (value,) = filters.values()
    message = re.search(r'id="message"[^>]*>(.*?)</', answer.text, re.DOTALL)
    shown = answer.text if message is None else message.group(1)
    assert value not in shown and html.escape(value) not in shown
    assert value not in answer.text


def test_what_a_caller_sent_with_a_login_is_escaped_on_the_audit_page(
        security: Security) -> None:
    """A refused login's script path is the caller's text: shown, never as markup."""
    hostile = '/jobs/"><script>alert(1)</script>.py'
    bound = AuthToken("jobs:run ufs:/jobs/nightly.py")
    string = security.authorize_token(bound, user="bob")
    with pytest.raises(LoginError):
        security.login_by_auth_token(string, script=Script(path=hostile))
    admin = Browser(security, ADMIN, user="root")
    page = admin.get("/ui/audit", token=str(bound.key))
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert html.escape(hostile, quote=False).replace('"', "&#34;") in page.text or \
        html.escape(hostile) in page.text
    confirm = admin.get("/ui/revoke-all", user="<b>bob</b>")
    assert "<b>bob</b>" not in confirm.text


@pytest.mark.parametrize("moment", [
    "0001-01-01", "9999-12-31",
    "0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00",
])
def test_an_extreme_since_is_no_server_error(security: Security, moment: str) -> None:
    admin = Browser(security, ADMIN, user="root")
    answer = admin.get("/ui/audit", since=moment)
    assert answer.status_code in (200, 422)
    assert admin.get("/ui/audit", until=moment).status_code in (200, 422)


@pytest.mark.parametrize("filters", [{"outcome": "refused"}, {"action": "login"},
                                     {"until": "2030-01-01T00:30"}])
def test_the_audit_filters_find_an_event_behind_a_thousand_newer_ones(
        mem: Security, clock: FakeClock, filters: dict[str, str]) -> None:
    bound = AuthToken("jobs:run ufs:/jobs/nightly.py")
    string = mem.authorize_token(bound, user="bob")
    with pytest.raises(LoginError):
        mem.login_by_auth_token(string)  # refused: the one login on the trail
    clock.advance(hours=1)
    for _ in range(1001):
        mem.authorize_token(AuthToken("reports:read"), user="bob")
    admin = Browser(mem, ADMIN, user="root")
    page = admin.get("/ui/audit", user="bob", **filters)
    assert page.status_code == 200
    assert bound.key in events_listed(page.text)



# -- 4. a page view is no login, for an admin either --------------------------------------
def test_a_page_view_of_another_users_page_is_no_login_either(
        security: Security, clock: FakeClock) -> None:
    """The admin view too reads the sign-in without spending it."""
    admin = Browser(security, ADMIN, user="root", max_uses=1)
    for _ in range(5):
        assert admin.get("/ui/all").status_code == 200
        assert admin.get("/ui/audit").status_code == 200
    clock.advance(minutes=5)
    assert stored(security, admin.key).use_count == 1

