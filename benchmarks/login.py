"""How fast is a login?  ``Security.login_by_auth_token`` against PyJWT, in one run.

What is measured
----------------
Logins per second of ``Security.login_by_auth_token`` -- the whole public call: the
signature check of the token string (itsdangerous HMAC-SHA256), one read of the token
by key from storage, the ``compare_digest`` of the secret's SHA-256 digest, the
revocation, expiry and script-binding checks, building the ``Principal``, and the
buffered usage counter (so the batched usage ``UPDATE`` every 1,000 logins is paid for
too, amortised) -- for

- the in-memory repository (``open_security("memory://", ...)``),
- a SQLite file repository (``sqlite:///`` in a temporary directory), and
- a PostgreSQL repository (see "PostgreSQL" below; skipped, with the reason printed,
  when there is none),

each with a token that is not bound to a script (scope ``"reports:read"``) and with one
that is (scope ``"reports:read vfs:ikey?42"``, logging in with ``Script(key=42)``).

The reference, measured in the same run and the same process: PyJWT's
``jwt.decode(token, key, algorithms=["HS256"])`` of a comparable token -- a payload with
``sub``, ``scope``, ``exp`` and a ``data`` field of the same size as the delegation
token's data, signed with a 32-byte key.  That is what a script runner would otherwise
do per request with a self-contained JWT, and it touches no storage at all.

For context, more rows: ``restore_auth_token`` on SQLite (the admin read path, through
SQLAlchemy Core, which returns the whole ``AuthToken``); on PostgreSQL, the login's
``SELECT`` alone on a bare autocommit psycopg connection with a prepared statement, the
same through libpq's ``PQexecPrepared`` (psycopg's ``pgconn``) with binary results, where
libpq sleeps on the socket for the answer, and the same sent with
``PQsendQueryPrepared`` and waited for by polling (``PQconsumeInput``/``PQisBusy``, at
most 200 µs, then sleeping) -- the way a login runs it, so the floor under a PostgreSQL
login: one round trip.  The gap between the last two is what waking a sleeping thread
costs on the machine (large on a virtual machine whose idle CPUs halt at once); and the
refusal of a forged string
(valid shape, wrong signature: ``InvalidToken`` without touching storage).

Then the same login from ``--threads`` (default 4) threads of this process at once,
through one ``Security`` (each thread its own token and connection), and under
concurrency: ``--processes`` (default 8) worker processes
(``multiprocessing``, spawn context) log in at once on SQLite and on PostgreSQL.  Each
opens its own ``Security`` (same secret key, same database) and logs in repeatedly with
its own token, authorized beforehand by the parent and sent with the URL and the key
through a pipe (never on a command line).  They warm up, wait at a barrier with the
parent so that all start together, and log in for ``--seconds``; the aggregate logins/s
(the sum of the workers' rates) and the per-process average are reported, best of the
rounds by aggregate.

Why
---
A delegation token is revocable because every login reads storage -- no cache may
serve a revoked token -- whereas a JWT is checked from its bytes alone.  The targets set
by the issue:

- **a SQLite-backed login is at least as fast as a PyJWT HS256 decode in the same run**
  (the ``vs PyJWT`` column is calls/s of the row divided by calls/s of the PyJWT row;
  1.00 or more meets it), and
- **a PostgreSQL-backed login does at least 5,000 logins/s per process over loopback**
  (judged on the single-process PostgreSQL rows, both bindings; the per-process average
  of the concurrent run is compared too, but on a machine with fewer CPUs than worker
  processes plus their server backends it measures how the CPUs are shared), and
- **the audit trail slows a login by less than 20 %** (issue 6): the "audit trail off"
  context rows log in on the same database with an audit buffer that counts usage but
  records no login event (``AuditBuffer(login_events=False)``) -- the login path as it
  was before the trail.  The cost is not read off those rows' best rounds: a case's place
  in the round-robin moves its figure by more than the trail costs (a fixed order once
  showed +29 % that an alternating one did not).  So each audited/unaudited pair is
  also run in 16 short rounds alternating which goes first (ABBA...), and the cost is
  ``1 - median(audited) / median(audit-off)`` over those.  The batched write of the
  events (in the usage transaction every 1,000 logins) is inside the amortised cost of
  the audited side only.

The reference moves with PyJWT's version, so the header names it: PyJWT 2.15 checks each
base64url segment character by character in Python and screens the HMAC key for PEM and
SSH shapes on every decode, and is several times slower than PyJWT 2.10 on the same
token.  Compare ratios within one run and quote the version with them.

PostgreSQL
----------
The URL comes from ``--postgres URL``, else the environment variable
``AUTHTOKEN_BENCH_POSTGRES``; point either at a scratch database (the schema is created
there if missing; the benchmark's tokens, for user 7, are revoked at the end).  With
neither, if PostgreSQL server binaries are installed, a throwaway cluster is started
for the run on a free port of 127.0.0.1 (``tests/support/pgcluster.py``, the test suite's) and
stopped and removed afterwards.  Otherwise the PostgreSQL rows are skipped and a line
says why.

Method
------
Everything is set up once with fixed inputs (secret key, payloads, scopes, script) so
that each run measures the same work; only the random token strings differ.  Each case
is checked once and warmed up briefly, then timed with ``time.perf_counter`` for a fixed
wall time (``--seconds``, default 2) per round; the rounds (3) go round-robin over all
cases so that drift in machine speed hits every case alike, and the best round counts.
Each round begins with up to 0.2 s of untimed calls of its case, so that no case pays
for the one before it (a PostgreSQL backend left idle while SQLite was measured).
Calls are made in batches of about 5 ms between clock reads, so reading the clock costs
nothing measurable.  The program asserts nothing and exits 0; it only reports.

Run: ``python benchmarks/login.py [--seconds N] [--processes N] [--postgres URL]
[--json]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import multiprocessing
import os
import platform
import select
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypedDict

import _pg
import jwt

import authtoken
from authtoken import (
    AuthToken,
    AuthTokenError,
    InvalidToken,
    Script,
    Security,
    open_security,
)
from authtoken._audit import AuditBuffer
from authtoken._open import open_repository

ROUNDS = 3
BATCH_SECONDS = 0.005
PROCESSES = 8
PG_TARGET = 5_000.0  # logins/s per process over loopback (the target)
AUDIT_TARGET = 0.20  # the audit trail may slow a login by less than this (issue 6)
# Fixed inputs: every run does the same work.
SECRET_KEY = hashlib.sha256(b"authtoken login benchmark").digest()  # 32 bytes
USER = 7
DATA = '{"job":"nightly-report","dept":"finance","queue":"batch-7"}'
SCOPE_PLAIN = "reports:read"
SCOPE_BOUND = "reports:read vfs:ikey?42"
SCRIPT = Script(key=42)
JWT_EXP = 4_102_444_800  # 2100-01-01T00:00:00Z: far ahead, and the same every run
REFERENCE = "PyJWT HS256 jwt.decode"
PG_LOGINS = ("PostgreSQL login, no script binding", "PostgreSQL login, bound to script 42")
# Workers: how long the parent waits for them (start-up imports a lot on a busy machine).
START_TIMEOUT = 180.0
WORKER_WARM_UP = 200  # logins before the first round: connection, prepared statement
WORKER_BATCH = 16  # logins between clock reads in a worker (a login is >10 µs)


@dataclass
class Case:
    """One thing to time: ``call()`` is invoked repeatedly and its result discarded."""

    name: str
    call: Callable[[], object]
    best_rate: float = 0.0  # calls per second, best round
    rounds: list[float] = field(default_factory=list)
    batch: int = 1


@dataclass
class Store:
    """A database the concurrent workers share."""

    label: str
    url: str
    security: Security
    tokens: list[str] = field(default_factory=list)

    def authorize(self, scope: str) -> str:
        token = self.security.authorize_token(AuthToken(scope, DATA, expires="1d"), user=USER)
        self.tokens.append(token)
        return token


@dataclass
class Setup:
    cases: list[Case]
    stores: list[Store]
    postgres: _pg.Source
    postgres_server: str | None = None
    postgres_skipped: str | None = None
    # label -> (audited login, the same login with the audit trail off)
    audit_pairs: dict[str, tuple[Case, Case]] = field(default_factory=dict)


def _forged(token: str) -> str:
    """``token`` with a different (still well-formed) first signature character."""
    head, sig = token.rsplit(".", 1)
    return f"{head}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}"


def _refuse(security: Security, forged: str) -> None:
    try:
        security.login_by_auth_token(forged)
    except InvalidToken:
        pass


def _usage_only() -> AuditBuffer:
    """The login path as it was before the audit trail: usage counted, no login event.

    Only for the "audit trail off" context rows, so that the audit trail's cost on the
    login path is read off one run.
    """
    return AuditBuffer(login_events=False)


def _audit_off(label: str, url: str, stack: ExitStack, token: str) -> Case:
    security = stack.enter_context(
        Security(open_repository(url), secret_keys=SECRET_KEY, audit=_usage_only()))
    return Case(f"{label} login, audit trail off (context)",
                partial(security.login_by_auth_token, token))


def _login_cases(label: str, store: Store) -> list[Case]:
    plain, bound = store.authorize(SCOPE_PLAIN), store.authorize(SCOPE_BOUND)
    security = store.security
    return [
        Case(f"{label} login, no script binding",
             partial(security.login_by_auth_token, plain)),
        Case(f"{label} login, bound to script 42",
             partial(security.login_by_auth_token, bound, script=SCRIPT)),
    ]


def _postgres(stack: ExitStack, source: _pg.Source, setup: Setup) -> list[Case]:
    """The PostgreSQL login rows and their context row; ``[]`` (and why) on failure."""
    if source.url is None:
        setup.postgres_skipped = source.skipped
        return []
    import psycopg

    from authtoken._sql import LOGIN_SQL  # the very statement a login runs

    url = source.url
    with ExitStack() as pg:  # on failure, close whatever was opened
        try:
            security = pg.enter_context(open_security(url, secret_keys=SECRET_KEY))
            store = Store("PostgreSQL", url, security)
            if not source.throwaway:  # someone's database: leave no live token behind
                pg.callback(_revoke_all, store)
            cases = _login_cases("PostgreSQL", store)
            for case in cases:
                case.call()
            conn = pg.enter_context(psycopg.connect(_pg.conninfo(url), autocommit=True))
            key = security.restore_auth_token(store.tokens[0]).key
            assert key is not None  # a stored token always has one
            select = partial(_fetch, conn, LOGIN_SQL.replace("?", "%s"), (key,))
            select()
            raw = pg.enter_context(psycopg.connect(_pg.conninfo(url), autocommit=True))
            raw.pgconn.prepare(b"bench", LOGIN_SQL.replace("?", "$1").encode())
            exec_prepared = partial(raw.pgconn.exec_prepared, b"bench", [key.encode()],
                                    result_format=1)
            exec_prepared()
            polled = partial(_polled, raw.pgconn, [key.encode()])
            polled()
        except (AuthTokenError, psycopg.Error, ValueError) as exc:
            setup.postgres_skipped = f"{source.origin} unusable: {type(exc).__name__}: {exc}"
            return []
        setup.postgres_server = conn.info.parameter_status("server_version") or "?"
        setup.stores.append(store)
        stack.enter_context(pg.pop_all())
    return [*cases, Case("PostgreSQL bare SELECT, psycopg (context)", select),
            Case("PostgreSQL bare SELECT, libpq exec_prepared (context)", exec_prepared),
            Case("PostgreSQL bare SELECT, libpq polled wait (context)", polled)]


def _polled(pgconn: Any, params: list[bytes]) -> Any:
    """One round trip as a login makes it: send, poll for the answer up to 200 µs, sleep."""
    pgconn.send_query_prepared(b"bench", params, result_format=1)
    until = time.perf_counter_ns() + 200_000
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        if time.perf_counter_ns() >= until:
            select.select([pgconn.socket], [], [])
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass
    return result


def _fetch(conn: Any, sql: str, params: tuple[object, ...]) -> list[Any]:
    rows: list[Any] = conn.execute(sql, params, prepare=True).fetchall()
    return rows


def _revoke_all(store: Store) -> None:
    """Revoke the benchmark's tokens (in a database that outlives the run)."""
    try:
        store.security.flush()
        for token in store.tokens:
            store.security.revoke_auth_token(token)
    except AuthTokenError as exc:
        print(f"warning: could not revoke the benchmark's tokens for user {USER} in "
              f"{store.label}: {exc}", file=sys.stderr)


