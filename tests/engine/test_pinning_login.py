"""Code pinning in the engine, on every backend: the login rule, delegation through a
Session (authorize and update), and that a login of an unbound token skips the check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import authtoken._login
from authtoken import (
    AuthToken,
    PermissionDenied,
    Script,
    ScriptNotAuthorized,
    ScriptRunner,
    Security,
    Session,
)
from authtoken._scopes import Script as _Script

CODE_A = b"print('report')\n"
CODE_B = b"print('report, changed')\n"
DIGEST_A = hashlib.sha256(CODE_A).hexdigest()
DIGEST_B = hashlib.sha256(CODE_B).hexdigest()
PIN_A = "sha256:" + DIGEST_A
PIN_B = "sha256:" + DIGEST_B


def authorized(security: Security, scope: str) -> str:
    return security.authorize_token(AuthToken(scope), user="alice")


# -- the login rule ------------------------------------------------------------------------
def test_pinned_token_logs_in_for_its_code(security: Security, tmp_path: Path) -> None:
    """A pinned token logs in for a script running that code -- from a file too -- and
    the principal carries the script."""
    string = authorized(security, f"read {PIN_A}")
    job = tmp_path / "job.py"
    job.write_bytes(CODE_A)
    script = Script.for_file(job)
    principal = security.login_by_auth_token(string, script=script)
    assert principal.script == script and principal.has_scope(PIN_A)
    assert security.login_by_auth_token(string, script=Script(digest=DIGEST_A)).user == "alice"


def test_pinned_token_refuses_changed_code(security: Security, tmp_path: Path) -> None:
    """Once the file changes, the same token is refused: ScriptNotAuthorized."""
    string = authorized(security, f"read {PIN_A}")
    job = tmp_path / "job.py"
    job.write_bytes(CODE_B)
    with pytest.raises(ScriptNotAuthorized, match="other code") as info:
        security.login_by_auth_token(string, script=Script.for_file(job))
    assert string not in str(info.value) and string not in repr(info.value)


@pytest.mark.parametrize("script", [None, Script(key=1), Script(path="/jobs/a.py")],
                         ids=["none", "key", "path"])
def test_pinned_token_refuses_script_without_digest(security: Security,
                                                    script: Script | None) -> None:
    """A script with no digest (or none at all) cannot use a pinned token."""
    string = authorized(security, f"read {PIN_A}")
    with pytest.raises(ScriptNotAuthorized, match="pinned to code"):
        security.login_by_auth_token(string, script=script)


def test_any_of_several_pins(security: Security) -> None:
    """A token pinned to two versions of the code logs in for either, and no other."""
    string = authorized(security, f"{PIN_A} {PIN_B}")
    for digest in (DIGEST_A, DIGEST_B):
        security.login_by_auth_token(string, script=Script(digest=digest))
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(string, script=Script(digest="0" * 64))


@pytest.mark.parametrize(("script", "allowed"), [
    (Script(key=7, digest=DIGEST_A), True),
    (Script(key=7, path="/jobs/other.py", digest=DIGEST_A), True),
    (Script(path="/jobs/./a.py", digest=DIGEST_A), True),
    (Script(key=7), False),
    (Script(key=8, digest=DIGEST_A), False),
    (Script(key=7, digest=DIGEST_B), False),
    (Script(path="/jobs/b.py", digest=DIGEST_A), False),
    (Script(digest=DIGEST_A), False),
])
def test_both_kinds_need_both(security: Security, script: Script, allowed: bool) -> None:
    """A token with script and code bindings needs a script satisfying both rules."""
    string = authorized(security, f"read vfs:ikey?7 ufs:/jobs/a.py {PIN_A}")
    if allowed:
        assert security.login_by_auth_token(string, script=script).token_key is not None
    else:
        with pytest.raises(ScriptNotAuthorized):
            security.login_by_auth_token(string, script=script)


def test_unpinned_token_ignores_digest(security: Security) -> None:
    """An unpinned token behaves as before, whatever digest the script has."""
    bound = authorized(security, "read vfs:ikey?7")
    free = authorized(security, "read")
    security.login_by_auth_token(bound, script=Script(key=7, digest=DIGEST_B))
    security.login_by_auth_token(free, script=Script(digest=DIGEST_B))
    security.login_by_auth_token(free)


def test_wrong_case_pin_binds_nothing(security: Security) -> None:
    """SHA256: in upper case is an opaque scope: the token is not pinned."""
    string = authorized(security, "read SHA256:" + DIGEST_A)
    assert security.login_by_auth_token(string).has_scope("SHA256:" + DIGEST_A)


def test_refused_login_is_not_counted(security: Security) -> None:
    """A pinned login refused for its code is not counted as a use of the token."""
    token = AuthToken(f"read {PIN_A}")
    string = security.authorize_token(token, user="alice")
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(string, script=Script(digest=DIGEST_B))
    security.flush()
    assert token.key is not None and security.get_auth_token(token.key).use_count == 0


def test_script_runner_with_file(security: Security, tmp_path: Path) -> None:
    """A ScriptRunner for Script.for_file logs in with a token pinned to that file."""
    job = tmp_path / "job.py"
    job.write_bytes(CODE_A)
    string = authorized(security, f"read ufs:{job} {PIN_A}")
    session = ScriptRunner(security, Script.for_file(job)).login_by_auth_token(string)
    assert session.user == "alice"


# -- delegation through a Session ------------------------------------------------------
def pinned_session(security: Security, scope: str, script: Script) -> Session:
    string = authorized(security, scope)
    session = Session(security, script=script)
    session.login_by_auth_token(string)
    return session


def test_unpinned_parent_may_pin_child(security: Security) -> None:
    """A token usable by any code may delegate a token pinned to some code."""
    session = pinned_session(security, "read", Script(key=1))
    child = AuthToken(f"read {PIN_A}")
    string = session.authorize_token(child)
    assert child.parent_key == session.principal.token_key  # type: ignore[union-attr]
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(string, script=Script(digest=DIGEST_B))


@pytest.mark.parametrize("scope", ["read", f"read {PIN_B}", f"read {PIN_A} {PIN_B}",
                                   "read vfs:ikey?1", f"read SHA256:{DIGEST_A}"])
def test_pinned_parent_refuses_wider_child(security: Security, scope: str) -> None:
    """A pinned parent's child must hold a non-empty subset of its pins; nothing stored."""
    session = pinned_session(security, f"read {PIN_A}", Script(digest=DIGEST_A))
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken(scope))
    assert len(security.list_auth_tokens(include_revoked=True)) == 1


