"""Policy: the limits an organisation puts on every token, on every backend.

A policy caps a token's life (``max_lifetime``) at authorize, update and renewal, may
require an expiry, and caps a user's live tokens -- atomically, even when processes
race.  A refusal is ``PolicyViolation`` naming the rule and its limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta

from authtoken import (
    AuthToken,
    InvalidArgument,
    PermissionDenied,
    Policy,
    PolicyViolation,
    Repository,
    Security,
    Session,
    SQLRepository,
    open_security,
)
from authtoken.testing import FakeClock

SECRET_KEYS = ["test-key-newest", "test-key-older"]
UTC = timezone.utc


@pytest.fixture
def make(repository: Repository, clock: FakeClock) -> Iterator[object]:
    """Engines over the one repository of the test, each under its own policy."""
    made: list[Security] = []

    def make(**limits: object) -> Security:
        security = Security(repository, secret_keys=SECRET_KEYS, clock=clock,
                            policy=Policy(**limits))  # type: ignore[arg-type]
        made.append(security)
        return security

    yield make
    for security in made:
        security.flush()  # not closed: the fixture closes the shared repository


def refused(info: pytest.ExceptionInfo[PolicyViolation], rule: str, limit: object) -> None:
    """The refusal is a PermissionDenied naming ``rule`` and ``limit``, in its attributes
    and its message."""
    assert isinstance(info.value, PermissionDenied)
    assert (info.value.rule, info.value.limit) == (rule, limit)
    assert rule in str(info.value)
    assert limit is True or str(limit) in str(info.value)


# -- max_lifetime --------------------------------------------------------------------------
def test_expiry_is_capped_at_authorize(make: object, clock: FakeClock) -> None:
    """No token may expire after created_at + max_lifetime; up to it is fine."""
    security = make(max_lifetime="7d")  # type: ignore[operator]
    for expires in ("8d", "7d1s", None, "never", clock() + timedelta(days=30)):
        with pytest.raises(PolicyViolation) as info:
            security.authorize_token(AuthToken("a", expires=expires), user=1)
        refused(info, "max_lifetime", "7d")
    assert security.list_auth_tokens(include_revoked=True) == []
    token = AuthToken("a", expires="7d")
    security.authorize_token(token, user=1)
    assert token.expires == clock() + timedelta(days=7)
    events = security.audit_events(user=1)
    assert [(e.action, e.outcome, e.reason) for e in events].count(
        ("authorize", "refused", "PolicyViolation")) == 5


def test_the_default_expiry_is_the_shorter(make: object, clock: FakeClock) -> None:
    """The default expiry becomes the shorter of 30 days and the policy's max_lifetime."""
    short = make(max_lifetime="7d")  # type: ignore[operator]
    token = AuthToken("a")
    short.authorize_token(token, user=1)
    assert token.expires == clock() + timedelta(days=7)
    long = make(max_lifetime="90d")  # type: ignore[operator]
    other = AuthToken("a")
    long.authorize_token(other, user=1)
    assert other.expires == clock() + timedelta(days=30)
    monthly = make(max_lifetime=relativedelta(months=1))  # type: ignore[operator]
    third = AuthToken("a")
    monthly.authorize_token(third, user=1)  # January: 31 days, so the default 30 stands
    assert third.expires == clock() + timedelta(days=30)


def test_the_default_expiry_of_a_child(make: object, clock: FakeClock) -> None:
    """A session's child defaults to the earliest of 30 days, the cap and its parent."""
    security = make(max_lifetime="10d")  # type: ignore[operator]
    parent = security.authorize_token(AuthToken("a", expires="10d"), user=1)
    session = Session(security)
    session.login_by_auth_token(parent)
    clock.advance(days=2)
    child = AuthToken("a")
    session.authorize_token(child)
    assert child.expires == clock() + timedelta(days=8)  # the parent's, sooner than 2+10
    with session.run_token("run-1") as run:
        assert run.expires == clock() + timedelta(hours=1)


