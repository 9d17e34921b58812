"""``authtoken check KEY``: what a login by a script would get now, from the key alone,
with the same verdict as a real login."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import SECRET_KEY, Cli

WRONG_SCRIPT = "ScriptNotAuthorized"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, keys from AUTHTOKEN_SECRET_KEYS."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


def test_check_passes_and_refuses_as_the_login_does(cli: Cli) -> None:
    """Exit 0 with ``ok:`` when the login would pass, 1 with the reason when refused --
    and the real login agrees each time."""
    token = cli.authorize("7", "reports:read vfs:ikey?42")
    key = token[4:20]
    good = cli("check", key, "--script-key", "42")
    assert good.code == 0 and good.out.startswith("ok: ") and good.err == ""
    assert cli("login", "--script-key", "42", stdin=token).code == 0
    bad = cli("check", key, "--script-key", "43")
    assert bad.code == 1 and bad.out.startswith(f"{WRONG_SCRIPT}: ")
    assert "vfs:ikey?43" in bad.out
    assert cli("login", "--script-key", "43", stdin=token).code == 1
    none = cli("check", key)
    assert none.code == 1 and none.out.startswith(f"{WRONG_SCRIPT}: ")
    assert token not in good.text + bad.text + none.text


def test_check_json_is_ok_reason_message(cli: Cli) -> None:
    """--json prints exactly ``{"ok", "reason", "message"}``, refused or not."""
    token = cli.authorize("7", "reports:read")
    key = token[4:20]
    passed = cli("--json", "check", key)
    view = passed.json()
    assert passed.code == 0 and isinstance(view, dict)
    assert set(view) == {"ok", "reason", "message"}
    assert view["ok"] is True and view["reason"] is None
    assert cli("revoke", key).code == 0
    refused = cli("check", key, "--json")
    assert refused.code == 1
    assert refused.json() == {**refused.json(), "ok": False, "reason": "TokenRevoked"}
    assert cli("login", stdin=token).err.startswith("TokenRevoked")


def test_check_of_an_unknown_key_is_token_not_found(cli: Cli) -> None:
    """An unknown key: exit 1, ``TokenNotFound`` on stderr, nothing on stdout."""
    result = cli("check", "aaaaaaaaaaaaaaaa")
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("TokenNotFound")
    as_json = cli("--json", "check", "nonsense key")
    assert as_json.code == 1 and '"error": "TokenNotFound"' in as_json.err


def test_check_with_a_script_file_reads_its_digest(tmp_path: Path, cli: Cli) -> None:
    """--script-file F: a token pinned to F's code passes while F is unchanged, and is
    refused once it changed."""
    job = tmp_path / "job.py"
    job.write_text("print('report')\n")
    token = cli.authorize("7", "reports:read", "--bind-file", str(job))
    key = token[4:20]
    assert cli("check", key, "--script-file", str(job)).code == 0
    unpinned = cli("check", key, "--script-key", "1")
    assert unpinned.code == 1 and "pinned to the code" in unpinned.out
    job.write_text("print('something else')\n")
    changed = cli("check", key, "--script-file", str(job))
    assert changed.code == 1 and changed.out.startswith(f"{WRONG_SCRIPT}: ")


def test_script_file_and_script_path_together(tmp_path: Path, cli: Cli) -> None:
    """--script-path gives the path the job runs as; --script-file only the code."""
    job = tmp_path / "copy.py"
    job.write_text("x = 1\n")
    token = cli.authorize("7", "ufs:/srv/jobs/run.py", "--bind-file", str(job))
    key = token[4:20]
    assert cli("check", key, "--script-file", str(job)).code == 1
    both = ("--script-file", str(job), "--script-path", "/srv/jobs/run.py")
    assert cli("check", key, *both).code == 0
    assert cli("login", *both, stdin=token).code == 0


@pytest.mark.parametrize("make", ["missing", "folder"])
def test_a_script_file_that_cannot_be_read_is_named(tmp_path: Path, cli: Cli,
                                                    make: str) -> None:
    """A missing file or a folder as --script-file: exit 1 naming it."""
    key = cli.authorize("7", "reports:read")[4:20]
    path = tmp_path / "nope.py"
    if make == "folder":
        path.mkdir()
    for command in (("check", key), ("login",)):
        result = cli(*command, "--script-file", str(path))
        assert result.code == 1, result
        assert result.err.startswith("InvalidArgument") and str(path) in result.err


def test_a_token_string_as_key_is_refused_unechoed(cli: Cli) -> None:
    """``check <token string>`` is exit 2 and the string is not echoed."""
    token = cli.authorize("7", "reports:read")
    result = cli("check", token)
    assert result.code == 2 and result.out == ""
    assert token not in result.err and token.split(".")[1] not in result.err