@contextmanager
def _setup(source: _pg.Source) -> Iterator[Setup]:
    """Set up every case; on exit flush and close the engines, then delete the files."""
    with ExitStack() as stack:
        setup = Setup([], [], source)
        cases = setup.cases

        jwt_token = jwt.encode(
            {"sub": str(USER), "scope": SCOPE_PLAIN, "exp": JWT_EXP, "data": DATA},
            SECRET_KEY, algorithm="HS256",
        )
        cases.append(Case(REFERENCE, partial(
            jwt.decode, jwt_token, SECRET_KEY, algorithms=["HS256"],
        )))

        memory = stack.enter_context(open_security("memory://", secret_keys=SECRET_KEY))
        memory_store = Store("memory", "memory://", memory)
        cases += _login_cases("memory", memory_store)
        # (same repository: the memory one is per Security)
        memory_off = Security(memory.repository, secret_keys=SECRET_KEY, audit=_usage_only())
        stack.callback(memory_off.flush)
        cases.append(Case("memory login, audit trail off (context)",
                          partial(memory_off.login_by_auth_token, memory_store.tokens[0])))
        setup.audit_pairs["memory"] = (
            next(c for c in cases if c.name == "memory login, no script binding"), cases[-1]
        )

        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authtoken-bench-")))
        sqlite_url = f"sqlite:///{folder / 'tokens.db'}"
        sqlite = stack.enter_context(open_security(sqlite_url, secret_keys=SECRET_KEY))
        store = Store("SQLite", sqlite_url, sqlite)
        setup.stores.append(store)
        cases += _login_cases("SQLite", store)
        plain = store.tokens[0]

        postgres = _postgres(stack, source, setup)
        cases += postgres[:2]
        cases.append(_audit_off("SQLite", sqlite_url, stack, plain))
        setup.audit_pairs["SQLite"] = (
            next(c for c in cases if c.name == "SQLite login, no script binding"), cases[-1]
        )
        cases.append(Case("SQLite restore_auth_token (context)",
                          partial(sqlite.restore_auth_token, plain)))
        cases += postgres[2:]
        cases.append(Case("forged string refused (context)",
                          partial(_refuse, sqlite, _forged(plain))))
        yield setup
        # Usage is buffered: the engines' close() writes it; a revocation at the end
        # (someone else's PostgreSQL) flushes first.  Then the folder is removed.


