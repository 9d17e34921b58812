"""A Celery application and its delegated tasks, as a project would write them: the
tests run them in a worker thread and under ``celery -A celery_jobs worker``.

Everything comes from the environment, so the worker process and the tests agree:
``JOBS_DIR`` (the broker's folders, the result backend, the bodies' marks),
``AUTHTOKEN_DATABASE_URL`` and ``AUTHTOKEN_SECRET_KEYS`` (the store, opened by the
default ``open_security()``), ``JOBS_STANDING_TOKEN`` (the standing token), and
``JOBS_DIR/standing`` (the same token in a file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery, Task

from authtoken import RepositoryError, Script, Security, Session, SQLRepository
from authtoken.integrations.celery import delegated_task, from_env, token_file

SCRIPT = Script(key=42, path="/jobs/export.py")
TOKEN_ENV = "JOBS_STANDING_TOKEN"


def folder() -> Path:
    return Path(os.environ.get("JOBS_DIR", "/nonexistent/jobs"))


def configure(app: Celery, base: Path) -> None:
    """A broker and a result backend in files under ``base``: no server to run."""
    for name in ("broker", "processed", "results"):
        (base / name).mkdir(exist_ok=True)
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": str(base / "broker"), "data_folder_out": str(base / "broker"),
            "processed_folder": str(base / "processed"), "store_processed": True,
            # the exchange table, else kombu keeps it in ./control of the working folder
            "control_folder": str(base / "control"),
            "polling_interval": 0.05},
        result_backend=f"file://{base / 'results'}",
        task_serializer="json", result_serializer="json", accept_content=["json"],
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
    )


def mark(name: str, **facts: Any) -> None:
    """Record that a body ran (in the marks file the tests read)."""
    with open(folder() / "marks", "a", encoding="utf-8") as marks:
        marks.write(json.dumps({"body": name, **facts}) + "\n")


def seen(session: Session) -> dict[str, Any]:
    principal = session.principal
    assert principal is not None
    return {"user": principal.user, "run_id": principal.run_id,
            "chain": list(principal.chain), "scopes": list(principal.scopes),
            "token_key": principal.token_key, "script": session.script == SCRIPT}


class FlakyRepository(SQLRepository):
    """The store of ``AUTHTOKEN_DATABASE_URL``, whose revocations fail as an unreachable
    store's would as many times as ``JOBS_DIR/revoke-failures`` says."""

    def revoke(self, key: str, at: int) -> int | None:
        count = folder() / "revoke-failures"
        left = int(count.read_text() or 0) if count.exists() else 0
        if left:
            count.write_text(str(left - 1))
            raise RepositoryError("the token store is unreachable")
        return super().revoke(key, at)


def flaky_security() -> Security:
    """The engine of the tasks whose store fails their revocations on demand."""
    return Security(FlakyRepository(os.environ["AUTHTOKEN_DATABASE_URL"]),
                    secret_keys=os.environ["AUTHTOKEN_SECRET_KEYS"])


class Recording(Task):  # type: ignore[misc]
    """A task base whose failure handler records what Celery handed it."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        mark("on_failure", task_id=task_id, error=type(exc).__name__)


def register(app: Celery) -> dict[str, Task]:
    """The tasks, on ``app``."""

    @app.task(name="jobs.errback", shared=False)
    def errback(request: Any, exc: BaseException, traceback: Any) -> None:
        mark("errback", task_id=request.id, error=type(exc).__name__)

    @delegated_task(app, script=SCRIPT, scope="reports:read", token=from_env(TOKEN_ENV),
                    name="jobs.export", shared=False, base=Recording)
    def export(session: Session, day: str, *, fmt: str = "csv") -> dict[str, Any]:
        mark("export", day=day, fmt=fmt)
        return {**seen(session), "day": day, "fmt": fmt}

    @delegated_task(app, script=SCRIPT, scope="reports:read",
                    token=token_file(folder() / "standing"), name="jobs.from_file",
                    shared=False)
    def from_file(session: Session) -> dict[str, Any]:
        mark("from_file")
        return seen(session)

    @delegated_task(app, script=SCRIPT, scope="reports:read", token=from_env(TOKEN_ENV),
                    name="jobs.failing", shared=False)
    def failing(session: Session) -> None:
        mark("failing", **seen(session))
        raise RuntimeError("the report server answered 503")

    @delegated_task(app, script=SCRIPT, scope="reports:write", token=from_env(TOKEN_ENV),
                    name="jobs.writes", shared=False)
    def writes(session: Session) -> None:
        mark("writes")

    @delegated_task(app, script=SCRIPT, scope="reports:read", token=from_env(TOKEN_ENV),
                    name="jobs.retried", shared=False, bind=True, max_retries=1,
                    default_retry_delay=0)
    def retried(task: Task, session: Session) -> dict[str, Any]:
        mark("retried", retries=task.request.retries, **seen(session))
        if task.request.retries == 0:
            raise task.retry()
        return seen(session)

    @delegated_task(app, script=SCRIPT, scope="reports:read", token=from_env(TOKEN_ENV),
                    security=flaky_security, name="jobs.sends", shared=False,
                    autoretry_for=(RepositoryError,), max_retries=2, default_retry_delay=0)
    def sends(session: Session, invoice: int) -> dict[str, Any]:
        mark("sends", invoice=invoice, **seen(session))
        return seen(session)

    return {"errback": errback, "export": export, "from_file": from_file, "failing": failing,
            "writes": writes, "retried": retried, "sends": sends}


app = Celery("celery_jobs")
if "JOBS_DIR" in os.environ:  # the worker process: configured by its environment
    configure(app, folder())
tasks = register(app)
