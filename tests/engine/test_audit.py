"""The audit trail on memory, SQLite and PostgreSQL.

Every authorize, update, revoke, revoke-all and login attempt made through a
``Security`` -- directly or through a ``Session``, refused ones included -- is on the
trail: when, who acted, which token, which script, the outcome and the reason; never a
token string.  Refusals of unknown or forged strings are sampled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtoken import (
    AuthToken,
    InvalidArgument,
    InvalidToken,
    MemoryRepository,
    PermissionDenied,
    RepositoryError,
    Script,
    ScriptNotAuthorized,
    Security,
    Session,
    SQLRepository,
    TokenExpired,
    TokenRevoked,
)
from authtoken._audit import SAMPLED_INVALID, AuditBuffer
from authtoken._repository import AuditEvent, BatchId, EventRow, Usage
from authtoken.testing import FakeClock

KEYS = ["test-key-newest"]


def logins(events: Sequence[AuditEvent]) -> int:
    """The login attempts ``events`` stand for (a summary event counts its ``count``)."""
    return sum(e.count for e in events if e.action == "login")


def trail(security: Security, **filters: Any) -> list[tuple[Any, ...]]:
    """(action, outcome, token key, reason) of the events, oldest first."""
    return [(e.action, e.outcome, e.token_key, e.reason)
            for e in reversed(security.audit_events(**filters))]


def test_changes_are_on_the_trail(security: Security, clock: FakeClock) -> None:
    string = security.authorize_token(AuthToken("jobs:run"), user="alice")
    token = security.restore_auth_token(string)
    key = token.key
    clock.advance(seconds=1)
    token.description = "nightly"
    security.update_auth_token(token)
    clock.advance(seconds=1)
    security.revoke_auth_token_by_key(key)
    security.authorize_token(AuthToken("jobs:read"), user="alice")
    clock.advance(seconds=1)
    assert security.revoke_user_tokens("alice") == 1
    events = security.audit_events()
    assert [(e.action, e.outcome) for e in reversed(events)] == [
        ("authorize", "ok"), ("update", "ok"), ("revoke", "ok"), ("authorize", "ok"),
        ("revoke_all", "ok")]
    assert all(e.user == "alice" for e in events)
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)
    assert events[0].at == clock()  # the engine's clock


def test_logins_and_their_refusals_are_on_the_trail(security: Security,
                                                    clock: FakeClock) -> None:
    script = Script(key=7, path="/jobs/nightly.py")
    bound = security.authorize_token(AuthToken("jobs:run vfs:ikey?7", expires="1h"), user=3)
    key = security.restore_auth_token(bound).key
    security.login_by_auth_token(bound, script=script)
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(bound, script=Script(key=8))
    clock.advance(hours=2)
    with pytest.raises(TokenExpired):
        security.login_by_auth_token(bound, script=script)
    other = security.authorize_token(AuthToken("jobs:run"), user=3)
    security.revoke_auth_token(other)
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(other)
    logins = [e for e in reversed(security.audit_events()) if e.action == "login"]
    assert [(e.outcome, e.reason) for e in logins] == [
        ("ok", None), ("refused", "ScriptNotAuthorized"), ("refused", "TokenExpired"),
        ("refused", "TokenRevoked")]
    assert logins[0].script == script and logins[1].script == Script(key=8)
    assert [e.token_key for e in logins[:3]] == [key] * 3
    assert all(e.user == 3 for e in logins)


def test_forged_and_unknown_strings_are_sampled(security: Security) -> None:
    """Garbage is counted, not written one by one: the trail cannot be flooded."""
    real = security.authorize_token(AuthToken("jobs:run"), user="alice")
    forged = real[:-1] + ("A" if real[-1] != "A" else "B")
    attempts = 500
    for n in range(attempts):
        with pytest.raises(InvalidToken):
            security.login_by_auth_token(forged if n % 2 else f"atk_nonsense{n}")
    refused = [e for e in security.audit_events() if e.reason == "InvalidToken"]
    assert sum(e.count for e in refused) == attempts
    assert len(refused) <= SAMPLED_INVALID + 1
    assert all(e.token_key is None and e.user is None for e in refused)


def test_session_actions_name_the_actor_and_refusals(security: Security) -> None:
    root = security.authorize_token(AuthToken("jobs:run jobs:read"), user="alice")
    session = Session(security)
    principal = session.login_by_auth_token(root)
    child = session.authorize_token(AuthToken("jobs:read"))
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken("admin:all"))
    theirs = security.authorize_token(AuthToken("x"), user="bob")
    with pytest.raises(PermissionDenied):
        session.revoke_auth_token(theirs)
    session.revoke_auth_token(child)
    actor = f"token:{principal.token_key}"
    mine = [e for e in reversed(security.audit_events()) if e.actor == actor]
    assert [(e.action, e.outcome, e.reason) for e in mine] == [
        ("authorize", "ok", None), ("authorize", "refused", "PermissionDenied"),
        ("revoke", "refused", "PermissionDenied"), ("revoke", "ok", None)]
    bob_key = security.restore_auth_token(theirs).key
    assert mine[2].token_key == bob_key and mine[2].user == "bob"
    admin = Session(security, user="root", admin=True)
    admin.revoke_auth_token_by_key(bob_key)
    assert security.audit_events(limit=1)[0].actor == "user:root (admin)"


def test_filters_by_user_token_and_time(security: Security, clock: FakeClock) -> None:
    a = security.authorize_token(AuthToken("x"), user="42")
    start = clock.advance(minutes=5)
    b = security.authorize_token(AuthToken("x"), user=42)
    security.login_by_auth_token(b)
    a_key, b_key = security.restore_auth_token(a).key, security.restore_auth_token(b).key
    assert trail(security, user="42") == [("authorize", "ok", a_key, None)]
    assert trail(security, user=42) == [("authorize", "ok", b_key, None),
                                        ("login", "ok", b_key, None)]
    assert trail(security, token_key=b_key) == trail(security, user=42)
    assert trail(security, since=start) == trail(security, user=42)
    assert trail(security, since=start + timedelta(microseconds=1)) == []
    assert len(security.audit_events(limit=1)) == 1
    assert trail(security, token_key="nosuchkey") == []


@pytest.mark.parametrize(("filters", "error"), [
    ({"user": 1.5}, TypeError), ({"user": True}, TypeError), ({"token_key": 5}, TypeError),
    ({"since": "2026-01-01"}, TypeError), ({"limit": 0}, InvalidArgument),
    ({"limit": 10_001}, InvalidArgument), ({"limit": "9"}, TypeError),
    ({"user": ""}, InvalidArgument),
])
def test_bad_filters_are_refused(security: Security, filters: dict[str, Any],
                                 error: type[Exception]) -> None:
    with pytest.raises(error):
        security.audit_events(**filters)


def test_another_security_sees_the_trail_after_flush(repository: Any,
                                                     clock: FakeClock) -> None:
    """Logins are batched; flush() writes them for every reader of the repository."""
    writer = Security(repository, secret_keys=KEYS, clock=clock)
    reader = Security(repository, secret_keys=KEYS, clock=clock)
    string = writer.authorize_token(AuthToken("x"), user="u")
    for _ in range(3):
        writer.login_by_auth_token(string)
    writer.flush()
    assert logins(reader.audit_events()) == 3
    reader.close()
    writer.close()


def test_the_trail_never_holds_a_token_string(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "audit.db"
    with Security(SQLRepository(f"sqlite:///{path}"), secret_keys=KEYS,
                  clock=clock) as security:
        strings = [security.authorize_token(AuthToken("x vfs:ikey?1"), user="u")
                   for _ in range(3)]
        for s in strings:
            security.login_by_auth_token(s, script=Script(key=1))
            with pytest.raises(ScriptNotAuthorized):
                security.login_by_auth_token(s)
            with pytest.raises(InvalidToken):
                security.login_by_auth_token(s[:-2] + "zz")
            security.revoke_auth_token(s)
        events = security.audit_events()
    assert len(events) >= 12
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("audit.db-*"))
    for s in strings:
        secret_part = s.split(".")[1].encode()
        assert secret_part not in raw and s.encode() not in raw
    assert not re.search(rb"atk_[a-z2-7]{16}\.", raw)


class FailingOnce(MemoryRepository):
    """A memory repository whose next ``fail`` batch writes fail, as storage going away."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0

    def record_usage(self, usage: Mapping[str, Usage], events: Sequence[EventRow] = (),
                     batch: BatchId | None = None) -> None:
        if self.fail:
            self.fail -= 1
            raise RepositoryError("storage is down (test)")
        super().record_usage(usage, events, batch)


