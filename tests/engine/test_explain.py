"""explain(): what a login by a stored token would get, secret aside -- every verdict in
the login's order, its boundaries, the advice it gives, agreement with the real login on
every backend, and messages free of token strings."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtoken import (
    AuthToken,
    InvalidArgument,
    LoginError,
    MemoryRepository,
    Repository,
    Script,
    Security,
)
from authtoken._explain import REASONS, LoginCheck, explain
from authtoken._scopes import parse_scope
from authtoken._shape import TOKEN_PATTERN
from authtoken._token import TokenRecord
from authtoken.testing import FakeClock

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
US = timedelta(microseconds=1)
DIGEST_A = hashlib.sha256(b"print('a')\n").hexdigest()
DIGEST_B = hashlib.sha256(b"print('b')\n").hexdigest()
PIN_A = "sha256:" + DIGEST_A
BOUND = "reports:read vfs:ikey?42 ufs:/jobs/a.js"


def record(**changes: object) -> TokenRecord:
    """A live, unbound-to-limits token of alice's, bound to script 42 and /jobs/a.js."""
    base = TokenRecord(
        key="abcdefghijklmnop", user="alice", scope=BOUND, data=None, description="",
        expires=NOW + timedelta(days=1), created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1), revoked_at=None, last_used_at=None,
        use_count=0, parent_key=None, secret_hash=b"\x00" * 32,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# -- every verdict -------------------------------------------------------------------------
def test_live_token_for_its_script_passes() -> None:
    """A live token used by a script it is bound to passes; the message says who logs in,
    with which scopes, how many uses and until when."""
    check = explain(record(), Script(key=42), NOW)
    assert check.ok and check.reason is None
    assert "would pass" in check.message and "'alice'" in check.message
    assert "reports:read, vfs:ikey?42 and ufs:/jobs/a.js" in check.message
    assert "no limit on uses" in check.message
    assert (NOW + timedelta(days=1)).isoformat() in check.message


def test_ok_message_counts_uses_left_and_never_expiring() -> None:
    """For a use-limited token that never expires the message says the uses left."""
    check = explain(record(max_uses=5, use_count=2, expires=None), Script(path="/jobs/a.js"),
                    NOW)
    assert check.ok
    assert "3 of 5 uses left" in check.message and "never expires" in check.message


def test_unbound_token_passes_for_any_script_or_none() -> None:
    """A token with no binding passes with no script and with any script."""
    for script in (None, Script(key=1), Script(digest=DIGEST_A)):
        assert explain(record(scope="reports:read"), script, NOW).ok


def test_unknown_token_is_invalid() -> None:
    """No stored record is InvalidToken, with advice to check the key."""
    check = explain(None, Script(key=42), NOW)
    assert (check.ok, check.reason) == (False, "InvalidToken")
    assert "key" in check.message


def test_revoked_token() -> None:
    """A revoked token is TokenRevoked: when, and that it cannot be restored."""
    at = NOW - timedelta(hours=3)
    check = explain(record(revoked_at=at), Script(key=42), NOW)
    assert (check.ok, check.reason) == (False, "TokenRevoked")
    assert check.message == (f"revoked at {at.isoformat()}: revoked tokens cannot be "
                             "restored; authorize a new one")


def test_expired_token_without_max_lifetime() -> None:
    """An expired token that is not renewable: authorize a new one or update its expiry."""
    expires = NOW - timedelta(minutes=5)
    check = explain(record(expires=expires), Script(key=42), NOW)
    assert (check.ok, check.reason) == (False, "TokenExpired")
    assert check.message.startswith(f"expired at {expires.isoformat()}: ")
    assert "authorize a new token" in check.message and "update its expiry" in check.message
    assert "renew" not in check.message


def test_expired_renewable_token_says_how_long_it_may_still_live() -> None:
    """An expired token whose max_lifetime has not run out names the end of it: an
    update may give it an expiry up to then (a renewal no longer can)."""
    created = NOW - timedelta(days=2)
    check = explain(record(created_at=created, expires=NOW - timedelta(hours=1),
                           max_lifetime=timedelta(days=30)), None, NOW)
    assert check.reason == "TokenExpired"
    end = (created + timedelta(days=30)).isoformat()
    assert f"no later than {end}" in check.message and "renewable until" in check.message
    assert "can no longer be renewed" in check.message


