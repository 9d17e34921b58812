"""A scheduler's load: many tokens in use on a large table, revocations under load, history.

What is measured
----------------
``benchmarks/login.py`` logs in with one hot token on a table of a few rows.  A job
scheduler logs in with a thousand different tokens on a table of a hundred thousand,
revokes tokens while its workers log in, and reads an audit trail that grows with
every login.  This program measures that, and ends with a table of the targets set for
it, each **met**, **not met** or skipped (and why).

1. **Logins** (``Security.login_by_auth_token``, the whole public call) per second on a
   table of ``--tokens`` (default 100,000) tokens of 1,000 users, logging in round-robin
   with ``--in-use`` (default 1,024) distinct token strings, each on its own row
   scattered through the table -- and, for comparison, with one token in use on the same
   table (the same loop over the same token string ``--in-use`` times) -- without a
   script binding (scope ``reports:read``) and bound (``reports:read vfs:ikey?N``, one
   ``N`` per token, logging in with ``Script(key=N)``), on memory, SQLite and
   PostgreSQL.  The reference, in the same process and the same loop: PyJWT's
   ``jwt.decode(token, key, algorithms=["HS256"])`` over 1,024 distinct JWTs of the same
   size; and, with ``--pyjwt-old PYTHON`` (an interpreter that has PyJWT 2.10.1), the
   same loop in that interpreter, a subprocess whose rounds are interleaved with ours.
2. **Exactness**: then every token used above must show, after ``flush()``, a
   ``use_count`` equal to the logins made with it (counted by the loop), a
   ``last_used_at`` inside the last round that used it, and login events on its trail
   (``audit_events(token_key=...)``, summary events counted by their ``count``) adding up
   to those logins -- the trails read in random order for at most 30 s per store, since a
   store whose every read scans the whole trail cannot read 2,000 of them in time (the
   report says for how many tokens it read them; a token with more than 10,000 events,
   more than one ``audit_events`` call returns, is counted apart, not checked).
3. **Revocation under load**: ``--revocations`` (200) calls of
   ``revoke_auth_token_by_key``, 20-50 ms apart, timed one by one, first alone, then
   while ``--workers`` (4) processes log in with ``--in-use`` tokens each, on SQLite
   and PostgreSQL; each revoked token must be refused at once through another
   connection; the workers' logins are checked for exactness like those above (see
   ``_scale_load.py``).
4. **History**: ``--history`` (1,000,000) more logins with another ``--in-use`` tokens,
   all of one user ``U`` (whose trail grows by every login), on memory and SQLite
   (``--pg-history``, 100,000, on PostgreSQL, whose single-process logins are slower),
   and after a tenth of them and after all:
   ``audit_events(user=U, limit=10)``, ``audit_events(token_key=K, limit=10)``,
   ``audit_events(limit=10)``, ``list_auth_tokens(user=U)`` (median of 7 calls each),
   one ``revoke_user_tokens`` of a user with about a hundred tokens, and on memory the
   resident memory (``/proc/self/statm``) across the logins -- of a process of its own,
   holding only a fresh ``memory://`` store of the same tokens, so that memory the timed
   cases freed cannot hide the growth.
5. **Cold start** of ``authtoken login`` on the SQLite file (see ``_coldstart.py``).

Why
---
The targets (every one is printed at the end): a many-token SQLite login at least 2x
the current PyJWT and at least 1x PyJWT 2.10.1, memory at least 3x, PostgreSQL at least
5,000 logins/s per process, both bindings each; revocation immediate; exact usage
everywhere and an exact trail on the SQL stores (memory's, which is to be bounded, is
shown, not judged); revocation p99 under 100 ms while the workers log in, no revocation failed;
reads that stay fast as history grows -- judged as "after ten times the history the
read takes at most twice as long, or under 5 ms", for the three ``audit_events`` reads,
``list_auth_tokens`` and ``revoke_user_tokens`` (per token revoked) -- and memory that
stays bounded (under 32 bytes per login over the last nine tenths); ``authtoken login``
from a fresh process under 150 ms here, with no SQLAlchemy, SQLModel or Alembic import,
and ``import authtoken`` loading no more modules outside the package than the 98 it
loads on CPython 3.11 today.

Method
------
Setup: every token is authorized through the public API into ``memory://`` (about
70 µs each); the records are then copied, in random order, into a fresh SQLite file and
into PostgreSQL with ``Repository.insert`` -- the storage contract, one transaction per
token, skipping the engine's per-token audit event -- by spawned processes working at
the same time (one for SQLite, two for PostgreSQL).  So every row is a real token with
a real secret digest; the program keeps the strings of the ones it logs in with and
forgets the rest.  Nothing is cached between runs.

Each timed case is warmed up once (choosing a batch of calls of about 5 ms), then timed
for ``--seconds`` (default 3) per round, 3 rounds round-robin over all cases, best round
counts.  Each round starts with up to 0.2 s of untimed calls and a ``flush()``; the
timed window then includes the batched writes of usage and audit events (one every 10,000
logins, so several per window) and ends with ``security.flush()``.  The program asserts
nothing and exits 0; it only reports (progress goes to standard error).

PostgreSQL: ``--postgres URL``, else ``$AUTHTOKEN_BENCH_POSTGRES``, else a throwaway
cluster when the server binaries are installed (``_pg.py``), else skipped.  A URL you
give gets 100,000 tokens and their trail; at the end every benchmark user's tokens are
revoked (users ``scale-0000`` to ``scale-0999``).

Run: ``python benchmarks/scale.py [--pyjwt-old PYTHON | --make-pyjwt-old DIR]
[--tokens N] [--in-use N] [--seconds S] [--history N] [--postgres URL] [--json]``; the
full run takes several minutes.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _coldstart
import _pg
import _pyjwt_old
import _scale_load
import _scale_report
import jwt
from _scale_load import Token
from _scale_report import AUDIT_MAX

import authtoken
from authtoken import AuthToken, MemoryRepository, Script, Security, open_security

ROUNDS = 3
BATCH_SECONDS = 0.005
SECRET_KEY = "scale-" + hashlib.sha256(b"authtoken scale benchmark").hexdigest()
DATA = '{"job":"nightly-report","dept":"finance","queue":"batch-7"}'
SCOPE = "reports:read"
USERS = 1000
JWT_EXP = 4_102_444_800  # 2100-01-01: the same every run
EVENTS_BUDGET_S = 30.0  # per exactness check, for reading the tokens' trails
HIST_USER, REVOKE_USERS = 100, (998, 999)  # user numbers (see _user)


def _user(number: int) -> str:
    return f"scale-{number:04d}"


def _say(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


# -- setup --------------------------------------------------------------------------------
@dataclass
class Tokens:
    """The tokens the benchmark holds the strings of; all others are filler."""

    one: dict[str, Token]  # "no binding" / "bound": the 1-token rows
    many: dict[str, list[Token]]  # the same, ``--in-use`` each
    workers: list[list[Token]]
    revoke: list[Token]
    history: list[Token]


def authorize(memory: Security, args: argparse.Namespace) -> Tokens:
    """Authorize every token through the API; return the ones logged in with."""
    numbers = iter(range(1, 10**9))

    def make(user: int, bound: bool) -> Token:
        n = next(numbers)
        token = AuthToken(f"{SCOPE} vfs:ikey?{n}" if bound else SCOPE, DATA, expires="30d")
        string = memory.authorize_token(token, user=_user(user))
        assert token.key is not None
        return Token(string, token.key, Script(key=n) if bound else None)

    n = args.in_use
    tokens = Tokens(
        one={"no binding": make(0, False), "bound": make(0, True)},
        many={"no binding": [make(i % 32, False) for i in range(n)],
              "bound": [make(i % 32, True) for i in range(n)]},
        workers=[[make(32 + i % 32, i % 2 == 1) for i in range(n)]
                 for _ in range(args.workers)],
        revoke=[make(64 + i % 32, False) for i in range(2 * args.revocations)],
        history=[make(HIST_USER, False) for _ in range(n)],  # one user: its trail grows
    )
    for i in range(args.tokens - needed(args)):
        memory.authorize_token(AuthToken(f"{SCOPE} vfs:ikey?{i}" if i % 2 else SCOPE, DATA,
                                         expires="30d"), user=_user(i % USERS))
    return tokens


def needed(args: argparse.Namespace) -> int:
    """How many tokens the benchmark logs in with or revokes (the rest are filler)."""
    return 2 + args.in_use * (3 + args.workers) + 2 * args.revocations


def _fill(url: str, records: list[Any]) -> int:
    """Insert ``records`` (a spawned process); returns how many."""
    with open_security(url, secret_keys=SECRET_KEY) as security:
        for record in records:
            security.repository.insert(record)
    return len(records)


def fill(urls: list[str], records: list[Any]) -> None:
    """Copy ``records`` into every database of ``urls`` (a SQLite file: one writer)."""
    jobs = []
    for url in urls:
        with open_security(url, secret_keys=SECRET_KEY) as security:
            security.list_auth_tokens(user=_user(0))  # creates the schema, once
        parts = 1 if url.startswith("sqlite") else 2
        jobs += [(url, records[i::parts]) for i in range(parts)]
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(_fill, url, part) for url, part in jobs]:
            future.result()


# -- the timed cases ----------------------------------------------------------------------
@dataclass
class Segment:
    """Calls made from position ``pos`` of the loop, between two wall-clock times."""

    pos: int
    calls: int
    start: float
    end: float


class Loop:
    """Runs ``chunk(args[i:j])`` round-robin over ``args``, counting every call."""

    def __init__(self, chunk: Callable[[list[Any]], None], args: list[Any]) -> None:
        self.chunk, self.args = chunk, args
        self.pos = self.calls = 0
        self.segments: list[Segment] = []

    def step(self, n: int) -> None:
        args, chunk, size = self.args, self.chunk, len(self.args)
        while n > 0:
            part = args[self.pos:self.pos + n]
            chunk(part)
            n -= len(part)
            self.calls += len(part)
            self.pos = (self.pos + len(part)) % size

    @contextmanager
    def segment(self) -> Iterator[None]:
        pos, calls, start = self.pos, self.calls, time.time()
        yield
        self.segments.append(Segment(pos, self.calls - calls, start, time.time()))


def login_chunk(security: Security) -> Callable[[list[Any]], None]:
    login = security.login_by_auth_token

    def chunk(pairs: list[Any]) -> None:
        for token, script in pairs:
            login(token, script=script)
    return chunk


def decode_chunk(key: str) -> Callable[[list[Any]], None]:
    decode, algorithms = jwt.decode, ["HS256"]

    def chunk(tokens: list[Any]) -> None:
        for token in tokens:
            decode(token, key, algorithms=algorithms)
    return chunk


@dataclass
class Case:
    name: str
    backend: str  # "PyJWT", "memory", "SQLite", "PostgreSQL"
    loop: Loop | None = None
    security: Security | None = None
    tokens: list[Token] = field(default_factory=list)
    remote: _pyjwt_old.OldPyJWT | None = None
    batch: int = 1
    rounds: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.rounds, default=0.0)

    def flush(self) -> None:
        if self.security is not None:
            self.security.flush()

    def warm_up(self, seconds: float) -> None:
        if self.remote is not None:
            self.remote.round(seconds)
            return
        assert self.loop is not None
        with self.loop.segment():
            calls, start = 1, time.perf_counter()
            while time.perf_counter() - start < seconds:
                self.loop.step(calls)
                calls *= 2
            self.batch = max(1, int(self.loop.calls / (time.perf_counter() - start)
                                    * BATCH_SECONDS))
            self.flush()

    def round(self, seconds: float) -> float:
        if self.remote is not None:
            return self.remote.round(seconds)
        assert self.loop is not None
        gc.collect()
        with self.loop.segment():
            warm = time.perf_counter() + min(0.2, seconds / 5)
            while time.perf_counter() < warm:
                self.loop.step(self.batch)
            self.flush()
            calls, start = self.loop.calls, time.perf_counter()
            while time.perf_counter() - start < seconds:
                self.loop.step(self.batch)
            self.flush()  # inside the timing: the last batch is part of the cost
            return (self.loop.calls - calls) / (time.perf_counter() - start)


def login_cases(backend: str, security: Security, tokens: Tokens, table: int) -> list[Case]:
    cases = []
    for in_use in ("one", "many"):
        for binding in ("no binding", "bound"):
            chosen = ([tokens.one[binding]] * len(tokens.many[binding]) if in_use == "one"
                      else tokens.many[binding])
            count = "1" if in_use == "one" else f"{len(chosen):,} of {table:,}"
            cases.append(Case(f"{backend} login, {count} in use, {binding}", backend,
                              Loop(login_chunk(security), [(t.string, t.script) for t in chosen]),
                              security, chosen))
    return cases


def measure(cases: list[Case], seconds: float) -> None:
    for case in cases:
        case.warm_up(min(0.5, max(0.05, seconds / 5)))
    for number in range(ROUNDS):
        _say(f"round {number + 1} of {ROUNDS}")
        for case in cases:  # round-robin: drift hits every case alike
            case.rounds.append(case.round(seconds))


# -- exactness ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    count: int
    start: float  # the last use was in this wall-clock window
    end: float


def expected(case: Case) -> dict[str, Expect]:
    """What storage must show for each token of ``case``, from its loop's segments."""
    assert case.loop is not None
    size, total, out = len(case.tokens), case.loop.calls, {}
    for i, token in enumerate(case.tokens):
        count = total // size + (i < total % size)
        last = next(s for s in reversed(case.loop.segments)
                    if s.calls >= size or (i - s.pos) % size < s.calls)
        old = out.get(token.key)
        out[token.key] = Expect(count + (old.count if old else 0), last.start, last.end)
    return out


