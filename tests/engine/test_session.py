"""Session and ScriptRunner: ownership, and no escalation through delegation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from authtoken import (
    AuthToken,
    InvalidToken,
    PermissionDenied,
    Script,
    ScriptNotAuthorized,
    ScriptRunner,
    Security,
    Session,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from authtoken.testing import FakeClock


def logged_in(security: Security, scope: object, *, script: Script | None = None,
              user: object = "alice", **kwargs: object) -> Session:
    string = security.authorize_token(AuthToken(scope, **kwargs), user=user)  # type: ignore[arg-type]
    session = Session(security, script=script)
    session.login_by_auth_token(string)
    return session


def test_login_sets_user_and_principal(security: Security) -> None:
    """A successful login sets session.user and session.principal."""
    string = security.authorize_token(AuthToken("a"), user="alice")
    session = Session(security)
    principal = session.login_by_auth_token(string)
    assert session.user == "alice" and session.principal == principal


def test_failed_login_leaves_session_unchanged(security: Security) -> None:
    """A refused login changes neither user nor principal."""
    string = security.authorize_token(AuthToken("vfs:ikey?1"), user="alice")
    session = Session(security, user="bob", script=Script(key=2))
    with pytest.raises(ScriptNotAuthorized):
        session.login_by_auth_token(string)
    with pytest.raises(InvalidToken):
        session.login_by_auth_token("garbage")
    assert session.user == "bob" and session.principal is None


def test_no_user_is_permission_denied(security: Security) -> None:
    """A session without a user cannot manage tokens."""
    session = Session(security)
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken("a"))
    with pytest.raises(PermissionDenied):
        session.list_auth_tokens()
    assert security.list_auth_tokens(include_revoked=True) == []


def test_user_session_manages_own_tokens(security: Security) -> None:
    """A user session authorizes, lists, updates and revokes its own tokens."""
    session = Session(security, user="alice")
    token = AuthToken("a")
    string = session.authorize_token(token)
    assert token.user == "alice" and token.parent_key is None
    assert [t.key for t in session.list_auth_tokens()] == [token.key]
    token.description = "d"
    session.update_auth_token(token)
    session.revoke_auth_token(string)
    assert session.list_auth_tokens() == []
    assert len(session.list_auth_tokens(include_revoked=True)) == 1


def test_other_users_tokens_are_off_limits(security: Security) -> None:
    """A non-admin session cannot touch another user's tokens, and nothing changes."""
    bob_token = AuthToken("a")
    bob_string = security.authorize_token(bob_token, user="bob")
    session = Session(security, user="alice")
    bob_token.description = "hijacked"
    with pytest.raises(PermissionDenied):
        session.update_auth_token(bob_token)
    with pytest.raises(PermissionDenied):
        session.revoke_auth_token(bob_string)
    with pytest.raises(PermissionDenied):
        session.revoke_auth_token_by_key(bob_token.key or "")
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken("a"), user="bob")
    with pytest.raises(PermissionDenied):
        session.list_auth_tokens(user="bob")
    stored = security.get_auth_token(bob_token.key or "")
    assert stored.revoked_at is None and stored.description == ""
    assert len(security.list_auth_tokens(user="bob")) == 1


def test_int_user_is_not_str_user(security: Security) -> None:
    """Session user 42 does not own the tokens of user '42'."""
    token = AuthToken("a")
    security.authorize_token(token, user="42")
    with pytest.raises(PermissionDenied):
        Session(security, user=42).revoke_auth_token_by_key(token.key or "")


def test_admin_session_manages_anyone(security: Security) -> None:
    """An admin session may act for any user."""
    admin = Session(security, user="root", admin=True)
    token = AuthToken("a")
    admin.authorize_token(token, user="bob")
    assert token.user == "bob"
    assert [t.key for t in admin.list_auth_tokens(user="bob")] == [token.key]
    admin.revoke_auth_token_by_key(token.key or "")
    assert Session(security, admin=True).list_auth_tokens(include_revoked=True)[0].key == token.key


