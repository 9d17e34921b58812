"""Security on every backend: authorize, read, update, revoke, login."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtoken import (
    AuthToken,
    ConcurrentUpdate,
    InvalidArgument,
    InvalidToken,
    LoginError,
    MemoryRepository,
    PermissionDenied,
    Principal,
    Script,
    ScriptNotAuthorized,
    Security,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from authtoken.testing import FakeClock

UTC = timezone.utc


# -- authorize -------------------------------------------------------------------------
def test_authorize_sets_key_and_returns_string(security: Security, clock: FakeClock) -> None:
    """Authorizing stores the token, sets its key and engine fields, returns a string."""
    token = AuthToken("reports:read", data="payload", description="nightly")
    string = security.authorize_token(token, user=7)
    assert string.startswith("atk_") and len(string) <= 256
    assert set(string) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert token.key is not None and token.key in string
    assert token.user == 7
    assert token.created_at == clock() and token.updated_at == clock()
    assert token.expires == clock() + timedelta(days=30)
    assert token.use_count == 0 and token.last_used_at is None and token.parent_key is None
    stored = security.get_auth_token(token.key)
    assert (stored.scope, stored.data, stored.description) == ("reports:read", "payload", "nightly")
    assert stored.expires == token.expires


def test_authorize_twice_is_refused(security: Security) -> None:
    """An already authorized token cannot be authorized again."""
    token = AuthToken("a")
    security.authorize_token(token, user=1)
    with pytest.raises(InvalidArgument, match="already authorized"):
        security.authorize_token(token, user=1)
    assert len(security.list_auth_tokens(user=1)) == 1


@pytest.mark.parametrize("expires", [timedelta(0), timedelta(seconds=-1), "2000-01-01T00:00:00Z"])
def test_authorize_with_expiry_not_in_future_stores_nothing(security: Security,
                                                             expires: object) -> None:
    """An expiry that is not in the future is InvalidArgument and stores nothing."""
    token = AuthToken("a", expires=expires)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="not in the future"):
        security.authorize_token(token, user=1)
    assert token.key is None
    assert security.list_auth_tokens(include_revoked=True) == []


@pytest.mark.parametrize("user", [None, True, 1.5, b"x", "", "a" * 257, "bad\x00user", ["a"]])
def test_authorize_refuses_bad_users(security: Security, user: object) -> None:
    """A user that is not a non-empty str or an int is refused, nothing stored."""
    with pytest.raises(InvalidArgument):
        security.authorize_token(AuthToken("a"), user=user)  # type: ignore[arg-type]
    assert security.list_auth_tokens(include_revoked=True) == []


def test_authorize_refuses_non_tokens(security: Security) -> None:
    """Authorizing something that is not an AuthToken is a TypeError."""
    with pytest.raises(TypeError):
        security.authorize_token("a", user=1)  # type: ignore[arg-type]


def test_relative_expiry_measured_from_authorization(security: Security, clock: FakeClock) -> None:
    """A duration counts from the moment the engine authorizes the token."""
    token = AuthToken("a", expires="90m")
    clock.advance(hours=5)
    security.authorize_token(token, user=1)
    assert token.expires == clock() + timedelta(minutes=90)


def test_never_expires(security: Security, clock: FakeClock) -> None:
    """A token with expires=None or 'never' keeps working forever."""
    for expires in (None, "never"):
        token = AuthToken("a", expires=expires)
        string = security.authorize_token(token, user=1)
        assert token.expires is None
        clock.advance(days=365 * 50)
        assert security.login_by_auth_token(string).expires is None


def test_int_and_str_users_are_distinct(security: Security) -> None:
    """User 42 and user '42' are different users."""
    security.authorize_token(AuthToken("a"), user=42)
    security.authorize_token(AuthToken("b"), user="42")
    assert [t.scope for t in security.list_auth_tokens(user=42)] == ["a"]
    assert [t.scope for t in security.list_auth_tokens(user="42")] == ["b"]
    assert security.revoke_user_tokens(42) == 1
    assert len(security.list_auth_tokens(user="42")) == 1


# -- login -------------------------------------------------------------------------------
def test_login_returns_principal(security: Security, clock: FakeClock) -> None:
    """A valid token logs in as its user with its scopes and data."""
    token = AuthToken(["reports:read", 42], data="d")
    string = security.authorize_token(token, user="alice")
    principal = security.login_by_auth_token(string, script=Script(key=42))
    assert principal == Principal(
        user="alice", token_key=token.key or "", scopes=("reports:read", "vfs:ikey?42"),
        data="d", expires=clock() + timedelta(days=30), script=Script(key=42),
    )
    assert principal.has_scope("reports:read") and principal.has_scope("vfs:ikey?042")
    principal.require("reports:read")
    with pytest.raises(PermissionDenied) as info:
        principal.require("reports:read", "reports:write", "admin")
    assert info.value.missing_scopes == ("reports:write", "admin")


def test_login_accepts_bytes(security: Security) -> None:
    """A token string given as ASCII bytes works like the str."""
    string = security.authorize_token(AuthToken("a"), user=1)
    assert security.login_by_auth_token(string.encode()).user == 1


def test_expiry_boundary(security: Security, clock: FakeClock) -> None:
    """A token is valid until just before expires and expired at expires exactly."""
    token = AuthToken("a", expires=timedelta(hours=1))
    string = security.authorize_token(token, user=1)
    clock.advance(timedelta(hours=1) - timedelta(microseconds=1))
    security.login_by_auth_token(string)
    clock.advance(microseconds=1)
    with pytest.raises(TokenExpired) as info:
        security.login_by_auth_token(string)
    assert info.value.expired_at == token.expires
    assert info.value.token_key == token.key


def test_check_order(security: Security, clock: FakeClock) -> None:
    """Revocation is reported before expiry, expiry before the script binding."""
    token = AuthToken("vfs:ikey?1", expires="1h")
    string = security.authorize_token(token, user=1)
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(string, script=Script(key=2))
    clock.advance(hours=2)
    with pytest.raises(TokenExpired):
        security.login_by_auth_token(string, script=Script(key=2))
    security.revoke_auth_token(string)
    with pytest.raises(TokenRevoked) as info:
        security.login_by_auth_token(string, script=Script(key=2))
    assert info.value.revoked_at == clock()


def test_wrong_secret_is_invalid_even_if_revoked(security: Security) -> None:
    """A string with the right key but another secret never reveals the token's state."""
    other = Security(MemoryRepository(), secret_keys="test-key-newest")
    token = AuthToken("a")
    security.authorize_token(token, user=1)
    security.revoke_auth_token_by_key(token.key or "")
    # Same signing key, same token key, different secret: properly signed, wrong secret.
    forged, _ = other._codec.issue(token.key or "")
    with pytest.raises(InvalidToken) as info:
        security.login_by_auth_token(forged)
    assert not isinstance(info.value, TokenRevoked)


