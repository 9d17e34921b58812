"""APScheduler 3: ``run_as``, a job function that runs as the user who authorized its
token.

``pip install "authtoken[apscheduler]"``; see docs/integrations/apscheduler.md.

::

    @run_as(script=Script(path="jobs/export.py"), scope="reports:read",
            token=from_env("EXPORT_TOKEN"))
    def export(session: Session, day: str) -> None:
        ...

    scheduler.add_job(export, "cron", hour=2, args=["yesterday"])

``run_as`` returns a plain module-level function with the body's name, so a persistent
job store keeps it by reference (``"jobs:export"``) and the job's own arguments; the
standing token is read from its source on the scheduler's machine and is never in the
job store.  Each run logs in with the standing token for the script,
requires the scope, mints a run token (``run_id``: the job's id and the run's scheduled
time, ``"<job id>@<ISO time>"``) and calls the body with the run token's ``Session``;
the run token is revoked when the body ends.  A refused standing token
(``TokenRevoked``, ...), a missing scope (``PermissionDenied``) or an unreadable source
(``TokenSourceError``) fails the run before the body: the scheduler logs it and sends
``EVENT_JOB_ERROR`` with that ``exception``.

The engine is opened by ``security`` (default ``open_security()``) once per process at
the first run; ``close_engines()`` after ``scheduler.shutdown()`` closes it (it is also
closed at interpreter exit).
"""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any, Final, TypeVar

import apscheduler.executors.base as executors

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
    "from_env",
    "run_as",
    "token_file",
]

F = TypeVar("F", bound=Callable[..., Any])

# The functions by which APScheduler 3's executors call a job, with its Job and the
# run's scheduled time in their frame: where a run's id is read from.
_RUNNERS: Final = frozenset(
    getattr(executors, name).__code__ for name in ("run_job", "run_coroutine_job")
    if hasattr(executors, name))
#: How much of a job's id a run id keeps (a run id is at most 200 characters).
MAX_JOB_ID: Final = 160


def run_as(*, script: Script | str | int, scope: str, token: TokenSource,
           security: SecurityFactory | None = None,
           run_expires: str | timedelta | None = None) -> Callable[[F], F]:
    """A decorator making a function an APScheduler job that runs as a delegated user.

    ``script``: the script the job runs as (a ``Script``, a path or a key); the standing
    token must be good for it.  ``scope``: what a run needs; the run token holds it and
    nothing more, plus bindings to this script (the standing token's, or the script's
    own when it has none).  ``token``: where the scheduler finds the standing token
    (``token_file(path)``, ``from_env(NAME)`` -- taken out of the environment when
    read --, a zero-argument callable); never a string.  ``security``: a zero-argument
    callable returning the ``Security`` (default ``open_security()``), called once per
    process and per factory object (share one).  ``run_expires``: how long a run token
    lives (default an hour, cut to the standing token's expiry).

    The body is called ``body(session, *args, **kwargs)``; the job function takes
    ``*args, **kwargs`` only.  Raises ``TypeError``, ``ScopeError`` or
    ``InvalidArgument`` at declaration for what cannot work.
    """
    job = DelegatedJob(script=script, scope=scope, token=token, security=security,
                       run_expires=run_expires)

    def decorate(body: F) -> F:
        signature = job.body_signature(body)

        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> Any:
            return job.run(_run_id(body), body, args, kwargs)

        # What APScheduler checks add_job's args against: the body's, without the session.
        run.__signature__ = signature  # type: ignore[attr-defined]
        run.delegated_job = job  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


def _run_id(body: Callable[..., Any]) -> str:
    """``"<job id>@<scheduled time>"`` when APScheduler runs the job; otherwise (a call
    by hand) the body's name, the time and a random suffix."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code in _RUNNERS:
            job, when = frame.f_locals.get("job"), frame.f_locals.get("run_time")
            job_id = getattr(job, "id", None)
            if isinstance(job_id, str) and isinstance(when, datetime):
                return f"{job_id[:MAX_JOB_ID]}@{when.isoformat()}"
            break
        frame = frame.f_back
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"{body.__qualname__[:MAX_JOB_ID - 50]}@{now}-{uuid.uuid4().hex[:8]}"