# -- one process --------------------------------------------------------------------------
def _time(call: Callable[[], object], calls: int) -> float:
    """Seconds taken by ``calls`` calls of ``call``."""
    start = time.perf_counter()
    for _ in repeat(None, calls):
        call()
    return time.perf_counter() - start


def _warm_up(case: Case, seconds: float) -> None:
    """Run ``case`` for about ``seconds`` and pick a batch size of about 5 ms."""
    case.call()  # fails loudly here if the case is broken, before any timing
    calls, elapsed = 1, 0.0
    while elapsed < seconds:
        elapsed += _time(case.call, calls)
        calls *= 2
    rate = (calls - 1) / elapsed
    case.batch = max(1, int(rate * BATCH_SECONDS))


def _round(case: Case, seconds: float) -> float:
    """Calls per second of ``case`` over about ``seconds`` of wall time.

    A fifth of that (at most 0.2 s) of untimed calls first, so that a case does not pay
    for the one before it: a PostgreSQL backend left idle while SQLite was measured,
    caches filled by another case.
    """
    gc.collect()
    warm = min(0.2, seconds / 5)
    while warm > 0:
        warm -= _time(case.call, case.batch)
    calls, elapsed = 0, 0.0
    while elapsed < seconds:
        elapsed += _time(case.call, case.batch)
        calls += case.batch
    return calls / elapsed


