"""What ``Broker.access_token`` costs on its fast path, beside a login in the same run.

What is measured
----------------
A scheduler runs jobs for many users; each job logged in by its user's token and asks
the broker for the user's upstream access token (``broker.access_token(session,
name)``).  On the fast path -- a fresh access token is stored -- that call makes no
request: it re-reads the session's token (a revocation is seen at once), reads the link,
opens its sealed access token (one AES-GCM decryption) and records an ``upstream``
audit event.  Its target: **within 2x of a login** (``Security.login_by_auth_token``,
the whole public call) on the same store in the same run.

Per store (memory, SQLite, and PostgreSQL when there is one), four timed cases:

- ``login, 1 token in use`` / ``access_token, 1 session``: the easy case, one hot
  token (the same string again and again) and one hot session;
- ``login, N of T tokens in use`` / ``access_token, N sessions of N links``: ``--links``
  (1,000) users, each with a linked account and a session logged in by a token of its
  own holding ``upstream:space``, called round-robin, on a table of ``--tokens``
  (100,000) tokens; the logins use the very tokens the sessions logged in with.

And PyJWT's ``jwt.decode(token, key, algorithms=["HS256"])`` over ``--links`` distinct
JWTs, in the same loop, as the reference every other benchmark here prints.

The upstream is ``authtoken.testing``'s OIDC provider (Authlib, in a thread of this
process, one account per user), used only to link: the accounts are linked once, on
the memory store, and the sealed links copied to the other stores with ``put_link``
(the storage contract; the same secret keys open them).  Access tokens live a day, so
none is refreshed; the provider's request count is read before and after the timed
loops, and the program fails (exit 1) if any request was made while timing.

Method
------
Filler tokens are authorized through the public API into ``memory://`` (about 70 µs
each), then copied with ``Repository.insert`` into a fresh SQLite file and into
PostgreSQL by spawned processes.  Each case is warmed up, then timed for ``--seconds``
per round, ``ROUNDS`` rounds round-robin over every case, best round counts; a round
ends with ``security.flush()`` inside the timing (the batched write of usage and of the
``upstream`` events is part of the cost).  The ratio is µs per ``access_token`` over µs
per login in the same case shape.

PostgreSQL: ``--postgres URL``, else ``$AUTHTOKEN_BENCH_POSTGRES``, else a throwaway
cluster when the server binaries are installed (``_pg.py``); ``--no-postgres`` skips
it.  On a URL you give, the benchmark users' tokens (``broker-bench-*``) are revoked
and their links removed at the end.

Run: ``python benchmarks/broker.py [--links N] [--tokens N] [--seconds S]
[--postgres URL | --no-postgres] [--quick] [--json]``; ``--quick`` is a tiny run that
only shows the program works (its figures mean little).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import multiprocessing
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _pg
import jwt

import authtoken
from authtoken import AuthToken, Security, Session, open_security
from authtoken.broker import Broker, OIDCUpstream
from authtoken.testing import OIDCProvider

ROUNDS = 3
BATCH_SECONDS = 0.005
SECRET_KEY = "broker-" + hashlib.sha256(b"authtoken broker benchmark").hexdigest()
LINK = "space"
SCOPE = f"upstream:{LINK}"
DATA = '{"job":"nightly-lessons","dept":"school","queue":"batch-7"}'
PASSWORD = "bench-upstream-password"  # the test provider's accounts
LIFETIME = 24 * 3600.0  # upstream access tokens: none is refreshed during the run
JWT_EXP = 4_102_444_800  # 2100-01-01
TARGET = 2.0


def _user(number: int) -> str:
    return f"broker-bench-{number:04d}"


def _say(message: str) -> None:
    print(f"[broker] {message}", file=sys.stderr, flush=True)


# -- setup --------------------------------------------------------------------------------
@dataclass
class Setup:
    strings: list[str]  # one token per linked user, holding upstream:space
    users: list[str]
    records: list[Any]  # every token record of the memory store, to copy
    links: list[Any]  # the sealed links, to copy


def _fill(url: str, records: list[Any], links: list[Any]) -> int:
    """Insert ``records`` and ``links`` into ``url`` (a spawned process)."""
    with open_security(url, secret_keys=SECRET_KEY) as security:
        repository: Any = security.repository
        for record in records:
            repository.insert(record)
        now = int(time.time() * 1_000_000)
        for link in links:
            repository.put_link(link, now)
    return len(records)


def fill(url: str, setup: Setup) -> None:
    """Copy every token and link of the memory store into ``url`` (SQLite: one writer)."""
    with open_security(url, secret_keys=SECRET_KEY) as security:
        security.list_auth_tokens(user=_user(0))  # creates the schema, once
    parts = 1 if url.startswith("sqlite") else 2
    jobs = [(url, setup.records[i::parts], setup.links[i::parts]) for i in range(parts)]
    with ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(_fill, *job) for job in jobs]:
            future.result()


def prepare(memory: Security, provider: OIDCProvider, args: argparse.Namespace) -> Setup:
    """Authorize every token and link every user's account, on the memory store."""
    users = [_user(i) for i in range(args.links)]
    for user in users:
        provider.users[user] = PASSWORD
    strings = [memory.authorize_token(AuthToken(SCOPE, DATA, expires="30d"), user=user)
               for user in users]
    for i in range(max(0, args.tokens - args.links)):
        memory.authorize_token(AuthToken("reports:read", DATA, expires="30d"),
                               user=_user(i % args.links))
    _say(f"linking {len(users):,} accounts at the provider")
    with Broker(memory, {LINK: OIDCUpstream(provider.issuer, provider.PUBLIC_CLIENT)}) as broker:
        for user in users:
            broker.link_password(user, LINK, user, PASSWORD)
    repository: Any = memory.repository
    links = [repository.get_link(user, LINK) for user in users]
    records = repository.list(None, True)
    return Setup(strings, users, records, links)


