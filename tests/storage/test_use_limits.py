"""Use limits on every backend: a use is spent atomically, so racing processes spend
each once, and only by a login that passed every other check.

A token with ``max_uses`` has its uses spent in its row by the login itself
(``UseLimits.spend_use``), never buffered: its ``use_count`` is exact at once for every
process, and of several processes racing for the last use exactly one wins.  Tokens
without a limit keep the cheap path -- usage buffered and written in batches -- and are
exact after ``flush()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from authtoken import (
    AuthToken,
    InvalidArgument,
    InvalidToken,
    MemoryRepository,
    PermissionDenied,
    Repository,
    Script,
    ScriptNotAuthorized,
    Security,
    Session,
    SQLRepository,
    TokenExhausted,
    TokenExpired,
    TokenRevoked,
    open_security,
)
from authtoken._codec import TokenCodec
from authtoken._expiry import to_micros
from authtoken._repository import UseLimits
from authtoken._token import TokenRecord
from authtoken.testing import FakeClock

SECRET_KEYS = ["test-key-newest", "test-key-older"]
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
# The plain SQLite file is served by the lean sqlite3 path; engine_options={} makes the
# same file go through the SQLAlchemy store, whose statement is a second copy.
BACKENDS = ["memory", "sqlite", "sqlite-store", "postgresql"]


@pytest.fixture(params=BACKENDS)
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    backend = request.param
    repository: Repository
    if backend == "memory":
        repository = MemoryRepository()
    elif backend == "sqlite":
        repository = SQLRepository(f"sqlite:///{tmp_path / 'uses.db'}")
    elif backend == "sqlite-store":
        repository = SQLRepository(f"sqlite:///{tmp_path / 'uses.db'}", engine_options={})
    else:
        repository = SQLRepository(request.getfixturevalue("pg_url"))
    yield repository
    repository.close()


def record(key: str, **changes: object) -> TokenRecord:
    base = TokenRecord(
        key=key, user=1, scope="a", data=None, description="", expires=T0 + timedelta(days=1),
        created_at=T0, updated_at=T0, revoked_at=None, last_used_at=None, use_count=0,
        parent_key=None, secret_hash=bytes(32), version=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def wrong_secret(string: str, key: str) -> str:
    """A correctly signed string for ``key`` whose secret is not the token's."""
    forged, _digest = TokenCodec(SECRET_KEYS).issue(key)
    assert forged != string
    return forged



# -- max_uses through the engine ------------------------------------------------------
def test_uses_are_counted_exactly_and_then_refused(security: Security) -> None:
    """Each login spends one use, use_count is exact at once, and the next is refused."""
    token = AuthToken("a", max_uses=3)
    string = security.authorize_token(token, user="alice")
    assert token.key is not None and token.max_uses == 3
    for n in (1, 2, 3):
        assert security.login_by_auth_token(string).user == "alice"
        assert security.get_auth_token(token.key).use_count == n
        assert security.repository.get(token.key).use_count == n  # in storage, no flush
    with pytest.raises(TokenExhausted) as info:
        security.login_by_auth_token(string)
    assert info.value.max_uses == 3 and info.value.token_key == token.key
    assert string not in str(info.value) + repr(info.value)
    with pytest.raises(TokenExhausted):
        security.login_by_auth_token(string)
    assert security.get_auth_token(token.key).use_count == 3
    security.flush()
    assert security.get_auth_token(token.key).use_count == 3  # not counted a second time


def test_one_time_token(security: Security) -> None:
    """max_uses=1: the first login passes, every later one is TokenExhausted."""
    string = security.authorize_token(AuthToken("a", max_uses=1), user=1)
    security.login_by_auth_token(string)
    for _ in range(3):
        with pytest.raises(TokenExhausted):
            security.login_by_auth_token(string)


