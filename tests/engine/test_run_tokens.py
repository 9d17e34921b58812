"""Run tokens, run ids and the actor chain, on every backend.

``Session.run_token`` makes a child of the session's token for one run of a job, marked
with the run's id and revoked when the run ends; ``Principal.chain`` names who acts for
whom, read with the token in one read.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from authtoken import (
    AuthToken,
    InvalidArgument,
    PermissionDenied,
    Repository,
    RunToken,
    Script,
    ScriptNotAuthorized,
    Security,
    Session,
    TokenRevoked,
)
from authtoken._views import event_view, token_view
from authtoken.testing import FakeClock

SECRET_KEYS = ["test-key-newest", "test-key-older"]


def standing(security: Security, scope: str = "reports:read reports:write",
             expires: object = "30d", user: object = "alice", script: Script | None = None,
             **kwargs: object) -> tuple[Session, str]:
    """A scheduler's session, logged in with a user's standing token."""
    token = AuthToken(scope, expires=expires, **kwargs)  # type: ignore[arg-type]
    string = security.authorize_token(token, user=user)  # type: ignore[arg-type]
    session = Session(security, script=script)
    session.login_by_auth_token(string)
    return session, string


def live_keys(security: Security) -> set[str | None]:
    return {t.key for t in security.list_auth_tokens()}


# -- what a run token is -----------------------------------------------------------------
def test_a_run_token_is_a_child_of_the_session_token(security: Security,
                                                     clock: FakeClock) -> None:
    """Same user, parent_key the session's token, its whole scope, an hour, no data."""
    session, _string = standing(security, data="the standing token's data")
    assert session.principal is not None
    with session.run_token("nightly-2030-01-01") as run:
        assert isinstance(run, RunToken)
        stored = security.get_auth_token(run.key)
        assert stored.parent_key == session.principal.token_key
        assert stored.user == "alice"
        assert stored.scope == "reports:read reports:write"
        assert stored.expires == clock() + timedelta(hours=1) == run.expires
        assert stored.data is None and stored.max_uses is None
        assert stored.run_id == "nightly-2030-01-01" == run.run_id
        principal = security.login_by_auth_token(run.token)
        assert principal.user == "alice" and principal.token_key == run.key
        assert principal.run_id == "nightly-2030-01-01"
        assert principal.parent_key == session.principal.token_key
        assert principal.data is None


def test_a_run_token_keeps_script_bindings(security: Security) -> None:
    """The default scope is the session token's whole scope, its bindings included."""
    session, _string = standing(security, scope="jobs:run vfs:ikey?5", script=Script(key=5))
    with session.run_token("r1") as run:
        assert security.get_auth_token(run.key).scope == "jobs:run vfs:ikey?5"
        assert security.login_by_auth_token(run.token, script=Script(key=5)).run_id == "r1"
        with pytest.raises(ScriptNotAuthorized):
            security.login_by_auth_token(run.token, script=Script(key=6))


def test_run_token_arguments(security: Security, clock: FakeClock) -> None:
    """A narrower scope, an earlier expiry, a use limit and data are taken as given."""
    session, _string = standing(security)
    with session.run_token("r2", scope="reports:read", expires="10m", max_uses=2,
                           data='{"job": 7}') as run:
        stored = security.get_auth_token(run.key)
        assert stored.scope == "reports:read"
        assert stored.expires == clock() + timedelta(minutes=10) == run.expires
        assert stored.max_uses == 2 and stored.data == '{"job": 7}'
        security.login_by_auth_token(run.token)
        security.login_by_auth_token(run.token)
        assert security.get_auth_token(run.key).use_count == 2


def test_a_wider_scope_is_refused(security: Security) -> None:
    """A scope the session's token does not hold is PermissionDenied; nothing is stored."""
    session, _string = standing(security, scope="reports:read")
    before = live_keys(security)
    with pytest.raises(PermissionDenied):
        session.run_token("r3", scope="reports:read reports:delete")
    with pytest.raises(PermissionDenied):
        session.run_token("r3", scope="admin")
    assert live_keys(security) == before
    assert security.list_auth_tokens(run_id="r3", include_revoked=True) == []


