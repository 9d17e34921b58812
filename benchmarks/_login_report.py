"""``login.py``'s figures: the report (what ``--json`` prints) and the table.

``build(...)`` turns the measured cases, the concurrent runs and the audit cost into a
``Report``, with the targets judged; ``show(report)`` prints it as text.  The targets
are the issue's: a SQLite login at least as fast as PyJWT's decode, a PostgreSQL login
at 5,000/s per process, the audit trail under 20 % of a login.  A use-limited login
has no target: its extra cost over an unlimited login of the same store is reported
(``limited_cost``), since each spends its use in storage with one conditional UPDATE.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Protocol, TypedDict

import jwt
from _login_baseline import BaselineReport
from _login_concurrent import Concurrent

import authtoken

__all__ = ["AUDIT_TARGET", "PG_LOGINS", "PG_TARGET", "REFERENCE", "Measured", "PostgresInfo",
           "Report", "build", "limited_name", "show", "unlimited_name"]

PG_TARGET = 5_000.0  # logins/s per process over loopback (the target)
AUDIT_TARGET = 0.20  # the audit trail may slow a login by less than this (issue 6)
REFERENCE = "PyJWT HS256 jwt.decode"
PG_LOGINS = ("PostgreSQL login, no script binding", "PostgreSQL login, bound to script 42")


def unlimited_name(label: str) -> str:
    """The row of ``label``'s plain login with a token without ``max_uses``."""
    return f"{label} login, no script binding"


def limited_name(label: str) -> str:
    """The row of ``label``'s plain login with a token with ``max_uses``."""
    return f"{label} login, use-limited token (max_uses)"


class Measured(Protocol):
    """A timed case, as ``login.py`` measured it."""

    @property
    def name(self) -> str: ...
    @property
    def best_rate(self) -> float: ...
    @property
    def rounds(self) -> list[float]: ...


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


class LimitedCost(TypedDict):
    unlimited_us: float  # µs per plain login, token without max_uses (best round)
    limited_us: float  # µs per plain login, token with max_uses (best round)
    added_us: float  # the difference: the use spent in storage


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
    limited_cost: dict[str, LimitedCost]
    baseline: BaselineReport | None  # --baseline: the same logins on an earlier checkout


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


def _limited_cost(cases: Sequence[Measured]) -> dict[str, LimitedCost]:
    rates = {c.name: c.best_rate for c in cases}
    costs: dict[str, LimitedCost] = {}
    for label in ("memory", "SQLite", "PostgreSQL"):
        plain, limited = rates.get(unlimited_name(label)), rates.get(limited_name(label))
        if plain and limited:
            costs[label] = {"unlimited_us": round(1e6 / plain, 3),
                            "limited_us": round(1e6 / limited, 3),
                            "added_us": round(1e6 / limited - 1e6 / plain, 3)}
    return costs


def build(cases: Sequence[Measured], concurrent: Sequence[Concurrent],
          audit_cost: dict[str, float], threads: Threads, postgres: PostgresInfo, *,
          seconds: float, rounds: int, processes: int) -> Report:
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
                     and "audit trail off" not in c.name and c.name != limited_name("SQLite")]
    pg_logins = [c for c in cases if c.name in PG_LOGINS]
    pg_concurrent = next((c.best for c in concurrent if c.label == "PostgreSQL"), [])
    return {
        "seconds_per_round": seconds,
        "rounds": rounds,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": _cpus(),
        "authtoken": str(authtoken.__version__),
        "pyjwt": jwt.__version__,
        "postgres": postgres,
        "cases": rows,
        "concurrent": [_concurrent_row(c, processes) for c in concurrent],
        "target_met": all(c.best_rate >= reference for c in sqlite_logins),
        "threads": threads,
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
        "limited_cost": _limited_cost(cases),
        "baseline": None,
    }


def _verdict(met: bool | None) -> str:
    return "met" if met else "NOT met"


def _print_cases(report: Report) -> None:
    rows = report["cases"]
    width = max(len(str(r["case"])) for r in rows)
    print(f"{'case':<{width}}  {'calls/s':>11}  {'µs/call':>9}  {'vs PyJWT':>8}")
    print(f"{'-' * width}  {'-' * 11}  {'-' * 9}  {'-' * 8}")
    for r in rows:
        print(
            f"{r['case']:<{width}}  {r['calls_per_s']:>11,.0f}  {r['us_per_call']:>9.2f}  "
            f"{r['ratio_to_pyjwt']:>7.2f}x"
        )


def _print_concurrent(report: Report) -> None:
    threaded = report["threads"]
    if threaded["logins_per_s"]:
        rates = ", ".join(f"{label} {rate:,.0f}/s"
                          for label, rate in threaded["logins_per_s"].items())
        print()
        print(f"{threaded['threads']} threads of one process logging in at once (one "
              f"Security, each thread its own token and connection), best of "
              f"{report['rounds']} rounds: {rates}")
    concurrent = report["concurrent"]
    if not concurrent:
        return
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


def _print_baseline(report: Report) -> None:
    baseline = report["baseline"]
    if baseline is None:
        return
    print()
    print(f"unlimited logins, this code vs the checkout in {baseline['dir']}, each in "
          f"{baseline['interpreters']} interpreters of its own (median of "
          f"{baseline['rounds']} alternating rounds of {baseline['seconds_per_round']:g} s "
          "each):")
    print()
    width = max((len(r["case"]) for r in baseline["rows"]), default=4)
    print(f"{'case':<{width}}  {'µs now':>9}  {'µs before':>9}  {'change':>7}")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 9}  {'-' * 7}")
    for r in baseline["rows"]:
        print(f"{r['case']:<{width}}  {r['us_now']:>9.2f}  {r['us_before']:>9.2f}  "
              f"{r['change']:>+7.1%}")
    if baseline["skipped"] is not None:
        print(f"(no PostgreSQL rows: {baseline['skipped']})")


def show(report: Report) -> None:
    """Print ``report`` as the table and the verdict lines."""
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
    _print_cases(report)
    _print_concurrent(report)
    _print_baseline(report)
    print()
    limited = ", ".join(f"{label} {cost['limited_us']:.1f} µs ({cost['added_us']:+.1f} µs)"
                        for label, cost in report["limited_cost"].items())
    print(f"a use-limited login, its use spent in storage by one conditional UPDATE "
          f"(vs the same store's unlimited login): {limited}")
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
    figures = " and ".join(f"{r['calls_per_s']:,.0f}" for r in report["cases"]
                           if r["case"] in PG_LOGINS)
    print(f"target ({goal}, one process, both bindings): "
          f"{_verdict(target['single_process_met'])} ({figures}/s)")
    concurrent = report["concurrent"]
    pg_row = next((c for c in concurrent if c["backend"] == "PostgreSQL"), None)
    if pg_row is not None and target["concurrent_per_process_met"] is not None:
        per_process = pg_row["logins_per_s_per_process"] or 0.0
        print(f"        with {pg_row['processes']} processes at once: "
              f"{_verdict(target['concurrent_per_process_met'])} ({per_process:,.0f}/s "
              f"per process on average, {report['cpus']} CPUs shared with the server)")