def test_a_refused_login_spends_no_use(security: Security, clock: FakeClock) -> None:
    """Wrong script, wrong secret, revoked and expired logins leave every use unspent."""
    bound = AuthToken("a vfs:ikey?5", max_uses=1, expires="1h")
    string = security.authorize_token(bound, user=1)
    assert bound.key is not None
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(string, script=Script(key=6))
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(string)
    with pytest.raises(InvalidToken):
        security.login_by_auth_token(wrong_secret(string, bound.key), script=Script(key=5))
    assert security.get_auth_token(bound.key).use_count == 0
    security.login_by_auth_token(string, script=Script(key=5))  # the one use is still there
    assert security.get_auth_token(bound.key).use_count == 1

    revoked = AuthToken("a", max_uses=1)
    revoked_string = security.authorize_token(revoked, user=1)
    assert revoked.key is not None
    security.revoke_auth_token(revoked_string)
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(revoked_string)
    assert security.get_auth_token(revoked.key).use_count == 0

    expiring = AuthToken("a", max_uses=1, expires="2h")
    expiring_string = security.authorize_token(expiring, user=1)
    assert expiring.key is not None
    clock.advance(hours=2)  # now == expires: expired
    with pytest.raises(TokenExpired):
        security.login_by_auth_token(expiring_string)
    security.flush()
    assert security.get_auth_token(expiring.key).use_count == 0
    assert security.get_auth_token(expiring.key).last_used_at is None


def test_uses_are_checked_last(security: Security, clock: FakeClock) -> None:
    """A spent token is refused for revocation, expiry or script before TokenExhausted."""
    strings = {}
    for name in ("script", "revoked", "expired", "both"):
        strings[name] = security.authorize_token(
            AuthToken("a vfs:ikey?5", max_uses=1, expires="1d"), user=1)
        security.login_by_auth_token(strings[name], script=Script(key=5))
        with pytest.raises(TokenExhausted):
            security.login_by_auth_token(strings[name], script=Script(key=5))
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(strings["script"], script=Script(key=6))
    security.revoke_auth_token(strings["revoked"])
    security.revoke_auth_token(strings["both"])
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(strings["revoked"], script=Script(key=5))
    clock.advance(days=1)
    with pytest.raises(TokenExpired):
        security.login_by_auth_token(strings["expired"], script=Script(key=5))
    with pytest.raises(TokenRevoked):  # revocation is checked before expiry
        security.login_by_auth_token(strings["both"], script=Script(key=6))


def test_exhausted_logins_are_on_the_trail(security: Security) -> None:
    """The trail shows the spending login as ok and the later ones as TokenExhausted."""
    token = AuthToken("a", max_uses=1)
    string = security.authorize_token(token, user=1)
    assert token.key is not None
    security.login_by_auth_token(string)
    with pytest.raises(TokenExhausted):
        security.login_by_auth_token(string)
    logins = [(e.outcome, e.reason) for e in reversed(security.audit_events(token_key=token.key))
              if e.action == "login"]
    assert logins == [("ok", None), ("refused", "TokenExhausted")]


def test_max_uses_can_change_but_not_appear_or_vanish(security: Security) -> None:
    """An authorized token's max_uses may be raised or lowered, not added or removed."""
    limited = AuthToken("a", max_uses=2)
    string = security.authorize_token(limited, user=1)
    assert limited.key is not None
    security.login_by_auth_token(string)
    limited.max_uses = 3
    security.update_auth_token(limited)
    assert security.get_auth_token(limited.key).max_uses == 3
    security.login_by_auth_token(string)
    security.login_by_auth_token(string)
    with pytest.raises(TokenExhausted):
        security.login_by_auth_token(string)

    removing = security.get_auth_token(limited.key)
    removing.max_uses = None
    with pytest.raises(InvalidArgument, match="max_uses"):
        security.update_auth_token(removing)
    plain = AuthToken("a")
    security.authorize_token(plain, user=1)
    assert plain.key is not None
    plain.max_uses = 5
    with pytest.raises(InvalidArgument, match="max_uses"):
        security.update_auth_token(plain)
    assert security.get_auth_token(plain.key).max_uses is None
    assert security.get_auth_token(limited.key).max_uses == 3


