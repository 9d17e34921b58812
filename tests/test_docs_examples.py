"""The programs in docs/examples run to completion and never print a token string."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
TOKEN_STRING = re.compile(r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}")
TIMEOUT = 120

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
        "sales-export: ran as 'alice'",
        "crm-sync: ran as 'bob'",
        "crm-sync: refused, TokenRevoked",
        "sales-export: refused, TokenExpired",
        "stock-count: InvalidToken",
        "sales-export: token verifies with the new key alone",
        "use_count=",
        "done",
    ),
}


def example_files() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py"))


def run_example(name: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHTOKEN_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIMEOUT, check=False,
    )


def test_every_example_has_expected_phrases() -> None:
    """Each program in docs/examples is listed here with the phrases it must print."""
    assert example_files() == sorted(PHRASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", example_files())
def test_example_runs(name: str, tmp_path: Path) -> None:
    """The example exits 0, says what it did, prints no token string and leaves home alone."""
    done = run_example(name, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for phrase in PHRASES.get(name, ()):
        assert phrase in done.stdout, f"{name} did not print {phrase!r}:\n{output}"
    assert TOKEN_STRING.search(output) is None, f"{name} printed a token string"
    assert not (tmp_path / "data" / "authtoken").exists(), "wrote to the default data dir"
    assert not (tmp_path / ".local").exists(), "wrote under the home directory"


# -- the issuer examples: they talk to test servers on 127.0.0.1 --------------------------
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
JWT_STRING = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spatium_job.py", "oidc_lessons.py"])
def test_issuer_example_prints_no_jwt(name: str, tmp_path: Path) -> None:
    """The issuer example exits 0, says what happened and prints no JWT, whole or in part."""
    done = run_example(name, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for phrase in PHRASES[name]:
        assert phrase in done.stdout, f"{name} did not print {phrase!r}:\n{output}"
    assert JWT_STRING.search(output) is None, f"{name} printed a JWT"


# -- the admin API example: a real uvicorn server on 127.0.0.1 ---------------------------------
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