def test_a_run_tokens_hour_is_cut_to_the_cap(make: object, clock: FakeClock) -> None:
    """Under a 30-minute policy, a run token's default hour is cut to 30 minutes."""
    security = make(max_lifetime="30m")  # type: ignore[operator]
    with Session(security, user="u").run_token("run-2", scope="a") as run:
        assert run.expires == clock() + timedelta(minutes=30)
    with pytest.raises(PolicyViolation) as info:
        Session(security, user="u").run_token("run-3", scope="a", expires="31m")
    refused(info, "max_lifetime", "30m")


def test_expiry_is_capped_at_update(make: object, clock: FakeClock) -> None:
    """An update may not move the expiry past created_at + max_lifetime."""
    security = make(max_lifetime="7d")  # type: ignore[operator]
    t0 = clock()
    token = AuthToken("a", expires="1d")
    security.authorize_token(token, user=1)
    clock.advance(days=1, hours=-1)
    token.expires = "6d1h"  # exactly t0 + 7d
    security.update_auth_token(token)
    assert token.expires == t0 + timedelta(days=7)
    for expires in ("6d1h1s", None, t0 + timedelta(days=8)):
        changed = security.get_auth_token(token.key)  # type: ignore[arg-type]
        changed.expires = expires
        with pytest.raises(PolicyViolation) as info:
            security.update_auth_token(changed)
        refused(info, "max_lifetime", "7d")
    assert security.get_auth_token(token.key).expires == t0 + timedelta(days=7)  # type: ignore[arg-type]
    changed = security.get_auth_token(token.key)  # type: ignore[arg-type]
    changed.description = "a description alone is no expiry change"
    security.update_auth_token(changed)


def test_a_longer_max_lifetime_is_refused(make: object, clock: FakeClock) -> None:
    """A token's own max_lifetime may not exceed the policy's, at authorize or update."""
    security = make(max_lifetime="7d")  # type: ignore[operator]
    with pytest.raises(PolicyViolation) as info:
        security.authorize_token(AuthToken("a", expires="1d", max_lifetime="8d"), user=1)
    refused(info, "max_lifetime", "7d")
    token = AuthToken("a", expires="1d", max_lifetime="7d")
    string = security.authorize_token(token, user=1)
    token.max_lifetime = "7d1s"
    with pytest.raises(PolicyViolation):
        security.update_auth_token(token)
    assert security.get_auth_token(token.key).max_lifetime == timedelta(days=7)  # type: ignore[arg-type]
    clock.advance(hours=20)
    assert security.renew_auth_token(string, by="30d") == token.created_at + timedelta(days=7)  # type: ignore[operator]


def test_renewal_stops_at_the_cap(repository: Repository, clock: FakeClock,
                                  make: object) -> None:
    """A renewal under a policy stops at created_at + the policy's max_lifetime."""
    t0 = clock()
    unlimited = Security(repository, secret_keys=SECRET_KEYS, clock=clock)
    string = unlimited.authorize_token(
        AuthToken("a", expires="1d", max_lifetime="60d"), user=1)
    capped = make(max_lifetime="2d")  # type: ignore[operator]
    clock.advance(hours=12)
    assert capped.renew_auth_token(string) == t0 + timedelta(hours=36)
    clock.advance(hours=20)
    assert capped.renew_auth_token(string) == t0 + timedelta(days=2)
    assert capped.renew_auth_token(string, by="1w") == t0 + timedelta(days=2)
    assert unlimited.renew_auth_token(string, by="1w") == t0 + timedelta(days=1, hours=8) \
        + timedelta(weeks=1)
    unlimited.flush()


