"""Code pinning on the command line: ``--bind-file`` on authorize and update, ``login
--script-file``, and digests shortened where people read them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from support.cli import SECRET_KEY, Cli


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, keys from AUTHTOKEN_SECRET_KEYS."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_bytes(b"print('nightly report')\n")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bind_file_pins_the_token_to_the_file_as_it_is(cli: Cli, job: Path) -> None:
    """``authorize --bind-file F`` adds ``sha256:<digest of F>``; ``login --script-file
    F`` passes until F changes; a login naming no code is refused with the fix."""
    digest = sha(job)
    token = cli.authorize("7", "reports:read", "--bind-file", str(job))
    key = token[4:20]
    assert cli.view(key)["scopes"] == ["reports:read", f"sha256:{digest}"]
    assert cli("login", "--script-file", str(job), stdin=token).code == 0
    bare = cli("login", stdin=token)
    assert bare.code == 1 and bare.err.startswith("ScriptNotAuthorized")
    assert "--script-file F" in bare.err
    job.write_bytes(b"print('changed')\n")
    changed = cli("login", "--script-file", str(job), stdin=token)
    assert changed.code == 1 and changed.err.startswith("ScriptNotAuthorized")
    assert token not in bare.text + changed.text


def test_a_pinned_and_bound_token_hint_asks_for_both(cli: Cli, job: Path) -> None:
    """A token bound to a key and pinned to code: the hint names the key and the file."""
    token = cli.authorize("7", "vfs:ikey?42", "--bind-file", str(job))
    refused = cli("login", "--script-key", "41", stdin=token)
    assert refused.code == 1
    assert "--script-key 42" in refused.err and "and --script-file F" in refused.err
    assert cli("login", "--script-key", "42", "--script-file", str(job),
               stdin=token).code == 0


def test_update_bind_file_makes_the_new_scope(cli: Cli, job: Path, tmp_path: Path) -> None:
    """``update --bind-file`` adds to the new scope given with it; it may stand alone."""
    other = tmp_path / "other.py"
    other.write_bytes(b"")
    token = cli.authorize("7", "reports:read")
    key = token[4:20]
    result = cli("update", key, "--scope", "reports:read", "--bind-file", str(job),
                 "--bind-file", str(other))
    assert result.code == 0, result.err
    assert cli.view(key)["scopes"] == ["reports:read", f"sha256:{sha(job)}",
                                      f"sha256:{sha(other)}"]
    assert cli("update", key, "--bind-file", str(other)).code == 0
    assert cli.view(key)["scope"] == f"sha256:{sha(other)}"


def test_show_and_list_shorten_a_digest_and_json_keeps_it(cli: Cli, job: Path) -> None:
    """People read ``sha256:`` and 8 digits with an ellipsis; ``--json`` has them all."""
    digest = sha(job)
    key = cli.authorize("7", "reports:read", "--bind-file", str(job))[4:20]
    shown = cli("show", key)
    assert f"scope:        reports:read sha256:{digest[:8]}…\n" in shown.out
    assert digest not in shown.out
    listed = cli("list")
    assert f"sha256:{digest[:8]}…" in listed.out and digest not in listed.out
    assert cli("--json", "list").json() == {"tokens": [cli.view(key)]}
    assert f"sha256:{digest}" in cli("--json", "show", key).out


@pytest.mark.parametrize("make", ["missing", "folder", "empty name"])
def test_a_bind_file_that_cannot_be_read_stores_nothing(cli: Cli, tmp_path: Path,
                                                        make: str) -> None:
    """A missing file, a folder or an empty name: exit 1 naming it, no token stored."""
    path = "" if make == "empty name" else str(tmp_path / "nope.py")
    if make == "folder":
        Path(path).mkdir()
    result = cli("authorize", "--user", "7", "--scope", "x", "--bind-file", path)
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("InvalidArgument") and path in result.err
    assert cli("--json", "list", "--all").json() == {"tokens": []}
    key = cli.authorize("7", "reports:read")[4:20]
    before = cli.view(key)
    assert cli("update", key, "--bind-file", path).code == 1
    assert cli.view(key) == before


@pytest.mark.parametrize("args", [
    ("scan", "{t}"),
    ("scan", "./{t}.txt"),
    ("authorize", "--user", "7", "--bind-file", "{t}"),
    ("login", "--script-file={t}"),
    ("check", "abc", "--script-path", "/x/{t}"),
])
def test_a_token_string_in_a_new_option_is_refused_unechoed(cli: Cli,
                                                            args: tuple[str, ...]) -> None:
    """A token string as a path, a file or a key: exit 2, the string never echoed."""
    token = cli.authorize("7", "reports:read")
    for as_json in ((), ("--json",)):
        result = cli(*as_json, *(a.replace("{t}", token) for a in args))
        assert result.code == 2 and result.out == ""
        assert token not in result.err and token.split(".")[1] not in result.err
