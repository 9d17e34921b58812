"""The programs in docs/examples run to completion and never print a token string.

Each example's docstring names the one ``pip install`` it needs (``authtoken`` alone, or
with extras).  The slow test takes that at its word: it builds a wheel of this checkout
once, installs it with exactly those extras into a fresh virtual environment (one per
distinct set of extras, so three in all), and runs the example there.  An example that
imports anything its extras do not bring fails, as it would for a reader.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_broker_docs import PHRASES as BROKER_PAGE_PHRASES
from test_broker_docs import PROGRAM as BROKER_PAGE_PROGRAM
from test_integrations_scheduler_docs import PHRASES as SCHEDULER_PAGE_PHRASES
from test_integrations_service_docs import PHRASES as SERVICE_PAGE_PHRASES
from test_integrations_service_docs import PROGRAM as SERVICE_PAGE_PROGRAM
from test_integrations_web_docs import PHRASES as WEB_PAGE_PHRASES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
# A token string, with the checksum strings carry now or without it (earlier ones).
TOKEN_STRING = re.compile(
    r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}(?:\.[0-9A-Za-z]{6})?")
JWT_STRING = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.")
TIMEOUT = 120
INSTALL_TIMEOUT = 600
# ``pip install authtoken`` or ``pip install "authtoken[a,b]"``, as the docstrings say it.
INSTALL = re.compile(r'pip install (?:authtoken\b(?!\[)|"authtoken\[(?P<extras>[a-z0-9,-]+)\]")')
# The environment pytest started in: pip below uses the real home's cache, whatever
# HOME the per-test fixtures set.
OUTER_ENV = dict(os.environ)

# What each example must say: one phrase per step that matters.
PHRASES: dict[str, tuple[str, ...]] = {
    "quickstart.py": (
        "authorized token",
        "login as script 42: ok, user='alice'",
        "login as script 43: refused, ScriptNotAuthorized",
        "login with a tampered string: refused, InvalidToken",
        "login after the update sees data=",
        "login after revocation: refused, TokenRevoked",
        "use_count=2",
        "done",
    ),
    "script_runner.py": (
        "[export 42] logged in as 'alice'",
        "[export 42] derived child token",
        "[export 42] a wider child is refused: PermissionDenied",
        "[worker 43] logged in as 'alice'",
        "[worker 43] cannot export",
        "[cleanup 44] login refused: ScriptNotAuthorized",
        "child ",
        "revoked=True",
        "[export 42] login refused: TokenRevoked",
        "[launcher] done",
    ),
    "scheduler.py": (
        "refused, PolicyViolation (rule require_expiry)",
        "sales-export: standing token renewed until",
        "sales-export: ran as 'alice' with {'report': 'sales'}, run_id sales-export-20300101",
        "chain: standing token of sales-export > run sales-export-20300101",
        "crm-sync: ran as 'bob'",
        "its run token revoked: True",
        "tokens of run crm-sync-20300102: bob use_count=1/3 revoked=True",
        "authorize ok run_id=crm-sync-20300102, login ok run_id=crm-sync-20300102, revoke ok",
        "crm-sync: refused, TokenRevoked",
        "stock-count: refused, TokenExpired",
        "renewals stop there",
        "delivery 1: worker logged in as 'carol'",
        "an unlimited child of it: refused, PermissionDenied",
        "delivery 2: refused, TokenExhausted",
        "sales-export: InvalidToken",
        "stock-count: token verifies with the new key alone",
        "use_count=",
        "done",
    ),
}
PHRASES["spatium_job.py"] = (
    "credentials suffice: True",
    "session established for account",
    "call 1: HTTP 200",
    "the session refreshed the token",
    "2 refresh requests, API answers [200]",
    "refresh failed with HTTP 503: kept the valid token",
    "call during the outage: HTTP 200",
    "the next attempt succeeded",
    "refresh refused: SessionExpired (status=401, code=INVALID_REFRESH_TOKEN",
    "keeps raising SessionExpired until establish()",
    "session re-established after a new login",
    "call after re-login: HTTP 200",
    "backend refresh token refused: re-issued by key",
    "backend call after re-issue: HTTP 200",
    "done",
)
PHRASES["oidc_lessons.py"] = (
    "client 'space'",
    "read 4: HTTP 200",
    "password grant 1, refresh grant",
    "API answers [200]",
    "the auth refreshed and retried: HTTP 200",
    "JWTVerifier: sub='alice'",
    "wrong password: IssuerError (status=400, code=invalid_grant)",
    "async: lessons [1, 2, 3], statuses [200, 200, 200]",
    "service header: ['bsauth']",
    "bsauth whoami: ok",
    "done",
)
PHRASES["admin_api.py"] = (
    "(HTTP 201), a child of",
    "the answer held its string once: True",
    "a wider child is refused: HTTP 403, application/problem+json",
    "alice listing bob's tokens: HTTP 403",
    "ops lists alice's tokens: 2 tokens",
    "HTTP 204",
    "a guessed token: HTTP 401",
    "authorize refused token=None actor=token:",
    "reason=PermissionDenied",
    "failed API authentications on the trail: 1 (actor address:127.0.0.1)",
    "done",
)
# The integration pages' programs: their pages' tests say what each must print.
for _program, _phrases in [*WEB_PAGE_PHRASES.items(), *SCHEDULER_PAGE_PHRASES.items(),
                           (SERVICE_PAGE_PROGRAM, SERVICE_PAGE_PHRASES),
                           (BROKER_PAGE_PROGRAM, BROKER_PAGE_PHRASES)]:
    PHRASES[Path(_program).name] = _phrases


def example_files() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py"))


def declared_extras(name: str) -> tuple[str, ...]:
    """The extras the example's docstring says to install (``()``: none), in order."""
    doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text(encoding="utf-8"))) or ""
    installs = list(INSTALL.finditer(" ".join(doc.split())))
    assert len(installs) == 1, f"{name}: the docstring must name one pip install of authtoken"
    extras = installs[0]["extras"]
    return tuple(extras.split(",")) if extras else ()