def test_expired_token_past_its_max_lifetime() -> None:
    """When the max_lifetime has run out too, only a new token helps."""
    created = NOW - timedelta(days=10)
    check = explain(record(created_at=created, expires=NOW - timedelta(days=3),
                           max_lifetime=timedelta(days=7)), None, NOW)
    assert check.reason == "TokenExpired"
    assert "max_lifetime ran out at " + (created + timedelta(days=7)).isoformat() \
        in check.message
    assert check.message.endswith("authorize a new token")


def test_exhausted_token() -> None:
    """A token whose every use is spent is TokenExhausted, saying how many it had."""
    check = explain(record(max_uses=5, use_count=5), Script(key=42), NOW)
    assert (check.ok, check.reason) == (False, "TokenExhausted")
    assert check.message.startswith("every one of its 5 uses is spent: ")
    one = explain(record(max_uses=1, use_count=1), Script(key=42), NOW)
    assert one.message.startswith("its one use is spent: ")


# -- the order of the checks ---------------------------------------------------------------
EVERYTHING_WRONG = {
    "revoked_at": NOW - timedelta(hours=1), "expires": NOW - timedelta(hours=2),
    "max_uses": 3, "use_count": 3, "scope": "read vfs:ikey?1 " + PIN_A,
}


@pytest.mark.parametrize(("fixed", "reason"), [
    ((), "TokenRevoked"),
    (("revoked_at",), "TokenExpired"),
    (("revoked_at", "expires"), "ScriptNotAuthorized"),
    (("revoked_at", "expires", "scope"), "TokenExhausted"),
    (("revoked_at", "expires", "scope", "use_count"), None),
])
def test_first_failing_check_wins(fixed: tuple[str, ...], reason: str | None) -> None:
    """Revocation, expiry, bindings, uses: with every check failing the first one is
    told, and fixing each in turn reveals the next."""
    good = {"revoked_at": None, "expires": NOW + timedelta(days=1), "scope": "read",
            "use_count": 0}
    state = {**EVERYTHING_WRONG, **{name: good[name] for name in fixed}}
    check = explain(record(**state), Script(key=7, digest=DIGEST_B), NOW)
    assert check.reason == reason and check.ok == (reason is None)


# -- boundaries ----------------------------------------------------------------------------
def test_expiry_boundary() -> None:
    """now == expires is expired; a microsecond before, it is not."""
    assert explain(record(expires=NOW), Script(key=42), NOW).reason == "TokenExpired"
    assert explain(record(expires=NOW + US), Script(key=42), NOW).ok


def test_uses_boundary() -> None:
    """use_count == max_uses is exhausted; one use fewer passes with one left."""
    assert explain(record(max_uses=5, use_count=5), Script(key=42), NOW).reason \
        == "TokenExhausted"
    last = explain(record(max_uses=5, use_count=4), Script(key=42), NOW)
    assert last.ok and "1 of 5 uses left" in last.message


def test_naive_now_means_utc() -> None:
    """A naive now is read as UTC, as everywhere else."""
    naive = NOW.replace(tzinfo=None)
    assert explain(record(expires=NOW), None, naive).reason == "TokenExpired"
    assert explain(record(expires=NOW + US, scope="read"), None, naive).ok


# -- script and code bindings --------------------------------------------------------------
def test_no_script_for_bound_token_lists_the_scripts() -> None:
    """With no script, the message lists the scripts the token is bound to."""
    check = explain(record(), None, NOW)
    assert check.reason == "ScriptNotAuthorized"
    assert check.message.startswith(
        "the token is bound to the scripts vfs:ikey?42 and ufs:/jobs/a.js, and the login "
        "names no script: log in as one of them")


def test_wrong_script_is_told_what_to_add() -> None:
    """Another script is told its own bindings, which the token's scope could add."""
    check = explain(record(), Script(key=7, path="/jobs/b c.js"), NOW)
    assert check.reason == "ScriptNotAuthorized"
    assert "this script (ufs:/jobs/b%20c.js and vfs:ikey?7) is none of them" in check.message
    assert "update the token's scope to add ufs:/jobs/b%20c.js or vfs:ikey?7" in check.message


def test_one_binding_is_named_in_the_singular() -> None:
    """A token bound to one script says 'the script' and 'log in as it'."""
    check = explain(record(scope="read vfs:ikey?42"), Script(key=7), NOW)
    assert "bound to the script vfs:ikey?42, and this script (vfs:ikey?7) is not it: " \
        "log in as it" in check.message


