"""The command line at its edges: a failure stays one line on stderr, a refused login's
hint is a command line that works, hostile arguments reach no terminal raw,
help says what the command really does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli import SECRET_KEY, Cli

from authtoken._cli import main


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, keys from AUTHTOKEN_SECRET_KEYS."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


# -- a failure is one line on stderr, warnings included ----------------------------------------
@pytest.mark.parametrize(("args", "error"), [
    (("authorize", "--user", "7", "--scope", "a,b vfs:ikey?x"), "ScopeError"),
    (("authorize", "--user", "", "--scope", "VFS:ikey?1"), "InvalidArgument"),
    (("update", "cccccccccccccccc", "--scope", "a,b"), "TokenNotFound"),
])
def test_a_failed_command_writes_its_error_alone(
    cli: Cli, args: tuple[str, ...], error: str,
) -> None:
    """Scope warnings are for a command that succeeds: a failure is the error's one line."""
    result = cli(*args)
    assert result.code == 1 and result.out == ""
    assert result.err.startswith(f"{error}: ") and result.err.count("\n") == 1
    as_json = cli("--json", *args)
    assert as_json.code == 1 and as_json.out == ""
    assert as_json.err.count("\n") == 1
    assert json.loads(as_json.err)["error"] == error


def test_warnings_still_follow_a_successful_update(cli: Cli) -> None:
    """``update`` with a slip in its scope succeeds and warns, on stderr only."""
    key = cli.authorize("7")[4:20]
    result = cli("--json", "update", key, "--scope", "a,b")
    assert result.code == 0, result.err
    assert isinstance(result.json(), dict)
    assert [set(json.loads(line)) for line in result.err.splitlines()] == [{"warning"}]


# -- the refused login's hint is a command line that works --------------------------------------
def test_hint_for_a_path_starting_with_a_dash_parses(cli: Cli) -> None:
    """A path that starts with ``-`` is suggested as ``--script-path=-P``, which parses."""
    token = cli("authorize", "--user", "7", "--bind-path=-job.py").out.strip()
    refused = cli("login", stdin=token)
    assert refused.code == 1
    assert "--script-path=-job.py" in refused.err
    assert cli("login", "--script-path=-job.py", stdin=token).code == 0


def test_hint_for_a_path_with_a_newline_is_pasteable(cli: Cli) -> None:
    """A path with a control character is suggested in ``$'...'`` quoting, on one line."""
    path = "/jobs/a\nb's.py"
    token = cli("authorize", "--user", "7", "--bind-path", path).out.strip()
    refused = cli("login", "--script-key", "1", stdin=token)
    assert refused.code == 1 and refused.err.count("\n") == 1
    assert "--script-path $'/jobs/a\\nb\\'s.py'" in refused.err
    bash = shutil.which("bash")
    if bash is not None:
        shown = subprocess.run(
            [bash, "-c", "printf %s $'/jobs/a\\nb\\'s.py'"],
            capture_output=True, text=True, check=True,
        ).stdout
        assert shown == path


def test_hint_without_a_script_speaks_command_line(cli: Cli) -> None:
    """Logging in without a script is told which option to pass, not about a class."""
    token = cli("authorize", "--user", "7", "--bind-key", "42").out.strip()
    refused = cli("login", stdin=token)
    assert refused.code == 1
    assert refused.err.startswith("ScriptNotAuthorized: ")
    assert "--script-key 42" in refused.err and "Script " not in refused.err


# -- hostile arguments never reach a terminal raw ------------------------------------------------
@pytest.mark.parametrize("args", [
    ("list", "\x1b[2J\x1b]0;owned\x07"),
    ("\x1b[31mrevoke",),
    ("serve-admin", "--port", "\x1b[2J"),
])
def test_usage_errors_escape_control_characters(cli: Cli, args: tuple[str, ...]) -> None:
    """A usage error that quotes an argument escapes its control characters."""
    result = cli(*args)
    assert result.code == 2
    assert "\x1b" not in result.err and "\x07" not in result.err


# -- help -----------------------------------------------------------------------------------------
def test_demo_help_does_not_claim_the_environment_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``demo --help`` describes ``--database`` as the demo uses it."""
    assert main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    options = text[text.index("options:"):]
    assert "default: AUTHTOKEN_DATABASE_URL" not in options
    assert "temporary" in options


# -- script keys as long as a scope can bind -----------------------------------------------------
def test_any_key_a_scope_binds_can_log_in(cli: Cli) -> None:
    """A key of 40 digits binds by ``--scope`` or ``--bind-key`` and logs in by ``--script-key``."""
    key = "-" + "9" * 40
    by_scope = cli.authorize("7", f"vfs:ikey?{key}")
    assert cli("login", f"--script-key={key}", stdin=by_scope).code == 0
    by_option = cli("authorize", "--user", "7", f"--bind-key={key}")
    assert by_option.code == 0, by_option.err
    assert cli("login", f"--script-key={key}", stdin=by_option.out.strip()).code == 0


@pytest.mark.parametrize("key", ["9" * 504, "9" * 100_000, "1e3", "4.2", "--"])
def test_a_key_no_scope_can_hold_is_a_usage_error(cli: Cli, key: str) -> None:
    """A key longer than an identifier allows, or not an integer, exits 2 saying why."""
    for option in ("--script-key", "--bind-key"):
        command = ("login",) if option == "--script-key" else ("authorize", "--user", "7")
        result = cli(*command, f"{option}={key}", stdin="")
        assert result.code == 2 and result.out == ""
        said = result.err.splitlines()[-1]
        assert "script key" in said and len(result.err) < 2000
        assert ("at most" in said) == key.isdigit()


# -- '--opt=--' is the value '--' ---------------------------------------------------------------
def test_an_option_glued_to_double_dash_has_that_value(cli: Cli) -> None:
    """``--user=--`` is the user ``"--"`` on every Python, never a crash or an empty value."""
    made = cli("--json", "authorize", "--user=--", "--scope=--", "--description=--",
               "--data=--", "--bind-path=--")
    assert made.code == 0, made.err
    view = made.json()
    assert isinstance(view, dict)
    assert (view["user"], view["description"], view["data"]) == ("--", "--", "--")
    assert view["scopes"] == ["--", "ufs:--"]
    listed = cli("--json", "list", "--user=--")
    assert listed.code == 0, listed.err
    assert [t["key"] for t in listed.json()["tokens"]] == [view["key"]]  # type: ignore[index]
    login = cli("login", "--script-path=--", stdin=str(view["token"]))
    assert login.code == 0, login.err


def test_hint_for_a_path_that_is_not_utf8_names_its_bytes(cli: Cli) -> None:
    """A path given as non-UTF-8 bytes is suggested byte for byte, ``$'\\xff'``."""
    path = "/jobs/r\udcffport.py"  # b"/jobs/r\xffport.py" as Python decodes argv
    token = cli("authorize", "--user", "7", "--bind-path", path).out.strip()
    refused = cli("login", stdin=token)
    assert refused.code == 1
    assert "--script-path $'/jobs/r\\xffport.py'" in refused.err
    bash = shutil.which("bash")
    if bash is not None:
        shown = subprocess.run(
            [bash, "-c", "printf %s $'/jobs/r\\xffport.py'"], capture_output=True, check=True,
        ).stdout
        assert shown == b"/jobs/r\xffport.py"
