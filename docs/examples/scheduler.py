"""A tiny job scheduler that runs each job as the user who scheduled it, with run tokens.

Needs ``pip install authtoken`` (no extra).  Run it with
``python docs/examples/scheduler.py``.  It shows:

- an organisation's ``Policy``: every token must expire, and none may live past 90 days;
- users give the scheduler one *standing* token per job, bound to the job's script; a
  renewable one (``max_lifetime``) is renewed at every run and stops at its ceiling;
- at each run the scheduler logs in with the standing token and makes a *run token*
  (``Session.run_token``): narrower, an hour long, a few uses, marked with the run's id;
  the job logs in with that and sees ``principal.run_id`` and ``principal.chain``;
- the run token is revoked when the run ends, also when the job failed; the run's
  tokens and audit events are found by its id;
- a revocation made by the user between two runs is refused at the very next run;
- expiry, with a fake clock moved forward a day at a time instead of waiting;
- a one-time token (``max_uses=1``) handing a job to a worker: a replay is refused;
- rotating the secret key: new key first, old key kept to verify, then retired.

The "app" (where users manage their tokens), the scheduler and the job are three
``Security`` engines over one SQLite file, as three processes would be.  Everything
lives in a temporary folder with throwaway keys; no token string is printed.
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
    PermissionDenied,
    Policy,
    PolicyViolation,
    Script,
    ScriptRunner,
    Security,
    TokenExhausted,
    TokenExpired,
    TokenRevoked,
    escape,
    open_security,
)

# The organisation's rules; in production, AUTHTOKEN_MAX_LIFETIME=90d and
# AUTHTOKEN_REQUIRE_EXPIRY=1 in the environment give every engine the same policy.
POLICY = Policy(max_lifetime="90d", require_expiry=True, max_tokens_per_user=20)


class FakeClock:
    """A clock the example moves by hand; every expiry decision reads it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class JobFailed(Exception):
    """What a job raises when its work fails."""


@dataclass
class Job:
    name: str
    script: Script
    secret: str  # the name of the standing token string in the secret store
    needs: str  # the scopes one run needs: its run token gets these and no more
    renewable: bool = False
    fails_on: str = ""  # a day (YYYY-MM-DD) on which the job's work fails
    enabled: bool = True


@dataclass
class Engines:
    app: Security  # where users authorize and revoke their tokens
    scheduler: Security  # holds the standing tokens, makes run tokens
    worker: Security  # where the job's script logs in with its run token

    def close(self) -> None:
        for engine in (self.app, self.scheduler, self.worker):
            engine.close()


def open_engines(url: str, keys: str | list[str], clock: FakeClock) -> Engines:
    return Engines(*(open_security(url, secret_keys=keys, clock=clock, policy=POLICY)
                     for _ in range(3)))


def when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def authorize_job(app: Security, store: dict[str, str], user: str, job: Job,
                  scope: str, payload: dict[str, object], expires: str,
                  max_lifetime: str | None = None) -> str:
    """The user's side: authorize the job's standing token and put its string in the store."""
    token = AuthToken(scope, json.dumps(payload), description=f"standing token of {job.name}",
                      expires=expires, max_lifetime=max_lifetime)
    store[job.secret] = app.authorize_token(token, user=user)
    renewable = "" if max_lifetime is None else f", renewable for {max_lifetime}"
    print(f"  {user} authorized the standing token of {job.name}: scope {token.scope!r}, "
          f"expires {when(token.expires)}{renewable}")
    assert token.key is not None
    return token.key


def job_main(worker: Security, job: Job, run_token: str) -> None:
    """The job's side, in its own process in real life: log in with the run token only."""
    try:
        work(worker, job, run_token)
    finally:
        worker.flush()  # a job's process writes its usage and events when it exits


def work(worker: Security, job: Job, run_token: str) -> None:
    principal = ScriptRunner(worker, job.script).login_by_auth_token(run_token).principal
    assert principal is not None
    principal.require(*job.needs.split())
    params = json.loads(principal.data or "{}")
    chain = " > ".join(worker.get_auth_token(key).description for key in principal.chain)
    print(f"  {job.name}: ran as {principal.user!r} with {params}, run_id {principal.run_id}")
    print(f"    chain: {chain}")
    if job.fails_on == f"{worker.now():%Y-%m-%d}":
        raise JobFailed("the CRM answered 503")


