"""An APScheduler job that runs as the user who authorized its standing token.

Needs ``pip install "authtoken[apscheduler]"``.  Run it with
``python docs/examples/apscheduler_job.py``.  It shows:

- a job function declared with ``run_as``: the script it runs as, the scope it needs,
  and where the scheduler finds the standing token (an environment variable);
- a ``BackgroundScheduler`` with a job store in a SQLite file: each run gets a
  ``Session`` of a run token made for that run, revoked when the run ends;
- the job store holds a reference to the function and the job's arguments, no token;
- a scheduler restarted on the same job store runs the stored job;
- a revoked standing token: the run fails before the body, as an ``EVENT_JOB_ERROR``.

Everything lives in a temporary folder with a throwaway key; no token string is printed.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import secrets
import sqlite3
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from authtoken import AuthToken, Script, Session, find_tokens, open_security
from authtoken.integrations.apscheduler import close_engines, from_env, run_as

runs: dict[str, str] = {}  # what each run saw, by run id, for main() to compare


@run_as(script=Script(path="/jobs/export.py"), scope="reports:read",
        token=from_env("EXPORT_TOKEN"))
def export(session: Session, day: str) -> None:
    principal = session.principal
    assert principal is not None
    assert principal.run_id is not None
    runs[principal.run_id] = principal.token_key
    print(f"  export of {day} ran as {principal.user!r}, scopes {list(principal.scopes)}, "
          f"a chain of {len(principal.chain)} (standing token > run token)")


def scheduler_over(store: str, events: queue.Queue[JobExecutionEvent]) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=store)})
    scheduler.add_listener(events.put, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    return scheduler


def main() -> None:
    # APScheduler logs each failed run with its traceback; here the listener says it.
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["AUTHTOKEN_DATABASE_URL"] = f"sqlite:///{Path(folder) / 'tokens.db'}"
        os.environ["AUTHTOKEN_SECRET_KEYS"] = secrets.token_urlsafe(32)  # throwaway
        store = f"sqlite:///{Path(folder) / 'jobs.db'}"
        app = open_security()

        print("alice authorizes a standing token for the export script")
        standing = AuthToken("reports:read reports:write ufs:/jobs/export.py", expires="30d",
                             description="nightly export")
        os.environ["EXPORT_TOKEN"] = app.authorize_token(standing, user="alice")

        events: queue.Queue[JobExecutionEvent] = queue.Queue()
        scheduler = scheduler_over(store, events)
        scheduler.add_job(export, "date", args=["2030-01-01"], id="export-once")
        event = events.get(timeout=20)
        run_id = f"{event.job_id}@{event.scheduled_run_time.isoformat()}"
        [run] = app.list_auth_tokens(run_id=run_id, include_revoked=True)
        print(f"  run id is the job's id and its scheduled time: {run.key == runs[run_id]}")
        print(f"  its run token: child of the standing token: {run.parent_key == standing.key}"
              f", revoked: {run.revoked}")

        later = datetime.now(timezone.utc) + timedelta(hours=1)
        scheduler.add_job(export, "interval", days=1, args=["yesterday"], id="nightly",
                          next_run_time=later)
        with sqlite3.connect(Path(folder) / "jobs.db") as db:
            [raw] = db.execute("SELECT job_state FROM apscheduler_jobs").fetchone()
        db.close()
        state = pickle.loads(raw)  # noqa: S301 -- our own job store, just written
        print(f"the job store holds func={state['func']!r} args={state['args']!r}; "
              f"token strings in it: {len(find_tokens(raw.decode('latin-1')))}")

        print("the scheduler restarts on the same job store and runs the stored job now")
        scheduler.shutdown()
        scheduler = scheduler_over(store, events)
        scheduler.modify_job("nightly", next_run_time=datetime.now(timezone.utc))
        print(f"  outcome: {events.get(timeout=20).exception!r}")

        print("alice revokes the standing token; the next run fails before its body")
        app.revoke_auth_token_by_key(standing.key or "")
        scheduler.modify_job("nightly", next_run_time=datetime.now(timezone.utc))
        failed = events.get(timeout=20)
        print(f"  EVENT_JOB_ERROR: {failed.code == EVENT_JOB_ERROR}, "
              f"exception {failed.exception!r}")

        scheduler.shutdown()
        close_engines()  # closes (and flushes) the engine the runs opened
        app.close()
    print("done")


if __name__ == "__main__":
    # The job store refers to the job by its module's name, so run it from there.
    from apscheduler_job import main as run

    run()
