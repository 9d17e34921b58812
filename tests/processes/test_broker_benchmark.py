"""benchmarks/broker.py still runs: in its tiny ``--quick`` configuration, on a real
PostgreSQL server too.  It asserts the report's shape, never a timing (tests never do):
every case measured, a ratio per store and case, no upstream request while timing, the
target's verdict printed, no secret in the output, and a given database tidied up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from authtoken import open_security

pytestmark = pytest.mark.slow

PROGRAM = Path(__file__).resolve().parents[2] / "benchmarks" / "broker.py"
STORES = ("memory", "SQLite", "PostgreSQL")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROGRAM), "--quick", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_quick_json_reports_every_case_ratio_and_the_target(pg_url: str) -> None:
    done = _run("--json", "--postgres", pg_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    names = [row["case"] for row in report["rows"]]
    assert names == ["PyJWT HS256 jwt.decode", *(
        f"{store} {case}" for store in STORES for case in (
            "login, 1 token in use", "access_token, 1 session",
            "login, 20 of 2,000 tokens in use", "access_token, 20 sessions of 20 links"))]
    assert all(row["us_per_call"] > 0 and row["calls_per_s"] > 0 for row in report["rows"])
    pairs = {(p["store"], p["shape"]): p for p in report["ratios"]}
    assert set(pairs) == {(store, shape) for store in STORES for shape in ("1", "many")}
    for pair in pairs.values():
        assert pair["ratio"] == pytest.approx(pair["access_token_us"] / pair["login_us"],
                                              abs=0.01)
        assert pair["met"] is (pair["ratio"] <= 2)
    assert report["target"]["met"] is all(p["met"] for p in pairs.values())
    assert report["requests_while_timed"] == 0
    assert report["postgres"]["skipped"] is None
    assert report["setup"] == {"links": 20, "tokens": 2000, "seconds": 0.05, "rounds": 1}
    assert "atk_" not in done.stdout + done.stderr
    assert "bench-upstream-password" not in done.stdout + done.stderr
    # a database we were given keeps no usable benchmark token and no link
    with open_security(pg_url, secret_keys="unused-" + "k" * 40) as security:
        repository = security.repository
        assert security.list_auth_tokens(user="broker-bench-0000") == []
        assert repository.get_link("broker-bench-0000", "space") is None  # type: ignore[attr-defined]


def test_quick_text_prints_the_table_and_the_verdict() -> None:
    done = _run("--no-postgres")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "PostgreSQL: skipped (--no-postgres)"
    assert any(line.startswith("SQLite access_token, 20 sessions of 20 links ")
               for line in lines)
    verdicts = [line for line in lines if line.startswith(("memory ", "SQLite "))
                and line.rstrip().endswith("met")]
    assert len(verdicts) == 4
    assert "requests to the upstream while timing: 0" in lines
    assert lines[-1] in ("target: within 2x of a login — met",
                         "target: within 2x of a login — not met")
    assert "atk_" not in done.stdout + done.stderr
