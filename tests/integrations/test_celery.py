"""Celery's delegated_task under a real worker (in a thread, and as the ``celery worker``
command), over a broker and a result backend kept in files: each run is the user's,
with a run token revoked afterwards; a refused standing token fails the task before
its body, as Celery's own failure; no token string ever reaches the broker or the
results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celery_jobs
import pytest
from celery import Celery, Task
from celery.contrib.testing.worker import start_worker

from authtoken import (
    AuthToken,
    PermissionDenied,
    Security,
    TokenExhausted,
    TokenRevoked,
    find_tokens,
    open_security,
)
from authtoken.integrations.celery import TokenSourceError, close_engines

HERE = Path(__file__).parent
WAIT = 30.0  # a broken test fails after this long instead of hanging


@dataclass
class Jobs:
    base: Path
    security: Security  # the test's own engine over the store the worker uses
    standing: str
    key: str

    def marks(self, body: str | None = None) -> list[dict[str, Any]]:
        path = self.base / "marks"
        lines = path.read_text().splitlines() if path.exists() else []
        found = [json.loads(line) for line in lines]
        return [m for m in found if body is None or m["body"] == body]

    def run_tokens(self, run_id: str) -> list[AuthToken]:
        return self.security.list_auth_tokens(run_id=run_id, include_revoked=True)

    def stored_bytes(self) -> bytes:
        """Every byte the broker and the result backend hold."""
        return b"".join(path.read_bytes() for name in ("broker", "processed", "results", "control")
                        for path in sorted((self.base / name).rglob("*")) if path.is_file())


def eventually(check: Callable[[], object]) -> None:
    """Wait until ``check()`` is true (a broken test fails after ``WAIT`` seconds)."""
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def environment(base: Path) -> dict[str, str]:
    return {"JOBS_DIR": str(base), "AUTHTOKEN_DATABASE_URL": f"sqlite:///{base / 'tokens.db'}",
            "AUTHTOKEN_SECRET_KEYS": "celery-test-key"}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder of the broker, the results and the store, named in the environment
    (the worker thread reads it) for the whole module."""
    folder = tmp_path_factory.mktemp("celery")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBS_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def store(base: Path) -> Iterator[Security]:
    """The test's own engine over the store the worker uses."""
    env = environment(base)
    with open_security(env["AUTHTOKEN_DATABASE_URL"],
                       secret_keys=env["AUTHTOKEN_SECRET_KEYS"]) as security:
        yield security


@pytest.fixture(scope="module")
def tasks(base: Path, store: Security) -> Iterator[dict[str, Task]]:
    """The tasks on an app of their own, served by a real worker running in a thread."""
    app = Celery("test_celery")
    celery_jobs.configure(app, base)
    registered = celery_jobs.register(app)
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield registered
    close_engines()


@pytest.fixture
def jobs(base: Path, store: Security, monkeypatch: pytest.MonkeyPatch) -> Jobs:
    """A fresh standing token of alice for the export script, in the environment and
    in a file of mode 0600, as the worker would be given it; no marks yet."""
    for name, value in environment(base).items():
        monkeypatch.setenv(name, value)
    token = AuthToken("reports:read vfs:ikey?42", description="standing", expires="7d")
    standing = store.authorize_token(token, user="alice")
    assert token.key is not None
    monkeypatch.setenv(celery_jobs.TOKEN_ENV, standing)
    (base / "standing").write_text(standing + "\n")
    (base / "standing").chmod(0o600)
    (base / "marks").write_text("")
    return Jobs(base, store, standing, token.key)


def test_body_runs_as_the_user_with_a_run_token(jobs: Jobs, tasks: dict[str, Task]) -> None:
    """The body gets a session of the run token, a child of the standing token marked
    with the task's id, holding the task's scope and the script binding; the run token
    is revoked once the task is done."""
    result = tasks["export"].delay("2030-01-01", fmt="json")
    seen = result.get(timeout=WAIT)
    assert seen["user"] == "alice" and seen["day"] == "2030-01-01" and seen["fmt"] == "json"
    assert seen["run_id"] == result.id
    assert seen["chain"] == [jobs.key, seen["token_key"]]
    assert seen["scopes"] == ["reports:read", "vfs:ikey?42"]
    assert seen["script"] is True
    [run] = jobs.run_tokens(result.id)
    assert run.key == seen["token_key"] and run.parent_key == jobs.key and run.revoked
    assert jobs.security.list_auth_tokens(run_id=result.id) == []


