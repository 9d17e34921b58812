"""APScheduler's run_as under a real BackgroundScheduler with a SQLAlchemy job store on
a SQLite file: each run is the user's, with a run token named after the job and its
scheduled time and revoked afterwards; a refused standing token is an EVENT_JOB_ERROR
before the body; the job store holds a reference and the job's arguments, never a
token; a scheduler restarted in another process runs the stored job."""

from __future__ import annotations

import json
import os
import pickle
import queue
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apscheduler_jobs
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from authtoken import (
    AuthToken,
    PermissionDenied,
    Security,
    TokenRevoked,
    find_tokens,
    open_security,
)
from authtoken.integrations.apscheduler import TokenSourceError, close_engines

HERE = Path(__file__).parent
WAIT = 30.0  # a broken test fails after this long instead of hanging
KEYS = "apscheduler-test-key"


@dataclass
class Jobs:
    base: Path
    security: Security
    standing: str
    key: str
    scheduler: BackgroundScheduler
    events: queue.Queue[JobExecutionEvent] = field(default_factory=queue.Queue)

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.base / 'jobs.db'}"

    def marks(self, body: str | None = None) -> list[dict[str, Any]]:
        path = self.base / "marks"
        found = [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []
        return [m for m in found if body is None or m["body"] == body]

    def run_now(self, func: Any, *args: Any, **kwargs: Any) -> JobExecutionEvent:
        """Add ``func`` as a job that runs at once, and wait for its event."""
        job = self.scheduler.add_job(func, args=args, kwargs=kwargs)
        event = self.events.get(timeout=WAIT)
        assert event.job_id == job.id
        return event

    def run_tokens(self, run_id: str) -> list[AuthToken]:
        return self.security.list_auth_tokens(run_id=run_id, include_revoked=True)


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Jobs]:
    """alice's standing token in the environment, and a started scheduler over a job
    store on a SQLite file whose events the test reads."""
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    for name, value in {"JOBS_DIR": str(tmp_path), "AUTHTOKEN_DATABASE_URL": url,
                        "AUTHTOKEN_SECRET_KEYS": KEYS}.items():
        monkeypatch.setenv(name, value)
    security = open_security(url, secret_keys=KEYS)
    token = AuthToken("reports:read vfs:ikey?42", description="standing", expires="7d")
    standing = security.authorize_token(token, user="alice")
    assert token.key is not None
    monkeypatch.setenv(apscheduler_jobs.TOKEN_ENV, standing)
    store = SQLAlchemyJobStore(url=f"sqlite:///{tmp_path / 'jobs.db'}")
    scheduler = BackgroundScheduler(jobstores={"default": store})
    jobs = Jobs(tmp_path, security, standing, token.key, scheduler)
    scheduler.add_listener(jobs.events.put, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    yield jobs
    if scheduler.running:
        scheduler.shutdown()
    close_engines()
    security.close()


def test_body_runs_as_the_user_with_a_run_token(jobs: Jobs) -> None:
    """The body gets the session of a run token named after the job's id and scheduled
    time, a child of the standing token holding the scope and the script binding; the
    run token is revoked once the run is over."""
    event = jobs.run_now(apscheduler_jobs.export, "2030-01-01", fmt="json")
    assert event.exception is None
    [seen] = jobs.marks("export")
    assert seen["user"] == "alice" and seen["day"] == "2030-01-01" and seen["fmt"] == "json"
    assert seen["run_id"] == f"{event.job_id}@{event.scheduled_run_time.isoformat()}"
    assert seen["chain"] == [jobs.key, seen["token_key"]]
    assert seen["scopes"] == ["reports:read", "vfs:ikey?42"] and seen["script"] is True
    [run] = jobs.run_tokens(seen["run_id"])
    assert run.key == seen["token_key"] and run.parent_key == jobs.key and run.revoked


def test_a_failing_body_still_revokes(jobs: Jobs) -> None:
    """A body that raises is the job's error event, with its own exception, and its run
    token is revoked all the same."""
    event = jobs.run_now(apscheduler_jobs.failing)
    assert isinstance(event.exception, RuntimeError)
    [ran] = jobs.marks("failing")
    [run] = jobs.run_tokens(ran["run_id"])
    assert run.key == ran["token_key"] and run.revoked


def test_revoked_standing_token_is_a_job_error_before_the_body(jobs: Jobs) -> None:
    """With the standing token revoked, the run is an EVENT_JOB_ERROR carrying
    TokenRevoked; the body never ran and no run token was made."""
    jobs.security.revoke_auth_token_by_key(jobs.key)
    event = jobs.run_now(apscheduler_jobs.export, "2030-01-02")
    assert event.code == EVENT_JOB_ERROR and isinstance(event.exception, TokenRevoked)
    assert jobs.standing not in str(event.exception) + str(event.traceback)
    assert jobs.marks() == []
    assert jobs.security.list_auth_tokens(user="alice", include_revoked=True)[0].key == jobs.key


def test_a_missing_scope_is_permission_denied(jobs: Jobs) -> None:
    """A job needing a scope the standing token lacks is an error event with
    PermissionDenied naming it, before its body."""
    event = jobs.run_now(apscheduler_jobs.writes)
    assert isinstance(event.exception, PermissionDenied)
    assert "reports:write" in str(event.exception)
    assert jobs.marks() == []


def test_token_sources(jobs: Jobs) -> None:
    """A callable source gives the standing token; a token file that does not exist is
    an error event with TokenSourceError saying so."""
    (jobs.base / "standing-source").write_text(jobs.standing)
    assert jobs.run_now(apscheduler_jobs.from_callable).exception is None
    assert [m["user"] for m in jobs.marks("from_callable")] == ["alice"]
    event = jobs.run_now(apscheduler_jobs.from_missing_file)
    assert isinstance(event.exception, TokenSourceError)
    assert "does not exist" in str(event.exception)
    assert jobs.marks("from_missing_file") == []


def test_no_process_a_job_starts_holds_the_standing_token(jobs: Jobs) -> None:
    """The standing token's variable is taken out of the environment at the first run:
    a process the body starts finds nothing in it, at that run and the next, and both
    runs are alice's."""
    for _ in range(2):
        assert jobs.run_now(apscheduler_jobs.spawns).exception is None
    assert apscheduler_jobs.TOKEN_ENV not in os.environ
    runs = jobs.marks("spawns")
    assert [(m["child_saw"], m["user"]) for m in runs] == [("", "alice")] * 2
    assert runs[0]["token_key"] != runs[1]["token_key"]


def test_add_job_checks_the_arguments_without_the_session(jobs: Jobs) -> None:
    """APScheduler checks add_job's arguments against the body's own, the session left
    out: a missing one is refused when the job is added."""
    with pytest.raises(ValueError, match="day"):
        jobs.scheduler.add_job(apscheduler_jobs.export)
    with pytest.raises(ValueError, match="allowed: 1, given in args: 2"):
        jobs.scheduler.add_job(apscheduler_jobs.export, args=["day", "extra"])


def test_job_store_holds_no_token(jobs: Jobs) -> None:
    """A stored job is a textual reference and its own arguments: the raw rows, the
    unpickled state and the whole file hold no token string."""
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    jobs.scheduler.add_job(apscheduler_jobs.export, "interval", hours=24, id="nightly",
                           args=["yesterday"], kwargs={"fmt": "json"}, next_run_time=later)
    jobs.run_now(apscheduler_jobs.export, "2030-01-03")
    with sqlite3.connect(jobs.base / "jobs.db") as db:
        rows = db.execute("SELECT id, job_state FROM apscheduler_jobs").fetchall()
    db.close()
    [(job_id, raw)] = rows
    state = pickle.loads(raw)
    assert job_id == "nightly" and state["func"] == "apscheduler_jobs:export"
    assert state["args"] == ("yesterday",) and state["kwargs"] == {"fmt": "json"}
    whole = (jobs.base / "jobs.db").read_bytes() + raw + repr(state).encode()
    assert jobs.standing.encode() not in whole and b"atk_" not in whole.lower()
    assert find_tokens(whole.decode("utf-8", "replace")) == []


def test_a_job_called_by_hand(jobs: Jobs) -> None:
    """Called outside a scheduler, the job still runs as the user, under a run id made
    of its name and the time."""
    assert apscheduler_jobs.export("by-hand") is None
    [seen] = jobs.marks("export")
    assert seen["run_id"].startswith("export@") and seen["user"] == "alice"
    assert jobs.run_tokens(seen["run_id"])[0].revoked


@pytest.mark.slow
def test_a_restarted_scheduler_runs_the_stored_job(jobs: Jobs) -> None:
    """A job added by one scheduler and left in the store runs under a second
    scheduler in a fresh process, which finds the function by its reference."""
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    jobs.scheduler.add_job(apscheduler_jobs.export, "interval", hours=24, id="nightly",
                           args=["restarted"], next_run_time=later)
    jobs.scheduler.shutdown()
    close_engines()
    env = {**os.environ, apscheduler_jobs.TOKEN_ENV: jobs.standing,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(HERE / "apscheduler_jobs.py"), jobs.store_url,
                           "nightly"], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome == {"func_ref": "apscheduler_jobs:export", "job_id": "nightly",
                       "error": "None", "finished": True}
    [seen] = jobs.marks("export")
    assert seen["day"] == "restarted" and seen["user"] == "alice"
    assert seen["run_id"].startswith("nightly@")
    assert jobs.run_tokens(seen["run_id"])[0].revoked
    assert jobs.standing not in done.stdout + done.stderr