# -- the timed cases ----------------------------------------------------------------------
@dataclass
class Case:
    name: str
    store: str  # "PyJWT", "memory", "SQLite", "PostgreSQL"
    kind: str  # "reference", "login" or "access_token"
    shape: str  # "1" or "many"
    chunk: Callable[[list[Any]], None]
    args: list[Any]
    security: Security | None = None
    pos: int = 0
    batch: int = 1
    rounds: list[float] = field(default_factory=list)

    @property
    def best_us(self) -> float:
        return 1e6 / max(self.rounds) if self.rounds else 0.0

    def step(self, n: int) -> None:
        args, size = self.args, len(self.args)
        while n > 0:
            part = args[self.pos:self.pos + n]
            self.chunk(part)
            n -= len(part)
            self.pos = (self.pos + len(part)) % size

    def flush(self) -> None:
        if self.security is not None:
            self.security.flush()

    def warm_up(self, seconds: float) -> None:
        calls, done, start = 1, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.step(calls)
            done += calls
            calls *= 2
        self.batch = max(1, int(done / (time.perf_counter() - start) * BATCH_SECONDS))
        self.flush()

    def round(self, seconds: float) -> float:
        gc.collect()
        self.flush()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.step(self.batch)
            calls += self.batch
        self.flush()  # inside the timing: the last batch is part of the cost
        return calls / (time.perf_counter() - start)


def login_chunk(security: Security) -> Callable[[list[Any]], None]:
    login = security.login_by_auth_token

    def chunk(strings: list[Any]) -> None:
        for string in strings:
            login(string)
    return chunk


def access_chunk(broker: Broker) -> Callable[[list[Any]], None]:
    access = broker.access_token

    def chunk(sessions: list[Any]) -> None:
        for session in sessions:
            access(session, LINK)
    return chunk


def decode_chunk(key: str) -> Callable[[list[Any]], None]:
    decode, algorithms = jwt.decode, ["HS256"]

    def chunk(tokens: list[Any]) -> None:
        for token in tokens:
            decode(token, key, algorithms=algorithms)
    return chunk