# -- require_expiry ----------------------------------------------------------------------
def test_require_expiry(make: object, clock: FakeClock) -> None:
    """require_expiry refuses tokens that never expire, at authorize and update."""
    security = make(require_expiry=True)  # type: ignore[operator]
    for expires in (None, "never"):
        with pytest.raises(PolicyViolation) as info:
            security.authorize_token(AuthToken("a", expires=expires), user=1)
        refused(info, "require_expiry", True)
    token = AuthToken("a", expires="400d")
    security.authorize_token(token, user=1)
    assert token.expires == clock() + timedelta(days=400)
    default = AuthToken("a")
    security.authorize_token(default, user=1)
    assert default.expires == clock() + timedelta(days=30)
    token.expires = None
    with pytest.raises(PolicyViolation):
        security.update_auth_token(token)
    assert security.get_auth_token(token.key).expires is not None  # type: ignore[arg-type]


def test_require_expiry_in_a_session(make: object) -> None:
    """A user session is held to require_expiry like the engine."""
    security = make(require_expiry=True)  # type: ignore[operator]
    with pytest.raises(PolicyViolation):
        Session(security, user=1).authorize_token(AuthToken("a", expires=None))
    assert security.list_auth_tokens(include_revoked=True) == []


# -- max_tokens_per_user -----------------------------------------------------------------
def test_live_tokens_per_user(make: object, clock: FakeClock) -> None:
    """The limit counts live tokens: a revoked or expired one frees a place."""
    security = make(max_tokens_per_user=2)  # type: ignore[operator]
    first = security.authorize_token(AuthToken("a"), user="alice")
    security.authorize_token(AuthToken("a", expires="1h"), user="alice")
    with pytest.raises(PolicyViolation) as info:
        security.authorize_token(AuthToken("a"), user="alice")
    refused(info, "max_tokens_per_user", 2)
    assert len(security.list_auth_tokens(user="alice", include_revoked=True)) == 2
    security.revoke_auth_token(first)
    security.authorize_token(AuthToken("a"), user="alice")
    with pytest.raises(PolicyViolation):
        security.authorize_token(AuthToken("a"), user="alice")
    clock.advance(hours=1)  # the hour-long one expires
    security.authorize_token(AuthToken("a"), user="alice")
    with pytest.raises(PolicyViolation):
        security.authorize_token(AuthToken("a"), user="alice")
    assert len(security.list_auth_tokens(user="alice", include_revoked=True)) == 4


def test_the_limit_is_per_user(make: object) -> None:
    """Other users, and the int user 1 beside the str user "1", have places of their own."""
    security = make(max_tokens_per_user=1)  # type: ignore[operator]
    for user in ("alice", "bob", 1, "1"):
        security.authorize_token(AuthToken("a"), user=user)
        with pytest.raises(PolicyViolation):
            security.authorize_token(AuthToken("a"), user=user)


def test_children_and_run_tokens_count(make: object) -> None:
    """A session's children and run tokens take places of their user like any token."""
    security = make(max_tokens_per_user=2)  # type: ignore[operator]
    session = Session(security)
    session.login_by_auth_token(security.authorize_token(AuthToken("a"), user="alice"))
    with session.run_token("run-4") as _run:
        with pytest.raises(PolicyViolation):
            session.authorize_token(AuthToken("a"))
        with pytest.raises(PolicyViolation):
            session.run_token("run-5")
    session.authorize_token(AuthToken("a"))  # the run token's place is free again


