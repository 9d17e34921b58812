"""The benchmarks still run: each program, briefly, on a real PostgreSQL server.

They assert nothing about speed (tests never do); this only keeps them from rotting,
and checks that every row the README quotes is still measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.pgcluster import PASSWORD

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_login_benchmark_measures_every_row(pg_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "login.py"), "--seconds", "0.05",
         "--processes", "2", "--threads", "2", "--json", "--postgres", pg_url],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rates = {row["case"]: row["calls_per_s"] for row in report["cases"]}
    assert {
        "PyJWT HS256 jwt.decode", "SQLite login, no script binding",
        "PostgreSQL login, no script binding", "PostgreSQL login, bound to script 42",
        "PostgreSQL bare SELECT, libpq polled wait (context)",
        "memory login, audit trail off (context)",
    } <= rates.keys()
    assert all(rate > 0 for rate in rates.values())
    assert set(report["audit_cost"]) == {"memory", "SQLite"}
    assert [(c["backend"], c["error"]) for c in report["concurrent"]] == [
        ("SQLite", None), ("PostgreSQL", None)]
    assert report["postgres"]["skipped"] is None
    assert set(report["threads"]["logins_per_s"]) == {"SQLite", "PostgreSQL"}
    assert all(rate > 0 for rate in report["threads"]["logins_per_s"].values())
    assert PASSWORD not in done.stdout + done.stderr