def test_events_that_cannot_be_written_are_kept(clock: FakeClock) -> None:
    repository = FailingOnce()
    security = Security(repository, secret_keys=KEYS, clock=clock)
    string = security.authorize_token(AuthToken("x"), user="u")
    repository.fail = 1
    security.login_by_auth_token(string)
    with pytest.raises(RepositoryError):
        security.flush()
    repository.fail = 1
    token = security.restore_auth_token(string)
    token.description = "changed"
    security.update_auth_token(token)  # the change stands; its event waits
    assert security.get_auth_token(token.key).description == "changed"
    assert [(e.action, e.outcome) for e in reversed(security.audit_events())] == [
        ("authorize", "ok"), ("login", "ok"), ("update", "ok")]
    assert security.get_auth_token(token.key).use_count == 1
    security.close()


def test_close_writes_the_trail(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path / 'close.db'}"
    security = Security(SQLRepository(url), secret_keys=KEYS, clock=clock)
    string = security.authorize_token(AuthToken("x"), user="u")
    for _ in range(5):
        security.login_by_auth_token(string)
    security.close()
    with Security(SQLRepository(url), secret_keys=KEYS, clock=clock) as again:
        assert logins(again.audit_events()) == 5


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.one_of(st.text(min_size=1, max_size=40).filter(lambda u: u.strip() == u),
                      st.integers(min_value=-(2**63), max_value=2**63 - 1)),
       path=st.one_of(st.none(), st.text(min_size=1, max_size=80)))
