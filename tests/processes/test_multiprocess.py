"""Several processes sharing one SQLite file see each other's revocations at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from authtoken import AuthToken, Script, Session, open_security

WORKER = r"""
import json, sys
from authtoken import LoginError, Script, open_security

url, key = sys.argv[1], sys.argv[2]
security = open_security(url, secret_keys=key)
tokens = {}
for line in sys.stdin:
    command, name, *rest = line.split()
    if command == "token":
        tokens[name] = rest[0]
        answer = "stored"
    else:
        script = Script(key=int(rest[0])) if rest else None
        try:
            answer = "ok:%s" % security.login_by_auth_token(tokens[name], script=script).user
        except LoginError as exc:
            answer = type(exc).__name__
    print(answer, flush=True)
security.close()
"""


class Worker:
    """A separate Python process that logs in on request, one line per answer."""

    def __init__(self, url: str, key: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, url, key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        assert code == 0


@pytest.mark.slow
def test_revocation_is_refused_at_once_by_other_processes(tmp_path: Path) -> None:
    """After one process revokes, the very next login in two other processes is refused."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with open_security(url, secret_keys="shared-key") as security:
        root = security.authorize_token(AuthToken("a vfs:ikey?5"), user="alice")
        session = Session(security, script=Script(key=5))
        session.login_by_auth_token(root)
        child = session.authorize_token(AuthToken("a vfs:ikey?5"))
        workers = [Worker(url, "shared-key") for _ in range(2)]
        try:
            for worker in workers:
                assert worker.ask(f"token root {root}") == "stored"
                assert worker.ask(f"token child {child}") == "stored"
                # warm: connections open, statements prepared, tokens seen once
                assert worker.ask("login root 5") == "ok:alice"
                assert worker.ask("login child 5") == "ok:alice"
            security.revoke_auth_token(root)
            for worker in workers:
                assert worker.ask("login root 5") == "TokenRevoked"
                assert worker.ask("login child 5") == "TokenRevoked"
        finally:
            for worker in workers:
                worker.close()


@pytest.mark.slow
def test_concurrent_writers_share_one_file(tmp_path: Path) -> None:
    """Processes authorizing and logging in at once lose no token and no usage count."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    code = r"""
import sys
from authtoken import AuthToken, open_security
url = sys.argv[1]
with open_security(url, secret_keys="k") as security:
    for i in range(40):
        string = security.authorize_token(AuthToken("a"), user=sys.argv[2])
        for _ in range(5):
            security.login_by_auth_token(string)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", code, url, f"u{n}"], env=env)
             for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    with open_security(url, secret_keys="k") as security:
        tokens = security.list_auth_tokens()
        assert len(tokens) == 160
        assert {t.use_count for t in tokens} == {5}
        assert {str(t.user) for t in tokens} == {"u0", "u1", "u2", "u3"}