def test_pinned_parent_allows_subset(security: Security) -> None:
    """A child pinned to one or both of its parent's pins is allowed."""
    session = pinned_session(security, f"read {PIN_A} {PIN_B}", Script(digest=DIGEST_B))
    for scope in (PIN_A, f"read {PIN_B}", f"{PIN_B} {PIN_A} read"):
        session.authorize_token(AuthToken(scope))
    assert len(security.list_auth_tokens()) == 4


def test_missing_pin_names_the_fix(security: Security) -> None:
    """Dropping the pin is refused with the pins the child may take."""
    session = pinned_session(security, f"read {PIN_A}", Script(digest=DIGEST_A))
    with pytest.raises(PermissionDenied, match="pinned to code") as info:
        session.authorize_token(AuthToken("read"))
    assert PIN_A in str(info.value)


def test_pins_and_script_bindings_apart(security: Security) -> None:
    """A parent bound to a script and pinned to code: its child keeps both, each within
    the parent's; a pin never stands in for a script binding."""
    session = pinned_session(security, f"read vfs:ikey?1 {PIN_A}",
                             Script(key=1, digest=DIGEST_A))
    for scope in ("read vfs:ikey?1", f"read {PIN_A}", f"vfs:ikey?2 {PIN_A}"):
        with pytest.raises(PermissionDenied):
            session.authorize_token(AuthToken(scope))
    session.authorize_token(AuthToken(f"vfs:ikey?1 {PIN_A}"))


def test_update_cannot_drop_or_swap_pin(security: Security) -> None:
    """A pinned session may not update a child to drop or change its pin; the stored
    child keeps its scope.  Changing its description is always allowed."""
    session = pinned_session(security, f"read {PIN_A}", Script(digest=DIGEST_A))
    child = AuthToken(f"read {PIN_A}")
    session.authorize_token(child)
    assert child.key is not None
    for scope in ("read", PIN_B):
        child.scope = scope
        with pytest.raises(PermissionDenied):
            session.update_auth_token(child)
        child = security.get_auth_token(child.key)
        assert child.scope == f"read {PIN_A}"
    child.description = "nightly"
    session.update_auth_token(child)


# -- unbound logins do not pay for the check -----------------------------------------------
def test_unbound_login_skips_binding_check(security: Security,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A token with neither script nor code bindings never reaches the binding check;
    a bound or pinned one does, once per login."""
    calls: list[tuple[str, ...]] = []
    real = authtoken._login.binding_refusal

    def counting(scopes: tuple[str, ...], script: _Script | None) -> str | None:
        calls.append(scopes)
        return real(scopes, script)

    monkeypatch.setattr(authtoken._login, "binding_refusal", counting)
    for scope in ("read", "reports:read reports:write", "SHA256:x sha512:y vfs ufs"):
        security.login_by_auth_token(authorized(security, scope), script=Script(key=1))
    assert calls == []
    security.login_by_auth_token(authorized(security, "vfs:ikey?1"), script=Script(key=1))
    security.login_by_auth_token(authorized(security, PIN_A), script=Script(digest=DIGEST_A))
    assert calls == [("vfs:ikey?1",), (PIN_A,)]
