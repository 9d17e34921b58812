"""A process killed at any moment -- mid-batch, mid-fold -- loses only what it had not
written, never a written use or event, and nothing is counted twice.

A child logs in with a few tokens in rounds of ``ROUND`` logins, each round ended by
``flush()`` (and every few rounds a fold of everything staged), and reports each round
once it is written.  The parent kills it with ``SIGKILL`` at a random moment.  Afterwards
a fresh engine must read, for every token, the same number of uses as login events on
the trail; and the total is whole rounds: at least every reported round, at most one
more (the round whose commit was under way).  The secret key, the URL and the token
strings reach the child through its standard input, never its command line.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from authtoken import AuthToken, Security, SQLRepository

pytestmark = pytest.mark.slow

KEY = "crash-test-key"
ROUND = 50
TOKENS = 5

CHILD = r"""
import json, sys
from authtoken import Security, SQLRepository

url, key, strings = json.loads(sys.stdin.readline())
repository = SQLRepository(url)
security = Security(repository, secret_keys=key)
rounds = 0
while True:
    for i in range(ROUND):
        security.login_by_auth_token(strings[i % len(strings)])
    security.flush()
    rounds += 1
    if rounds % 3 == 0:
        repository.fold()
    sys.stdout.write(json.dumps(rounds) + "\n")
    sys.stdout.flush()
""".replace("ROUND", str(ROUND))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crash.db'}"
    return str(request.getfixturevalue("pg_url"))


def _kill_after(url: str, strings: list[str], seconds: float) -> int:
    """Run the child, kill it after ``seconds``; the last round it reported written."""
    with subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps([url, KEY, strings]) + "\n")
        child.stdin.flush()
        deadline = time.monotonic() + seconds
        reported = json.loads(child.stdout.readline())  # it runs: a round is written
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            reported = json.loads(line)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        for line in child.stdout:  # rounds reported before the kill landed
            reported = json.loads(line)
    return int(reported)


def test_a_killed_process_loses_no_written_use_and_counts_none_twice(url: str) -> None:
    with Security(SQLRepository(url), secret_keys=KEY) as security:
        strings = [security.authorize_token(AuthToken("a"), user=i) for i in range(TOKENS)]
    pause = random.Random(7)
    reported = 0
    for _ in range(4):
        reported += _kill_after(url, strings, pause.uniform(0.2, 1.2))
        repository = SQLRepository(url)
        with Security(repository, secret_keys=KEY) as fresh:
            tokens = [fresh.restore_auth_token(s) for s in strings]
            uses = sum(t.use_count for t in tokens)
            for token in tokens:
                events = fresh.audit_events(token_key=token.key, limit=10_000)
                logins = sum(e.count for e in events if e.action == "login")
                assert logins == token.use_count, (token.key, logins, token.use_count)
            assert uses % ROUND == 0, uses  # whole rounds: a batch is all or nothing
            # every reported round, and at most the one whose commit was under way
            assert reported * ROUND <= uses <= (reported + 1) * ROUND, (reported, uses)
            reported = uses // ROUND  # the next child starts from what is written
            repository.fold()  # and what it leaves staged is filed exactly once
            assert sum(fresh.restore_auth_token(s).use_count for s in strings) == uses