def test_the_default_hour_is_cut_to_the_session_token(security: Security,
                                                      clock: FakeClock) -> None:
    """An hour is cut to a session token that expires sooner; an explicit one is refused."""
    session, _string = standing(security, expires="30m")
    with session.run_token("r4") as run:
        assert run.expires == clock() + timedelta(minutes=30)
        assert security.get_auth_token(run.key).expires == run.expires
    with pytest.raises(PermissionDenied):
        session.run_token("r5", expires="2h")
    with pytest.raises(PermissionDenied):
        session.run_token("r5", expires="31m")
    with pytest.raises(PermissionDenied):
        session.run_token("r5", expires=None)
    with session.run_token("r6", expires="30m") as exact:
        assert exact.expires == clock() + timedelta(minutes=30)
    assert security.list_auth_tokens(run_id="r5", include_revoked=True) == []


def test_an_explicit_expiry_past_a_never_expiring_parent(security: Security,
                                                         clock: FakeClock) -> None:
    """Under a token that never expires, a run token may have any expiry, or none."""
    session, _string = standing(security, expires=None)
    with session.run_token("r7") as run:
        assert run.expires == clock() + timedelta(hours=1)
    with session.run_token("r8", expires="90d") as long_run:
        assert long_run.expires == clock() + timedelta(days=90)


def test_a_user_session_needs_a_scope(security: Security) -> None:
    """A session with a user and no token makes a root token of its user, given a scope."""
    session = Session(security, user="bob")
    with pytest.raises(InvalidArgument, match="scope"):
        session.run_token("r9")
    with session.run_token("r9", scope="reports:read") as run:
        stored = security.get_auth_token(run.key)
        assert stored.user == "bob" and stored.parent_key is None
        assert stored.scope == "reports:read" and stored.run_id == "r9"
        principal = security.login_by_auth_token(run.token)
        assert principal.chain == (run.key,) and principal.parent_key is None
    assert security.get_auth_token(run.key).revoked


def test_a_session_without_a_user_is_refused(security: Security) -> None:
    """No user, no token: PermissionDenied, with or without a scope; nothing stored."""
    session = Session(security)
    with pytest.raises(PermissionDenied):
        session.run_token("r10", scope="a")
    assert security.list_auth_tokens(include_revoked=True) == []


def test_an_admin_session_without_a_user_is_refused(security: Security) -> None:
    """An admin session with no user has nobody to make the run token for."""
    with pytest.raises(PermissionDenied):
        Session(security, admin=True).run_token("r11", scope="a")
    assert security.list_auth_tokens(include_revoked=True) == []


# -- its end ---------------------------------------------------------------------------
def test_revoked_when_the_block_returns(security: Security) -> None:
    """Leaving the with block revokes the run token; the standing token lives on."""
    session, string = standing(security)
    with session.run_token("r12") as run:
        security.login_by_auth_token(run.token)
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(run.token)
    assert security.get_auth_token(run.key).revoked
    assert security.login_by_auth_token(string).user == "alice"


def test_revoked_when_the_block_raises(security: Security) -> None:
    """An exception in the block revokes the run token and goes on unchanged."""
    session, _string = standing(security)

    class JobFailed(Exception):
        pass

    with pytest.raises(JobFailed), session.run_token("r13") as run:
        raise JobFailed("the job broke")
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(run.token)


def test_revoke_is_idempotent(security: Security) -> None:
    """revoke() twice, then the block's exit: no error, revoked once on the trail."""
    session, _string = standing(security)
    with session.run_token("r14") as run:
        run.revoke()
        run.revoke()
        with pytest.raises(TokenRevoked):
            security.login_by_auth_token(run.token)
    revoked_at = security.get_auth_token(run.key).revoked_at
    run.revoke()
    assert security.get_auth_token(run.key).revoked_at == revoked_at


def test_revoked_even_after_the_standing_token_died(security: Security) -> None:
    """A run token whose session token was revoked meanwhile still ends cleanly."""
    session, string = standing(security)
    with session.run_token("r15") as run:
        security.revoke_auth_token(string)  # revokes the run token with it
    assert security.get_auth_token(run.key).revoked
    run.revoke()


def test_what_the_run_delegates_dies_with_it(security: Security) -> None:
    """A token the run delegated from its run token is revoked when the run ends."""
    session, _string = standing(security)
    with session.run_token("r16") as run:
        job = Session(security)
        job.login_by_auth_token(run.token)
        grandchild = AuthToken("reports:read")
        grandchild_string = job.authorize_token(grandchild)
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(grandchild_string)