def test_unknown_key_is_not_found(security: Security) -> None:
    """Revoking an unknown key through a session is TokenNotFound."""
    with pytest.raises(TokenNotFound):
        Session(security, user="alice").revoke_auth_token_by_key("aaaaaaaaaaaaaaaa")


# -- delegation ------------------------------------------------------------------------
def test_child_token_is_narrower_and_linked(security: Security, clock: FakeClock) -> None:
    """A token session mints a child with its own key as parent_key."""
    session = logged_in(security, "read write", expires="10d")
    child = AuthToken("read")
    child_string = session.authorize_token(child)
    assert session.principal is not None
    assert child.parent_key == session.principal.token_key
    assert child.user == "alice"
    # omitted expiry: the earlier of 30 days and the parent's 10 days
    assert child.expires == clock() + timedelta(days=10)
    assert security.login_by_auth_token(child_string).scopes == ("read",)


def test_omitted_child_expiry_is_30_days_when_parent_lives_longer(security: Security,
                                                                  clock: FakeClock) -> None:
    """Under a never-expiring parent, an omitted expiry is the usual 30 days."""
    session = logged_in(security, "read", expires=None)
    child = AuthToken("read")
    session.authorize_token(child)
    assert child.expires == clock() + timedelta(days=30)


@pytest.mark.parametrize("scope", ["admin", "read admin", "vfs:ikey?1 admin"])
def test_wider_scopes_are_denied(security: Security, scope: str) -> None:
    """A child may not hold scopes its parent lacks; nothing is stored."""
    session = logged_in(security, "read write")
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken(scope))
    assert len(security.list_auth_tokens(include_revoked=True)) == 1


def test_unbound_parent_may_bind_child(security: Security) -> None:
    """A parent usable by any script may delegate to a token bound to one script."""
    session = logged_in(security, "read")
    child = AuthToken("read vfs:ikey?9")
    session.authorize_token(child)
    assert child.bindings == ("vfs:ikey?9",)


def test_bound_parent_bindings(security: Security) -> None:
    """A bound parent's child must be bound to a non-empty subset of its scripts."""
    session = logged_in(security, "read vfs:ikey?1 ufs:/jobs/a.py", script=Script(key=1))
    for scope in ("read", "read vfs:ikey?2", "read ufs:/jobs/b.py", "read vfs:ikey?1 vfs:ikey?2"):
        with pytest.raises(PermissionDenied):
            session.authorize_token(AuthToken(scope))
    for scope in ("read vfs:ikey?1", "ufs:/jobs/./a.py", "read vfs:ikey?1 ufs:/jobs/a.py"):
        session.authorize_token(AuthToken(scope))
    assert len(security.list_auth_tokens()) == 4


def test_child_cannot_outlive_parent(security: Security, clock: FakeClock) -> None:
    """An explicit child expiry later than the parent's, or never, is denied."""
    session = logged_in(security, "read", expires="1h")
    for expires in ("2h", None, "never", clock() + timedelta(hours=1, seconds=1)):
        with pytest.raises(PermissionDenied):
            session.authorize_token(AuthToken("read", expires=expires))
    session.authorize_token(AuthToken("read", expires="1h"))
    session.authorize_token(AuthToken("read", expires="59m"))


def test_grandchildren_stay_within_the_chain(security: Security) -> None:
    """A child session is limited by the child token, not the root."""
    root = logged_in(security, "a b c")
    child_string = root.authorize_token(AuthToken("a b"))
    child = Session(security)
    child.login_by_auth_token(child_string)
    with pytest.raises(PermissionDenied):
        child.authorize_token(AuthToken("c"))
    grandchild = AuthToken("a")
    child.authorize_token(grandchild)
    assert child.principal is not None and grandchild.parent_key == child.principal.token_key