def pyjwt_case(count: int) -> Case:
    key = hashlib.sha256(b"broker benchmark jwt key").hexdigest()
    tokens = [jwt.encode({"sub": _user(i), "scope": SCOPE, "exp": JWT_EXP, "data": DATA},
                         key, algorithm="HS256") for i in range(count)]
    return Case("PyJWT HS256 jwt.decode", "PyJWT", "reference", "many",
                decode_chunk(key), tokens)


def store_cases(store: str, security: Security, broker: Broker, setup: Setup,
                table: int) -> list[Case]:
    """The four timed cases of one store; the sessions log in here (untimed)."""
    sessions = []
    for string in setup.strings:
        session = Session(security)
        session.login_by_auth_token(string)
        sessions.append(session)
    for session in sessions:  # the fast path works before it is timed
        broker.access_token(session, LINK)
    security.flush()
    n = len(sessions)
    many = f"{n:,} of {table:,} tokens in use"
    return [
        Case(f"{store} login, 1 token in use", store, "login", "1",
             login_chunk(security), [setup.strings[0]] * n, security),
        Case(f"{store} access_token, 1 session", store, "access_token", "1",
             access_chunk(broker), [sessions[0]] * n, security),
        Case(f"{store} login, {many}", store, "login", "many",
             login_chunk(security), list(setup.strings), security),
        Case(f"{store} access_token, {n:,} sessions of {n:,} links", store,
             "access_token", "many", access_chunk(broker), sessions, security),
    ]


def measure(cases: list[Case], seconds: float, rounds: int) -> None:
    for case in cases:
        case.warm_up(min(0.5, max(0.02, seconds / 5)))
    for number in range(rounds):
        _say(f"round {number + 1} of {rounds}")
        for case in cases:  # round-robin: drift hits every case alike
            case.rounds.append(case.round(seconds))


# -- the report ---------------------------------------------------------------------------
def ratios(cases: list[Case]) -> list[dict[str, Any]]:
    """access_token's µs over login's µs, per store and case shape."""
    found: dict[tuple[str, str], dict[str, Case]] = {}
    for case in cases:
        if case.kind != "reference":
            found.setdefault((case.store, case.shape), {})[case.kind] = case
    out = []
    for (store, shape), pair in found.items():
        login, access = pair["login"], pair["access_token"]
        ratio = access.best_us / login.best_us
        out.append({"store": store, "shape": shape, "login_us": round(login.best_us, 2),
                    "access_token_us": round(access.best_us, 2), "ratio": round(ratio, 2),
                    "met": ratio <= TARGET})
    return out


def report(cases: list[Case], args: argparse.Namespace, source: _pg.Source,
           requests: int) -> dict[str, Any]:
    reference = next(c for c in cases if c.kind == "reference")
    rows = [{"case": c.name, "store": c.store, "us_per_call": round(c.best_us, 2),
             "calls_per_s": round(1e6 / c.best_us), "vs_pyjwt": round(
                 reference.best_us / c.best_us, 2)} for c in cases]
    pairs = ratios(cases)
    return {
        "versions": {"python": platform.python_version(), "authtoken": authtoken.__version__,
                     "pyjwt": jwt.__version__},
        "setup": {"links": args.links, "tokens": max(args.tokens, args.links),
                  "seconds": args.seconds, "rounds": args.rounds},
        "postgres": {"url": source.shown_url, "origin": source.origin,
                     "skipped": source.skipped},
        "rows": rows, "ratios": pairs,
        "requests_while_timed": requests,
        "target": {"text": f"within {TARGET:g}x of a login", "met": all(
            p["met"] for p in pairs)},
    }


