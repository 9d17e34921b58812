"""The broker under real concurrency and kill -9, against real upstreams and databases.

- 8 processes x 8 threads ask for one link's access token across several expiries,
  against panva's ``oidc-provider`` (2-second access tokens, rotating refresh tokens
  whose reuse revokes the grant) and the Spatium authority of ``authtoken.testing``
  (3-second permission tokens, rotating refresh tokens), on SQLite and on PostgreSQL:
  every caller is served, one refresh request per expiry, no refresh token twice.
- The process holding the refresh lease is SIGKILLed at a random moment of its refresh
  (before the request, while the server holds it, after the server consumed the refresh
  token, after the answer before the store write): once the lease expires the link is
  usable, or says ``needs_relink`` and a relink heals it -- never silently broken.
- After the runs, no token the upstream issued is in the database's bytes.

The kill test's randomness is seeded; the seed is printed, in every failure message, and
``TORTURE_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker_support import KEYS, PASSWORD, USERNAME, job_session
from cryptography.hazmat.primitives.asymmetric import rsa
from support.panva import ACCOUNTS, PanvaProvider, panva_provider
from torture_support import (
    Capture,
    capturing_client,
    database_bytes,
    fingerprint,
    found_in,
    issued_at,
    postgres_dump,
)

from authtoken import Security, SessionExpired, SQLRepository
from authtoken.broker import Broker, OIDCUpstream, SpatiumUpstream
from authtoken.testing import SpatiumAuthority

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("torture_worker.py")
PROCESSES = THREADS = 8
ASK_SECONDS = 6.0  # a 2-second token refreshed at 1.8 s: three expiries, at least two
PANVA_TTL = 2
SPATIUM_LIFETIME, SPATIUM_LEEWAY = 3, 1.0
HOLD = 1.0  # how long panva holds a faulted refresh request (before or after using it)
LEASE = HOLD + 0.8  # outlasts the hold: nobody refreshes while a dead request is pending
KILL_RUNS = 6


# -- the worker processes -----------------------------------------------------------------
class Worker:
    """A ``torture_worker.py`` process, started at once (its imports take the longest),
    configured later; its output lines arrive on a queue."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent),
                                                            str(WORKER.parents[1])]))
        self.process = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, prefix: str, timeout: float = 30) -> str:
        """The next output line starting with ``prefix`` (failing if the process ends)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the worker printed no {prefix!r} line in {timeout} s")
            if line is None:
                pytest.fail(f"the worker ended (status {self.process.wait()}) "
                            f"before printing {prefix!r}")
            if line.startswith(prefix):
                return line

    def result(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.expect("result ", timeout=60)[7:])
        assert self.process.wait(timeout=30) == 0
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass  # a pipe to a killed process


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """A list the test fills with workers; every one is stopped afterwards."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


# -- the upstreams --------------------------------------------------------------------------
@dataclass
class Target:
    """An upstream under test, as the test's broker and the workers name it."""

    name: str
    upstream: OIDCUpstream | SpatiumUpstream
    spec: dict[str, Any] = field(repr=False)
    username: str
    password: str = field(repr=False)
    #: the least gap between two access tokens' ``iat`` (the issuer's whole seconds)
    iat_gap: int


@pytest.fixture(scope="module")
def panva() -> Iterator[PanvaProvider]:
    with panva_provider(access_ttl=PANVA_TTL) as op:
        yield op


def panva_target(op: PanvaProvider) -> Target:
    # Refreshed at 0.9 x 2 s after the request left, so the next token is made >= 1.8 s
    # after the previous one: its iat (whole seconds) is at least 1 more.
    return Target("space", OIDCUpstream(op.issuer, op.client_id,
                                        client_secret=op.client_secret),
                  {"kind": "oidc", "issuer": op.issuer, "client_id": op.client_id,
                   "client_secret": op.client_secret},
                  "alice", ACCOUNTS["alice"], iat_gap=1)


