"""Celery: ``delegated_task``, a task that runs as the user who authorized its token.

``pip install "authtoken[celery]"``; see docs/integrations/celery.md.

::

    @delegated_task(app, script=Script(path="jobs/export.py"), scope="reports:read",
                    token=token_file("/run/credentials/worker.service/export"))
    def export(session: Session, day: str) -> int:
        ...

    export.delay("2030-01-01")      # the message holds "2030-01-01", nothing of ours

The task's message carries only the task's own arguments.  On the worker, each run
reads the standing token from its source, logs in with it for the script, requires the
scope, mints a run token for the run (its ``run_id`` is the task's id, which Celery
prints in its logs; each retry gets a run token of its own under the same id), and
calls the body with the run token's ``Session`` first; the run token is revoked when
the body ends.  A refused standing token (``TokenRevoked``, ``TokenExpired``, ...), a
missing scope (``PermissionDenied``) or an unreadable source (``TokenSourceError``)
fails the task before the body starts, so Celery's own handling sees it: the state is
``FAILURE`` with that exception, ``on_failure`` and ``link_error`` run, and
``autoretry_for`` retries if the task says so.  Once the body has run, its result or
exception is the task's: a revocation the token store refuses then is retried later
and logged by the run token's key, never turned into a failure (nor a retry).

The engine is opened by ``security`` (default ``open_security()``) once per worker
process, after the fork, and closed when the process shuts down.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import celery
from celery import signals

from .._scopes import Script
from ._jobs import (
    DelegatedJob,
    EnvToken,
    SecurityFactory,
    TokenFile,
    TokenSource,
    TokenSourceError,
    close_engines,
    from_env,
    token_file,
)

__all__ = [
    "EnvToken",
    "TokenFile",
    "TokenSource",
    "TokenSourceError",
    "close_engines",
    "delegated_task",
    "from_env",
    "token_file",
]

# The bound task, first in the signature Celery checks calls against (and drops).
_TASK = inspect.Parameter("_authtoken_task", inspect.Parameter.POSITIONAL_ONLY)


def delegated_task(app: celery.Celery | None = None, *, script: Script | str | int,
                   scope: str, token: TokenSource, security: SecurityFactory | None = None,
                   run_expires: str | timedelta | None = None, **task_options: Any,
                   ) -> Callable[[Callable[..., Any]], celery.Task]:
    """A decorator making a function a Celery task that runs as a delegated user.

    ``app``: the Celery app (``None``: a ``shared_task``).  ``script``: the script the
    job runs as (a ``Script``, a path or a key); the standing token must be good for it.
    ``scope``: what a run needs; the run token holds it and nothing more, plus bindings
    to this script (the standing token's, or the script's own when it has none).
    ``token``: where the worker finds the standing token (``token_file(path)``,
    ``from_env(NAME)`` -- taken out of the environment when read --, a zero-argument
    callable); never a string.  ``security``: a zero-argument callable returning the
    ``Security`` (default ``open_security()``), called once per worker process and per
    factory object (share one).  ``run_expires``: how long a run token lives (default an
    hour, cut to the standing token's expiry); keep it near ``time_limit``, since a
    killed process revokes nothing.
    ``task_options`` go to ``app.task`` (``name``, ``autoretry_for``, ...);
    ``bind=True`` gives the body the task before the session.

    The body is called ``body(session, *args, **kwargs)``.  Raises ``TypeError``,
    ``ScopeError`` or ``InvalidArgument`` at declaration for what cannot work.
    """
    if app is not None and not isinstance(app, celery.Celery):
        raise TypeError(f"delegated_task's first argument is a Celery app, not "
                        f"{type(app).__name__}; the other arguments are keywords")
    job = DelegatedJob(script=script, scope=scope, token=token, security=security,
                       run_expires=run_expires)
    bind = bool(task_options.pop("bind", False))

    def decorate(body: Callable[..., Any]) -> celery.Task:
        signature = job.body_signature(body, skip=1 if bind else 0)

        def run(self: celery.Task, *args: Any, **kwargs: Any) -> Any:
            run_id = self.request.id or f"{body.__name__}-{uuid.uuid4()}"
            return job.run(run_id, body, args, kwargs, before=(self,) if bind else ())

        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(run, name, getattr(body, name))
        # What Celery checks a call's arguments against: the task, then the body's own.
        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[_TASK, *signature.parameters.values()])
        decorator = app.task if app is not None else celery.shared_task
        task: celery.Task = decorator(bind=True, **task_options)(run)
        return task

    return decorate


def _close(**_: Any) -> None:
    """Close (and flush) this process's engines: a prefork child's before it exits, and
    the worker's own, where the solo and thread pools run tasks."""
    close_engines()


signals.worker_process_shutdown.connect(_close, weak=False)
signals.worker_shutdown.connect(_close, weak=False)