def run_job(engines: Engines, store: dict[str, str], job: Job) -> None:
    """The scheduler's side of one run: log in with the standing token, renew it, make
    the run's token, and hand the job that token, never the standing one."""
    scheduler = engines.scheduler
    standing = store[job.secret]
    try:
        session = ScriptRunner(scheduler, job.script).login_by_auth_token(standing)
    except (TokenRevoked, TokenExpired) as exc:
        # Final for this token: stop scheduling the job until the user authorizes anew.
        job.enabled = False
        print(f"  {job.name}: refused, {type(exc).__name__}: {exc}; job disabled")
        return
    except LoginError as exc:
        # InvalidToken or ScriptNotAuthorized: a configuration problem, not the user's.
        print(f"  {job.name}: refused, {type(exc).__name__}: {exc}")
        return
    principal = session.principal
    assert principal is not None  # set by the login
    if job.renewable:
        renewed = session.renew_auth_token(standing)
        print(f"  {job.name}: standing token renewed until {when(renewed)}")
    run_id = f"{job.name}-{scheduler.now():%Y%m%d}"
    try:
        with session.run_token(run_id, scope=job.needs, max_uses=3,
                               data=principal.data) as run:
            # In real life: start the job's process with run.token in its environment.
            job_main(engines.worker, job, run.token)
    except JobFailed as exc:
        revoked = scheduler.get_auth_token(run.key).revoked
        print(f"  {job.name}: run {run_id} failed ({exc}); its run token revoked: {revoked}")


def tick(engines: Engines, store: dict[str, str], jobs: list[Job], clock: FakeClock) -> None:
    print(f"{clock.now:%Y-%m-%d %H:%M} run:")
    for job in jobs:
        if job.enabled:
            run_job(engines, store, job)
        else:
            print(f"  {job.name}: disabled, skipped")


def show_run(app: Security, run_id: str) -> None:
    """What an operator reads about one run: its tokens and their audit events."""
    tokens = app.list_auth_tokens(run_id=run_id, include_revoked=True)
    print(f"tokens of run {run_id}: "
          + ", ".join(f"{t.user} use_count={t.use_count}/{t.max_uses} revoked={t.revoked}"
                      for t in tokens))
    events = [event for token in tokens
              for event in reversed(app.audit_events(token_key=token.key))]
    print("  its audit events: "
          + ", ".join(f"{e.action} {e.outcome} run_id={e.run_id}" for e in events))


def hand_off(engines: Engines, store: dict[str, str], job: Job) -> None:
    """A one-time token: the scheduler queues a job for a worker; a replay is refused."""
    session = ScriptRunner(engines.scheduler, job.script).login_by_auth_token(store[job.secret])
    queue: list[str] = []  # stands in for a message queue that may deliver twice
    handed = session.run_token(f"{job.name}-handoff", scope=job.needs, max_uses=1)
    queue += [handed.token, handed.token]  # delivered, then redelivered
    for number, message in enumerate(queue, 1):
        try:
            worker = ScriptRunner(engines.worker, job.script).login_by_auth_token(message)
        except TokenExhausted as exc:
            print(f"  delivery {number}: refused, TokenExhausted: {exc}")
            continue
        print(f"  delivery {number}: worker logged in as {worker.user!r}")
        try:  # the worker cannot delegate more uses than it holds
            worker.authorize_token(AuthToken(job.needs, expires="10m"))
        except PermissionDenied as exc:
            print(f"  an unlimited child of it: refused, PermissionDenied: {exc}")
    handed.revoke()