def test_script_known_only_by_digest_against_script_bindings() -> None:
    """A script with only a digest cannot match vfs:/ufs: bindings and is told so."""
    check = explain(record(), Script(digest=DIGEST_A), NOW)
    assert check.reason == "ScriptNotAuthorized"
    assert "neither a key nor a path" in check.message


def test_many_bindings_are_cut_short() -> None:
    """A token bound to many scripts lists five and counts the rest."""
    scope = " ".join(f"vfs:ikey?{k}" for k in range(12))
    check = explain(record(scope=scope), Script(key=99), NOW)
    assert "vfs:ikey?4 and 7 more" in check.message and "vfs:ikey?5" not in check.message


def test_pinned_token_without_digest() -> None:
    """A pinned token and a script that gives no digest: log in with Script.for_file."""
    for script in (None, Script(key=42)):
        check = explain(record(scope="read " + PIN_A), script, NOW)
        assert check.reason == "ScriptNotAuthorized"
        assert f"pinned to the code {PIN_A}" in check.message
        assert "Script.for_file" in check.message


def test_pinned_token_and_changed_code() -> None:
    """Code of another digest is told the file may have changed, and what to add."""
    check = explain(record(scope="read " + PIN_A), Script(digest=DIGEST_B), NOW)
    assert check.reason == "ScriptNotAuthorized"
    assert f"this script's code (sha256:{DIGEST_B}) is not it" in check.message
    assert "changed" in check.message and f"add sha256:{DIGEST_B}" in check.message
    assert explain(record(scope="read " + PIN_A), Script(digest=DIGEST_A), NOW).ok


def test_both_rules_failing_are_both_told() -> None:
    """A token with both kinds of binding, both unmet: one message names both."""
    check = explain(record(scope=f"{BOUND} {PIN_A}"), Script(key=7, digest=DIGEST_B), NOW)
    assert check.reason == "ScriptNotAuthorized"
    assert "bound to the scripts" in check.message and "; also, the token is pinned" \
        in check.message
    # Either rule met alone is not enough.
    assert not explain(record(scope=f"{BOUND} {PIN_A}"), Script(key=42, digest=DIGEST_B),
                       NOW).ok
    assert not explain(record(scope=f"{BOUND} {PIN_A}"), Script(key=7, digest=DIGEST_A),
                       NOW).ok
    assert explain(record(scope=f"{BOUND} {PIN_A}"), Script(key=42, digest=DIGEST_A), NOW).ok


def test_path_matching_is_the_logins() -> None:
    """Paths are normalised before they are compared, exactly as a login does."""
    assert explain(record(), Script(path="/jobs/./x/../a.js"), NOW).ok
    assert not explain(record(), Script(path="/jobs/A.js"), NOW).ok


def test_troubleshooting_page_quotes_the_message() -> None:
    """The answer docs/troubleshooting.md shows is the one explain() gives for a token
    bound to script 42 asked about script 43."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text(
        encoding="utf-8")
    shown = page.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    check = explain(record(scope="read vfs:ikey?42"), Script(key=43), NOW)
    assert shown == [f"{check.ok} {check.reason}", check.message]


# -- the same verdict as the real login ----------------------------------------------------
def _login_reason(security: Security, string: str, script: Script | None) -> str | None:
    try:
        security.login_by_auth_token(string, script=script)
    except LoginError as exc:
        return type(exc).__name__
    return None


@pytest.mark.parametrize("case", [
    "live", "wrong-script", "no-script", "revoked", "expired", "expired-edge",
    "exhausted", "pinned", "pinned-changed", "revoked-and-expired-and-unbound",
])
def test_verdict_agrees_with_login(case: str, security: Security, repository: Repository,
                                   clock: FakeClock, tmp_path: Path) -> None:
    """On every backend explain() gives the class of the error the real login raises
    -- or passes when it passes -- for the stored record at the engine's time."""
    job = tmp_path / "job.py"
    job.write_bytes(b"print('a')\n")
    script: Script | None = Script(key=42)
    token = AuthToken("read vfs:ikey?42", expires="1h")
    if case == "exhausted":
        token = AuthToken("read vfs:ikey?42", expires="1h", max_uses=2)
    if case.startswith("pinned"):
        token = AuthToken("read " + PIN_A)
        script = Script.for_file(job)
    string = security.authorize_token(token, user="alice")
    assert token.key is not None
    if case == "wrong-script":
        script = Script(key=43)
    elif case == "no-script":
        script = None
    elif case == "revoked":
        security.revoke_auth_token_by_key(token.key)
    elif case == "expired":
        clock.advance(hours=2)
    elif case == "expired-edge":
        clock.advance(hours=1)
    elif case == "exhausted":
        security.login_by_auth_token(string, script=script)
        security.login_by_auth_token(string, script=script)
    elif case == "pinned-changed":
        job.write_bytes(b"print('b')\n")
        script = Script.for_file(job)
    elif case == "revoked-and-expired-and-unbound":
        security.revoke_auth_token_by_key(token.key)
        clock.advance(hours=2)
        script = Script(key=43)
    security.flush()
    stored = repository.get(token.key)
    assert stored is not None
    check = explain(stored, script, clock())
    assert check.reason == _login_reason(security, string, script)
    expected = {"live": None, "pinned": None, "wrong-script": "ScriptNotAuthorized",
                "no-script": "ScriptNotAuthorized", "pinned-changed": "ScriptNotAuthorized",
                "revoked": "TokenRevoked", "revoked-and-expired-and-unbound": "TokenRevoked",
                "expired": "TokenExpired", "expired-edge": "TokenExpired",
                "exhausted": "TokenExhausted"}
    assert check.reason == expected[case]


