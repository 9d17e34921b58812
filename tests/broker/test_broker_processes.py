"""Several processes share one link: one refresh per expiry, and a killed refresher.

Real processes on a real SQLite file and the real clock, against a Spatium authority
whose permission tokens live 3 seconds (refreshed 1 second early).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_support import KEYS, PASSWORD, USERNAME, job_session
from cryptography.hazmat.primitives.asymmetric import rsa

from authtoken import Security, SessionExpired, SQLRepository
from authtoken.broker import Broker, SpatiumUpstream
from authtoken.testing import SpatiumAuthority

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("broker_worker.py")


@pytest.fixture
def live_authority(rsa_key: rsa.RSAPrivateKey) -> Iterator[SpatiumAuthority]:
    """An authority on the real clock: 3-second permission tokens."""
    with SpatiumAuthority(private_key=rsa_key, permission_lifetime=3) as running:
        running.add_account(USERNAME, PASSWORD)
        yield running


def _linked(tmp_path: Path, authority: SpatiumAuthority) -> tuple[str, str]:
    """A database with alice's link, and a job token string for it."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Security(SQLRepository(url), secret_keys=KEYS) as security:
        upstream = SpatiumUpstream(authority.url, "nightly", ["reports:read"], leeway=1.0)
        with Broker(security, {"spatium": upstream}) as broker:
            broker.link_password("alice", "spatium", USERNAME, PASSWORD)
        _, string = job_session(security)
    return url, string


def _start(url: str, authority: SpatiumAuthority, token: str, *, threads: int,
           seconds: float, lease: float) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent),
                                                        str(WORKER.parents[1])]))
    process = subprocess.Popen(
        [sys.executable, str(WORKER), url, authority.url, str(threads), str(seconds),
         str(lease)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdin is not None
    process.stdin.write(token)
    process.stdin.close()
    return process


def test_processes_share_one_refresh_per_expiry(tmp_path: Path,
                                                live_authority: SpatiumAuthority) -> None:
    """4 processes x 8 threads across several expiries: every caller served, every
    refresh token presented once, no more refreshes than expiries."""
    url, token = _linked(tmp_path, live_authority)
    seconds = 7.0
    processes = [_start(url, live_authority, token, threads=8, seconds=seconds, lease=10)
                 for _ in range(4)]
    results = []
    for process in processes:
        assert process.stdout is not None
        out = process.stdout.read()
        process.stdout.close()
        assert process.wait(timeout=60) == 0
        results.append(json.loads(out.splitlines()[-1]))
    assert all(r["errors"] == [] and r["served"] > 0 for r in results)
    attempts = live_authority.refresh_attempts
    assert attempts, "the run crossed no expiry"
    assert all(a.accepted for a in attempts)
    assert len({a.refresh_id for a in attempts}) == len(attempts)
    # a token refreshed a second early lives 2 s between refreshes (and startup adds some)
    assert len(attempts) <= seconds / 2 + 3


def test_a_killed_refresher_leaves_the_link_usable_or_marked(
        tmp_path: Path, live_authority: SpatiumAuthority) -> None:
    """SIGKILL of the process that holds the lease mid-refresh: after the lease expires,
    the link serves again or says needs_relink -- never a silent failure."""
    url, token = _linked(tmp_path, live_authority)
    live_authority.delay("permission/refresh", 4.0)  # the refresh hangs at the authority
    process = _start(url, live_authority, token, threads=1, seconds=30, lease=1.5)
    repo = SQLRepository(url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            link = repo.get_link("alice", "spatium")
            if link is not None and link.lease_holder is not None:
                break
            time.sleep(0.02)
        else:
            pytest.fail("no process took the lease")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
        repo.close()
    live_authority.clear_faults()
    time.sleep(2.0)  # the dead holder's lease expires
    with Security(SQLRepository(url), secret_keys=KEYS) as security:
        upstream = SpatiumUpstream(live_authority.url, "nightly", ["reports:read"], leeway=1.0)
        with Broker(security, {"spatium": upstream}) as broker:
            session, _ = job_session(security)
            time.sleep(3.0)  # past the permission token's expiry
            try:
                assert live_authority.verify_permission_token(
                    broker.access_token(session, "spatium"))
                assert broker.links("alice") == {"spatium": "ok"}
            except SessionExpired:
                assert broker.links("alice") == {"spatium": "needs_relink"}
            attempts = live_authority.refresh_attempts
            assert len({a.refresh_id for a in attempts if a.accepted}) == sum(
                a.accepted for a in attempts)
