"""The benchmarks still run: each program, briefly, on a real PostgreSQL server.

They assert nothing about speed (tests never do); this only keeps them from rotting,
and checks that every row the README quotes is still measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.pgcluster import PASSWORD

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_login_benchmark_measures_every_row(pg_url: str, tmp_path: Path) -> None:
    """login.py in a tiny mode measures every row the README quotes, the use-limited
    logins with their cost beside the unlimited ones, the unlimited ones against a
    baseline checkout run by a second interpreter, and prints no secret."""
    checkout = tmp_path / "checkout"  # the baseline: a copy, so its import is told apart
    shutil.copytree(BENCHMARKS.parent / "authtoken", checkout / "authtoken",
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "login.py"), "--seconds", "0.05",
         "--processes", "2", "--threads", "2", "--json", "--postgres", pg_url,
         "--baseline", str(checkout)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rates = {row["case"]: row["calls_per_s"] for row in report["cases"]}
    stores = ("memory", "SQLite", "PostgreSQL")
    assert {
        "PyJWT HS256 jwt.decode", "SQLite login, no script binding",
        "PostgreSQL login, no script binding", "PostgreSQL login, bound to script 42",
        "PostgreSQL bare SELECT, libpq polled wait (context)",
        "memory login, audit trail off (context)",
        *(f"{store} login, {case}" for store in stores
          for case in ("no script binding", "bound to script 42",
                       "use-limited token (max_uses)")),
    } <= rates.keys()
    assert all(rate > 0 for rate in rates.values())
    # the limited rows are not SQLite's target rows, and their cost is reported per store
    assert set(report["limited_cost"]) == set(stores)
    for store, cost in report["limited_cost"].items():
        assert cost["limited_us"] == pytest.approx(
            1e6 / rates[f"{store} login, use-limited token (max_uses)"], rel=1e-3)
        assert cost["added_us"] == pytest.approx(
            cost["limited_us"] - cost["unlimited_us"], abs=1e-2)
    assert set(report["audit_cost"]) == {"memory", "SQLite"}
    assert [(c["backend"], c["error"]) for c in report["concurrent"]] == [
        ("SQLite", None), ("PostgreSQL", None)]
    assert report["postgres"]["skipped"] is None
    assert set(report["threads"]["logins_per_s"]) == {"SQLite", "PostgreSQL"}
    assert all(rate > 0 for rate in report["threads"]["logins_per_s"].values())
    baseline = report["baseline"]
    assert Path(baseline["authtoken_file"]).is_relative_to(checkout)
    assert [row["case"] for row in baseline["rows"]] == [
        f"{store} login, {binding}" for store in ("memory", "SQLite")
        for binding in ("no script binding", "bound to script 42")]
    assert all(row["us_now"] > 0 and row["us_before"] > 0 for row in baseline["rows"])
    # someone else's server (--postgres) gets no scratch database of the baseline's
    assert baseline["skipped"] == "a baseline gets PostgreSQL only on a throwaway cluster"
    assert PASSWORD not in done.stdout + done.stderr
    assert "atk_" not in done.stdout + done.stderr


@pytest.mark.parametrize("given", ["missing", "empty"])
def test_login_benchmark_refuses_a_baseline_without_the_package(
        given: str, tmp_path: Path) -> None:
    """--baseline naming no checkout is a usage error (exit 2), before anything runs."""
    folder = tmp_path / given
    if given == "empty":
        folder.mkdir()
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "login.py"), "--baseline", str(folder)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "--baseline must be a checkout's root" in done.stderr
    assert done.stdout == ""


def test_scale_benchmark_reports_every_row_check_and_target(pg_url: str) -> None:
    """scale.py at tiny sizes reports every row, check and target, and no secret."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "scale.py"), "--tokens", "3000", "--in-use", "64",
         "--history", "5000", "--pg-history", "5000", "--seconds", "0.05", "--workers", "2",
         "--revocations", "10", "--cli-runs", "1", "--pyjwt-old", sys.executable,
         "--json", "--postgres", pg_url],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rates = {row["case"]: row["calls_per_s"] for row in report["rows"]}
    logins = {f"{store} login, {count} in use, {binding}"
              for store in ("memory", "SQLite", "PostgreSQL")
              for count in ("1", "64 of 3,000") for binding in ("no binding", "bound")}
    old = f"PyJWT {report['versions']['pyjwt_old']} HS256 jwt.decode (subprocess)"
    assert set(rates) == {"PyJWT HS256 jwt.decode", old} | logins
    assert all(rate > 0 for rate in rates.values())
    assert [e["store"] for e in report["exactness"]] == [
        "memory", "SQLite", "PostgreSQL", "SQLite, 2 processes", "PostgreSQL, 2 processes"]
    assert all(e["logins"] > 0 and e["events_checked_tokens"] > 0
               for e in report["exactness"])
    assert [(r["store"], r.get("error"), r["loaded"]["count"]) for r in report["revocation"]] \
        == [("SQLite", None, 10), ("PostgreSQL", None, 10)]
    assert [h["store"] for h in report["history"]] == ["memory", "SQLite", "PostgreSQL"]
    assert report["cli"]["errors"] == []
    verdicts = {t["id"]: t["verdict"] for t in report["targets"]}
    assert set(verdicts) == {
        "sqlite_vs_pyjwt", "sqlite_vs_pyjwt_old", "memory_vs_pyjwt", "postgres_rate",
        "usage_exact", "events_exact", "revocation_immediate", "revocation_p99_sqlite",
        "revocation_p99_postgresql", "revocation_no_failure", "audit_user_stays_fast",
        "audit_token_stays_fast", "audit_all_stays_fast", "list_user_tokens_stays_fast",
        "revoke_user_tokens_stays_fast", "memory_bounded", "cli_cold_start", "cli_no_orm",
        "import_light"}
    # this interpreter's PyJWT is not 2.10.1: that one target says so; the rest are judged
    assert verdicts.pop("sqlite_vs_pyjwt_old").startswith("skipped: ")
    assert set(verdicts.values()) <= {"met", "not met"}
    output = done.stdout + done.stderr
    assert "atk_" not in output
    assert PASSWORD not in output