def measure(cases: list[Case], seconds: float, rounds: int = ROUNDS) -> None:
    warm = min(0.5, max(0.05, seconds / 5))
    for case in cases:
        _warm_up(case, warm)
    for _ in range(rounds):
        for case in cases:  # round-robin: drift hits every case alike
            rate = _round(case, seconds)
            case.rounds.append(rate)
            case.best_rate = max(case.best_rate, rate)


AUDIT_ROUNDS = 16


def measure_audit_cost(pairs: dict[str, tuple[Case, Case]], seconds: float) -> dict[str, float]:
    """Per label, ``1 - median(audited) / median(audit off)`` over alternating rounds."""
    short = max(0.05, seconds / 8)
    costs = {}
    for label, (audited, off) in pairs.items():
        rates: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(AUDIT_ROUNDS):
            order = [("on", audited), ("off", off)]
            for side, case in order if i % 2 == 0 else reversed(order):
                rates[side].append(_round(case, short))
        costs[label] = round(1 - statistics.median(rates["on"])
                             / statistics.median(rates["off"]), 3)
    return costs


# -- several threads of one process -----------------------------------------------------
THREADS = 4


def _login_thread(login: Callable[[], object], start: threading.Barrier,
                  stop: threading.Event, counts: list[int], i: int) -> None:
    for _ in range(50):  # warm up: this thread's connection, prepared statement
        login()
    start.wait()
    done = 0
    while not stop.is_set():
        for _ in range(20):
            login()
        done += 20
    counts[i] = done


