"""APScheduler job functions, as a project would write them: module-level, so a
persistent job store keeps them by reference (``apscheduler_jobs:export``).

The standing token comes from ``JOBS_STANDING_TOKEN`` (or the file
``JOBS_DIR/standing``); the store from ``AUTHTOKEN_DATABASE_URL`` and
``AUTHTOKEN_SECRET_KEYS`` (the default ``open_security()``).  Each body records what
it saw in ``JOBS_DIR/marks``.

Run as a program (``python apscheduler_jobs.py JOBSTORE_URL JOB_ID``) it is a second
scheduler over a job store that another one filled: it runs that job now, prints the
event it got as JSON, and shuts down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from authtoken import Script, Session
from authtoken.integrations.apscheduler import from_env, run_as, token_file

SCRIPT = Script(key=42, path="/jobs/export.py")
TOKEN_ENV = "JOBS_STANDING_TOKEN"


def folder() -> Path:
    return Path(os.environ.get("JOBS_DIR", "/nonexistent/jobs"))


def mark(name: str, **facts: Any) -> None:
    with open(folder() / "marks", "a", encoding="utf-8") as marks:
        marks.write(json.dumps({"body": name, **facts}) + "\n")


def seen(session: Session) -> dict[str, Any]:
    principal = session.principal
    assert principal is not None
    return {"user": principal.user, "run_id": principal.run_id,
            "chain": list(principal.chain), "scopes": list(principal.scopes),
            "token_key": principal.token_key, "script": session.script == SCRIPT}


@run_as(script=SCRIPT, scope="reports:read", token=from_env(TOKEN_ENV))
def export(session: Session, day: str, *, fmt: str = "csv") -> None:
    mark("export", day=day, fmt=fmt, **seen(session))


@run_as(script=SCRIPT, scope="reports:read",
        token=lambda: (folder() / "standing-source").read_text())
def from_callable(session: Session) -> None:
    mark("from_callable", **seen(session))


@run_as(script=SCRIPT, scope="reports:read", token=token_file(Path("/nonexistent/standing")))
def from_missing_file(session: Session) -> None:
    mark("from_missing_file")


@run_as(script=SCRIPT, scope="reports:read", token=from_env(TOKEN_ENV))
def failing(session: Session) -> None:
    mark("failing", **seen(session))
    raise RuntimeError("the report server answered 503")


@run_as(script=SCRIPT, scope="reports:write", token=from_env(TOKEN_ENV))
def writes(session: Session) -> None:
    mark("writes")


@run_as(script=SCRIPT, scope="reports:read", token=from_env(TOKEN_ENV))
def spawns(session: Session) -> None:
    """Start a process, as a job body may, and record the environment it got."""
    child = subprocess.run(
        [sys.executable, "-c", f"import os; print(os.environ.get({TOKEN_ENV!r}, ''))"],
        capture_output=True, text=True, check=True, timeout=30)
    mark("spawns", child_saw=child.stdout.strip(), **seen(session))


def second_scheduler(url: str, job_id: str) -> dict[str, Any]:
    """Start a scheduler over the job store at ``url``, run ``job_id`` now, and say
    what happened."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    done = threading.Event()
    outcome: dict[str, Any] = {}

    def listen(event: JobExecutionEvent) -> None:
        outcome.update(job_id=event.job_id, error=repr(event.exception))
        done.set()

    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)})
    scheduler.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    job = scheduler.get_job(job_id)
    outcome["func_ref"] = None if job is None else job.func_ref
    if job is not None:
        job.modify(next_run_time=datetime.now(timezone.utc))
        scheduler.wakeup()
        outcome["finished"] = done.wait(20)
    scheduler.shutdown()
    return outcome


if __name__ == "__main__":
    print(json.dumps(second_scheduler(sys.argv[1], sys.argv[2])))