def test_revoking_parent_revokes_descendants(security: Security) -> None:
    """Revoking a token revokes its whole subtree, and only that."""
    root_string = security.authorize_token(AuthToken("a b"), user="alice")
    root = Session(security)
    root.login_by_auth_token(root_string)
    child_string = root.authorize_token(AuthToken("a"))
    sibling_string = security.authorize_token(AuthToken("a"), user="alice")
    child = Session(security)
    child.login_by_auth_token(child_string)
    grandchild_string = child.authorize_token(AuthToken("a"))
    security.revoke_auth_token(root_string)
    for string in (root_string, child_string, grandchild_string):
        with pytest.raises(TokenRevoked):
            security.login_by_auth_token(string)
    security.login_by_auth_token(sibling_string)


def test_revoked_session_token_cannot_delegate(security: Security) -> None:
    """After its token is revoked, a session can no longer mint children."""
    session = logged_in(security, "a")
    assert session.principal is not None
    security.revoke_auth_token_by_key(session.principal.token_key)
    with pytest.raises(TokenRevoked):
        session.authorize_token(AuthToken("a"))
    assert security.list_auth_tokens() == []


def test_parent_narrowed_after_login_limits_children(security: Security) -> None:
    """Limits follow the parent as stored now, not as it was at login."""
    session = logged_in(security, "a b")
    assert session.principal is not None
    parent = security.get_auth_token(session.principal.token_key)
    parent.scope = "a"
    security.update_auth_token(parent)
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken("b"))


def test_updates_stay_within_the_session(security: Security, clock: FakeClock) -> None:
    """A token session may not widen scope or expiry by update; description/data are free."""
    session = logged_in(security, "a b", expires="1d")
    sibling = AuthToken("a c", expires="3d")
    security.authorize_token(sibling, user="alice")
    sibling.description = "only text"
    sibling.data = "payload"
    session.update_auth_token(sibling)  # scope and expiry unchanged: allowed
    sibling.scope = "a c d"
    with pytest.raises(PermissionDenied):
        session.update_auth_token(sibling)
    sibling.scope = "b"
    with pytest.raises(PermissionDenied):  # scope fine, but the token still outlives ours
        session.update_auth_token(sibling)
    sibling.expires = "12h"
    session.update_auth_token(sibling)  # now wholly within the session's own
    sibling.expires = "2d"
    with pytest.raises(PermissionDenied):
        session.update_auth_token(sibling)
    sibling.expires = "12h"
    session.update_auth_token(sibling)
    stored = security.get_auth_token(sibling.key or "")
    assert (stored.scope, stored.description, stored.data) == ("b", "only text", "payload")
    assert stored.expires == clock() + timedelta(hours=12)


# -- ScriptRunner -------------------------------------------------------------------------
def test_script_runner_logs_in_for_its_script(security: Security) -> None:
    """ScriptRunner returns a session for its script, or refuses other scripts' tokens."""
    string = security.authorize_token(AuthToken("read vfs:ikey?42"), user=7)
    session = ScriptRunner(security, Script(key=42)).login_by_auth_token(string)
    assert session.user == 7 and session.script == Script(key=42)
    with pytest.raises(ScriptNotAuthorized):
        ScriptRunner(security, Script(key=43)).login_by_auth_token(string)


