"""The command line at its edges: a failure stays one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import SECRET_KEY, Cli


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