_SCRIPTS = st.one_of(
    st.none(),
    st.builds(Script, key=st.sampled_from([1, 2, 3])),
    st.builds(Script, path=st.sampled_from(["/a", "/b", "/a/./x/.."])),
    st.builds(lambda d: Script(digest=d), st.sampled_from([DIGEST_A, DIGEST_B])),
    st.builds(lambda k, d: Script(key=k, digest=d), st.sampled_from([1, 2]),
              st.sampled_from([DIGEST_A, DIGEST_B])),
)
_IDENTIFIERS = st.sampled_from(["read", "vfs:ikey?1", "vfs:ikey?2", "ufs:/a", "ufs:/b",
                                PIN_A, "sha256:" + DIGEST_B, "VFS:ikey?3"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(identifiers=st.lists(_IDENTIFIERS, min_size=1, max_size=5), script=_SCRIPTS,
       max_uses=st.sampled_from([None, 1, 2]), logins=st.integers(0, 2),
       revoke=st.booleans(), hours=st.sampled_from([0, 1, 2]))
def test_verdict_agrees_with_login_for_any_state(
        identifiers: list[str], script: Script | None, max_uses: int | None, logins: int,
        revoke: bool, hours: int) -> None:
    """For any scope, script, use limit, uses spent, revocation and age, on a real
    in-memory engine, explain() and the login agree -- and explaining spends no use."""
    clock = FakeClock(NOW)
    memory = MemoryRepository()
    with Security(memory, secret_keys=["k"], clock=clock) as security:
        token = AuthToken(" ".join(identifiers), expires="1h", max_uses=max_uses)
        string = security.authorize_token(token, user="alice")
        assert token.key is not None
        for _ in range(logins):
            _login_reason(security, string, script)
        if revoke:
            security.revoke_auth_token_by_key(token.key)
        clock.advance(hours=hours)
        security.flush()
        stored = memory.get(token.key)
        assert stored is not None
        check = explain(stored, script, clock())
        assert memory.get(token.key) == stored
        assert check.reason == _login_reason(security, string, script)


# -- no token string in any message --------------------------------------------------------
def _real_strings() -> list[str]:
    with Security(MemoryRepository(), secret_keys=["k"]) as security:
        return [security.authorize_token(AuthToken("read"), user="u") for _ in range(3)]


REAL = _real_strings()
TOKENS = st.one_of(st.sampled_from(REAL), st.from_regex(TOKEN_PATTERN, fullmatch=True))
GLUE = st.text(alphabet="abcXYZ019:/._-", max_size=90)


def _secrets(string: str) -> list[str]:
    m = re.match(TOKEN_PATTERN, string)  # a checksum may follow
    assert m is not None
    return [string, m.group(2), m.group(1) + "." + m.group(2)]


@settings(max_examples=150, deadline=None)
@given(token=TOKENS, before=GLUE, after=GLUE,
       where=st.sampled_from(["opaque", "ufs", "user", "path", "many"]),
       state=st.sampled_from(["ok", "bound", "revoked", "expired", "exhausted"]))
def test_no_message_holds_a_token_string(token: str, before: str, after: str, where: str,
                                         state: str) -> None:
    """A token string pasted into a scope, a bound path, the user or the script's path,
    whole or glued to other text and however the message cuts it, never comes back --
    neither the string, nor its secret, nor its body."""
    pasted = before + token + after
    scope = "read"
    user = "alice"
    script = Script(key=42)
    if where == "opaque":
        scope = f"read {pasted}"
    elif where == "ufs":
        scope = f"read ufs:/jobs/{pasted} vfs:ikey?42"
    elif where == "user":
        user = pasted
    elif where == "path":
        scope = f"read ufs:/{pasted}"
        script = Script(key=42, path=f"/{pasted}")
    else:
        scope = " ".join(f"ufs:/{i}{pasted}" for i in range(8))
        script = Script(path=f"/0{pasted}")
    canonical = " ".join(parse_scope(scope))
    changes: dict[str, object] = {"scope": canonical, "user": user}
    if state == "bound":
        script = Script(key=7, path="/elsewhere", digest=DIGEST_B)
        changes["scope"] = canonical + " " + PIN_A
    elif state == "revoked":
        changes["revoked_at"] = NOW
    elif state == "expired":
        changes.update(expires=NOW, max_lifetime=timedelta(days=3))
    elif state == "exhausted":
        changes.update(max_uses=1, use_count=1)
    check = explain(record(**changes), script, NOW)
    for shown in (check.message, repr(check), str(check)):
        for secret in _secrets(token):
            assert secret not in shown


@settings(max_examples=100, deadline=None)
@given(token=st.sampled_from(REAL), pad=st.integers(0, 120), prefixed=st.booleans(),
       bound=st.booleans())
def test_no_message_holds_part_of_a_secret(token: str, pad: int, prefixed: bool,
                                           bound: bool) -> None:
    """Wherever a long identifier is cut for the message, not even a piece of a pasted
    secret is left: masking comes before the cut (the body without its prefix too)."""
    pasted = token if prefixed else token.removeprefix("atk_")
    scope = f"ufs:/{'x' * pad}{pasted}" + (" vfs:ikey?1" if bound else "")
    check = explain(record(scope=" ".join(parse_scope(scope))), Script(key=2), NOW)
    secret = _secrets(token)[1]
    pieces = {secret[i:i + 12] for i in range(len(secret) - 11)}
    assert not any(piece in check.message for piece in pieces)


def test_login_check_masks_what_it_is_given() -> None:
    """A LoginCheck built by hand with a token string in its message masks it."""
    check = LoginCheck(False, "TokenRevoked", f"see {REAL[0]}")
    assert REAL[0] not in check.message and REAL[0] not in repr(check)
    assert "[redacted]" in check.message


def test_long_identifiers_are_cut() -> None:
    """An identifier of hundreds of characters is cut in the message."""
    long = "ufs:/" + "x" * 400
    check = explain(record(scope=long), Script(key=1), NOW)
    assert "x" * 100 not in check.message and "..." in check.message


# -- bad arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(("ok", "reason"), [(True, "TokenRevoked"), (False, None),
                                            (False, "PermissionDenied"),
                                            (False, "tokenrevoked")])