def measure_threads(store: Store, threads: int, seconds: float,
                    rounds: int = ROUNDS) -> float:
    """Best aggregate logins/s of ``threads`` threads of this process logging in at once.

    One ``Security``, as a scheduler would hold; each thread logs in with its own token,
    and (as every thread does) on its own connection.
    """
    tokens = [store.authorize(SCOPE_PLAIN) for _ in range(threads)]
    best = 0.0
    for _ in range(rounds):
        counts = [0] * threads
        stop = threading.Event()
        start = threading.Barrier(threads + 1)

        workers = [
            threading.Thread(target=_login_thread, args=(
                partial(store.security.login_by_auth_token, token), start, stop, counts, i,
            ))
            for i, token in enumerate(tokens)
        ]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        best = max(best, sum(counts) / (time.perf_counter() - began))
    return best


# -- several processes ----------------------------------------------------------------------
def _worker(pipe: Connection, start: threading.Barrier, rounds: int, seconds: float) -> None:
    """One worker process: its own ``Security``, one token, ``rounds`` timed windows.

    Receives ``(url, secret_key, token)`` through ``pipe``; sends ``("round", logins,
    seconds)`` after each window, ``("done",)`` at the end, or ``("error", message)``.
    """
    try:
        url, secret_key, token = pipe.recv()
        with open_security(url, secret_keys=secret_key) as security:
            login = partial(security.login_by_auth_token, token)
            for _ in repeat(None, WORKER_WARM_UP):
                login()
            for _ in range(rounds):
                gc.collect()
                start.wait(START_TIMEOUT)
                logins, began = 0, time.perf_counter()
                deadline, now = began + seconds, began
                while (now := time.perf_counter()) < deadline:
                    for _ in repeat(None, WORKER_BATCH):
                        login()
                    logins += WORKER_BATCH
                pipe.send(("round", logins, now - began))
        pipe.send(("done",))
    except BaseException as exc:
        start.abort()
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    finally:
        pipe.close()