def test_script_runner_needs_a_script(security: Security) -> None:
    """ScriptRunner and Session refuse a script that is not a Script."""
    with pytest.raises(TypeError):
        ScriptRunner(security, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Session(security, script="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Session("not a security")  # type: ignore[arg-type]


def test_dead_session_token_cannot_manage(security: Security, clock: FakeClock) -> None:
    """Once its token is revoked or expired, a session can neither list nor revoke."""
    other = AuthToken("a")
    other_string = security.authorize_token(other, user="alice")
    session = logged_in(security, "a", expires="1h")
    clock.advance(hours=2)
    with pytest.raises(TokenExpired):
        session.list_auth_tokens()
    fresh = logged_in(security, "a")
    assert fresh.principal is not None
    security.revoke_auth_token_by_key(fresh.principal.token_key)
    with pytest.raises(TokenRevoked):
        fresh.list_auth_tokens()
    with pytest.raises(TokenRevoked):
        fresh.revoke_auth_token(other_string)
    with pytest.raises(TokenRevoked):
        fresh.revoke_auth_token_by_key(other.key or "")
    assert security.get_auth_token(other.key or "").revoked_at is None


def test_update_cannot_widen_by_changing_one_field(security: Security, clock: FakeClock) -> None:
    """Changing only the scope of a never-expiring token does not escape the expiry limit."""
    short = logged_in(security, "admin:write", expires="1h")
    weak = AuthToken("read", expires=None)
    weak_string = security.authorize_token(weak, user="alice")
    weak.scope = "admin:write"
    with pytest.raises(PermissionDenied):
        short.update_auth_token(weak)
    assert security.login_by_auth_token(weak_string).scopes == ("read",)


def test_child_expiry_is_vetted_as_stored(security: Security) -> None:
    """A child's relative expiry is resolved once, so the check sees the stored value."""
    ticking = FakeClock()
    security._clock = lambda: ticking.advance(seconds=1)  # every reading moves time on
    security._now_us = lambda: int(ticking().timestamp() * 1_000_000)
    session = logged_in(security, "a", expires="1h")
    assert session.principal is not None and session.principal.expires is not None
    child = AuthToken("a", expires=timedelta(hours=1))
    with pytest.raises(PermissionDenied):
        session.authorize_token(child)


def test_no_user_is_checked_first(security: Security) -> None:
    """A session without a user is PermissionDenied before anything is looked up."""
    token = AuthToken("a")
    string = security.authorize_token(token, user=5)
    security.revoke_auth_token(string)
    session = Session(security)
    with pytest.raises(PermissionDenied):
        session.update_auth_token(token)
    with pytest.raises(PermissionDenied):
        session.revoke_auth_token("garbage")
    with pytest.raises(PermissionDenied):
        session.revoke_auth_token_by_key("aaaaaaaaaaaaaaaa")
    with pytest.raises(PermissionDenied):  # not TokenRevoked: another user's state stays hidden
        Session(security, user=2).update_auth_token(token)


def test_get_auth_token_shows_own_tokens_only(security: Security) -> None:
    """A session reads its own user's tokens; another user's is PermissionDenied."""
    mine, theirs = AuthToken("a"), AuthToken("b")
    security.authorize_token(mine, user="alice")
    security.authorize_token(theirs, user="bob")
    session = Session(security, user="alice")
    assert session.get_auth_token(mine.key or "").key == mine.key
    with pytest.raises(PermissionDenied):
        session.get_auth_token(theirs.key or "")
    with pytest.raises(PermissionDenied):  # 42 is not "42"
        Session(security, user=42).get_auth_token(mine.key or "")
    with pytest.raises(PermissionDenied):
        Session(security).get_auth_token(mine.key or "")


def test_get_auth_token_for_an_admin_and_unknown_keys(security: Security) -> None:
    """An admin session reads anyone's token; an unknown key is TokenNotFound."""
    token = AuthToken("a")
    security.authorize_token(token, user="bob")
    assert Session(security, user="root", admin=True).get_auth_token(token.key or "").user == "bob"
    assert Session(security, admin=True).get_auth_token(token.key or "").key == token.key
    for session in (Session(security, user="alice"), Session(security, admin=True)):
        with pytest.raises(TokenNotFound):
            session.get_auth_token("aaaaaaaaaaaaaaaa")
        with pytest.raises(TokenNotFound):
            session.get_auth_token(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            session.get_auth_token(5)  # type: ignore[arg-type]


def test_get_auth_token_of_a_dead_session_token_is_refused(security: Security) -> None:
    """A session whose own token was revoked reads nothing more."""
    session = logged_in(security, "a")
    assert session.principal is not None
    key = session.principal.token_key
    assert session.get_auth_token(key).key == key
    security.revoke_auth_token_by_key(key)
    with pytest.raises(TokenRevoked):
        session.get_auth_token(key)


def test_revoke_user_tokens_as_the_session(security: Security) -> None:
    """A session revokes its own user's tokens; the trail names the session as actor."""
    for scope in ("a", "b"):
        security.authorize_token(AuthToken(scope), user="alice")
    bob = AuthToken("c")
    security.authorize_token(bob, user="bob")
    assert Session(security, user="alice").revoke_user_tokens("alice") == 2
    assert Session(security, user="alice").revoke_user_tokens("alice") == 0
    assert security.list_auth_tokens(user="alice") == []
    assert [t.key for t in security.list_auth_tokens(user="bob")] == [bob.key]
    events = [e for e in security.audit_events() if e.action == "revoke_all"]
    assert [(e.outcome, e.actor, e.user) for e in events] == [
        ("ok", "user:alice", "alice"), ("ok", "user:alice", "alice")]


def test_revoke_user_tokens_of_another_user_is_refused_and_recorded(security: Security) -> None:
    """A non-admin naming another user is PermissionDenied, recorded; nothing changes."""
    security.authorize_token(AuthToken("a"), user="bob")
    session = logged_in(security, "a", user="alice")
    with pytest.raises(PermissionDenied):
        session.revoke_user_tokens("bob")
    with pytest.raises(PermissionDenied):
        Session(security).revoke_user_tokens("bob")
    assert len(security.list_auth_tokens(user="bob")) == 1
    refused = [e for e in security.audit_events() if e.action == "revoke_all"]
    assert session.principal is not None
    assert sorted((e.outcome, e.reason, e.user, str(e.actor)) for e in refused) == [
        ("refused", "PermissionDenied", "bob", "None"),
        ("refused", "PermissionDenied", "bob", f"token:{session.principal.token_key}"),
    ]


def test_admin_revokes_any_users_tokens(security: Security) -> None:
    """An admin session revokes another user's tokens, recorded as the admin."""
    security.authorize_token(AuthToken("a"), user=7)
    assert Session(security, user="root", admin=True).revoke_user_tokens(7) == 1
    assert Session(security, admin=True).revoke_user_tokens("7") == 0  # "7" is not 7
    events = [e for e in security.audit_events() if e.action == "revoke_all"]
    assert {(e.actor, e.user) for e in events} == {("admin", "7"), ("user:root (admin)", 7)}


def test_audit_events_as_the_session(security: Security) -> None:
    """A user's session reads its own user's events only; an admin reads anyone's."""
    alice = logged_in(security, "a")
    bob = Session(security, user="bob")
    bob.authorize_token(AuthToken("b"))
    own = alice.audit_events()
    assert own and {e.user for e in own} == {"alice"}
    assert {e.user for e in alice.audit_events(user="alice")} == {"alice"}
    with pytest.raises(PermissionDenied, match="audit trail of another user"):
        alice.audit_events(user="bob")
    with pytest.raises(PermissionDenied, match="audit trail of another user"):
        bob.audit_events(user=7)
    with pytest.raises(PermissionDenied):
        Session(security).audit_events()  # no user, not admin: nobody's events
    admin = Session(security, user="root", admin=True)
    assert {e.user for e in admin.audit_events()} >= {"alice", "bob"}
    assert {e.user for e in admin.audit_events(user="bob")} == {"bob"}


def test_audit_events_of_a_dead_session_token_are_refused(security: Security) -> None:
    """A session whose token was revoked since it logged in reads nothing more."""
    session = logged_in(security, "a")
    assert session.principal is not None
    security.revoke_auth_token_by_key(session.principal.token_key)
    with pytest.raises(TokenRevoked):
        session.audit_events()


def test_refusals_say_what_was_refused(security: Security) -> None:
    """Naming another user says which act needs an admin; a token never authorized
    says so."""
    alice = Session(security, user="alice")
    with pytest.raises(PermissionDenied, match="only an admin can list another user's"):
        alice.list_auth_tokens(user="bob")
    with pytest.raises(PermissionDenied, match="only an admin can revoke another user's"):
        alice.revoke_user_tokens("bob")
    with pytest.raises(PermissionDenied, match="only an admin session can act for another"):
        alice.authorize_token(AuthToken("a"), user="bob")
    with pytest.raises(TokenNotFound, match="never authorized"):
        alice.update_auth_token(AuthToken("a"))
    with pytest.raises(TokenNotFound, match="never authorized"):
        alice.revoke_auth_token_by_key(None)  # type: ignore[arg-type]
