"""``login.py --baseline DIR``: the same logins on an earlier checkout, side by side.

Whether a change made logins slower cannot be read off two runs: on a shared machine
the figures move by a third between runs.  So both codes run at the same time, each in
an interpreter of its own -- ``python _login_baseline.py`` with a checkout first on
``PYTHONPATH``, so that ``import authtoken`` finds that checkout: this one for "now",
``DIR`` for "before" -- which sets up the same cases on stores of its own and times one
when asked.  Both sides are alike, so neither pays for the other's surroundings (the
parent holds every store of the main run; timing "now" in it showed identical code
13 % apart).  The parent alternates: a short round of a case now, the same case before,
then before first and now second, and so on (ABBA...), and compares the medians.  Only
one side runs at a time; the other waits on its pipe.

The child uses only the public API of the earliest code compared (``open_security``,
``AuthToken``, ``Script``, ``login_by_auth_token``), so any checkout since then works.
It gets its settings -- the PostgreSQL URL included, which may hold a password -- as
one JSON line on standard input, never on its command line.  Its PostgreSQL is a
database of its own, created for the run on a throwaway cluster and dropped after (an
earlier schema cannot share one with this code's); on a server you named, the baseline
has no PostgreSQL rows.

``python benchmarks/_login_baseline.py`` is the child; the parent's side is
``Baseline`` (one child), ``start`` and ``compare``.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["CASES", "INTERPRETERS", "Baseline", "BaselineReport", "batch_of", "compare",
           "start"]

BATCH_SECONDS = 0.005
AB_ROUNDS = 24  # short rounds per side and case, alternating which side goes first
INTERPRETERS = 4  # per side, taken in turn
PLAIN, BOUND = "no script binding", "bound to script 42"
CASES = tuple(f"{label} login, {binding}" for label in ("memory", "SQLite", "PostgreSQL")
              for binding in (PLAIN, BOUND))


class BaselineRow(TypedDict):
    case: str
    us_now: float  # median of the rounds, µs per login
    us_before: float
    change: float  # us_now / us_before - 1: negative is faster now


class BaselineReport(TypedDict):
    dir: str
    authtoken_file: str | None  # where the child's authtoken came from
    interpreters: int  # per side
    rounds: int
    seconds_per_round: float
    rows: list[BaselineRow]
    skipped: str | None  # why the baseline has no PostgreSQL rows, or did not run at all


# -- the child ---------------------------------------------------------------------------
def _time(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in repeat(None, calls):
        call()
    return time.perf_counter() - start


def batch_of(call: Callable[[], object]) -> int:
    """About ``BATCH_SECONDS`` worth of calls, found by doubling for 0.05 s."""
    calls, elapsed = 1, 0.0
    while elapsed < 0.05:
        elapsed += _time(call, calls)
        calls *= 2
    return max(1, int((calls - 1) / elapsed * BATCH_SECONDS))


def timed_round(call: Callable[[], object], batch: int, seconds: float) -> float:
    """Calls per second of ``call`` over about ``seconds`` of wall time, after a fifth
    of that (at most 0.2 s) of untimed calls: the same on both sides."""
    gc.collect()
    warm = min(0.2, seconds / 5)
    while warm > 0:
        warm -= _time(call, batch)
    calls, elapsed = 0, 0.0
    while elapsed < seconds:
        elapsed += _time(call, batch)
        calls += batch
    return calls / elapsed


def _child_cases(stack: ExitStack, settings: dict[str, Any],
                 ) -> tuple[dict[str, Callable[[], object]], str]:
    """The login cases on the child's own stores, and where its authtoken comes from."""
    import authtoken
    from authtoken import AuthToken, Script, open_security

    key = bytes.fromhex(settings["secret_key"])
    data, user = settings["data"], settings["user"]
    script = Script(key=settings["script_key"])
    urls = [("memory", "memory://")]
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authtoken-base-")))
    urls.append(("SQLite", f"sqlite:///{folder / 'tokens.db'}"))
    if settings.get("postgres"):
        urls.append(("PostgreSQL", settings["postgres"]))
    cases: dict[str, Callable[[], object]] = {}
    for label, url in urls:  # a side's interpreters share its databases, not its tokens
        security = stack.enter_context(open_security(url, secret_keys=key))
        plain = security.authorize_token(
            AuthToken(settings["scope_plain"], data, expires="1d"), user=user)
        bound = security.authorize_token(
            AuthToken(settings["scope_bound"], data, expires="1d"), user=user)
        cases[f"{label} login, {PLAIN}"] = partial(security.login_by_auth_token, plain)
        cases[f"{label} login, {BOUND}"] = partial(security.login_by_auth_token, bound,
                                                   script=script)
    return cases, str(authtoken.__file__)