def test_the_string_is_in_no_repr(security: Security) -> None:
    """repr and str of a run token, its views and its errors never show its string."""
    session, string = standing(security)
    with session.run_token("r17") as run:
        shown = repr(run) + str(run) + repr(session) + repr(security.get_auth_token(run.key))
        shown += repr(security.login_by_auth_token(run.token))
        shown += str(token_view(security.get_auth_token(run.key)))
        assert run.token not in shown and string not in shown
        assert run.key in repr(run) and "r17" in repr(run)
        secret = run.token.split(".")[1]
        assert secret not in shown


# -- run ids -----------------------------------------------------------------------------
def test_run_id_in_views_lists_and_events(security: Security) -> None:
    """run_id is on the token, its view, the list filter and every event about it."""
    session, string = standing(security)
    plain = AuthToken("reports:read")
    session.authorize_token(plain)
    with session.run_token("r18") as first, session.run_token("r19") as second:
        assert token_view(security.get_auth_token(first.key))["run_id"] == "r18"
        assert token_view(plain)["run_id"] is None and plain.run_id is None
        assert [t.key for t in security.list_auth_tokens(run_id="r18")] == [first.key]
        assert [t.key for t in session.list_auth_tokens(run_id="r19")] == [second.key]
        assert security.list_auth_tokens(run_id="nope") == []
        security.login_by_auth_token(first.token)
    assert security.list_auth_tokens(run_id="r18") == []
    assert [t.key for t in security.list_auth_tokens(run_id="r18", include_revoked=True)] \
        == [first.key]
    assert security.login_by_auth_token(string).run_id is None
    events = security.audit_events(token_key=first.key)
    assert Counter(e.action for e in events) == Counter(
        {"authorize": 1, "login": 1, "revoke": 1})
    assert {e.run_id for e in events} == {"r18"}
    assert {event_view(e)["run_id"] for e in events} == {"r18"}
    others = security.audit_events(token_key=plain.key)
    assert others and {e.run_id for e in others} == {None}


def test_run_ids_filter_lists_by_user_too(security: Security) -> None:
    """Two users' runs of the same id are kept apart by their sessions' lists."""
    alice, _ = standing(security, user="alice")
    bob, _ = standing(security, user="bob")
    with alice.run_token("shared") as a, bob.run_token("shared") as b:
        assert [t.key for t in alice.list_auth_tokens(run_id="shared")] == [a.key]
        assert [t.key for t in bob.list_auth_tokens(run_id="shared")] == [b.key]
        assert {t.key for t in security.list_auth_tokens(run_id="shared")} == {a.key, b.key}
        with pytest.raises(PermissionDenied):
            alice.list_auth_tokens(user="bob", run_id="shared")


@pytest.mark.parametrize("run_id", ["", "x" * 201, "a\x00b", "line\nbreak", "tab\there",
                                    "\x7f", "zero\u200bwidth", "bidi\u202eflip", "\ud800"])
def test_bad_run_ids_are_refused(security: Security, run_id: str) -> None:
    """Empty, over 200 characters, or with control characters: InvalidArgument."""
    session, _string = standing(security)
    before = live_keys(security)
    with pytest.raises(InvalidArgument, match="run_id"):
        session.run_token(run_id)
    with pytest.raises(InvalidArgument, match="run_id"):
        security.authorize_token(AuthToken("a"), user=1, run_id=run_id)
    assert live_keys(security) == before


@pytest.mark.parametrize("run_id", [None, 5, b"run", ["run"], 1.5])
def test_run_ids_of_the_wrong_type(security: Security, run_id: object) -> None:
    """A run id that is not a str is a TypeError."""
    session, _string = standing(security)
    with pytest.raises(TypeError, match="run_id"):
        session.run_token(run_id)  # type: ignore[arg-type]
    if run_id is not None:
        with pytest.raises(TypeError, match="run_id"):
            security.authorize_token(AuthToken("a"), user=1, run_id=run_id)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="run_id"):
            security.list_auth_tokens(run_id=run_id)  # type: ignore[arg-type]