class WorkerFailed(Exception):
    pass


def _answer(pipe: Connection, timeout: float) -> tuple[Any, ...]:
    if not pipe.poll(timeout):
        raise WorkerFailed(f"a worker did not answer within {timeout:g} s")
    try:
        message: tuple[Any, ...] = pipe.recv()
    except EOFError:
        raise WorkerFailed("a worker exited without answering") from None
    if message[0] == "error":
        raise WorkerFailed(f"a worker failed: {message[1]}")
    return message


@dataclass
class Concurrent:
    """The concurrent figures of one database."""

    label: str
    rounds: list[list[float]] = field(default_factory=list)  # per-worker logins/s
    error: str | None = None

    @property
    def best(self) -> list[float]:
        return max(self.rounds, key=sum) if self.rounds else []


def measure_concurrent(store: Store, processes: int, seconds: float,
                       rounds: int = ROUNDS) -> Concurrent:
    """``processes`` workers log in at once on ``store``'s database, ``rounds`` times."""
    result = Concurrent(store.label)
    context = multiprocessing.get_context("spawn")
    tokens = [store.authorize(SCOPE_PLAIN) for _ in range(processes)]
    start = context.Barrier(processes + 1)
    workers: list[tuple[Any, Connection]] = []
    try:
        for number, token in enumerate(tokens, 1):
            pipe, child_pipe = context.Pipe()
            process = context.Process(
                target=_worker, args=(child_pipe, start, rounds, seconds),
                name=f"login-worker-{number}", daemon=True,
            )
            process.start()
            child_pipe.close()
            pipe.send((store.url, SECRET_KEY, token))
            workers.append((process, pipe))
        for _ in range(rounds):
            start.wait(START_TIMEOUT)
            answers = [_answer(pipe, seconds + START_TIMEOUT) for _, pipe in workers]
            result.rounds.append([logins / elapsed for _, logins, elapsed in answers])
        for _, pipe in workers:
            _answer(pipe, START_TIMEOUT)  # ("done",): usage written, Security closed
    except (WorkerFailed, threading.BrokenBarrierError) as exc:
        start.abort()
        reasons = [str(exc)]
        for _, pipe in workers:  # a worker's own message says more than a broken barrier
            try:
                _answer(pipe, 1.0)
            except WorkerFailed as failed:
                reasons.append(str(failed))
            except OSError:
                pass
        result.error = reasons[-1] if len(reasons) > 1 else reasons[0]
    finally:
        for process, pipe in workers:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
            pipe.close()
    return result


# -- the report -----------------------------------------------------------------------------
class Row(TypedDict):
    case: str
    calls_per_s: float
    us_per_call: float
    ratio_to_pyjwt: float
    rounds_calls_per_s: list[float]


class ConcurrentRow(TypedDict):
    backend: str
    processes: int
    logins_per_s: float | None  # aggregate over the processes, best round
    logins_per_s_per_process: float | None  # average, best round
    slowest_process: float | None
    fastest_process: float | None
    rounds_logins_per_s: list[float]  # aggregate of each round
    error: str | None


class PostgresInfo(TypedDict):
    origin: str | None
    url: str | None  # password hidden
    server_version: str | None
    skipped: str | None


class PostgresTarget(TypedDict):
    logins_per_s_per_process: float
    single_process_met: bool | None  # None: no PostgreSQL rows
    concurrent_per_process_met: bool | None


class Threads(TypedDict):
    threads: int
    logins_per_s: dict[str, float]  # database -> all threads together, best round


class Report(TypedDict):
    seconds_per_round: float
    rounds: int
    python: str
    implementation: str
    platform: str
    cpus: int | None
    authtoken: str
    pyjwt: str
    postgres: PostgresInfo
    cases: list[Row]
    concurrent: list[ConcurrentRow]
    target_met: bool
    threads: Threads
    audit_cost: dict[str, float]
    audit_target_met: bool
    postgres_target: PostgresTarget