@pytest.fixture
def spatium(rsa_key: rsa.RSAPrivateKey) -> Iterator[SpatiumAuthority]:
    with SpatiumAuthority(private_key=rsa_key,
                          permission_lifetime=SPATIUM_LIFETIME) as running:
        running.add_account(USERNAME, PASSWORD)
        yield running


def spatium_target(authority: SpatiumAuthority) -> Target:
    # Refreshed 1 s before ``exp = iat + 3``: the next token's iat is at least 2 more.
    return Target("spatium", SpatiumUpstream(authority.url, "nightly", ["reports:read"],
                                             leeway=SPATIUM_LEEWAY),
                  {"kind": "spatium", "url": authority.url}, USERNAME, PASSWORD,
                  iat_gap=SPATIUM_LIFETIME - int(SPATIUM_LEEWAY))


def _config(target: Target, url: str, token: str, capture: Capture, **extra: Any,
            ) -> str:
    return json.dumps({"url": url, "token": token, "name": target.name,
                       "upstream": target.spec, "capture": str(capture.path), **extra})


def _store_url(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store == "sqlite":
        return f"sqlite:///{tmp_path / 'torture.db'}"
    return str(request.getfixturevalue("pg_url"))


def _assert_nothing_in_clear(store: str, url: str, tmp_path: Path, capture: Capture) -> None:
    """No token any process received is in the database's bytes (and the search finds
    them where they are: in the capture file)."""
    issued = capture.all()
    assert {kind for kind, _ in issued} >= {"access", "refresh"}
    assert len(found_in(capture.path.read_bytes(), issued)) == len(
        {(kind, token) for kind, token in issued})
    if store == "sqlite":
        blob = database_bytes(tmp_path / "torture.db")
        assert b"authtoken_upstream_link" in blob
    else:
        blob, sizes = postgres_dump(url)
        assert sizes.get("authtoken_upstream_link", 0) > 0
    assert found_in(blob, issued) == []


# -- 8 processes x 8 threads ----------------------------------------------------------------
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
@pytest.mark.parametrize("kind", ["panva", "spatium"])
def test_eight_processes_one_refresh_per_expiry(kind: str, store: str, tmp_path: Path,
                                                request: pytest.FixtureRequest,
                                                workers: list[Worker]) -> None:
    """8 processes x 8 threads over several expiries: every caller served; one refresh
    request per expiry; every refresh token presented once; none in clear in the store."""
    server: Any = request.getfixturevalue(kind)
    target = panva_target(server) if kind == "panva" else spatium_target(server)
    url = _store_url(store, tmp_path, request)
    capture = Capture(tmp_path / "tokens")
    workers.extend(Worker() for _ in range(PROCESSES))
    with Security(SQLRepository(url), secret_keys=KEYS) as security, \
            capturing_client(capture) as client:
        _, job = job_session(security, scope=f"upstream:{target.name}")
        for worker in workers:
            worker.send(_config(target, url, job, capture, threads=THREADS,
                                seconds=ASK_SECONDS, lease=10))
        for worker in workers:
            worker.expect("ready")
        if kind == "panva":
            server.reset_stats()
        started = time.monotonic()
        with Broker(security, {target.name: target.upstream}, client=client) as broker:
            broker.link_password("alice", target.name, target.username, target.password)
        linked = [token for kind_, token in capture.seen if kind_ == "access"]
        for worker in workers:
            worker.send("go")
        results = [worker.result() for worker in workers]
        elapsed = time.monotonic() - started

        # every caller served
        assert [dict(Counter(r["errors"])) for r in results] == [{}] * PROCESSES
        assert all(r["served"] > 0 for r in results)
        # the tokens issued: the link's, then one per refresh, each served to someone
        issued = {fingerprint(token): issued_at(token)
                  for kind_, token in capture.all() if kind_ == "access"}
        served: dict[str, int] = {}
        for r in results:
            served.update({key: seen["iat"] for key, seen in r["tokens"].items()})
        assert len(linked) == 1 and served.keys() <= issued.keys()
        refreshed = issued.keys() - {fingerprint(linked[0])}
        assert refreshed <= served.keys(), "a refresh whose token nobody was given"
        if kind == "panva":
            stats = server.stats()
            refreshes = stats["grants"].get("refresh_token", 0)
            presented = stats["refresh_tokens_presented"]
            assert stats["refresh_tokens_processed"] == presented
            assert stats["grants_revoked"] == 0 and stats["errors"] == {}
            # each refresh request leaves >= 1.8 s after the one before (the link's
            # password grant included), by the clock the test measures with
            assert refreshes * 0.9 * PANVA_TTL <= elapsed + 0.05
        else:
            attempts = server.refresh_attempts
            refreshes = len(attempts)
            presented = [a.refresh_id for a in attempts]
            assert all(a.accepted for a in attempts)
        # exactly one refresh request per expiry: as many as new tokens; none twice;
        # consecutive tokens made at least the refresh interval apart (so no expiry was
        # refreshed twice); several expiries crossed
        assert refreshes == len(refreshed) >= 2
        assert len(set(presented)) == len(presented) == refreshes
        times = sorted(issued.values())
        assert all(b - a >= target.iat_gap for a, b in pairwise(times)), times
        _assert_nothing_in_clear(store, url, tmp_path, capture)


# -- kill -9 of the refreshing process ------------------------------------------------------
WINDOWS = ("before", "held", "consumed", "answered")


@dataclass
class KillRun:
    """One kill: where, and what the test saw."""

    index: int
    window: str
    seed: int
    point: str = ""
    delay: float = 0.0

    def __str__(self) -> str:
        return (f"kill run {self.index} ({self.window}, {self.point}, after "
                f"{self.delay:.2f} s); replay with TORTURE_SEED={self.seed}")


def _kill_plan(seed: int) -> list[str]:
    """Every window once, the rest at random, in a random order."""
    rng = random.Random(seed)
    plan = list(WINDOWS) + [rng.choice(WINDOWS) for _ in range(KILL_RUNS - len(WINDOWS))]
    rng.shuffle(plan)
    return plan


def test_kill_9_mid_refresh_leaves_the_link_usable_or_marked(
        panva: PanvaProvider, tmp_path: Path, workers: list[Worker]) -> None:
    """SIGKILL of the process holding the lease at a random moment of its refresh:
    after the lease expires, a link whose refresh token the server never used serves
    again (no refresh token used twice, no grant revoked); one the server used says
    ``needs_relink``, refuses access, and a relink heals it."""
    seed = int(os.environ.get("TORTURE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"TORTURE_SEED={seed}")
    rng = random.Random(seed)
    plan = _kill_plan(seed)
    target = panva_target(panva)
    url = f"sqlite:///{tmp_path / 'torture.db'}"
    capture = Capture(tmp_path / "tokens")
    workers.extend(Worker() for _ in plan)  # all started now: their imports overlap
    with Security(SQLRepository(url), secret_keys=KEYS) as security, \
            capturing_client(capture) as client, \
            Broker(security, {target.name: target.upstream}, client=client,
                   lease=LEASE, wait=LEASE + 5) as broker:
        session, job = job_session(security, scope=f"upstream:{target.name}")
        for index, (window, worker) in enumerate(zip(plan, workers, strict=True)):
            run = KillRun(index, window, seed)
            _kill_once(run, rng, worker, panva, target, broker, session,
                       _config(target, url, job, capture, threads=1, seconds=30,
                               lease=LEASE, kill=_kill_point(run, rng),
                               kill_sleep=run.delay),
                       capture)
        _assert_nothing_in_clear("sqlite", url, tmp_path, capture)


def _kill_point(run: KillRun, rng: random.Random) -> str:
    """The worker's own kill point for ``run`` (``external``: the test kills it)."""
    if run.window == "before":
        run.point = rng.choice(["lease", "request"])
    elif run.window == "answered":
        run.point, run.delay = "store", rng.uniform(0, 0.3)
    else:
        run.point = "external"
    return run.point


def _kill_once(run: KillRun, rng: random.Random, worker: Worker, op: PanvaProvider,
               target: Target, broker: Broker, session: Any, config: str,
               capture: Capture) -> None:
    op.reset_stats()
    worker.send(config)
    worker.expect("ready")
    if run.window == "held":
        op.fault("refresh_token", delay_before=HOLD)
    elif run.window == "consumed":
        op.fault("refresh_token", delay_after=HOLD)
    before = len(capture.seen)
    broker.link_password("alice", target.name, target.username, target.password)
    linked = dict(capture.seen[before:])
    worker.send("go")  # the worker refreshes 1.8 s after the link

    if run.point == "lease":
        worker.expect("leased", timeout=15)
    elif run.point == "request":
        worker.expect("sending", timeout=15)
    elif run.point == "store":
        worker.expect("answered", timeout=15)
    else:
        worker.expect("sending", timeout=15)
        sent = time.monotonic()
        if run.window == "consumed":  # wait until the server has used the refresh token
            while not op.stats()["refresh_tokens_processed"]:
                assert time.monotonic() < sent + HOLD + 5, f"{run}: never processed"
                time.sleep(0.01)
            run.delay = rng.uniform(0, HOLD - 0.4)
        else:
            run.delay = rng.uniform(0.05, HOLD - 0.3)
        time.sleep(run.delay)
        worker.process.send_signal(signal.SIGKILL)
        # the server is done with the dead request before anyone may present its refresh
        # token again: it processes it after the hold (a "held" kill), or did already
        while not op.stats()["refresh_tokens_processed"] and time.monotonic() < sent + HOLD + 3:
            time.sleep(0.02)
    assert worker.process.wait(timeout=15) == -signal.SIGKILL, str(run)

    killed = op.stats()
    op.reset_stats()  # and clear the fault: recovery talks to a healthy server
    used = fingerprint(linked["refresh"]) in killed["refresh_tokens_processed"]
    assert killed["grants_revoked"] == 0, str(run)
    if run.window == "before":
        assert not used and not killed["refresh_tokens_presented"], str(run)
    elif run.window in ("consumed", "answered"):
        assert used, str(run)

    # after the dead holder's lease: a new token, or needs_relink
    deadline = time.monotonic() + 20
    outcome = None
    while outcome is None:
        assert time.monotonic() < deadline, f"{run}: neither refreshed nor needs_relink"
        try:
            token = broker.access_token(session, target.name)
        except SessionExpired:
            outcome = "needs_relink"
        else:
            if token != linked["access"]:
                outcome = "usable"
            else:
                time.sleep(0.05)
    after = op.stats()
    if outcome == "usable":
        # the link serves: its refresh token was never used before, nothing was revoked
        assert not used, f"{run}: served although its refresh token had been used"
        assert after["refresh_tokens_processed"] == [fingerprint(linked["refresh"])], str(run)
        assert after["grants_revoked"] == 0, str(run)
        assert broker.links("alice") == {target.name: "ok"}, str(run)
        assert httpx.get(op.api_url, headers={"Authorization": f"Bearer {token}"}
                         ).status_code == 200, str(run)
        assert broker.access_token(session, target.name) == token, str(run)
    else:
        # the server had used the refresh token: the link says so and refuses, not ok
        assert used, f"{run}: needs_relink although the refresh token was unused"
        assert broker.links("alice") == {target.name: "needs_relink"}, str(run)
        with pytest.raises(SessionExpired):
            broker.access_token(session, target.name)
        broker.link_password("alice", target.name, target.username, target.password)
        assert broker.links("alice") == {target.name: "ok"}, str(run)
        healed = broker.access_token(session, target.name)
        assert httpx.get(op.api_url, headers={"Authorization": f"Bearer {healed}"}
                         ).status_code == 200, str(run)
    if run.window == "before":
        assert outcome == "usable", str(run)
    print(f"{run}: {outcome}")