def print_report(result: dict[str, Any]) -> None:
    setup, pg = result["setup"], result["postgres"]
    print(f"authtoken {result['versions']['authtoken']}, Python "
          f"{result['versions']['python']}, PyJWT {result['versions']['pyjwt']}; "
          f"{setup['links']:,} linked users on a table of {setup['tokens']:,} tokens; "
          f"best of {setup['rounds']} rounds of {setup['seconds']:g} s")
    print("PostgreSQL: " + (f"skipped ({pg['skipped']})" if pg["skipped"]
                            else f"{pg['url']} ({pg['origin']})"))
    width = max(len(row["case"]) for row in result["rows"])
    print(f"\n{'case':<{width}}  {'µs/call':>9}  {'calls/s':>9}  {'vs PyJWT':>8}")
    for row in result["rows"]:
        print(f"{row['case']:<{width}}  {row['us_per_call']:>9.2f}  "
              f"{row['calls_per_s']:>9,}  {row['vs_pyjwt']:>7.2f}x")
    print(f"\n{'store':<11} {'case':<5} {'login µs':>9} {'access_token µs':>16} {'ratio':>6}")
    for pair in result["ratios"]:
        print(f"{pair['store']:<11} {pair['shape']:<5} {pair['login_us']:>9.2f} "
              f"{pair['access_token_us']:>16.2f} {pair['ratio']:>5.2f}x"
              f"  {'met' if pair['met'] else 'not met'}")
    print(f"\nrequests to the upstream while timing: {result['requests_while_timed']}")
    target = result["target"]
    print(f"target: {target['text']} — {'met' if target['met'] else 'not met'}")


# -- main ---------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=1000, help="linked users (sessions)")
    parser.add_argument("--tokens", type=int, default=100_000, help="tokens on the table")
    parser.add_argument("--seconds", type=float, default=2.0, help="per round and case")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--postgres", metavar="URL", help="a scratch PostgreSQL database")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run (20 links, 2,000 tokens, 1 round of 0.05 s)")
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.links, args.tokens, args.seconds, args.rounds = 20, 2000, 0.05, 1
    if args.links < 1 or args.tokens < 0 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--links and --rounds must be at least 1, --seconds more than 0")
    return args


def cleanup(url: str, users: list[str]) -> None:
    """Revoke the benchmark users' tokens and remove their links (a URL we were given)."""
    with open_security(url, secret_keys=SECRET_KEY) as security:
        repository: Any = security.repository
        for user in users:
            security.revoke_user_tokens(user)
            repository.delete_link(user, LINK)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with ExitStack() as stack:
        provider = stack.enter_context(OIDCProvider(lifetime=LIFETIME))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="broker-bench-")))
        memory = stack.enter_context(open_security("memory://", secret_keys=SECRET_KEY))
        _say(f"authorizing {max(args.tokens, args.links):,} tokens")
        setup = prepare(memory, provider, args)
        table = len(setup.records)
        source = (_pg.Source(None, skipped="--no-postgres") if args.no_postgres
                  else stack.enter_context(_pg.postgres(args.postgres)))
        stores: list[tuple[str, Security]] = [("memory", memory)]
        urls = [("SQLite", f"sqlite:///{folder / 'broker.db'}")]
        if source.url is not None:
            urls.append(("PostgreSQL", source.url))
        for store, url in urls:
            _say(f"copying {table:,} tokens and {len(setup.links):,} links to {store}")
            fill(url, setup)
            stores.append((store, stack.enter_context(
                open_security(url, secret_keys=SECRET_KEY))))
        if source.url is not None and not source.throwaway:
            stack.callback(cleanup, source.url, setup.users)
        upstreams = {LINK: OIDCUpstream(provider.issuer, provider.PUBLIC_CLIENT)}
        cases = [pyjwt_case(len(setup.strings))]
        for store, security in stores:
            broker = stack.enter_context(Broker(security, upstreams))
            cases += store_cases(store, security, broker, setup, table)
        before = sum(provider.counts.values())
        measure(cases, args.seconds, args.rounds)
        requests = sum(provider.counts.values()) - before
        result = report(cases, args, source, requests)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    if requests:
        print(f"error: {requests} request(s) reached the upstream while timing: the fast "
              "path must make none", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