def test_a_failing_body_still_revokes(jobs: Jobs, tasks: dict[str, Task]) -> None:
    """A body that raises fails the task with its own exception, and its run token is
    revoked all the same."""
    result = tasks["failing"].delay()
    with pytest.raises(RuntimeError, match="503"):
        result.get(timeout=WAIT)
    assert result.state == "FAILURE"
    [ran] = jobs.marks("failing")
    [run] = jobs.run_tokens(result.id)
    assert run.key == ran["token_key"] and run.revoked


def test_revoked_standing_token_fails_before_the_body(jobs: Jobs,
                                                      tasks: dict[str, Task]) -> None:
    """With the standing token revoked the task fails with TokenRevoked before its body
    runs and before any run token is made; on_failure and link_error see the error."""
    jobs.security.revoke_auth_token_by_key(jobs.key)
    errback = tasks["errback"].s()
    result = tasks["export"].apply_async(("2030-01-02",), link_error=errback)
    with pytest.raises(TokenRevoked):
        result.get(timeout=WAIT)
    assert result.state == "FAILURE" and isinstance(result.result, TokenRevoked)
    assert jobs.standing not in str(result.result) + str(result.traceback)
    assert jobs.marks("export") == []
    assert jobs.run_tokens(result.id) == []
    assert [m["error"] for m in jobs.marks("on_failure")] == ["TokenRevoked"]
    eventually(lambda: jobs.marks("errback"))  # the errback is a task of its own
    assert [(m["task_id"], m["error"]) for m in jobs.marks("errback")] == [
        (result.id, "TokenRevoked")]


def test_a_missing_scope_is_permission_denied(jobs: Jobs, tasks: dict[str, Task]) -> None:
    """A task needing a scope the standing token lacks fails with PermissionDenied
    naming it, before its body and without a run token."""
    result = tasks["writes"].delay()
    with pytest.raises(PermissionDenied, match="reports:write"):
        result.get(timeout=WAIT)
    assert jobs.marks("writes") == [] and jobs.run_tokens(result.id) == []