def test_unknown_key_is_invalid(security: Security) -> None:
    """A well-signed string for a key that was never stored is InvalidToken."""
    forged, _ = security._codec.issue("aaaaaaaaaaaaaaaa")
    with pytest.raises(InvalidToken):
        security.login_by_auth_token(forged)
    with pytest.raises(InvalidToken):
        security.restore_auth_token(forged)
    with pytest.raises(InvalidToken):
        security.revoke_auth_token(forged)


def test_other_signing_key_is_invalid(security: Security) -> None:
    """A string signed with a key this engine does not know is refused."""
    string = security.authorize_token(AuthToken("a"), user=1)
    other = Security(security.repository, secret_keys="someone-else")
    with pytest.raises(InvalidToken):
        other.login_by_auth_token(string)


def test_key_rotation(security: Security, clock: FakeClock) -> None:
    """After rotation the new key signs and strings signed by the old key still verify."""
    string = security.authorize_token(AuthToken("a"), user=1)
    rotated = Security(security.repository, secret_keys=["brand-new", "test-key-newest"],
                       clock=clock)
    assert rotated.login_by_auth_token(string).user == 1
    new_string = rotated.authorize_token(AuthToken("b"), user=1)
    with pytest.raises(InvalidToken):
        security.login_by_auth_token(new_string)
    retired = Security(security.repository, secret_keys=["brand-new"], clock=clock)
    with pytest.raises(InvalidToken):
        retired.login_by_auth_token(string)