def check_exact(label: str, security: Security, expect: dict[str, Expect]) -> dict[str, Any]:
    """use_count and last_used_at of every token in ``expect``; its login events too,
    in random order, for as many tokens as ``EVENTS_BUDGET_S`` allows (a store whose
    ``audit_events`` reads every event of the trail cannot read them all in time)."""
    security.flush()
    bad = {"use_count": 0, "last_used_at": 0, "events": 0, "events_beyond_limit": 0}
    for key, want in expect.items():
        token = security.get_auth_token(key)
        bad["use_count"] += token.use_count != want.count
        last = token.last_used_at.timestamp() if token.last_used_at else 0.0
        bad["last_used_at"] += not want.start - 0.01 <= last <= want.end + 0.01
    keys = sorted(expect)
    random.Random(3).shuffle(keys)
    checked, deadline = 0, time.perf_counter() + EVENTS_BUDGET_S
    for key in keys:
        if time.perf_counter() > deadline:
            break
        events = security.audit_events(token_key=key, limit=AUDIT_MAX)
        if len(events) >= AUDIT_MAX:  # the API reads no further back: not checked
            bad["events_beyond_limit"] += 1
            continue
        bad["events"] += sum(e.count for e in events
                             if e.action == "login" and e.outcome == "ok") != expect[key].count
        checked += 1
    return {"store": label, "tokens": len(expect), "events_checked_tokens": checked,
            "logins": sum(e.count for e in expect.values()),
            "mismatched": {k: n for k, n in bad.items() if k != "events_beyond_limit"},
            "events_beyond_limit": bad["events_beyond_limit"]}