def _concurrent_row(c: Concurrent, processes: int) -> ConcurrentRow:
    best = c.best
    return {
        "backend": c.label,
        "processes": processes,
        "logins_per_s": round(sum(best), 1) if best else None,
        "logins_per_s_per_process": round(sum(best) / len(best), 1) if best else None,
        "slowest_process": round(min(best), 1) if best else None,
        "fastest_process": round(max(best), 1) if best else None,
        "rounds_logins_per_s": [round(sum(r), 1) for r in c.rounds],
        "error": c.error,
    }


def _cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def _report(setup: Setup, concurrent: list[Concurrent], audit_cost: dict[str, float],
            seconds: float, processes: int) -> Report:
    cases = setup.cases
    reference = next(c for c in cases if c.name == REFERENCE).best_rate
    rows: list[Row] = [
        {
            "case": c.name,
            "calls_per_s": round(c.best_rate, 1),
            "us_per_call": round(1e6 / c.best_rate, 3),
            "ratio_to_pyjwt": round(c.best_rate / reference, 3),
            "rounds_calls_per_s": [round(r, 1) for r in c.rounds],
        }
        for c in cases
    ]
    sqlite_logins = [c for c in cases if c.name.startswith("SQLite login")
                     and "audit trail off" not in c.name]
    pg_logins = [c for c in cases if c.name in PG_LOGINS]
    pg_concurrent = next((c.best for c in concurrent if c.label == "PostgreSQL"), [])
    source = setup.postgres
    return {
        "seconds_per_round": seconds,
        "rounds": ROUNDS,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": _cpus(),
        "authtoken": str(authtoken.__version__),
        "pyjwt": jwt.__version__,
        "postgres": {
            "origin": source.origin or None,
            "url": source.shown_url,
            "server_version": setup.postgres_server,
            "skipped": setup.postgres_skipped,
        },
        "cases": rows,
        "concurrent": [_concurrent_row(c, processes) for c in concurrent],
        "target_met": all(c.best_rate >= reference for c in sqlite_logins),
        "threads": {"threads": 0, "logins_per_s": {}},
        "audit_cost": audit_cost,
        "audit_target_met": all(cost < AUDIT_TARGET for cost in audit_cost.values()),
        "postgres_target": {
            "logins_per_s_per_process": PG_TARGET,
            "single_process_met": (
                all(c.best_rate >= PG_TARGET for c in pg_logins) if pg_logins else None
            ),
            "concurrent_per_process_met": (
                sum(pg_concurrent) / len(pg_concurrent) >= PG_TARGET
                if pg_concurrent else None
            ),
        },
    }


def _verdict(met: bool | None) -> str:
    return "met" if met else "NOT met"