def test_hostile_users_and_script_paths_round_trip(tmp_path: Path, clock: FakeClock,
                                                   user: Any, path: str | None) -> None:
    """Whatever a user or a script path holds, the trail gives it back unchanged."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    with Security(SQLRepository(url), secret_keys=KEYS, clock=clock) as security:
        try:
            string = security.authorize_token(AuthToken("x"), user=user)
            script = Script(key=1, path=path)
        except (InvalidArgument, TypeError):
            return  # not a user or script the engine takes
        security.login_by_auth_token(string, script=script)
        event = security.audit_events(user=user, limit=1)[0]
        assert event.user == user and type(event.user) is type(user)
        assert event.script == script


def test_a_forgotten_security_still_writes_its_trail(tmp_path: Path, clock: FakeClock) -> None:
    """Dropped without close(): the buffered usage and events are written all the same
    (in a thread of their own, so the garbage collector never runs storage code)."""
    import gc
    import threading

    url = f"sqlite:///{tmp_path / 'forgotten.db'}"
    repository = SQLRepository(url)
    forgotten = Security(repository, secret_keys=KEYS, clock=clock)
    string = forgotten.authorize_token(AuthToken("x"), user="u")
    for _ in range(4):
        forgotten.login_by_auth_token(string)
    del forgotten
    gc.collect()
    for thread in threading.enumerate():
        if thread.name == "authtoken-flush":
            thread.join(10)
    with Security(SQLRepository(url), secret_keys=KEYS, clock=clock) as reader:
        assert logins(reader.audit_events()) == 4
        assert reader.restore_auth_token(string).use_count == 4
    repository.close()


def test_a_busy_token_is_summed_not_written_per_login(security: Security,
                                                      clock: FakeClock) -> None:
    """Per batch, the login events of one token, script and outcome in one minute are
    one summary event carrying their count and the time of the last: every attempt is
    counted; a minute later is another event."""
    from authtoken._views import event_view

    string = security.authorize_token(AuthToken("x"), user="u")
    for _ in range(100):
        security.login_by_auth_token(string)
    security.revoke_auth_token(string)
    for _ in range(25):
        with pytest.raises(TokenRevoked):
            security.login_by_auth_token(string)
    attempts = [e for e in security.audit_events() if e.action == "login"]
    ok = [e for e in attempts if e.outcome == "ok"]
    refused = [e for e in attempts if e.outcome == "refused"]
    assert sum(e.count for e in ok) == 100 and sum(e.count for e in refused) == 25
    assert {e.reason for e in refused} == {"TokenRevoked"}
    assert len(ok) == 1 and len(refused) == 1  # one minute on the fake clock
    assert ok[0].count == 100 and event_view(ok[0])["count"] == 100
    other = security.authorize_token(AuthToken("y"), user="u")
    security.login_by_auth_token(other)
    clock.advance(timedelta(minutes=1))
    security.login_by_auth_token(other)  # the same kind, one batch, the next minute
    apart = [e for e in security.audit_events(token_key=other[4:20]) if e.action == "login"]
    assert [e.count for e in apart] == [1, 1] and "count" not in event_view(apart[0])
    assert security.restore_auth_token(string).use_count == 100


# -- what the trail must survive (found in review) -------------------------------------------
def test_odd_script_paths_and_users_never_jam_the_trail(security: Security) -> None:
    """A script path with a lone surrogate (what os.fsdecode makes of a non-UTF-8 file
    name) and a refused call for an impossible user are recorded as well as they can be;
    later logins, batches and close() go on working."""
    string = security.authorize_token(AuthToken("x"), user="u")
    odd = Script(key=2**70, path="/jobs/\udcff-report.py")
    security.login_by_auth_token(string, script=odd)
    with pytest.raises((InvalidArgument, TypeError)):
        security.revoke_user_tokens("\ud800")
    security.flush()
    for _ in range(3):
        security.login_by_auth_token(string)
    events = security.audit_events()
    assert logins(events) == 4
    logged = next(e for e in events if e.script is not None)
    assert logged.script is not None and logged.script.path is not None
    assert logged.script.path.startswith("/jobs/")
    assert security.restore_auth_token(string).use_count == 4


class CountingWrites(MemoryRepository):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def record_usage(self, usage: Mapping[str, Usage], events: Sequence[EventRow] = (),
                     batch: BatchId | None = None) -> None:
        self.writes += 1
        super().record_usage(usage, events, batch)


def test_forged_strings_never_write(clock: FakeClock) -> None:
    """A forged string is refused without touching storage -- not even to audit it."""
    repository = CountingWrites()
    security = Security(repository, secret_keys=KEYS, clock=clock)
    for n in range(3000):
        clock.advance(seconds=0.01)
        with pytest.raises(InvalidToken):
            security.login_by_auth_token(f"atk_{n:016d}.{'A' * 43}.{'B' * 43}")
    assert repository.writes == 0
    refused = security.audit_events()  # the read writes them first
    assert sum(e.count for e in refused) == 3000 and repository.writes == 1
    security.close()


def test_a_summary_reads_before_the_change_that_followed_it(security: Security) -> None:
    """Logins summed in the buffer, then a revocation at the same instant (the clock
    stands still): the trail reads them in the order they happened, newest first."""
    string = security.authorize_token(AuthToken("x"), user="u")
    for _ in range(3):
        security.login_by_auth_token(string)
    security.revoke_auth_token(string)
    assert [e.action for e in security.audit_events()] == ["revoke", "login", "authorize"]


def test_the_buffer_is_bounded_while_storage_is_down(clock: FakeClock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """At most ``max_buffered_events`` events (a summary is one) wait, a kept batch's
    included; beyond, new kinds of event are only counted in a warning.  Usage counts
    are never dropped."""
    buffer = AuditBuffer(max_buffered_events=10)
    repository = FailingOnce()
    security = Security(repository, secret_keys=KEYS, clock=clock, audit=buffer)
    strings = [security.authorize_token(AuthToken("x"), user="u") for _ in range(20)]
    repository.fail = 10**9
    for minute in range(3):  # 20 kinds a minute, against room for 10
        for s in strings:
            security.login_by_auth_token(s)
            assert buffer.held_events <= 10
        if minute == 0:
            with pytest.raises(RepositoryError):
                security.flush()  # the batch is kept, whole, to be written again
        clock.advance(timedelta(minutes=1))
    repository.fail = 0
    security.flush()
    assert sum(t.use_count for t in security.list_auth_tokens()) == 60  # counts kept
    written = [e for e in security.audit_events() if e.action == "login"]
    assert len(written) == 10 and sum(e.count for e in written) == 10
    dropped = re.findall(r"(\d+) audit events were not kept", caplog.text)
    assert sum(map(int, dropped)) == 50  # every attempt not kept is counted in a warning
    security.close()


def test_storage_failures_are_not_refusals(clock: FakeClock) -> None:
    repository = FailingOnce()
    security = Security(repository, secret_keys=KEYS, clock=clock)

    def broken(*args: Any) -> None:
        raise RepositoryError("storage is down (test)")

    repository.revoke_user = broken  # type: ignore[method-assign]
    with pytest.raises(RepositoryError):
        security.revoke_user_tokens("u")
    assert [e for e in security.audit_events() if e.reason == "RepositoryError"] == []
    security.close()


def test_failed_api_authentications_are_summed_per_address(clock: FakeClock) -> None:
    with Security(MemoryRepository(), secret_keys=KEYS, clock=clock) as security:
        for _ in range(50):
            security.record_authentication_failure(actor="address:10.0.0.9",
                                                   reason="InvalidToken")
        failures = [e for e in security.audit_events() if e.action == "authenticate"]
        assert len(failures) == 1 and sum(e.count for e in failures) == 50
        assert {e.actor for e in failures} == {"address:10.0.0.9"}