def test_login_check_refuses_inconsistent_verdicts(ok: bool, reason: str | None) -> None:
    """ok exactly when there is no reason, and a reason is a login refusal's name."""
    with pytest.raises(InvalidArgument):
        LoginCheck(ok, reason, "m")


@pytest.mark.parametrize("args", [(1, None, "m"), (True, None, b"m"), (False, 3, "m")])
def test_login_check_refuses_wrong_types(args: tuple[object, object, object]) -> None:
    """Wrong types are TypeError."""
    with pytest.raises(TypeError):
        LoginCheck(*args)  # type: ignore[arg-type]


def test_reasons_are_login_errors() -> None:
    """Every reason names a LoginError subclass the package exports."""
    import authtoken

    for name in REASONS:
        assert issubclass(getattr(authtoken, name), LoginError)


@pytest.mark.parametrize("args", [
    ("not a record", None, NOW), (record(), 42, NOW), (record(), None, "2030-01-01"),
    (record(), None, NOW.timestamp()),
])
def test_explain_refuses_wrong_types(args: tuple[object, object, object]) -> None:
    """A record that is not a TokenRecord, a script that is not a Script or a now that
    is not a datetime is TypeError."""
    with pytest.raises(TypeError):
        explain(*args)  # type: ignore[arg-type]
