"""A tiny job scheduler that runs each job as the user who scheduled it.

Needs ``pip install authtoken`` (no extra).  Run it with
``python docs/examples/scheduler.py``.  It shows:

- users authorize one token per job, bound to the job's script, with a data payload and
  an expiry; the scheduler keeps only the token *string*, in its secret store;
- at run time the scheduler logs in as the user with ``ScriptRunner``; no password;
- a revocation made by the user between two runs is refused at the very next run;
- expiry, with a fake clock moved forward a day at a time instead of waiting;
- rotating the secret key: new key first, old key kept to verify, then retired.

The "app" (where users manage their tokens) and the scheduler are two ``Security``
engines over one SQLite file, as two processes would be.  Everything lives in a
temporary folder with throwaway keys; no token string is printed.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from authtoken import (
    AuthToken,
    InvalidToken,
    LoginError,
    Script,
    ScriptRunner,
    Security,
    TokenExpired,
    TokenRevoked,
    escape,
    open_security,
)


class FakeClock:
    """A clock the example moves by hand; every expiry decision reads it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Job:
    name: str
    script: Script
    secret: str  # the name of the token string in the secret store, not the string
    enabled: bool = True


def authorize_job(app: Security, store: dict[str, str], user: str, job: Job,
                  scope: str, payload: dict[str, object], expires: str) -> str:
    """The user's side: authorize a token for ``job`` and put its string in the store."""
    token = AuthToken(scope, json.dumps(payload), description=f"scheduled job {job.name}",
                      expires=expires)
    store[job.secret] = app.authorize_token(token, user=user)
    shown = "never" if token.expires is None else f"{token.expires:%Y-%m-%d %H:%M}"
    print(f"  {user} authorized token {token.key} for {job.name}: scope {token.scope!r}, "
          f"expires {shown}")
    assert token.key is not None
    return token.key


def run_job(scheduler: Security, store: dict[str, str], job: Job) -> None:
    """The scheduler's side: log in as the job's user, for the job's script, and run it."""
    runner = ScriptRunner(scheduler, job.script)
    try:
        session = runner.login_by_auth_token(store[job.secret])
    except (TokenRevoked, TokenExpired) as exc:
        # Final for this token: stop scheduling the job until the user re-authorizes.
        job.enabled = False
        print(f"  {job.name}: refused, {type(exc).__name__}: {exc}; job disabled")
        return
    except LoginError as exc:
        # InvalidToken or ScriptNotAuthorized: a configuration problem, not the user's.
        print(f"  {job.name}: refused, {type(exc).__name__}: {exc}")
        return
    principal = session.principal
    assert principal is not None
    params = json.loads(principal.data or "{}")
    print(f"  {job.name}: ran as {principal.user!r} with {params}")


def tick(scheduler: Security, store: dict[str, str], jobs: list[Job], clock: FakeClock) -> None:
    print(f"{clock.now:%Y-%m-%d %H:%M} run:")
    for job in jobs:
        if job.enabled:
            run_job(scheduler, store, job)
        else:
            print(f"  {job.name}: disabled, skipped")


def main() -> None:
    clock = FakeClock(datetime(2030, 1, 1, 1, 0, tzinfo=timezone.utc))
    old_key = secrets.token_urlsafe(32)  # throwaway keys; see docs/scheduler.md
    new_key = secrets.token_urlsafe(32)
    store: dict[str, str] = {}  # stands in for Vault, a Kubernetes Secret, ...
    export = Job("sales-export", Script(key=42, path="/jobs/export.js"), "jobs/sales-export")
    sync = Job("crm-sync", Script(path="/jobs/crm sync.js"), "jobs/crm-sync")
    stock = Job("stock-count", Script(key=7), "jobs/stock-count")
    jobs = [export, sync, stock]

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'tokens.db'}"
        app = open_security(url, secret_keys=old_key, clock=clock)
        scheduler = open_security(url, secret_keys=old_key, clock=clock)

        print(f"{clock.now:%Y-%m-%d %H:%M} users schedule jobs:")
        export_key = authorize_job(app, store, "alice", export, "reports:export vfs:ikey?42",
                                   {"report": "sales"}, expires="3d")
        sync_key = authorize_job(app, store, "bob", sync,
                                 "crm:sync ufs:" + escape("/jobs/crm sync.js"),
                                 {"since": "yesterday"}, expires="never")
        authorize_job(app, store, "carol", stock, "stock:count vfs:ikey?7",
                      {"warehouse": "north"}, expires="never")

        clock.advance(timedelta(hours=1))
        tick(scheduler, store, jobs, clock)

        print("bob revokes his token in the app (another engine, same database)")
        app.revoke_auth_token_by_key(sync_key)
        clock.advance(timedelta(days=1))
        tick(scheduler, store, jobs, clock)

        print("rotating the secret key: the new key signs, the old one still verifies")
        app.close()
        scheduler.close()
        app = open_security(url, secret_keys=[new_key, old_key], clock=clock)
        scheduler = open_security(url, secret_keys=[new_key, old_key], clock=clock)
        clock.advance(timedelta(days=1))
        tick(scheduler, store, jobs, clock)

        clock.advance(timedelta(days=1))
        expires = app.get_auth_token(export_key).expires
        assert expires is not None
        print(f"alice's token expires at {expires:%Y-%m-%d %H:%M}; "
              f"it is now {clock.now:%Y-%m-%d %H:%M}")
        tick(scheduler, store, jobs, clock)

        print("alice authorizes a new token for her job (signed with the new key)")
        authorize_job(app, store, "alice", export, "reports:export vfs:ikey?42",
                      {"report": "sales"}, expires="30d")
        export.enabled = True
        clock.advance(timedelta(days=1))
        tick(scheduler, store, jobs, clock)

        print("retiring the old key too early: tokens it signed no longer verify")
        with open_security(url, secret_keys=new_key, clock=clock) as new_only:
            for job in (export, stock):
                try:
                    new_only.login_by_auth_token(store[job.secret], script=job.script)
                    print(f"  {job.name}: token verifies with the new key alone")
                except InvalidToken as exc:
                    print(f"  {job.name}: InvalidToken: {exc}; re-authorize it before "
                          "dropping the old key")

        scheduler.close()  # writes the buffered usage
        print("usage, as the app reads it:")
        for token in app.list_auth_tokens(include_revoked=True):
            state = "revoked" if token.revoked else (
                "expired" if token.is_expired(clock.now) else "live")
            used = "never" if token.last_used_at is None else f"{token.last_used_at:%m-%d %H:%M}"
            print(f"  {token.key} {token.user:<6} {state:<8} use_count={token.use_count} "
                  f"last_used_at={used}")
        app.close()
    print("done")


if __name__ == "__main__":
    main()
