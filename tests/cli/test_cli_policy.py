"""The policy of the environment on the command line (``AUTHTOKEN_MAX_LIFETIME``,
``AUTHTOKEN_REQUIRE_EXPIRY``, ``AUTHTOKEN_MAX_TOKENS_PER_USER``), and tokens for jobs
through real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.cli import SECRET_KEY, TOKEN_RE, Cli, Result

from authtoken import AuthToken, Policy, open_security
from authtoken.testing import FakeClock

POLICY_VARIABLES = ("AUTHTOKEN_MAX_LIFETIME", "AUTHTOKEN_REQUIRE_EXPIRY",
                    "AUTHTOKEN_MAX_TOKENS_PER_USER")
HEAVY = ("sqlalchemy", "sqlmodel", "alembic")
A_TOKEN = "atk_" + "q" * 16 + "." + "S" * 43 + "." + "T" * 43


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file; no policy until a test sets one."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    for name in POLICY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


def at(text: object) -> datetime:
    assert isinstance(text, str)
    return datetime.fromisoformat(text)


def refused(result: Result, error: str) -> None:
    """Exit 1, ``error: message`` alone on stderr, nothing on stdout."""
    assert result.code == 1, result
    assert result.out == ""
    assert result.err.startswith(f"{error}: "), result.err
    assert result.err.count("\n") == 1


def keys(cli: Cli) -> list[str]:
    listed = cli("--json", "list", "--all").json()
    assert isinstance(listed, dict)
    return [str(t["key"]) for t in listed["tokens"]]


# -- the rules -------------------------------------------------------------------------------
def test_max_lifetime_caps_the_default_and_refuses_longer(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``AUTHTOKEN_MAX_LIFETIME=1d`` a token expires in a day by default, and a
    longer expiry or max-lifetime is ``PolicyViolation`` naming the rule; nothing is
    stored then."""
    monkeypatch.setenv("AUTHTOKEN_MAX_LIFETIME", "1d")
    view = cli("--json", "authorize", "--user", "7", "--scope", "a").json()
    assert isinstance(view, dict)
    assert at(view["expires"]) - at(view["created_at"]) == timedelta(days=1)
    longer = cli("authorize", "--user", "7", "--scope", "a", "--expires", "2d")
    refused(longer, "PolicyViolation")
    assert "max_lifetime is 1d" in longer.err
    renewable = cli("authorize", "--user", "7", "--scope", "a", "--expires", "1h",
                    "--max-lifetime", "2d")
    refused(renewable, "PolicyViolation")
    never = cli("update", str(view["key"]), "--expires", "never")
    refused(never, "PolicyViolation")
    assert keys(cli) == [view["key"]]