# -- Policy itself -----------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "error"), [
    ({"max_tokens_per_user": 0}, InvalidArgument),
    ({"max_tokens_per_user": -1}, InvalidArgument),
    ({"max_tokens_per_user": True}, TypeError),
    ({"max_tokens_per_user": 1.0}, TypeError),
    ({"max_tokens_per_user": "5"}, TypeError),
    ({"require_expiry": 1}, TypeError),
    ({"require_expiry": "yes"}, TypeError),
    ({"require_expiry": None}, TypeError),
    ({"max_lifetime": "0d"}, InvalidArgument),
    ({"max_lifetime": timedelta(0)}, InvalidArgument),
    ({"max_lifetime": timedelta(days=-1)}, InvalidArgument),
    ({"max_lifetime": "soon"}, InvalidArgument),
    ({"max_lifetime": "2031-01-01T00:00:00Z"}, InvalidArgument),
    ({"max_lifetime": datetime(2031, 1, 1, tzinfo=UTC)}, InvalidArgument),
    ({"max_lifetime": 7}, TypeError),
    ({"max_lifetime": True}, TypeError),
])
def test_bad_policy_arguments(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Out-of-range values are InvalidArgument, wrong types TypeError (both errors)."""
    with pytest.raises(error):
        Policy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_a_value() -> None:
    """A Policy is immutable, compares by value and shows its limits."""
    policy = Policy(max_lifetime="90d", require_expiry=True, max_tokens_per_user=50)
    assert policy == Policy(max_lifetime=timedelta(days=90), require_expiry=True,
                            max_tokens_per_user=50)
    assert hash(policy) == hash(Policy(max_lifetime="90d", require_expiry=True,
                                       max_tokens_per_user=50))
    assert policy != Policy(max_lifetime="90d")
    assert repr(policy) == "Policy(max_lifetime='90d', require_expiry=True, max_tokens_per_user=50)"
    with pytest.raises(AttributeError):
        policy.max_tokens_per_user = 1  # type: ignore[misc]
    assert policy.max_tokens_per_user == 50
    with pytest.raises(TypeError):
        Policy("90d")  # type: ignore[misc]


def test_security_takes_only_a_policy(repository: Repository) -> None:
    """Security(policy=...) takes a Policy or None; an empty Policy is none."""
    with pytest.raises(TypeError, match="Policy"):
        Security(repository, secret_keys="k", policy={"max_lifetime": "7d"})  # type: ignore[arg-type]
    assert Security(repository, secret_keys="k", policy=Policy()).policy is None
    policy = Policy(require_expiry=True)
    assert Security(repository, secret_keys="k", policy=policy).policy == policy


# -- from the environment ------------------------------------------------------------------
def test_policy_from_env() -> None:
    """The three variables make a Policy; none set makes None."""
    assert Policy.from_env({}) is None
    assert Policy.from_env({"AUTHTOKEN_MAX_LIFETIME": "  ", "OTHER": "1"}) is None
    assert Policy.from_env({
        "AUTHTOKEN_MAX_LIFETIME": "90d", "AUTHTOKEN_REQUIRE_EXPIRY": "Yes",
        "AUTHTOKEN_MAX_TOKENS_PER_USER": "50",
    }) == Policy(max_lifetime="90d", require_expiry=True, max_tokens_per_user=50)
    assert Policy.from_env({"AUTHTOKEN_MAX_LIFETIME": "1d12h"}) == Policy(max_lifetime="36h")
    for word in ("1", "true", "on", "yes"):
        assert Policy.from_env({"AUTHTOKEN_REQUIRE_EXPIRY": word}) == Policy(require_expiry=True)
    for word in ("0", "false", "off", "no"):
        policy = Policy.from_env({"AUTHTOKEN_REQUIRE_EXPIRY": word})
        assert policy is None or policy.empty


@pytest.mark.parametrize(("name", "value"), [
    ("AUTHTOKEN_MAX_LIFETIME", "soon"),
    ("AUTHTOKEN_MAX_LIFETIME", "0d"),
    ("AUTHTOKEN_MAX_LIFETIME", "-5d"),
    ("AUTHTOKEN_MAX_LIFETIME", "2031-01-01"),
    ("AUTHTOKEN_REQUIRE_EXPIRY", "maybe"),
    ("AUTHTOKEN_REQUIRE_EXPIRY", "2"),
    ("AUTHTOKEN_MAX_TOKENS_PER_USER", "0"),
    ("AUTHTOKEN_MAX_TOKENS_PER_USER", "-3"),
    ("AUTHTOKEN_MAX_TOKENS_PER_USER", "1.5"),
    ("AUTHTOKEN_MAX_TOKENS_PER_USER", "ten"),
    ("AUTHTOKEN_MAX_TOKENS_PER_USER", "٣"),
    ("AUTHTOKEN_MAX_TOKENS_PER_USER", "9" * 5000),
])
def test_a_malformed_variable_is_named(name: str, value: str) -> None:
    """A value that does not read is InvalidArgument naming its variable."""
    with pytest.raises(InvalidArgument, match=name):
        Policy.from_env({name: value})


def test_a_token_string_in_the_environment_is_not_echoed() -> None:
    """A token string set as a limit by mistake is refused without being shown."""
    with open_security("memory://", secret_keys="k") as security:
        string = security.authorize_token(AuthToken("a"), user=1)
    for name in ("AUTHTOKEN_MAX_LIFETIME", "AUTHTOKEN_REQUIRE_EXPIRY",
                 "AUTHTOKEN_MAX_TOKENS_PER_USER"):
        with pytest.raises(InvalidArgument) as info:
            Policy.from_env({name: string})
        assert string not in str(info.value) + repr(info.value)


def test_open_security_reads_the_environment(monkeypatch: pytest.MonkeyPatch,
                                             clock: FakeClock) -> None:
    """open_security takes the environment's policy unless given one."""
    monkeypatch.setenv("AUTHTOKEN_MAX_LIFETIME", "7d")
    monkeypatch.setenv("AUTHTOKEN_MAX_TOKENS_PER_USER", "1")
    with open_security("memory://", secret_keys="k", clock=clock) as security:
        assert security.policy == Policy(max_lifetime="7d", max_tokens_per_user=1)
        token = AuthToken("a")
        security.authorize_token(token, user=1)
        assert token.expires == clock() + timedelta(days=7)
        with pytest.raises(PolicyViolation):
            security.authorize_token(AuthToken("a"), user=1)
    given = Policy(require_expiry=True)
    with open_security("memory://", secret_keys="k", policy=given) as security:
        assert security.policy == given
    monkeypatch.setenv("AUTHTOKEN_MAX_TOKENS_PER_USER", "none")
    with pytest.raises(InvalidArgument, match="AUTHTOKEN_MAX_TOKENS_PER_USER"):
        open_security("memory://", secret_keys="k")
    for name in ("AUTHTOKEN_MAX_LIFETIME", "AUTHTOKEN_MAX_TOKENS_PER_USER"):
        monkeypatch.delenv(name)
    with open_security("memory://", secret_keys="k") as security:
        assert security.policy is None


# -- the cap across processes ----------------------------------------------------------------
RACER = r"""
import json, sys, threading
from authtoken import AuthToken, Policy, PolicyViolation, open_security

url, key, limit, threads, tries = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
security = open_security(url, secret_keys=key, policy=Policy(max_tokens_per_user=limit))
results = {"ok": 0, "PolicyViolation": 0}
lock = threading.Lock()
go = threading.Event()

def race():
    go.wait()
    for _ in range(tries):
        try:
            security.authorize_token(AuthToken("a"), user="alice")
            outcome = "ok"
        except PolicyViolation:
            outcome = "PolicyViolation"
        except Exception as exc:
            outcome = type(exc).__name__
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
security.close()
print(json.dumps(results), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_cap_holds_when_processes_race(backend: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    """Processes racing to authorize for one user never hold more than the limit."""
    url = (f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    limit, processes, threads, tries = 5, 4, 3, 3
    with open_security(url, secret_keys="race-key") as security:
        security.authorize_token(AuthToken("a"), user="bob")  # creates the schema
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    racers = [subprocess.Popen(
        [sys.executable, "-c", RACER, url, "race-key", str(limit), str(threads), str(tries)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    ) for _ in range(processes)]
    totals: dict[str, int] = {}
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        for racer in racers:
            out, _ = racer.communicate(timeout=120)
            assert racer.returncode == 0
            for outcome, count in json.loads(out).items():
                totals[outcome] = totals.get(outcome, 0) + count
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    assert totals == {"ok": limit, "PolicyViolation": processes * threads * tries - limit}
    repository = SQLRepository(url)
    try:
        assert len(repository.list("alice", False)) == limit
        assert len(repository.list("bob", False)) == 1
    finally:
        repository.close()