@pytest.mark.parametrize("garbage", [
    "", " ", "atk_", "atk_" + "a" * 300, "x" * 10_000, "atk_\u00e9" * 20, "\x00\xff",
    b"", b"\xff\xfe\x00", b"atk_" + bytes(range(256)), "atk_aaaaaaaaaaaaaaaa..",
])
def test_garbage_is_invalid_token(security: Security, garbage: str | bytes) -> None:
    """Garbage strings and bytes give InvalidToken from every call taking a string."""
    for call in (security.login_by_auth_token, security.restore_auth_token,
                 security.revoke_auth_token):
        with pytest.raises(InvalidToken):
            call(garbage)


@pytest.mark.parametrize("value", [None, 42, 4.2, ["atk_"], object()])
def test_non_string_is_type_error(security: Security, value: object) -> None:
    """A token argument that is not str or bytes is a TypeError."""
    with pytest.raises(TypeError):
        security.login_by_auth_token(value)  # type: ignore[arg-type]


def test_login_refuses_non_script(security: Security) -> None:
    """script= must be a Script."""
    string = security.authorize_token(AuthToken("a"), user=1)
    with pytest.raises(TypeError):
        security.login_by_auth_token(string, script=42)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0, max_value=107), char=st.characters(codec="ascii"))
def test_every_mutation_is_invalid(security: Security, position: int, char: str) -> None:
    """Changing any one character of a valid token string makes it InvalidToken."""
    if not hasattr(security, "_mutation_string"):
        security._mutation_string = security.authorize_token(  # type: ignore[attr-defined]
            AuthToken("a"), user=1)
    string: str = security._mutation_string  # type: ignore[attr-defined]
    mutated = string[:position] + char + string[position + 1:]
    if mutated == string:
        return
    with pytest.raises(InvalidToken):
        security.login_by_auth_token(mutated)


# -- script binding ---------------------------------------------------------------------
@pytest.mark.parametrize(("scope", "script", "ok"), [
    ("a", None, True),
    ("a", Script(key=5), True),
    ("vfs:ikey?5", Script(key=5), True),
    ("vfs:ikey?5", Script(key=6), False),
    ("vfs:ikey?5", None, False),
    ("vfs:ikey?5", Script(path="/s/job.py"), False),
    ("ufs:/s/job.py", Script(path="/s/./job.py"), True),
    ("ufs:/s/job.py", Script(path="/s//job.py"), True),
    ("ufs:/s/job.py", Script(path="/s/Job.py"), False),
    ("ufs:/s", Script(path="/s/job.py"), False),
    ("ufs:/s/job.py", Script(key=5, path="/s/job.py"), True),
    ("ufs:/s/caf%E9.py", Script(path="/s/café.py"), True),
    ("vfs:ikey?5 ufs:/s/job.py", Script(key=9, path="/s/job.py"), True),
    ("vfs:ikey?5 ufs:/s/job.py", Script(key=5), True),
    ("vfs:ikey?-3", Script(key=-3), True),
])
def test_script_binding(security: Security, scope: str, script: Script | None,
                        ok: bool) -> None:
    """A bound token logs in only for a script matching one of its bindings."""
    string = security.authorize_token(AuthToken(scope), user=1)
    if ok:
        assert security.login_by_auth_token(string, script=script).script == script
    else:
        with pytest.raises(ScriptNotAuthorized):
            security.login_by_auth_token(string, script=script)


# -- restore, get, list ---------------------------------------------------------------
def test_restore_even_when_expired_or_revoked(security: Security, clock: FakeClock) -> None:
    """restore_auth_token returns the stored token whatever its state."""
    token = AuthToken("a", expires="1h")
    string = security.authorize_token(token, user=1)
    clock.advance(hours=2)
    security.revoke_auth_token(string)
    restored = security.restore_auth_token(string)
    assert restored.key == token.key and restored.revoked_at == clock()


@pytest.mark.parametrize("key", ["", "nope", "A" * 16, "a" * 1000, "-x", "a b", "ä" * 16])
def test_get_unknown_key(security: Security, key: str) -> None:
    """An unknown or impossible key is TokenNotFound."""
    with pytest.raises(TokenNotFound):
        security.get_auth_token(key)
    with pytest.raises(TokenNotFound):
        security.revoke_auth_token_by_key(key)