def test_a_child_of_a_limited_token_is_limited_too(security: Security) -> None:
    """A session of a max_uses token delegates only tokens with at most as many uses."""
    parent = security.authorize_token(AuthToken("a", max_uses=5), user=1)
    session = Session(security)
    session.login_by_auth_token(parent)
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken("a"))
    with pytest.raises(PermissionDenied):
        session.authorize_token(AuthToken("a", max_uses=6))
    child = AuthToken("a", max_uses=5)
    session.authorize_token(child)
    assert child.parent_key is not None and child.max_uses == 5


@pytest.mark.parametrize("value", [0, -1, -(2**70), 2**63])
def test_max_uses_out_of_range(value: int) -> None:
    """max_uses below 1 (or beyond a BIGINT) is InvalidArgument, on creation and assignment."""
    with pytest.raises(InvalidArgument, match="max_uses"):
        AuthToken("a", max_uses=value)
    token = AuthToken("a", max_uses=2)
    with pytest.raises(InvalidArgument, match="max_uses"):
        token.max_uses = value
    assert token.max_uses == 2


@pytest.mark.parametrize("value", [True, False, 1.0, 2.5, "3", b"3", [1]])
def test_max_uses_of_the_wrong_type(value: object) -> None:
    """A bool, float, str or list is a TypeError (and an InvalidArgument)."""
    with pytest.raises(TypeError, match="max_uses"):
        AuthToken("a", max_uses=value)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        AuthToken("a", max_uses=value)  # type: ignore[arg-type]