# -- history ------------------------------------------------------------------------------
def _rss_mib() -> float | None:
    gc.collect()
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _median_ms(call: Callable[[], object], times: int = 7) -> float:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        spent.append(time.perf_counter() - start)
    return round(statistics.median(spent) * 1000, 3)


def _memory_history(records: list[Any], tokens: list[Token], logins: int) -> dict[str, Any]:
    """``history`` on a fresh ``memory://`` store holding ``records`` (a spawned process)."""
    security = Security(MemoryRepository(), secret_keys=SECRET_KEY)
    for record in records:
        security.repository.insert(record)
    return history("memory", security, tokens, logins)


def history(label: str, security: Security, tokens: list[Token], logins: int) -> dict[str, Any]:
    """Log in ``logins`` times; time the reads after a tenth and after all of them."""
    loop = Loop(login_chunk(security), [(t.string, t.script) for t in tokens])
    user, key = _user(HIST_USER), tokens[0].key
    reads: dict[str, Callable[[], object]] = {
        "audit_events(user=U, limit=10)": lambda: security.audit_events(user=user, limit=10),
        "audit_events(token_key=K, limit=10)":
            lambda: security.audit_events(token_key=key, limit=10),
        "audit_events(limit=10)": lambda: security.audit_events(limit=10),
        "list_auth_tokens(user=U)": lambda: security.list_auth_tokens(user=user),
    }
    marks, spent, rss = [max(1, logins // 10), logins], 0.0, [_rss_mib()]
    points = []
    for number, mark in zip(REVOKE_USERS, marks, strict=True):
        _say(f"history on {label}: {mark:,} logins")
        start = time.perf_counter()
        loop.step(mark - loop.calls)
        security.flush()
        spent += time.perf_counter() - start
        rss.append(_rss_mib())
        point: dict[str, Any] = {"logins": mark,
                                 "reads_ms": {name: _median_ms(c) for name, c in reads.items()}}
        point["list_tokens"] = len(security.list_auth_tokens(user=user))
        start = time.perf_counter()
        point["revoked"] = security.revoke_user_tokens(_user(number))
        point["revoke_user_tokens_ms"] = round((time.perf_counter() - start) * 1000, 3)
        points.append(point)
    growth = None
    if label == "memory" and None not in rss:
        growth = {"rss_mib": [round(r or 0.0, 1) for r in rss],
                  "bytes_per_login_last_nine_tenths":
                      round(((rss[2] or 0.0) - (rss[1] or 0.0)) * 2**20
                            / max(1, marks[1] - marks[0]), 1)}
    return {"store": label, "logins": logins, "logins_per_s": round(loop.calls / spent, 1),
            "checkpoints": points, "memory": growth}


# -- the report -----------------------------------------------------------------------------
def _rows(cases: list[Case]) -> list[dict[str, Any]]:
    reference = next(c for c in cases if c.backend == "PyJWT").best
    old = next((c.best for c in cases if c.backend == "PyJWT old"), None)
    return [{
        "case": c.name, "backend": c.backend, "calls_per_s": round(c.best, 1),
        "us_per_call": round(1e6 / c.best, 3) if c.best else None,
        "ratio_to_pyjwt": round(c.best / reference, 3),
        "ratio_to_pyjwt_old": round(c.best / old, 3) if old else None,
        "rounds_calls_per_s": [round(x, 1) for x in c.rounds],
    } for c in cases]


def _cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _probe(url: str) -> str | None:
    """Why ``url`` cannot be used, or ``None``."""
    try:
        with open_security(url, secret_keys=SECRET_KEY) as security:
            security.list_auth_tokens(user=_user(0))
    except authtoken.AuthTokenError as exc:
        return f"unusable: {type(exc).__name__}: {exc}"
    return None


def _pyjwt_cases(args: argparse.Namespace, stack: ExitStack, r: dict[str, Any]) -> list[Case]:
    """The current PyJWT's row and, with an old PyJWT's interpreter, that one's."""
    jwts = [jwt.encode({"sub": _user(i % 32), "scope": SCOPE, "exp": JWT_EXP, "data": DATA},
                       SECRET_KEY, algorithm="HS256") for i in range(args.in_use)]
    cases = [Case("PyJWT HS256 jwt.decode", "PyJWT", Loop(decode_chunk(SECRET_KEY), jwts))]
    if args.make_pyjwt_old:
        _say(f"making {args.make_pyjwt_old} with PyJWT {_pyjwt_old.OLD_VERSION}")
    python, r["pyjwt_old_skipped"] = _pyjwt_old.interpreter(args.pyjwt_old,
                                                            args.make_pyjwt_old)
    if python is not None:
        try:
            remote = _pyjwt_old.OldPyJWT(python, jwts, SECRET_KEY)
            remote.round(0.01)  # decodes our tokens, or says why not
        except (OSError, RuntimeError) as exc:
            r["pyjwt_old_skipped"] = f"{python} unusable: {exc}"
        else:
            stack.callback(remote.close)
            r["versions"]["pyjwt_old"] = remote.version
            cases.append(Case(f"PyJWT {remote.version} HS256 jwt.decode (subprocess)",
                              "PyJWT old", remote=remote))
    return cases


def revocation_run(label: str, url: str, security: Security, tokens: Tokens,
                   args: argparse.Namespace, r: dict[str, Any]) -> None:
    """Revocations alone and under load on one store, then the workers' exactness."""
    _say(f"revocations on {label}")
    n = args.revocations
    with open_security(url, secret_keys=SECRET_KEY) as checker:
        entry: dict[str, Any] = {"store": label, "workers": args.workers,
                                 "alone": _scale_load.revocations(security, checker,
                                                                  tokens.revoke[:n], seed=1)}
        r["revocation"].append(entry)
        if not args.workers:
            return
        load = _scale_load.under_load(url, SECRET_KEY, security, checker, tokens.revoke[n:],
                                      tokens.workers)
    entry["error"], entry["logins_per_s"] = load["error"], load["logins_per_s"]
    if load["error"] is not None:
        return
    entry["loaded"] = {k: load[k] for k in entry["alone"]}
    expect = {}
    for worker, calls in zip(tokens.workers, load["calls"], strict=True):
        for i, token in enumerate(worker):  # each worker went round-robin from its first
            expect[token.key] = Expect(calls // len(worker) + (i < calls % len(worker)),
                                       load["wall_start"], load["wall_end"])
    r["exactness"].append(check_exact(f"{label}, {args.workers} processes", security, expect))


def run(args: argparse.Namespace, stack: ExitStack, r: dict[str, Any]) -> None:
    source = stack.enter_context(_pg.postgres(args.postgres))
    r["postgres"] = {"origin": source.origin or None, "url": source.shown_url,
                     "server_version": None, "skipped": source.skipped}
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authtoken-scale-")))
    stores = {"SQLite": f"sqlite:///{folder / 'tokens.db'}"}
    if source.url is not None:
        r["postgres"]["skipped"] = _probe(source.url)
        if r["postgres"]["skipped"] is None:
            stores["PostgreSQL"] = source.url
    start = time.perf_counter()
    _say(f"authorizing {args.tokens:,} tokens in memory://")
    memory = stack.enter_context(open_security("memory://", secret_keys=SECRET_KEY))
    tokens = authorize(memory, args)
    records = memory.repository.list(None, True)
    random.Random(1).shuffle(records)
    _say(f"copying them into {' and '.join(stores)}")
    fill(list(stores.values()), records)
    r["setup_s"] = round(time.perf_counter() - start, 1)
    opened = {label: stack.enter_context(open_security(url, secret_keys=SECRET_KEY))
              for label, url in stores.items()}
    if "PostgreSQL" in stores:
        if not source.throwaway:  # someone's database: leave no live token behind
            stack.callback(_revoke_all, opened["PostgreSQL"])
        import psycopg
        with psycopg.connect(_pg.conninfo(stores["PostgreSQL"])) as conn:
            r["postgres"]["server_version"] = conn.info.parameter_status("server_version")

    cases = _pyjwt_cases(args, stack, r)
    for label, security in {"memory": memory, **opened}.items():
        cases += login_cases(label, security, tokens, args.tokens)
    _say(f"timing {len(cases)} cases")
    measure(cases, args.seconds)
    r["rows"] = _rows(cases)
    for label, security in {"memory": memory, **opened}.items():
        _say(f"checking usage and trail on {label}")
        expect: dict[str, Expect] = {}
        for case in cases:
            if case.security is security:
                expect.update(expected(case))
        r["exactness"].append(check_exact(label, security, expect))

    for label, security in opened.items():
        revocation_run(label, stores[label], security, tokens, args, r)
    if args.history:  # in a process of its own: its resident memory is the store's
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            r["history"].append(pool.submit(_memory_history, records, tokens.history,
                                            args.history).result())
    for label, security in opened.items():
        logins = args.pg_history if label == "PostgreSQL" else args.history
        if logins:
            r["history"].append(history(label, security, tokens.history, logins))
    _say(f"cold start of authtoken login, {args.cli_runs} times")
    r["cli"] = _coldstart.measure(stores["SQLite"], SECRET_KEY,
                                  tokens.many["no binding"][0].string, args.cli_runs)


def _revoke_all(security: Security) -> None:
    for number in range(USERS):
        try:
            security.revoke_user_tokens(_user(number))
        except authtoken.AuthTokenError as exc:
            print(f"warning: could not revoke the tokens of {_user(number)}: {exc}",
                  file=sys.stderr)
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Logins, revocations and reads at a "
                                     "scheduler's scale, with the targets met or not.")
    add = parser.add_argument
    add("--tokens", type=int, default=100_000, help="tokens in the table (default 100,000)")
    add("--in-use", type=int, default=1024, help="distinct tokens logged in with (1,024)")
    add("--seconds", type=float, default=3.0, help="wall time per case per round (3)")
    add("--workers", type=int, default=4, help="processes logging in during revocations (4)")
    add("--revocations", type=int, default=200, help="revocations alone, and under load (200)")
    add("--history", type=int, default=1_000_000,
        help="logins before the history reads, memory and SQLite (1,000,000; 0 skips)")
    add("--pg-history", type=int, default=100_000,
        help="the same on PostgreSQL (100,000; 0 skips)")
    add("--cli-runs", type=int, default=15, help="fresh processes per cold-start command (15)")
    add("--postgres", metavar="URL", help=f"PostgreSQL to use (default ${_pg.ENV}, else a "
        "throwaway cluster if the server binaries are installed)")
    add("--pyjwt-old", metavar="PYTHON", help="an interpreter with PyJWT 2.10.1")
    add("--make-pyjwt-old", metavar="DIR",
        help="make (or reuse) a venv with PyJWT 2.10.1 in DIR and use it")
    add("--json", action="store_true", help="print everything as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.in_use < 1 or min(args.workers, args.revocations) < 0:
        parser.error("--seconds and --in-use must be positive, --workers and "
                     "--revocations not negative")
    if args.revocations < 2 or args.cli_runs < 1 or min(args.history, args.pg_history) < 0:
        parser.error("--revocations must be at least 2, --cli-runs at least 1, "
                     "--history and --pg-history not negative")
    if args.tokens < needed(args):
        parser.error(f"--tokens must be at least {needed(args):,} for these sizes")
    began = time.perf_counter()
    r: dict[str, Any] = {
        "versions": {"authtoken": str(authtoken.__version__), "pyjwt": jwt.__version__,
                     "pyjwt_old": None, "python": f"{platform.python_implementation()} "
                     f"{platform.python_version()}", "platform": platform.platform(),
                     "cpus": _cpus()},
        "sizes": {"users": USERS, "rounds": ROUNDS, **{
            k: getattr(args, k) for k in ("tokens", "in_use", "seconds", "workers",
                                          "revocations", "history", "pg_history")}},
        "exactness": [], "revocation": [], "history": [],
    }
    with ExitStack() as stack:
        run(args, stack, r)
    r["elapsed_s"] = round(time.perf_counter() - began, 1)
    r["targets"] = _scale_report.targets(r)
    if args.json:
        json.dump(r, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _scale_report.show(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