def test_get_none_key(security: Security) -> None:
    """A key of None (a token never authorized) is TokenNotFound; other types TypeError."""
    with pytest.raises(TokenNotFound):
        security.get_auth_token(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        security.get_auth_token(42)  # type: ignore[arg-type]


def test_list_newest_first(security: Security, clock: FakeClock) -> None:
    """Tokens are listed newest first, revoked ones only on request."""
    keys = []
    for i in range(4):
        token = AuthToken(f"s{i}")
        security.authorize_token(token, user="u" if i < 3 else "v")
        keys.append(token.key)
        if i % 2:
            clock.advance(seconds=1)  # two pairs share a timestamp: insertion order decides
    security.revoke_auth_token_by_key(keys[0] or "")
    assert [t.key for t in security.list_auth_tokens(user="u")] == [keys[2], keys[1]]
    assert [t.key for t in security.list_auth_tokens(user="u", include_revoked=True)] == [
        keys[2], keys[1], keys[0]]
    assert [t.key for t in security.list_auth_tokens(include_revoked=True)] == keys[::-1]
    assert security.list_auth_tokens(user="nobody") == []


# -- update -----------------------------------------------------------------------------
def test_update_persists_fields(security: Security, clock: FakeClock) -> None:
    """update_auth_token writes scope, data, description and expires."""
    token = AuthToken("a")
    string = security.authorize_token(token, user=1)
    clock.advance(hours=1)
    token.scope = ["b", 7]
    token.data = None
    token.description = "changed"
    token.expires = "2h"
    security.update_auth_token(token)
    assert token.updated_at == clock() and token.expires == clock() + timedelta(hours=2)
    stored = security.get_auth_token(token.key or "")
    assert (stored.scope, stored.data, stored.description) == ("b vfs:ikey?7", None, "changed")
    assert stored.expires == clock() + timedelta(hours=2)
    assert security.login_by_auth_token(string, script=Script(key=7)).scopes == ("b", "vfs:ikey?7")


def test_update_without_expiry_change_keeps_it(security: Security, clock: FakeClock) -> None:
    """Changing only the description keeps the absolute expiry as it was."""
    token = AuthToken("a", expires="1h")
    security.authorize_token(token, user=1)
    before = token.expires
    clock.advance(minutes=30)
    token.description = "x"
    security.update_auth_token(token)
    assert security.get_auth_token(token.key or "").expires == before


def test_update_expiry_in_past_is_refused(security: Security) -> None:
    """An update with an expiry not in the future stores nothing."""
    token = AuthToken("a")
    security.authorize_token(token, user=1)
    token.expires = datetime(2001, 1, 1, tzinfo=UTC)
    token.description = "lost"
    with pytest.raises(InvalidArgument):
        security.update_auth_token(token)
    assert security.get_auth_token(token.key or "").description == ""


def test_update_unknown_and_revoked(security: Security) -> None:
    """Updating a never-authorized token is TokenNotFound; a revoked one TokenRevoked."""
    with pytest.raises(TokenNotFound):
        security.update_auth_token(AuthToken("a"))
    token = AuthToken("a")
    security.authorize_token(token, user=1)
    security.revoke_auth_token_by_key(token.key or "")
    token.description = "x"
    with pytest.raises(TokenRevoked):
        security.update_auth_token(token)


def test_concurrent_update_loser_is_told(security: Security) -> None:
    """Two copies updated one after the other: the stale one gets ConcurrentUpdate."""
    token = AuthToken("a")
    security.authorize_token(token, user=1)
    first = security.get_auth_token(token.key or "")
    second = security.get_auth_token(token.key or "")
    first.description = "first"
    security.update_auth_token(first)
    second.description = "second"
    with pytest.raises(ConcurrentUpdate):
        security.update_auth_token(second)
    assert security.get_auth_token(token.key or "").description == "first"
    first.description = "again"
    security.update_auth_token(first)  # the winner's object is current
    assert security.get_auth_token(token.key or "").description == "again"


def test_engine_fields_are_read_only() -> None:
    """key, user and created_at cannot be assigned."""
    token = AuthToken("a")
    for name in ("key", "user", "created_at"):
        with pytest.raises(AttributeError):
            setattr(token, name, "x")


# -- revoke -----------------------------------------------------------------------------
def test_revoke_is_idempotent(security: Security, clock: FakeClock) -> None:
    """Revoking twice is fine and keeps the first revocation time."""
    token = AuthToken("a")
    string = security.authorize_token(token, user=1)
    security.revoke_auth_token(string)
    first = security.get_auth_token(token.key or "").revoked_at
    clock.advance(hours=1)
    security.revoke_auth_token(string)
    security.revoke_auth_token_by_key(token.key or "")
    assert security.get_auth_token(token.key or "").revoked_at == first


def test_revoke_user_tokens_counts(security: Security, clock: FakeClock) -> None:
    """revoke_user_tokens revokes live and expired tokens and their descendants."""
    from authtoken import Session

    live = security.authorize_token(AuthToken("a", expires="1h"), user=5)
    security.authorize_token(AuthToken("a", expires="10m"), user=5)
    done = AuthToken("a")
    security.authorize_token(done, user=5)
    security.revoke_auth_token_by_key(done.key or "")
    session = Session(security)
    session.login_by_auth_token(live)
    session.authorize_token(AuthToken("a"))
    security.authorize_token(AuthToken("a"), user=6)
    clock.advance(minutes=20)  # the second one is now expired: still counted
    assert security.revoke_user_tokens(5) == 3
    assert security.revoke_user_tokens(5) == 0
    assert len(security.list_auth_tokens(user=6)) == 1


# -- usage ------------------------------------------------------------------------------
def test_usage_exact_after_flush(security: Security, clock: FakeClock) -> None:
    """use_count and last_used_at are exact after flush, and seen before it too."""
    token = AuthToken("a")
    string = security.authorize_token(token, user=1)
    for _ in range(5):
        clock.advance(seconds=1)
        security.login_by_auth_token(string)
    assert security.get_auth_token(token.key or "").use_count == 5
    security.flush()
    stored = security.repository.get(token.key or "")
    assert stored is not None and stored.use_count == 5 and stored.last_used_at == clock()
    refused = security.login_by_auth_token
    clock.advance(days=40)
    with pytest.raises(LoginError):
        refused(string)
    security.flush()
    assert security.get_auth_token(token.key or "").use_count == 5


def test_usage_batches_many_logins(security: Security) -> None:
    """More logins than one batch holds are all counted."""
    token = AuthToken("a")
    string = security.authorize_token(token, user=1)
    for _ in range(2500):
        security.login_by_auth_token(string)
    security.flush()
    stored = security.repository.get(token.key or "")
    assert stored is not None and stored.use_count == 2500


def test_updates_of_different_fields_merge(security: Security) -> None:
    """Two stale copies changing different fields both land; neither overwrites the other."""
    token = AuthToken("a", data="old")
    security.authorize_token(token, user=1)
    first = security.get_auth_token(token.key or "")
    second = security.get_auth_token(token.key or "")
    first.description = "from first"
    security.update_auth_token(first)
    second.data = "from second"
    security.update_auth_token(second)
    stored = security.get_auth_token(token.key or "")
    assert (stored.description, stored.data) == ("from first", "from second")
    assert (second.description, second.data) == ("from first", "from second")


def test_derive_key_is_per_purpose_and_per_newest_key(clock: FakeClock) -> None:
    """derive_key: stable for a purpose and newest key, never the key or another purpose's."""
    one = Security(MemoryRepository(), secret_keys=["k1", "k0"], clock=clock)
    again = Security(MemoryRepository(), secret_keys=["k1"], clock=clock)
    rotated = Security(MemoryRepository(), secret_keys=["k2", "k1"], clock=clock)
    key = one.derive_key("page csrf")
    assert len(key) == 32 and key == again.derive_key("page csrf")
    assert key == one.derive_key(b"page csrf")
    assert key != one.derive_key("page sign-in") and key != rotated.derive_key("page csrf")
    assert b"k1" not in key
    with pytest.raises(TypeError):
        one.derive_key(5)  # type: ignore[arg-type]