def test_a_used_up_standing_token_is_exhausted(jobs: Jobs, tasks: dict[str, Task],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A standing token of one use runs the task once; the next run fails with
    TokenExhausted before its body."""
    token = AuthToken("reports:read vfs:ikey?42", expires="7d", max_uses=1)
    monkeypatch.setenv(celery_jobs.TOKEN_ENV, jobs.security.authorize_token(token, user="bob"))
    assert tasks["export"].delay("once").get(timeout=WAIT)["user"] == "bob"
    second = tasks["export"].delay("twice")
    with pytest.raises(TokenExhausted):
        second.get(timeout=WAIT)
    assert [m["day"] for m in jobs.marks("export")] == ["once"]


def test_each_retry_gets_its_own_run_token(jobs: Jobs, tasks: dict[str, Task]) -> None:
    """A task retried by Celery runs twice under the task's id, each attempt with a run
    token of its own, both revoked."""
    result = tasks["retried"].delay()
    assert result.get(timeout=WAIT)["run_id"] == result.id
    attempts = jobs.marks("retried")
    assert [m["retries"] for m in attempts] == [0, 1]
    runs = jobs.run_tokens(result.id)
    assert {r.key for r in runs} == {m["token_key"] for m in attempts} and len(runs) == 2
    assert all(r.revoked for r in runs)


def test_a_failed_revocation_does_not_fail_or_retry_the_task(
        jobs: Jobs, tasks: dict[str, Task]) -> None:
    """The store refusing the run token's revocation after the body did its work: the
    task succeeds, its body ran once although it retries on RepositoryError, and the
    run token is revoked at the worker's next run of a task."""
    (jobs.base / "revoke-failures").write_text("3")
    result = tasks["sends"].delay(42)
    seen = result.get(timeout=WAIT)
    assert result.state == "SUCCESS" and seen["user"] == "alice"
    assert [m["invoice"] for m in jobs.marks("sends")] == [42]
    [run] = jobs.run_tokens(result.id)
    assert not run.revoked and run.key == seen["token_key"]
    assert tasks["sends"].delay(43).get(timeout=WAIT)["user"] == "alice"
    assert jobs.security.get_auth_token(run.key).revoked
    assert [t for t in jobs.security.list_auth_tokens(user="alice") if t.run_id] == []


def test_a_token_file_source(jobs: Jobs, tasks: dict[str, Task]) -> None:
    """The standing token read from a 0600 file logs in; the same file made readable by
    others fails the task with TokenSourceError saying how to fix it, unechoed."""
    assert tasks["from_file"].delay().get(timeout=WAIT)["user"] == "alice"
    (jobs.base / "standing").chmod(0o644)
    result = tasks["from_file"].delay()
    with pytest.raises(TokenSourceError, match="chmod 600") as caught:
        result.get(timeout=WAIT)
    assert jobs.standing not in str(caught.value) + repr(caught.value)
    assert len(jobs.marks("from_file")) == 1


def test_broker_and_results_hold_no_token(jobs: Jobs, tasks: dict[str, Task]) -> None:
    """Every byte of every message and result -- runs that passed, failed, retried and
    were refused -- holds the tasks' own arguments and no token string."""
    tasks["export"].delay("2030-01-03", fmt="xml").get(timeout=WAIT)
    tasks["retried"].delay().get(timeout=WAIT)
    tasks["failing"].delay().get(timeout=WAIT, propagate=False)
    jobs.security.revoke_auth_token_by_key(jobs.key)
    tasks["export"].delay("2030-01-04").get(timeout=WAIT, propagate=False)
    stored = jobs.stored_bytes()
    assert b"2030-01-03" in stored and b"2030-01-04" in stored and b"TokenRevoked" in stored
    assert jobs.standing.encode() not in stored
    assert b"atk_" not in stored.lower()
    assert find_tokens(stored.decode("utf-8", "replace")) == []


@pytest.mark.slow
def test_the_celery_worker_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``celery -A celery_jobs worker`` with a prefork pool, as users run it: the task
    runs as the user, a revoked standing token fails it with TokenRevoked, the child
    process writes its engine's usage when the worker stops, and the worker's log holds
    no token string."""
    monkeypatch.setenv("JOBS_DIR", str(tmp_path))
    jobs = own_jobs(tmp_path)
    env = {**os.environ, **environment(jobs.base), celery_jobs.TOKEN_ENV: jobs.standing,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_jobs", "worker",
             "--pool=prefork", "--concurrency=1", "--loglevel=INFO", "--without-heartbeat",
             "--without-gossip", "--without-mingle"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        app = Celery("client")
        celery_jobs.configure(app, jobs.base)
        result = app.send_task("jobs.export", ("2030-01-05",))
        seen = result.get(timeout=60)
        assert seen["user"] == "alice" and seen["run_id"] == result.id
        assert jobs.run_tokens(result.id)[0].revoked
        jobs.security.revoke_auth_token_by_key(jobs.key)
        refused = app.send_task("jobs.export", ("2030-01-06",))
        with pytest.raises(TokenRevoked):
            refused.get(timeout=WAIT)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert jobs.security.get_auth_token(jobs.key).use_count >= 1
    printed = log.read_text(errors="replace")
    assert "jobs.export" in printed and "TokenRevoked" in printed
    assert jobs.standing not in printed and find_tokens(printed) == []
    assert [m["day"] for m in jobs.marks("export")] == ["2030-01-05"]
    jobs.security.close()


def own_jobs(folder: Path) -> Jobs:
    """A store and a standing token in ``folder``, for a worker of its own."""
    env = environment(folder)
    security = open_security(env["AUTHTOKEN_DATABASE_URL"],
                             secret_keys=env["AUTHTOKEN_SECRET_KEYS"])
    token = AuthToken("reports:read vfs:ikey?42", expires="7d")
    standing = security.authorize_token(token, user="alice")
    assert token.key is not None
    return Jobs(folder, security, standing, token.key)