def test_max_lifetime_stops_a_renewal(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal under the policy stops at ``created_at`` plus the policy's lifetime,
    however long the token's own max-lifetime."""
    then = datetime.now(timezone.utc) - timedelta(days=10)
    with open_security(cli.url, secret_keys=SECRET_KEY, clock=FakeClock(then),
                       policy=Policy()) as security:
        token = AuthToken("a", expires="11d", max_lifetime="60d")
        security.authorize_token(token, user=7)
    assert token.key is not None and token.created_at is not None
    monkeypatch.setenv("AUTHTOKEN_MAX_LIFETIME", "12d")
    renewed = cli("--json", "renew", token.key, "--by", "30d").json()
    assert isinstance(renewed, dict)
    assert at(renewed["expires"]) == token.created_at + timedelta(days=12)


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_require_expiry_refuses_never(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                      value: str) -> None:
    """``AUTHTOKEN_REQUIRE_EXPIRY`` refuses ``--expires never`` on authorize and
    update, as ``PolicyViolation`` (a JSON error with ``--json``)."""
    monkeypatch.setenv("AUTHTOKEN_REQUIRE_EXPIRY", value)
    refused(cli("authorize", "--user", "7", "--scope", "a", "--expires", "never"),
            "PolicyViolation")
    as_json = cli("--json", "authorize", "--user", "7", "--scope", "a", "--expires", "never")
    assert as_json.code == 1 and as_json.out == ""
    assert json.loads(as_json.err)["error"] == "PolicyViolation"
    key = cli("--json", "authorize", "--user", "7", "--scope", "a").json()
    assert isinstance(key, dict)
    refused(cli("update", str(key["key"]), "--expires", "never"), "PolicyViolation")
    assert len(keys(cli)) == 1


@pytest.mark.parametrize("value", ["0", "false", "off", ""])
def test_a_policy_that_limits_nothing_changes_nothing(
        cli: Cli, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """``AUTHTOKEN_REQUIRE_EXPIRY=0`` (or empty) allows tokens that never expire."""
    monkeypatch.setenv("AUTHTOKEN_REQUIRE_EXPIRY", value)
    result = cli("authorize", "--user", "7", "--scope", "a", "--expires", "never")
    assert result.code == 0, result.err


def test_max_tokens_per_user(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``AUTHTOKEN_MAX_TOKENS_PER_USER=2``: a user's third live token is refused; other
    users are not counted, and a revoked token frees its place."""
    monkeypatch.setenv("AUTHTOKEN_MAX_TOKENS_PER_USER", "2")
    first = cli.authorize("7")
    cli.authorize("7")
    third = cli("authorize", "--user", "7", "--scope", "a")
    refused(third, "PolicyViolation")
    assert "max_tokens_per_user" in third.err
    assert cli("authorize", "--user", "8", "--scope", "a").code == 0
    assert cli("revoke", first[4:20]).code == 0
    assert cli("authorize", "--user", "7", "--scope", "a").code == 0
    assert len(keys(cli)) == 4


# -- a policy that does not read ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHTOKEN_MAX_LIFETIME", "soon"),
        ("AUTHTOKEN_MAX_LIFETIME", "0d"),
        ("AUTHTOKEN_MAX_LIFETIME", "2030-01-01"),
        ("AUTHTOKEN_MAX_LIFETIME", "99999999999d"),
        ("AUTHTOKEN_MAX_LIFETIME", A_TOKEN),
        ("AUTHTOKEN_REQUIRE_EXPIRY", "maybe"),
        ("AUTHTOKEN_MAX_TOKENS_PER_USER", "0"),
        ("AUTHTOKEN_MAX_TOKENS_PER_USER", "-1"),
        ("AUTHTOKEN_MAX_TOKENS_PER_USER", "lots"),
        ("AUTHTOKEN_MAX_TOKENS_PER_USER", "\uff15"),
    ],
)
@pytest.mark.parametrize("command", [("list",), ("authorize", "--user", "7", "--scope", "a"),
                                     ("login",), ("renew", "a" * 16)])
def test_a_malformed_policy_variable_exits_1_naming_it(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        name: str, value: str, command: tuple[str, ...]) -> None:
    """A policy variable that does not read stops every command that opens the
    database, before it is opened: exit 1, ``InvalidArgument`` naming the variable."""
    monkeypatch.setenv(name, value)
    result = cli(*command, stdin=A_TOKEN)
    refused(result, "InvalidArgument")
    assert name in result.err
    assert "S" * 43 not in result.err and "T" * 43 not in result.err
    assert not (tmp_path / "t.db").exists()


def test_a_malformed_policy_is_a_json_error_with_json(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--json`` the refusal is one JSON line naming the variable."""
    monkeypatch.setenv("AUTHTOKEN_MAX_LIFETIME", "soon")
    result = cli("--json", "list")
    assert (result.code, result.out) == (1, "")
    error = json.loads(result.err)
    assert error["error"] == "InvalidArgument"
    assert "AUTHTOKEN_MAX_LIFETIME" in error["message"]


def test_the_throwaway_demo_runs_under_no_policy(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``--database`` the demo's temporary database is under no policy, even a
    malformed one; with ``--database`` the environment's policy applies."""
    monkeypatch.setenv("AUTHTOKEN_MAX_TOKENS_PER_USER", "1")
    monkeypatch.setenv("AUTHTOKEN_MAX_LIFETIME", "1h")
    assert cli.raw("demo").code == 0
    capped = cli("demo")  # the narration has begun on stdout when the refusal comes
    assert capped.code == 1 and capped.err.startswith("PolicyViolation: ")
    monkeypatch.setenv("AUTHTOKEN_MAX_LIFETIME", "soon")
    assert cli.raw("demo").code == 0
    given = cli("demo")
    refused(given, "InvalidArgument")
    assert "AUTHTOKEN_MAX_LIFETIME" in given.err


def test_help_names_the_policy_variables(cli: Cli) -> None:
    """``authtoken --help`` lists the policy variables; ``renew --help`` its options."""
    top = cli.raw("--help")
    assert top.code == 0
    assert all(name in top.out for name in POLICY_VARIABLES)
    renew = cli.raw("renew", "--help")
    assert renew.code == 0
    assert "--by" in renew.out and "--token" in renew.out


# -- real processes --------------------------------------------------------------------------
def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHTOKEN_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "xdg"), PYTHONUTF8="1",
               AUTHTOKEN_SECRET_KEYS=SECRET_KEY, **extra)
    return env


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "authtoken", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.slow
def test_process_one_time_token_renewed_and_spent(tmp_path: Path) -> None:
    """Real processes: a one-time renewable token is renewed by its string on standard
    input, logs in once, then is refused; no output holds the string."""
    env = _env(tmp_path, AUTHTOKEN_DATABASE_URL=f"sqlite:///{tmp_path}/p.db",
               AUTHTOKEN_MAX_LIFETIME="90d")
    made = _run(env, "authorize", "--user", "7", "--scope", "a", "--max-uses", "1",
                "--expires", "1h", "--max-lifetime", "7d")
    assert made.returncode == 0, made.stderr
    string = made.stdout.strip()
    assert TOKEN_RE.fullmatch(string)
    renewed = _run(env, "--json", "renew", "--token", "--by", "1d", stdin=string + "\n")
    assert renewed.returncode == 0, renewed.stderr
    assert set(json.loads(renewed.stdout)) == {"key", "expires", "renewable_until"}
    login = _run(env, "--json", "login", stdin=string)
    assert login.returncode == 0, login.stderr
    assert set(json.loads(login.stdout)) == {"user", "token_key", "scopes", "data",
                                             "expires"}
    spent = _run(env, "login", stdin=string)
    assert spent.returncode == 1
    assert spent.stderr.startswith("TokenExhausted: ")
    shown = _run(env, "show", string[4:20])
    assert "max_uses:     1 (0 left)" in shown.stdout
    for result in (renewed, login, spent, shown):
        assert string not in result.stdout + result.stderr


@pytest.mark.slow
def test_process_refuses_a_token_string_for_every_new_option(tmp_path: Path) -> None:
    """A real process refuses a token string as ``renew``'s KEY, ``--by``, ``--run``,
    ``--max-uses`` or ``--max-lifetime``: exit 2, never echoed."""
    env = _env(tmp_path, AUTHTOKEN_DATABASE_URL=f"sqlite:///{tmp_path}/p.db")
    string = _run(env, "authorize", "--user", "7", "--scope", "a").stdout.strip()
    assert TOKEN_RE.fullmatch(string)
    for args in (["renew", string], ["renew", "--token", "--by", string],
                 ["list", "--run", string], ["list", f"--run=job {string}"],
                 ["authorize", "--user", "7", "--scope", "a", "--max-uses", string],
                 ["update", string[4:20], f"--max-lifetime={string}"]):
        result = _run(env, *args)
        assert result.returncode == 2, args
        assert string not in result.stdout + result.stderr
        assert string.split(".")[1] not in result.stderr


def test_process_login_of_a_limited_token_under_a_policy_is_lean(tmp_path: Path) -> None:
    """``authtoken login`` of a one-time token, with a policy in the environment, still
    starts without SQLAlchemy, and spends the use."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    with open_security(url, secret_keys=SECRET_KEY, policy=Policy()) as security:
        string = security.authorize_token(
            AuthToken("a", expires="1h", max_uses=1, max_lifetime="1d"), user=7)
    (tmp_path / "token").write_text(string)
    code = f"""
import contextlib, io, json, sys
sys.stdin = open("token")
from authtoken._cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["--database", {url!r}, "login"])
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        check=False, cwd=tmp_path,
        env={"AUTHTOKEN_SECRET_KEYS": SECRET_KEY, "PATH": "", "HOME": str(tmp_path),
             "AUTHTOKEN_MAX_LIFETIME": "30d", "AUTHTOKEN_REQUIRE_EXPIRY": "1",
             "AUTHTOKEN_MAX_TOKENS_PER_USER": "5"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": 0, "heavy": []}
    with open_security(url, secret_keys=SECRET_KEY, policy=Policy()) as security:
        assert security.restore_auth_token(string).use_count == 1