def test_login_report_judges_the_target_without_the_limited_rows() -> None:
    """A use-limited SQLite login slower than PyJWT leaves the SQLite target to the
    unlimited rows, and its cost is the difference of µs per login, store by store."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _login_report import REFERENCE, build, limited_name, unlimited_name
    finally:
        sys.path.remove(str(BENCHMARKS))

    class Case:
        def __init__(self, name: str, rate: float) -> None:
            self.name, self.best_rate, self.rounds = name, rate, [rate]

    cases = [Case(REFERENCE, 20_000.0), Case(unlimited_name("SQLite"), 50_000.0),
             Case("SQLite login, bound to script 42", 40_000.0),
             Case(limited_name("SQLite"), 10_000.0),
             Case(unlimited_name("memory"), 100_000.0), Case(limited_name("memory"), 50_000.0)]
    postgres = {"origin": None, "url": None, "server_version": None, "skipped": "none here"}
    report = build(cases, [], {}, {"threads": 0, "logins_per_s": {}}, postgres,  # type: ignore[arg-type]
                   seconds=1.0, rounds=1, processes=0)
    assert report["target_met"] is True
    assert report["limited_cost"] == {
        "memory": {"unlimited_us": 10.0, "limited_us": 20.0, "added_us": 10.0},
        "SQLite": {"unlimited_us": 20.0, "limited_us": 100.0, "added_us": 80.0},
    }
    cases[2].best_rate = 19_999.0  # an unlimited row below PyJWT: not met
    report = build(cases, [], {}, {"threads": 0, "logins_per_s": {}}, postgres,  # type: ignore[arg-type]
                   seconds=1.0, rounds=1, processes=0)
    assert report["target_met"] is False