def main() -> None:
    clock = FakeClock(datetime(2030, 1, 1, 1, 0, tzinfo=timezone.utc))
    old_key = secrets.token_urlsafe(32)  # throwaway keys; see docs/scheduler.md
    new_key = secrets.token_urlsafe(32)
    store: dict[str, str] = {}  # stands in for Vault, a Kubernetes Secret, ...
    export = Job("sales-export", Script(key=42, path="/jobs/export.js"), "jobs/sales-export",
                 needs="reports:export vfs:ikey?42", renewable=True)
    crm_path = "ufs:" + escape("/jobs/crm sync.js")
    sync = Job("crm-sync", Script(path="/jobs/crm sync.js"), "jobs/crm-sync",
               needs=f"crm:sync {crm_path}", renewable=True, fails_on="2030-01-02")
    stock = Job("stock-count", Script(key=7), "jobs/stock-count", needs="stock:count vfs:ikey?7")
    jobs = [export, sync, stock]

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'tokens.db'}"
        engines = open_engines(url, old_key, clock)
        app = engines.app

        print(f"{clock.now:%Y-%m-%d %H:%M} users give the scheduler standing tokens:")
        authorize_job(app, store, "alice", export, "reports:export reports:read vfs:ikey?42",
                      {"report": "sales"}, expires="7d", max_lifetime="60d")
        try:
            authorize_job(app, store, "bob", sync, f"crm:sync {crm_path}",
                          {"since": "yesterday"}, expires="never")
        except PolicyViolation as exc:
            print(f"  bob's token that never expires: refused, PolicyViolation "
                  f"(rule {exc.rule}): {exc}")
        sync_key = authorize_job(app, store, "bob", sync, f"crm:sync {crm_path}",
                                 {"since": "yesterday"}, expires="30d", max_lifetime="90d")
        stock_key = authorize_job(app, store, "carol", stock, "stock:count vfs:ikey?7",
                                  {"warehouse": "north"}, expires="3d")

        clock.advance(timedelta(hours=1))
        tick(engines, store, jobs, clock)

        clock.advance(timedelta(days=1))
        tick(engines, store, jobs, clock)
        show_run(app, f"crm-sync-{clock.now:%Y%m%d}")

        print("bob revokes his standing token in the app (another engine, same database)")
        app.revoke_auth_token_by_key(sync_key)
        clock.advance(timedelta(days=1))
        tick(engines, store, jobs, clock)

        print("rotating the secret key: the new key signs, the old one still verifies")
        engines.close()
        engines = open_engines(url, [new_key, old_key], clock)
        app = engines.app
        clock.advance(timedelta(days=1))
        expires = app.get_auth_token(stock_key).expires
        print(f"carol's token expires at {when(expires)}; it is now {when(clock.now)}")
        tick(engines, store, jobs, clock)

        print("carol authorizes a new standing token for her job (signed with the new key)")
        authorize_job(app, store, "carol", stock, "stock:count vfs:ikey?7",
                      {"warehouse": "north"}, expires="7d", max_lifetime="30d")
        stock.enabled, stock.renewable = True, True
        clock.advance(timedelta(days=1))
        tick(engines, store, jobs, clock)

        print("alice's job asks for a 90-day renewal:")
        session = ScriptRunner(engines.scheduler, export.script).login_by_auth_token(
            store[export.secret])
        print(f"  renewed until {when(session.renew_auth_token(store[export.secret], by='90d'))}"
              " (created_at + max_lifetime 60d: renewals stop there)")

        print("handing stock-count to a worker with a one-time token:")
        hand_off(engines, store, stock)

        print("retiring the old key too early: tokens it signed no longer verify")
        with open_security(url, secret_keys=new_key, clock=clock) as new_only:
            for job in (export, stock):
                try:
                    new_only.login_by_auth_token(store[job.secret], script=job.script)
                    print(f"  {job.name}: token verifies with the new key alone")
                except InvalidToken as exc:
                    print(f"  {job.name}: InvalidToken: {exc}; re-authorize it before "
                          "dropping the old key")

        engines.scheduler.close()  # writes the buffered usage
        engines.worker.close()
        print("standing tokens, as the app reads them:")
        for token in app.list_auth_tokens(include_revoked=True):
            if token.run_id is not None:
                continue
            state = "revoked" if token.revoked else (
                "expired" if token.is_expired(clock.now) else "live")
            print(f"  {token.user:<6} {state:<8} expires {when(token.expires)} "
                  f"use_count={token.use_count} ({token.description})")
        app.close()
    print("done")


if __name__ == "__main__":
    main()
