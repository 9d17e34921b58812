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
from dataclasses import dataclass
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

url, key, strings, per_round = json.loads(sys.stdin.readline())
repository = SQLRepository(url)
security = Security(repository, secret_keys=key)
rounds = 0
while True:
    for i in range(per_round):
        security.login_by_auth_token(strings[(rounds * per_round + i) % len(strings)])
    security.flush()
    rounds += 1
    if rounds % 3 == 0:
        repository.fold()
    sys.stdout.write(json.dumps(rounds) + "\n")
    sys.stdout.flush()
"""


@dataclass(frozen=True)
class Shape:
    """Where the child logs in, with how many tokens, how many logins a round."""

    url: str
    tokens: int = TOKENS
    round: int = ROUND


@pytest.fixture(params=["sqlite", "postgresql", "sqlite, many tokens"])
def shape(request: pytest.FixtureRequest, tmp_path: Path) -> Shape:
    if request.param == "postgresql":
        return Shape(str(request.getfixturevalue("pg_url")))
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    if request.param == "sqlite":
        return Shape(url)
    # A fold of three rounds files 1,200 writes or more: in several parts (see _fold).
    return Shape(url, tokens=600, round=400)


def _kill_after(url: str, strings: list[str], per_round: int, seconds: float) -> int:
    """Run the child, kill it after ``seconds``; the last round it reported written."""
    with subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps([url, KEY, strings, per_round]) + "\n")
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


def test_a_killed_process_loses_no_written_use_and_counts_none_twice(shape: Shape) -> None:
    url, per_round = shape.url, shape.round
    with Security(SQLRepository(url), secret_keys=KEY) as security:
        strings = [security.authorize_token(AuthToken("a"), user=i % 50)
                   for i in range(shape.tokens)]
    pause = random.Random(7)
    reported = 0
    for _ in range(4):
        reported += _kill_after(url, strings, per_round, pause.uniform(0.2, 1.2))
        repository = SQLRepository(url)
        with Security(repository, secret_keys=KEY) as fresh:
            tokens = [fresh.restore_auth_token(s) for s in strings]
            uses = sum(t.use_count for t in tokens)
            for token in tokens:
                events = fresh.audit_events(token_key=token.key, limit=10_000)
                logins = sum(e.count for e in events if e.action == "login")
                assert logins == token.use_count, (token.key, logins, token.use_count)
            assert uses % per_round == 0, uses  # whole rounds: a batch is all or nothing
            # every reported round, and at most the one whose commit was under way
            assert reported * per_round <= uses <= (reported + 1) * per_round, (reported, uses)
            reported = uses // per_round  # the next child starts from what is written
            repository.fold()  # and what it leaves staged is filed exactly once
            assert sum(fresh.restore_auth_token(s).use_count for s in strings) == uses