def test_max_uses_needs_a_repository_that_counts_them(clock: FakeClock) -> None:
    """A repository without spend_use refuses a max_uses token rather than not count it."""

    class Plain:  # the Repository protocol alone, by delegation
        def __init__(self) -> None:
            self._inner = MemoryRepository()

        def __getattr__(self, name: str) -> object:
            if name in ("spend_use", "insert_within"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    repository = Plain()
    assert isinstance(repository, Repository)
    with Security(repository, secret_keys=SECRET_KEYS, clock=clock) as security:
        with pytest.raises(InvalidArgument, match="max_uses"):
            security.authorize_token(AuthToken("a", max_uses=1), user=1)
        assert security.list_auth_tokens(include_revoked=True) == []


# -- the repository's side ---------------------------------------------------------------
def test_spend_use_counts_to_the_limit(repo: Repository) -> None:
    """spend_use succeeds max_uses times, then refuses; use_count and last_used_at follow."""
    assert isinstance(repo, UseLimits)
    repo.insert(record("k1", max_uses=2))
    at = to_micros(T0 + timedelta(hours=1))
    assert repo.spend_use("k1", at) is True
    got = repo.get("k1")
    assert got is not None and got.use_count == 1 and got.last_used_at == T0 + timedelta(hours=1)
    assert repo.spend_use("k1", at - 1_000_000) is True  # an earlier time: last_used_at stays
    got = repo.get("k1")
    assert got is not None and got.use_count == 2 and got.last_used_at == T0 + timedelta(hours=1)
    assert repo.spend_use("k1", at + 1) is False
    got = repo.get("k1")
    assert got is not None and got.use_count == 2 and got.last_used_at == T0 + timedelta(hours=1)
    assert got.max_uses == 2
    row = repo.login_row("k1")
    assert row is not None and row.max_uses == 2


def test_spend_use_refuses_what_it_may_not_spend(repo: Repository) -> None:
    """Unknown, revoked and unlimited tokens spend nothing."""
    assert isinstance(repo, UseLimits)
    repo.insert(record("revoked", max_uses=5))
    repo.revoke("revoked", to_micros(T0))
    repo.insert(record("unlimited"))
    assert repo.spend_use("missing", to_micros(T0)) is False
    assert repo.spend_use("revoked", to_micros(T0)) is False
    assert repo.spend_use("unlimited", to_micros(T0)) is False
    for key in ("revoked", "unlimited"):
        got = repo.get(key)
        assert got is not None and got.use_count == 0 and got.last_used_at is None


def test_limits_survive_storage(repo: Repository) -> None:
    """max_uses, max_lifetime, the first lifetime, run_id and ancestors read back exactly."""
    rec = record("k2", parent_key=None, max_uses=7, max_lifetime=timedelta(days=90, seconds=1),
                 lifetime=timedelta(hours=36, microseconds=5), run_id="nächtlich ✓",
                 ancestors=())
    repo.insert(rec)
    child = record("k3", parent_key="k2", ancestors=("k2",), run_id=None)
    repo.insert(child)
    grandchild = record("k4", parent_key="k3", ancestors=("k2", "k3"))
    repo.insert(grandchild)
    assert repo.get("k2") == rec and repo.get("k3") == child and repo.get("k4") == grandchild
    row = repo.login_row("k4")
    assert row is not None and row.ancestors == "k2 k3" and row.parent_key == "k3"
    row = repo.login_row("k2")
    assert row is not None and row.ancestors is None and row.run_id == "nächtlich ✓"
    assert [r.run_id for r in repo.list(1, False)].count("nächtlich ✓") == 1


def test_an_update_writes_the_limits(repo: Repository) -> None:
    """update persists max_uses and max_lifetime beside the other fields."""
    repo.insert(record("k5", max_uses=3, max_lifetime=timedelta(days=2)))
    new = repo.update(record("k5", max_uses=9, max_lifetime=timedelta(days=4)))
    assert new is not None and new.max_uses == 9 and new.max_lifetime == timedelta(days=4)
    got = repo.get("k5")
    assert got is not None and (got.max_uses, got.max_lifetime) == (9, timedelta(days=4))


# -- the engine's side --------------------------------------------------------------------
def test_limited_uses_are_exact_at_once_elsewhere(repo: Repository, clock: FakeClock) -> None:
    """Another engine on the same storage sees a limited token's uses without a flush."""
    here = Security(repo, secret_keys=SECRET_KEYS, clock=clock)
    there = Security(repo, secret_keys=SECRET_KEYS, clock=clock)
    limited = AuthToken("a", max_uses=10)
    string = here.authorize_token(limited, user=1)
    for n in range(1, 4):
        here.login_by_auth_token(string)
        assert there.get_auth_token(limited.key).use_count == n  # type: ignore[arg-type]
        assert there.list_auth_tokens(user=1)[0].use_count == n
    assert there.get_auth_token(limited.key).last_used_at == clock()  # type: ignore[arg-type]
    for _ in range(7):
        there.login_by_auth_token(string)  # the two engines share the ten uses
    with pytest.raises(TokenExhausted):
        here.login_by_auth_token(string)
    here.flush()
    there.flush()
    assert here.get_auth_token(limited.key).use_count == 10  # type: ignore[arg-type]


def test_unlimited_uses_are_counted_lazily(repo: Repository, clock: FakeClock) -> None:
    """A token without a limit is counted in batches: exact after flush(), not before."""
    here = Security(repo, secret_keys=SECRET_KEYS, clock=clock)
    there = Security(repo, secret_keys=SECRET_KEYS, clock=clock)
    plain = AuthToken("a")
    string = here.authorize_token(plain, user=1)
    for _ in range(5):
        here.login_by_auth_token(string)
    assert here.get_auth_token(plain.key).use_count == 5  # type: ignore[arg-type]
    assert there.get_auth_token(plain.key).use_count == 0  # type: ignore[arg-type]
    here.flush()
    assert there.get_auth_token(plain.key).use_count == 5  # type: ignore[arg-type]
    assert there.get_auth_token(plain.key).last_used_at == clock()  # type: ignore[arg-type]
    there.login_by_auth_token(string)
    there.flush()
    here.flush()
    assert here.get_auth_token(plain.key).use_count == 6  # type: ignore[arg-type]


def test_racing_threads_spend_each_use_once(repo: Repository, clock: FakeClock) -> None:
    """Threads of one engine racing for a token's uses: exactly max_uses logins pass."""
    security = Security(repo, secret_keys=SECRET_KEYS, clock=clock)
    limited = AuthToken("a", max_uses=17)
    string = security.authorize_token(limited, user=1)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        for _ in range(5):
            try:
                security.login_by_auth_token(string)
                outcomes.append("ok")
            except TokenExhausted:
                outcomes.append("exhausted")

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["exhausted"] * 23 + ["ok"] * 17
    assert security.get_auth_token(limited.key).use_count == 17  # type: ignore[arg-type]
    security.flush()


# -- the race across processes -------------------------------------------------------------
RACER = r"""
import json, sys, threading
from authtoken import open_security

url, key, threads, tries = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
strings = sys.stdin.readline().split()
security = open_security(url, secret_keys=key)
security.login_by_auth_token(strings[-1])  # warm: connection open, schema checked
results = {}
lock = threading.Lock()
go = threading.Event()

def race():
    go.wait()
    for _ in range(tries):
        for name, string in zip(("one", "many"), strings):
            try:
                security.login_by_auth_token(string)
                outcome = name + ":ok"
            except Exception as exc:
                outcome = name + ":" + type(exc).__name__
            with lock:
                results[outcome] = results.get(outcome, 0) + 1

workers = [threading.Thread(target=race) for _ in range(threads)]
for worker in workers:
    worker.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for worker in workers:
    worker.join()
print(json.dumps(results), flush=True)
sys.stdin.readline()  # the test reads the counts before this process closes
security.close()
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_racing_processes_spend_each_use_once(backend: str, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    """Processes x threads logging in at once: exactly max_uses logins pass, in total."""
    url = (f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    uses, processes, threads, tries = 25, 4, 4, 4
    with open_security(url, secret_keys="race-key") as security:
        one = AuthToken("a", max_uses=1)
        many = AuthToken("a", max_uses=uses)
        warm = AuthToken("a")
        strings = [security.authorize_token(t, user="job") for t in (one, many, warm)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    racers = [subprocess.Popen(
        [sys.executable, "-c", RACER, url, "race-key", str(threads), str(tries)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    ) for _ in range(processes)]
    totals: dict[str, int] = {}
    try:
        for racer in racers:
            assert racer.stdin is not None and racer.stdout is not None
            racer.stdin.write(" ".join(strings) + "\n")
            racer.stdin.flush()
            assert racer.stdout.readline().strip() == "ready"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        for racer in racers:
            assert racer.stdout is not None
            for outcome, count in json.loads(racer.stdout.readline()).items():
                totals[outcome] = totals.get(outcome, 0) + count
        # every racer is done but still open (its buffer maybe unwritten): a limited
        # token's uses are in storage already
        with open_security(url, secret_keys="race-key") as reader:
            assert reader.get_auth_token(one.key).use_count == 1  # type: ignore[arg-type]
            assert reader.get_auth_token(many.key).use_count == uses  # type: ignore[arg-type]
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("exit\n")
            racer.stdin.flush()
            assert racer.wait(timeout=120) == 0
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
            for stream in (racer.stdin, racer.stdout):
                if stream is not None:
                    stream.close()
    attempts = processes * threads * tries
    assert totals == {"one:ok": 1, "one:TokenExhausted": attempts - 1,
                      "many:ok": uses, "many:TokenExhausted": attempts - uses}
    with open_security(url, secret_keys="race-key") as reader:
        assert reader.get_auth_token(one.key).use_count == 1  # type: ignore[arg-type]
        assert reader.get_auth_token(many.key).use_count == uses  # type: ignore[arg-type]
        logins = [e for e in reader.audit_events(token_key=many.key, limit=10_000)
                  if e.action == "login"]
        assert sum(e.count for e in logins if e.outcome == "ok") == uses
        assert sum(e.count for e in logins if e.reason == "TokenExhausted") == attempts - uses
