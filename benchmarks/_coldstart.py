"""How long a fresh ``authtoken login`` process takes, and what it loads and syncs.

Three commands, run ``runs`` times each in turn (so a slow moment of the machine hits
all three alike), median wall time of each: ``python -c pass`` (the interpreter alone),
``python -c "import authtoken"``, and the ``authtoken`` console script's ``login`` with
the token on standard input and the secret key in ``AUTHTOKEN_SECRET_KEYS`` (never on
the command line).  Then one more login under ``python -X importtime`` to see which
heavy packages that path imports, one under ``strace -f -c`` (when ``strace`` is there
and allowed) to count its ``fsync``/``fdatasync`` calls, and one ``import authtoken``
that counts the modules it adds beyond the interpreter's own.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IMPORT = "python -c 'import authtoken'"
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "pydantic", "httpx", "starlette")
_COUNT_MODULES = (
    "import sys; before = set(sys.modules); import authtoken; "
    "print(sum(1 for m in sys.modules if m not in before and m.split('.')[0] != 'authtoken'))"
)


def _login_command(*flags: str) -> list[str]:
    """The console script (run by ``python`` itself when given interpreter flags)."""
    script = Path(sys.executable).parent / "authtoken"
    if not script.exists():
        return [sys.executable, *flags, "-m", "authtoken"]
    return [sys.executable, *flags, str(script)] if flags else [str(script)]


def _run(command: list[str], env: dict[str, str], stdin: str) -> tuple[float, Any]:
    start = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env,
                          check=False, timeout=60)
    return time.perf_counter() - start, done


def _imported(env: dict[str, str], url: str, token: str) -> dict[str, float]:
    """Heavy top-level packages a login imports, with their cumulative import ms."""
    _, done = _run([*_login_command("-X", "importtime"), "--database", url, "login"],
                   env, token)
    heavy: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s*\d+ \|\s*(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) in HEAVY:
            name, ms = match.group(2), int(match.group(1)) / 1000
            heavy[name] = max(heavy.get(name, 0.0), ms)
    return heavy


def _fsyncs(env: dict[str, str], url: str, token: str) -> int | str:
    """fsync + fdatasync calls of one login, or why they were not counted."""
    strace = shutil.which("strace")
    if strace is None:
        return "skipped: no strace on PATH"
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "strace"
        _, done = _run([strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out),
                        *_login_command(), "--database", url, "login"], env, token)
        if done.returncode != 0 or not out.exists():
            return f"skipped: strace failed ({(done.stderr.strip().splitlines() or ['?'])[-1]})"
        calls = 0
        for line in out.read_text().splitlines():
            fields = line.split()
            if fields and fields[-1] in ("fsync", "fdatasync"):
                calls += int(fields[3])
        return calls


def measure(url: str, secret_key: str, token: str, runs: int) -> dict[str, Any]:
    """The cold-start figures; ``url`` a SQLite URL (no password), ``token`` live."""
    env = {**os.environ, "AUTHTOKEN_SECRET_KEYS": secret_key}
    for name in ("AUTHTOKEN_TOKEN", "AUTHTOKEN_DATABASE_URL"):
        env.pop(name, None)
    commands = {
        "python -c pass": ([sys.executable, "-c", "pass"], ""),
        IMPORT: ([sys.executable, "-c", "import authtoken"], ""),
        "authtoken login": ([*_login_command(), "--database", url, "login"], token),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    errors: list[str] = []
    for _ in range(runs):
        for name, (command, stdin) in commands.items():
            seconds, done = _run(command, env, stdin)
            times[name].append(seconds)
            if done.returncode != 0:
                errors.append(f"{name}: exit {done.returncode}: "
                              f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    counted = subprocess.run([sys.executable, "-c", _COUNT_MODULES], capture_output=True,
                             text=True, env=env, check=False)
    return {
        "runs": runs,
        "import_command": IMPORT,
        "command": " ".join(Path(c).name for c in _login_command()) + " login",
        "median_ms": {name: round(statistics.median(t) * 1000, 1) for name, t in times.items()},
        "errors": errors[:3],
        "heavy_imports_ms": _imported(env, url, token),
        "fsyncs": _fsyncs(env, url, token),
        "import_authtoken_modules": int(counted.stdout) if counted.returncode == 0 else None,
    }
