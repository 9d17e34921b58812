"""How fast is a login?  ``Security.login_by_auth_token`` against PyJWT, in one run.

What is measured
----------------
Logins per second of ``Security.login_by_auth_token`` -- the whole public call: the
signature check of the token string (itsdangerous HMAC-SHA256), one read of the token
by key from storage, the ``compare_digest`` of the secret's SHA-256 digest, the
revocation, expiry and script-binding checks, building the ``Principal``, and the
buffered usage counter (so the batched usage ``UPDATE`` every 10,000 logins is paid for
too, amortised) -- for

- the in-memory repository (``open_security("memory://", ...)``),
- a SQLite file repository (``sqlite:///`` in a temporary directory), and
- a PostgreSQL repository (see "PostgreSQL" below; skipped, with the reason printed,
  when there is none),

each with a token that is not bound to a script (scope ``"reports:read"``) and with one
that is (scope ``"reports:read vfs:ikey?42"``, logging in with ``Script(key=42)``).
These tokens have no ``max_uses``: their usage is counted in memory and written in
batches, as before use limits existed.

On each store a third row logs in with a *use-limited* token (``max_uses`` of a
billion, so that it never runs out in a run): such a login spends its use in storage by
itself, with one conditional ``UPDATE`` (``use_count < max_uses``) per login, so that
uses are exact across processes.  Its extra cost over the unlimited login of the same
store is reported (``limited_cost``); it has no target and does not count towards the
SQLite one.

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
  events (in the usage transaction every 10,000 logins) is inside the amortised cost of
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

With ``--baseline DIR`` (a checkout of earlier code, e.g. from ``git archive``), the
unlimited login rows are also timed on that code, in a second interpreter at the same
time, in short rounds alternating with this code's, and compared by their medians:
whether a change made logins slower, which two separate runs on a shared machine cannot
tell (see ``_login_baseline.py``).

Run: ``python benchmarks/login.py [--seconds N] [--processes N] [--threads N]
[--postgres URL] [--baseline DIR] [--json]``.  ``_login_concurrent.py`` holds the
threads' and the worker processes' runs, ``_login_report.py`` the report and the table.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import select
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any

import _login_baseline
import _pg
import jwt
from _login_concurrent import THREADS, measure_concurrent, measure_threads
from _login_report import REFERENCE, PostgresInfo, build, limited_name, show

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
# Fixed inputs: every run does the same work.
SECRET_KEY = hashlib.sha256(b"authtoken login benchmark").digest()  # 32 bytes
USER = 7
DATA = '{"job":"nightly-report","dept":"finance","queue":"batch-7"}'
SCOPE_PLAIN = "reports:read"
SCOPE_BOUND = "reports:read vfs:ikey?42"
SCRIPT = Script(key=42)
JWT_EXP = 4_102_444_800  # 2100-01-01T00:00:00Z: far ahead, and the same every run
# A use-limited token that cannot run out in a run: each login spends one use in storage.
MAX_USES = 1_000_000_000


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

    def authorize(self, scope: str, max_uses: int | None = None) -> str:
        token = self.security.authorize_token(
            AuthToken(scope, DATA, expires="1d", max_uses=max_uses), user=USER)
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


def _limited_case(label: str, store: Store) -> Case:
    """A plain login with a token of ``MAX_USES`` uses: one conditional UPDATE each."""
    limited = store.authorize(SCOPE_PLAIN, max_uses=MAX_USES)
    return Case(limited_name(label), partial(store.security.login_by_auth_token, limited))


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
            cases.append(_limited_case("PostgreSQL", store))
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
        cases.append(_limited_case("memory", memory_store))
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
        cases.append(_limited_case("SQLite", store))
        plain = store.tokens[0]

        postgres = _postgres(stack, source, setup)
        cases += postgres[:3]
        cases.append(_audit_off("SQLite", sqlite_url, stack, plain))
        setup.audit_pairs["SQLite"] = (
            next(c for c in cases if c.name == "SQLite login, no script binding"), cases[-1]
        )
        cases.append(Case("SQLite restore_auth_token (context)",
                          partial(sqlite.restore_auth_token, plain)))
        cases += postgres[3:]
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


@contextmanager
def _scratch_database(source: _pg.Source, tag: str,
                      ) -> Iterator[tuple[str | None, str | None]]:
    """A database of its own for one side of the baseline run on a throwaway cluster:
    ``(url, None)``, dropped afterwards; else ``(None, why not)``."""
    if source.url is None:
        yield None, source.skipped
        return
    if not source.throwaway:
        yield None, "a baseline gets PostgreSQL only on a throwaway cluster"
        return
    import psycopg
    import sqlalchemy as sa

    name = f"authtoken_{tag}_{os.getpid()}"
    try:
        with psycopg.connect(_pg.conninfo(source.url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        yield None, f"could not create a database for it: {type(exc).__name__}"
        return
    try:
        yield sa.make_url(source.url).set(database=name).render_as_string(
            hide_password=False), None
    finally:
        with psycopg.connect(_pg.conninfo(source.url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure_baseline(folder: Path, source: _pg.Source, seconds: float,
                     ) -> _login_baseline.BaselineReport:
    """The unlimited login cases of this checkout and of the one at ``folder``, each
    in an interpreter of its own, alternated."""
    this = Path(authtoken.__file__).resolve().parents[1]
    with ExitStack() as stack:
        sides = []
        skipped = None
        for tag, root in (("now", this), ("before", folder)):
            url, skipped = stack.enter_context(_scratch_database(source, tag))
            settings = {"secret_key": SECRET_KEY.hex(), "data": DATA, "user": USER,
                        "script_key": SCRIPT.key, "scope_plain": SCOPE_PLAIN,
                        "scope_bound": SCOPE_BOUND, "postgres": url}
            sides.append([stack.enter_context(_login_baseline.start(root, settings))
                          for _ in range(_login_baseline.INTERPRETERS)])
        return _login_baseline.compare(sides[0], sides[1], seconds, skipped)


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
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="also time the unlimited logins of the checkout in DIR (e.g. "
                             "from 'git archive'), alternating with this code's")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.processes < 0:
        parser.error("--processes must be 0 or more")
    if args.threads < 0:
        parser.error("--threads must be 0 or more")
    if args.baseline is not None and not (args.baseline / "authtoken" / "__init__.py").is_file():
        parser.error("--baseline must be a checkout's root, with the authtoken package in it")
    with _pg.postgres(args.postgres) as source, _setup(source) as setup:
        measure(setup.cases, args.seconds)
        audit_cost = measure_audit_cost(setup.audit_pairs, args.seconds)
        baseline = measure_baseline(args.baseline, source, args.seconds) \
            if args.baseline is not None else None
        threaded = {
            store.label: round(measure_threads(
                store.security, [store.authorize(SCOPE_PLAIN) for _ in range(args.threads)],
                args.seconds, ROUNDS), 1)
            for store in setup.stores
        } if args.threads else {}
        concurrent = [
            measure_concurrent(
                store.label, store.url, SECRET_KEY,
                [store.authorize(SCOPE_PLAIN) for _ in range(args.processes)],
                args.seconds, ROUNDS)
            for store in setup.stores
        ] if args.processes else []
    postgres: PostgresInfo = {
        "origin": source.origin or None,
        "url": source.shown_url,
        "server_version": setup.postgres_server,
        "skipped": setup.postgres_skipped,
    }
    report = build(setup.cases, concurrent, audit_cost,
                   {"threads": args.threads, "logins_per_s": threaded}, postgres,
                   seconds=args.seconds, rounds=ROUNDS, processes=args.processes)
    report["baseline"] = baseline
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        show(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
