"""Writing scopes on the command line: ``--bind-path``/``--bind-key`` and the warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import SECRET_KEY, TOKEN_RE, Cli

WARNING = "authtoken: warning: "


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, keys from AUTHTOKEN_SECRET_KEYS."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


def scopes_of(cli: Cli, token: str) -> list[str]:
    result = cli("--json", "show", token[4:20])
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict)
    return list(view["scopes"])


# -- --bind-path / --bind-key ----------------------------------------------------------------
def test_bind_path_escapes_a_path_with_a_space(cli: Cli) -> None:
    """``--bind-path`` takes the plain path; the token logs in as that script only."""
    result = cli("authorize", "--user", "7", "--scope", "reports:read",
                 "--bind-path", "/jobs/my job.py")
    assert result.code == 0, result.err
    assert result.err == ""
    token = result.out.strip()
    assert TOKEN_RE.fullmatch(token)
    assert scopes_of(cli, token) == ["reports:read", "ufs:/jobs/my%20job.py"]
    assert cli("login", "--script-path", "/jobs/my job.py", stdin=token).code == 0
    refused = cli("login", "--script-path", "/jobs/my", stdin=token)
    assert refused.code == 1 and refused.err.startswith("ScriptNotAuthorized")


def test_bind_key_alone_needs_no_scope(cli: Cli) -> None:
    """``--bind-key`` may stand without ``--scope``, and may be repeated."""
    result = cli("authorize", "--user", "7", "--bind-key", "42", "--bind-key", "-3")
    assert result.code == 0, result.err
    token = result.out.strip()
    assert scopes_of(cli, token) == ["vfs:ikey?42", "vfs:ikey?-3"]
    assert cli("login", "--script-key", "-3", stdin=token).code == 0
    assert cli("login", "--script-key", "5", stdin=token).code == 1


def test_bind_options_with_json_and_on_update(cli: Cli) -> None:
    """``update --bind-path`` makes the new scope together with ``--scope``."""
    token = cli.authorize("7", "reports:read")
    updated = cli("--json", "update", token[4:20], "--scope", "reports:read",
                  "--bind-path", "/srv/ä%.py", "--bind-key", "9")
    assert updated.code == 0, updated.err
    view = updated.json()
    assert isinstance(view, dict)
    assert view["scopes"] == ["reports:read", "ufs:/srv/%E4%25.py", "vfs:ikey?9"]
    assert cli("login", "--script-path", "/srv/ä%.py", stdin=token).code == 0


@pytest.mark.parametrize("args", [
    ("authorize", "--user", "7"),
    ("authorize", "--user", "7", "--bind-key", "x"),
    ("authorize", "--user", "7", "--bind-key"),
])
def test_authorize_needs_a_scope_or_a_binding(cli: Cli, args: tuple[str, ...]) -> None:
    """Without ``--scope``, ``--bind-path`` or ``--bind-key`` it is a usage error."""
    result = cli(*args)
    assert result.code == 2
    assert "usage:" in result.err and result.out == ""


def test_bind_path_refusals_exit_1(cli: Cli) -> None:
    """An empty path, or one too long for an identifier, is refused with exit 1."""
    empty = cli("authorize", "--user", "7", "--bind-path", "")
    assert (empty.code, empty.err.split(":")[0]) == (1, "InvalidArgument")
    long = cli("authorize", "--user", "7", "--bind-path", "/" + "é" * 600)
    assert (long.code, long.err.split(":")[0]) == (1, "ScopeError")


_PATHS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1, max_size=40,
)


@pytest.mark.slow
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=_PATHS)
def test_any_bound_path_logs_in_with_the_same_path(cli: Cli, path: str) -> None:
    """Whatever the path, ``--bind-path P`` logs in with ``--script-path P``."""
    made = cli("authorize", "--user", "7", f"--bind-path={path}")
    assert made.code == 0, made.err
    token = made.out.strip()
    assert TOKEN_RE.fullmatch(token)
    login = cli("--json", "login", f"--script-path={path}", stdin=token)
    assert login.code == 0, login.err
    principal = login.json()
    assert isinstance(principal, dict)
    assert [s for s in principal["scopes"] if s.startswith("ufs:")] == principal["scopes"]


# -- warnings ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("scope", "words"), [
    ("ufs:/jobs/my job.py", ("ufs:/jobs/my%20job.py", "job.py")),
    ("reports:read,reports:write", ("comma", "reports:read reports:write")),
    ("VFS:ikey?1", ("vfs:ikey?1", "opaque")),
    ("UFS:/jobs/x.py", ("ufs:/jobs/x.py", "opaque")),
])
def test_authorize_warns_on_scopes_that_are_not_what_they_look_like(
    cli: Cli, scope: str, words: tuple[str, ...],
) -> None:
    """A slip in ``--scope`` is warned about on stderr; the token is still made."""
    result = cli("authorize", "--user", "7", "--scope", scope)
    assert result.code == 0, result.err
    assert TOKEN_RE.fullmatch(result.out.strip())
    assert result.out.count("\n") == 1
    lines = result.err.splitlines()
    assert lines and all(line.startswith(WARNING) for line in lines)
    for word in words:
        assert word in result.err


def test_update_scope_warns_too(cli: Cli) -> None:
    """``update --scope`` gets the same warnings."""
    token = cli.authorize("7", "reports:read")
    result = cli("update", token[4:20], "--scope", "reports:read,reports:write")
    assert result.code == 0, result.err
    assert result.err.startswith(WARNING) and "comma" in result.err


def test_warnings_are_json_lines_with_json(cli: Cli) -> None:
    """With ``--json`` each warning is one JSON object on stderr; stdout stays the view."""
    result = cli("--json", "authorize", "--user", "7", "--scope", "VFS:ikey?1 a,b")
    assert result.code == 0, result.err
    assert isinstance(result.json(), dict)
    warnings = [json.loads(line) for line in result.err.splitlines()]
    assert len(warnings) == 2
    assert all(set(w) == {"warning"} and isinstance(w["warning"], str) for w in warnings)


def test_plain_scopes_and_bindings_warn_nothing(cli: Cli) -> None:
    """Well-written scopes and the bind options give no warning."""
    result = cli("authorize", "--user", "7", "--scope", "reports:read vfs:ikey?42",
                 "--scope", "ufs:/jobs/a.py", "--bind-path", "/jobs/b c.py")
    assert result.code == 0 and result.err == ""


def test_warnings_never_echo_a_token_string(cli: Cli) -> None:
    """A warning about a scope never shows a token string glued into it."""
    token = cli.authorize("7")
    result = cli("authorize", "--user", "7", "--scope", "VFS:" + token.upper())
    assert result.code == 2
    assert token.upper() not in result.text and token.upper()[4:] not in result.text