def _print_table(report: Report) -> None:
    rows = report["cases"]
    width = max(len(str(r["case"])) for r in rows)
    print(
        f"authtoken {report['authtoken']} vs PyJWT {report['pyjwt']} on "
        f"{report['implementation']} {report['python']} ({report['platform']}, "
        f"{report['cpus']} CPUs); best of {report['rounds']} rounds of "
        f"{report['seconds_per_round']:g} s"
    )
    pg = report["postgres"]
    if pg["skipped"] is None:
        print(f"PostgreSQL {pg['server_version']} at {pg['url']} ({pg['origin']})")
    else:
        print(f"PostgreSQL rows skipped: {pg['skipped']}")
    print()
    print(f"{'case':<{width}}  {'calls/s':>11}  {'µs/call':>9}  {'vs PyJWT':>8}")
    print(f"{'-' * width}  {'-' * 11}  {'-' * 9}  {'-' * 8}")
    for r in rows:
        print(
            f"{r['case']:<{width}}  {r['calls_per_s']:>11,.0f}  {r['us_per_call']:>9.2f}  "
            f"{r['ratio_to_pyjwt']:>7.2f}x"
        )
    threaded = report["threads"]
    if threaded["logins_per_s"]:
        rates = ", ".join(f"{label} {rate:,.0f}/s"
                          for label, rate in threaded["logins_per_s"].items())
        print()
        print(f"{threaded['threads']} threads of one process logging in at once (one "
              f"Security, each thread its own token and connection), best of "
              f"{report['rounds']} rounds: {rates}")
    concurrent = report["concurrent"]
    if concurrent:
        processes = concurrent[0]["processes"]
        print()
        print(
            f"{processes} processes logging in at once (each its own Security and token, "
            f"same database; no script binding; {report['cpus']} CPUs), best of "
            f"{report['rounds']} rounds of {report['seconds_per_round']:g} s:"
        )
        print()
        heads = ("logins/s, all", "per process", "slowest", "fastest")
        print(f"{'database':<10}  " + "  ".join(f"{h:>13}" for h in heads))
        print(f"{'-' * 10}  " + "  ".join("-" * 13 for _ in heads))
        for c in concurrent:
            if c["error"] is not None:
                print(f"{c['backend']:<10}  failed: {c['error']}")
                continue
            values = (c["logins_per_s"], c["logins_per_s_per_process"],
                      c["slowest_process"], c["fastest_process"])
            print(f"{c['backend']:<10}  " + "  ".join(f"{v or 0:>13,.0f}" for v in values))
    print()
    print(f"target (SQLite login >= PyJWT decode, both bindings): "
          f"{_verdict(report['target_met'])}")
    costs = ", ".join(f"{label} {cost:+.0%}" for label, cost in report["audit_cost"].items())
    print(f"target (audit trail slows a login by < {AUDIT_TARGET:.0%}): "
          f"{_verdict(report['audit_target_met'])} ({costs})")
    target = report["postgres_target"]
    goal = f"PostgreSQL login >= {target['logins_per_s_per_process']:,.0f}/s per process"
    if target["single_process_met"] is None:
        print(f"target ({goal}): not measured (no PostgreSQL)")
        return
    figures = " and ".join(f"{r['calls_per_s']:,.0f}" for r in rows if r["case"] in PG_LOGINS)
    print(f"target ({goal}, one process, both bindings): "
          f"{_verdict(target['single_process_met'])} ({figures}/s)")
    pg_row = next((c for c in concurrent if c["backend"] == "PostgreSQL"), None)
    if pg_row is not None and target["concurrent_per_process_met"] is not None:
        per_process = pg_row["logins_per_s_per_process"] or 0.0
        print(f"        with {pg_row['processes']} processes at once: "
              f"{_verdict(target['concurrent_per_process_met'])} ({per_process:,.0f}/s "
              f"per process on average, {report['cpus']} CPUs shared with the server)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Logins per second of Security.login_by_auth_token vs PyJWT decode."
    )
    parser.add_argument("--seconds", type=float, default=2.0,
                        help=f"wall time per case per round (default 2; {ROUNDS} rounds)")
    parser.add_argument("--processes", type=int, default=PROCESSES,
                        help=f"worker processes in the concurrent run (default {PROCESSES}; "
                             "0 skips it)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"threads of one process logging in at once (default {THREADS}; "
                             "0 skips it)")
    parser.add_argument("--postgres", metavar="URL",
                        help=f"PostgreSQL to benchmark (default ${_pg.ENV}, else a "
                             "throwaway cluster if the server binaries are installed)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.processes < 0:
        parser.error("--processes must be 0 or more")
    if args.threads < 0:
        parser.error("--threads must be 0 or more")
    with _pg.postgres(args.postgres) as source, _setup(source) as setup:
        measure(setup.cases, args.seconds)
        audit_cost = measure_audit_cost(setup.audit_pairs, args.seconds)
        threaded = {
            store.label: round(measure_threads(store, args.threads, args.seconds), 1)
            for store in setup.stores
        } if args.threads else {}
        concurrent = [
            measure_concurrent(store, args.processes, args.seconds)
            for store in setup.stores
        ] if args.processes else []
    report = _report(setup, concurrent, audit_cost, args.seconds, args.processes)
    report["threads"] = {"threads": args.threads, "logins_per_s": threaded}
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