def test_every_example_has_expected_phrases() -> None:
    """Each program in docs/examples is listed here with the phrases it must print."""
    assert example_files() == sorted(PHRASES)


def test_every_example_names_extras_that_exist() -> None:
    """Each example's docstring names one install, of extras that pyproject.toml declares."""
    tomllib = pytest.importorskip("tomllib")
    with (ROOT / "pyproject.toml").open("rb") as file:
        declared = set(tomllib.load(file)["project"]["optional-dependencies"])
    for name in example_files():
        unknown = set(declared_extras(name)) - declared
        assert not unknown, f"{name} names extras pyproject.toml lacks: {sorted(unknown)}"


def test_index_lists_every_example() -> None:
    """docs/index.md lists every example with the install its docstring names, and shows
    the command that runs it."""
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for name in example_files():
        rows = [line for line in index.splitlines()
                if line.startswith("|") and f"(examples/{name})" in line]
        assert len(rows) == 1, f"docs/index.md: no table row for {name}"
        installs = [tuple(m["extras"].split(",")) if m["extras"] else ()
                    for m in INSTALL.finditer(rows[0])]
        assert installs == [declared_extras(name)], f"docs/index.md: wrong install for {name}"
        assert f"python docs/examples/{name}" in index, f"docs/index.md: no command for {name}"


# -- running each example where only its extras are installed ----------------------------
def pip(*args: str, python: Path | None = None) -> None:
    """Run this interpreter's pip (on ``python``'s environment, if given); fail loudly."""
    env = {k: v for k, v in OUTER_ENV.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    target = ("--python", str(python)) if python is not None else ()
    done = subprocess.run(
        [sys.executable, "-m", "pip", *target, *args, "--quiet", "--disable-pip-version-check"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=INSTALL_TIMEOUT, check=False,
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built from a copy so the build leaves the tree alone."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "authtoken", source / "authtoken",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "--wheel-dir", str(out), str(source))
    (built,) = out.glob("authtoken-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_with(wheel: Path, tmp_path_factory: pytest.TempPathFactory,
              ) -> Callable[[tuple[str, ...]], Path]:
    """``venv_with(extras)``: the Python of a fresh venv holding ``authtoken[extras]`` and
    nothing else; one venv per set of extras, made on first use."""
    made: dict[tuple[str, ...], Path] = {}

    def make(extras: tuple[str, ...]) -> Path:
        if extras not in made:
            folder = tmp_path_factory.mktemp("venv-" + ("-".join(extras) or "base"))
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)],
                           check=True, timeout=TIMEOUT)
            python = folder / "bin" / "python"
            requirement = f"authtoken[{','.join(extras)}]" if extras else "authtoken"
            pip("install", f"{requirement} @ {wheel.as_uri()}", python=python)
            # The venv must not see this one's packages, or the check proves nothing.
            leak = subprocess.run([str(python), "-c", "import pytest"],
                                  capture_output=True, timeout=TIMEOUT, check=False)
            assert leak.returncode != 0, "the fresh venv can import pytest"
            made[extras] = python
        return made[extras]

    return make


def run_example(name: str, python: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in OUTER_ENV.items()
           if not k.startswith("AUTHTOKEN_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [str(python), str(EXAMPLES / name)],
        env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIMEOUT, check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", example_files())
def test_example_runs_with_only_its_extras(
        name: str, venv_with: Callable[[tuple[str, ...]], Path], tmp_path: Path) -> None:
    """The example, run where only its declared install is, exits 0, says what it did,
    prints no token string or JWT and leaves home alone."""
    python = venv_with(declared_extras(name))
    done = run_example(name, python, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for phrase in PHRASES[name]:
        assert phrase in done.stdout, f"{name} did not print {phrase!r}:\n{output}"
    assert TOKEN_STRING.search(output) is None, f"{name} printed a token string"
    assert JWT_STRING.search(output) is None, f"{name} printed a JWT"
    assert not (tmp_path / "data" / "authtoken").exists(), "wrote to the default data dir"
    assert not (tmp_path / ".local").exists(), "wrote under the home directory"