def test_run_id_lengths(security: Security) -> None:
    """One and 200 characters, and non-ASCII text, are run ids."""
    session, _string = standing(security)
    for run_id in ("x", "y" * 200, "nächtlich-✓-2030"):
        with session.run_token(run_id) as run:
            assert security.get_auth_token(run.key).run_id == run_id
            assert security.login_by_auth_token(run.token).run_id == run_id


def test_a_token_string_as_run_id_is_refused_unechoed(security: Security) -> None:
    """A token string pasted as run_id is refused, and shown nowhere."""
    session, string = standing(security)
    before = live_keys(security)
    for pasted in (string, f"run-{string}"):
        with pytest.raises(InvalidArgument) as info:
            session.run_token(pasted)
        assert string not in str(info.value) + repr(info.value)
        with pytest.raises(InvalidArgument) as info:
            security.authorize_token(AuthToken("a"), user=1, run_id=pasted)
        assert string not in str(info.value) + repr(info.value)
    assert live_keys(security) == before
    for event in security.audit_events(limit=10_000):
        assert string not in repr(event) + str(event_view(event))


# -- the actor chain ---------------------------------------------------------------------
def three_levels(security: Security) -> tuple[str, str, str, list[str]]:
    """root -> child -> grandchild of alice; their keys, and the grandchild's string."""
    root = AuthToken("a b c")
    root_string = security.authorize_token(root, user="alice")
    root_session = Session(security)
    root_session.login_by_auth_token(root_string)
    child = AuthToken("a b")
    child_string = root_session.authorize_token(child)
    child_session = Session(security)
    child_session.login_by_auth_token(child_string)
    grandchild = AuthToken("a")
    grandchild_string = child_session.authorize_token(grandchild)
    keys = [root.key, child.key, grandchild.key]
    assert None not in keys
    return root_string, child_string, grandchild_string, keys  # type: ignore[return-value]


def test_the_chain_of_three_levels(security: Security) -> None:
    """Principal.chain runs from the root to the token; parent_key is the one before."""
    root_string, child_string, grandchild_string, keys = three_levels(security)
    root, child, grandchild = keys
    principal = security.login_by_auth_token(grandchild_string)
    assert principal.chain == (root, child, grandchild)
    assert principal.parent_key == child and principal.chain[-1] == principal.token_key
    child_principal = security.login_by_auth_token(child_string)
    assert child_principal.chain == (root, child) and child_principal.parent_key == root
    root_principal = security.login_by_auth_token(root_string)
    assert root_principal.chain == (root,) and root_principal.parent_key is None
    session = Session(security)
    assert session.login_by_auth_token(grandchild_string).chain == (root, child, grandchild)
    assert security.get_auth_token(grandchild).parent_key == child


def test_a_run_token_extends_the_chain(security: Security) -> None:
    """A run token made by a grandchild's session has a chain of four."""
    _r, _c, grandchild_string, keys = three_levels(security)
    session = Session(security)
    session.login_by_auth_token(grandchild_string)
    with session.run_token("deep", scope="a") as run:
        principal = security.login_by_auth_token(run.token)
        assert principal.chain == (*keys, run.key)
        assert principal.run_id == "deep" and principal.parent_key == keys[-1]


class CountingRepository:
    """A real repository, with the engine's calls to it counted by method name."""

    def __init__(self, inner: Repository) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> object:
        value = getattr(self.inner, name)
        if not callable(value):
            return value

        def counted(*args: object, **kwargs: object) -> object:
            self.calls[name] += 1
            return value(*args, **kwargs)

        return counted


def test_a_login_reads_storage_once(repository: Repository, clock: FakeClock) -> None:
    """The chain is stored at authorize time: a grandchild's login is one read by key."""
    counting = CountingRepository(repository)
    assert isinstance(counting, Repository)
    security = Security(counting, secret_keys=SECRET_KEYS, clock=clock)  # type: ignore[arg-type]
    _r, _c, grandchild_string, keys = three_levels(security)
    security.flush()
    counting.calls.clear()
    for _ in range(3):
        assert security.login_by_auth_token(grandchild_string).chain == tuple(keys)
    assert counting.calls == Counter({"login_row": 3})
    limited = AuthToken("a", max_uses=5)
    limited_string = security.authorize_token(limited, user="alice")
    counting.calls.clear()
    security.login_by_auth_token(limited_string)
    assert counting.calls == Counter({"login_row": 1, "spend_use": 1})
    security.flush()  # not closed: the fixture closes the repository