def serve() -> int:
    """The child: set up, say which cases it has, then time one case per request."""
    settings = json.loads(sys.stdin.readline())
    with ExitStack() as stack:
        cases, where = _child_cases(stack, settings)
        batches = {name: batch_of(call) for name, call in cases.items()}
        print(json.dumps({"cases": sorted(cases), "authtoken_file": where}), flush=True)
        for line in sys.stdin:
            ask = json.loads(line)
            name = ask["case"]
            rate = timed_round(cases[name], batches[name], ask["seconds"])
            print(json.dumps({"rate": rate}), flush=True)
    return 0


# -- the parent ----------------------------------------------------------------------------
class Baseline:
    """The child interpreter running the checkout in ``folder``."""

    def __init__(self, process: subprocess.Popen[str], folder: Path, cases: list[str],
                 authtoken_file: str) -> None:
        self.process = process
        self.folder = folder
        self.cases = cases
        self.authtoken_file = authtoken_file

    def rate(self, case: str, seconds: float) -> float:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"case": case, "seconds": seconds}) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError("the baseline interpreter exited")
        return float(json.loads(answer)["rate"])


@contextmanager
def start(folder: Path, settings: dict[str, Any]) -> Iterator[Baseline]:
    """The child for the checkout in ``folder``, set up with ``settings``."""
    if not (folder / "authtoken" / "__init__.py").is_file():
        raise RuntimeError(f"{folder} holds no authtoken package (give a checkout's root)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHTOKEN_")}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())], cwd=folder, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(settings) + "\n")
        process.stdin.flush()
        hello = process.stdout.readline()
        if not hello:
            raise RuntimeError("the baseline interpreter failed to set up (see stderr)")
        ready = json.loads(hello)
        where = Path(ready["authtoken_file"]).resolve()
        if not where.is_relative_to(folder.resolve()):
            raise RuntimeError(f"the baseline imported authtoken from {where}, not {folder}")
        yield Baseline(process, folder, list(ready["cases"]), str(where))
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def compare(current: Sequence[Baseline], baseline: Sequence[Baseline], seconds: float,
            skipped: str | None) -> BaselineReport:
    """Median µs per login of ``current`` (this code) and ``baseline``, case by case,
    over ``AB_ROUNDS`` short rounds each, alternating which side goes first and taking
    each side's interpreters in turn: one interpreter's luck (where its memory landed,
    its hash seed) moves a login by ~10 %, several even it out."""
    rows: list[BaselineRow] = []
    short = max(0.05, seconds / 4)
    for name in CASES:
        if not all(name in side.cases for side in (*current, *baseline)):
            continue
        now: list[float] = []
        before: list[float] = []
        for i in range(AB_ROUNDS):
            sides = [(now, current[i % len(current)]),
                     (before, baseline[i % len(baseline)])]
            for rates, side in sides if i % 2 == 0 else reversed(sides):
                rates.append(side.rate(name, short))
        us_now, us_before = 1e6 / statistics.median(now), 1e6 / statistics.median(before)
        rows.append({"case": name, "us_now": round(us_now, 3),
                     "us_before": round(us_before, 3),
                     "change": round(us_now / us_before - 1, 3)})
    return {"dir": str(baseline[0].folder), "authtoken_file": baseline[0].authtoken_file,
            "interpreters": len(baseline), "rounds": AB_ROUNDS,
            "seconds_per_round": short, "rows": rows, "skipped": skipped}


if __name__ == "__main__":
    sys.exit(serve())
