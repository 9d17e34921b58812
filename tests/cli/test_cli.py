"""The ``authtoken`` command line, in process and through real processes."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.cli import SECRET_KEY, TOKEN_RE, BareReader, Cli, FakeTerminal, files_under

import authtoken
from authtoken._cli import build_parser, main, parse_user
from authtoken._views import VIEW_FIELDS

VIEW_KEYS = set(VIEW_FIELDS)
LOGIN_KEYS = {"user", "token_key", "scopes", "data", "expires"}
FULLWIDTH_42 = "\uff14\uff12"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG_DATA_HOME, with no AUTHTOKEN_* variable set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg"))
    for name in ("AUTHTOKEN_DATABASE_URL", "AUTHTOKEN_SECRET_KEYS", "AUTHTOKEN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def cli(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, keys from AUTHTOKEN_SECRET_KEYS."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


def aware(text: object) -> datetime:
    assert isinstance(text, str)
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0)
    return value


# -- authorize --------------------------------------------------------------------------------
def test_authorize_prints_the_token_string_alone(cli: Cli) -> None:
    """``authorize`` prints the token string alone on one line and nothing else."""
    result = cli("authorize", "--user", "7", "--scope", "reports:read")
    assert result.code == 0
    assert result.err == ""
    assert TOKEN_RE.fullmatch(result.out.rstrip("\n"))
    assert result.out.count("\n") == 1


def test_authorize_json_is_the_view_plus_the_token(cli: Cli) -> None:
    """``--json authorize`` prints the token's view plus ``token``, datetimes ISO UTC."""
    result = cli("--json", "authorize", "--user", "7", "--scope", "reports:read vfs:ikey?42",
                 "--data", '{"job": 1}', "--description", "nightly", "--expires", "12h")
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict)
    assert set(view) == VIEW_KEYS | {"token"}
    assert TOKEN_RE.fullmatch(view["token"])
    assert view["user"] == 7
    assert view["scope"] == "reports:read vfs:ikey?42"
    assert view["scopes"] == ["reports:read", "vfs:ikey?42"]
    assert view["data"] == '{"job": 1}'
    assert view["description"] == "nightly"
    assert view["use_count"] == 0
    assert view["revoked_at"] is None and view["last_used_at"] is None
    assert view["parent_key"] is None
    created = aware(view["created_at"])
    assert aware(view["expires"]) - created == timedelta(hours=12)
    assert view["token"].startswith(f"atk_{view['key']}.")


def test_authorize_defaults_and_repeated_scope(cli: Cli) -> None:
    """An omitted expiry is 30 days; repeated ``--scope`` options add identifiers."""
    view = cli("--json", "authorize", "--user", "alice", "--scope", "a",
               "--scope", "b vfs:ikey?007").json()
    assert isinstance(view, dict)
    assert view["scopes"] == ["a", "b", "vfs:ikey?7"]
    assert view["description"] == "" and view["data"] is None
    assert aware(view["expires"]) - aware(view["created_at"]) == timedelta(days=30)


def test_authorize_never_expires(cli: Cli) -> None:
    """``--expires never`` gives a token whose ``expires`` is null."""
    view = cli("--json", "authorize", "--user", "7", "--scope", "a",
               "--expires", "never").json()
    assert isinstance(view, dict)
    assert view["expires"] is None


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--scope", "vfs:nope"], "ScopeError"),
        (["--scope", "a", "--expires", "2000-01-01T00:00:00Z"], "InvalidArgument"),
        (["--scope", "a", "--expires", "soon"], "InvalidArgument"),
        (["--scope", "a", "--data", "x" * 70_000], "InvalidArgument"),
    ],
)
def test_authorize_refusals_exit_1(cli: Cli, args: list[str], error: str) -> None:
    """A refused authorization exits 1 with ``ClassName: message`` on one stderr line."""
    result = cli("authorize", "--user", "7", *args)
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(f"{error}: ")
    assert result.err.count("\n") == 1


# -- users ---------------------------------------------------------------------------------
def test_ascii_digits_are_an_integer_user_anything_else_a_string(cli: Cli) -> None:
    """``--user 42`` is the integer 42; fullwidth digits and names stay strings."""
    int_key = cli("--json", "authorize", "--user", "42", "--scope", "a").json()
    wide = cli("--json", "authorize", "--user", FULLWIDTH_42, "--scope", "a").json()
    named = cli("--json", "authorize", "--user", "42x", "--scope", "a").json()
    assert isinstance(int_key, dict) and isinstance(wide, dict) and isinstance(named, dict)
    assert int_key["user"] == 42 and isinstance(int_key["user"], int)
    assert wide["user"] == FULLWIDTH_42
    assert named["user"] == "42x"
    listed = cli("--json", "list", "--user", "42").json()
    assert isinstance(listed, dict)
    assert [t["key"] for t in listed["tokens"]] == [int_key["key"]]


def test_parse_user() -> None:
    """``parse_user`` maps ASCII digits to ``int`` and keeps everything else a ``str``."""
    assert parse_user("0") == 0
    assert parse_user("007") == 7
    assert parse_user("٤٢") == "٤٢"
    assert parse_user("-1") == "-1"
    with pytest.raises(authtoken.InvalidArgument):
        parse_user("9" * 5000)


def test_an_empty_user_exits_1(cli: Cli) -> None:
    """An empty ``--user`` is an ``InvalidArgument``, exit 1."""
    result = cli("authorize", "--user", "", "--scope", "a")
    assert result.code == 1
    assert result.err.startswith("InvalidArgument: ")


# -- login ---------------------------------------------------------------------------------
def test_login_human(cli: Cli) -> None:
    """``login`` prints the principal's user and scopes."""
    token = cli.authorize("7", "reports:read jobs:run")
    result = cli("login", stdin=token + "\n")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "user: 7" in lines
    assert "scopes: reports:read jobs:run" in lines
    assert token not in result.text


def test_login_json(cli: Cli) -> None:
    """``--json login`` prints exactly user, token_key, scopes, data and expires."""
    token = cli.authorize("alice", "reports:read", "--data", "payload", "--expires", "1d")
    result = cli("login", "--json", stdin=f"  {token}\n\n")
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict)
    assert set(view) == LOGIN_KEYS
    assert view["user"] == "alice"
    assert view["scopes"] == ["reports:read"]
    assert view["data"] == "payload"
    assert view["token_key"] == token[4:20]
    assert aware(view["expires"]) > datetime.now(timezone.utc)


def test_login_json_never_expiring(cli: Cli) -> None:
    """A token without expiry logs in with ``expires`` null."""
    token = cli.authorize("7", "a", "--expires", "never")
    view = cli("--json", "login", stdin=token).json()
    assert isinstance(view, dict)
    assert view["expires"] is None and view["data"] is None


def test_login_from_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """With standard input a terminal, the token comes from AUTHTOKEN_TOKEN."""
    token = cli.authorize("7")
    monkeypatch.setenv("AUTHTOKEN_TOKEN", f" {token} ")
    result = cli("--json", "login", stdin=FakeTerminal(token + "garbage"))
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict)
    assert view["user"] == 7


def test_standard_input_wins_over_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """When both hold a token, the one on standard input is used."""
    first = cli.authorize("7")
    second = cli.authorize("8")
    monkeypatch.setenv("AUTHTOKEN_TOKEN", first)
    view = cli("--json", "login", stdin=second).json()
    assert isinstance(view, dict)
    assert view["user"] == 8


@pytest.mark.parametrize(
    "blank", ["", "   ", "\n\t \n", " " * 70_000], ids=["empty", "spaces", "mixed", "huge"],
)
def test_blank_standard_input_falls_back_to_environment(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, blank: str,
) -> None:
    """Standard input holding only whitespace falls back to AUTHTOKEN_TOKEN."""
    token = cli.authorize("7")
    monkeypatch.setenv("AUTHTOKEN_TOKEN", token)
    result = cli("login", stdin=blank)
    assert result.code == 0, result.err
    assert "user: 7" in result.out


def test_reader_without_isatty_is_not_a_terminal(cli: Cli) -> None:
    """A standard input object without ``isatty`` is read like a pipe."""
    token = cli.authorize("7")
    result = cli("login", stdin=BareReader(token + "\n"))
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    "stdin",
    [
        pytest.param(FakeTerminal(""), id="terminal"),
        pytest.param("", id="empty"),
        pytest.param(" \n", id="blank"),
    ],
)
def test_no_token_anywhere_is_invalid_token(cli: Cli, stdin: object) -> None:
    """No token on standard input nor in AUTHTOKEN_TOKEN: exit 1, InvalidToken."""
    result = cli("login", stdin=stdin)
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("InvalidToken: ")
    assert result.err.count("\n") == 1


@pytest.mark.parametrize(
    "garbage",
    ["not a token", "atk_", "\x00\xff" * 10, "x" * (64 * 1024 + 10), "é" * 300],
    ids=["words", "prefix", "binary", "huge", "non-ascii"],
)
def test_garbage_on_standard_input_is_invalid_token(cli: Cli, garbage: str) -> None:
    """Anything on standard input that is not a token string is InvalidToken, exit 1."""
    result = cli("login", stdin=garbage)
    assert result.code == 1
    assert result.err.startswith("InvalidToken: ")


def test_tampered_token_is_invalid_and_not_echoed(cli: Cli) -> None:
    """A re-signed or truncated token string is InvalidToken and never printed."""
    token = cli.authorize("7")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (tampered, token[:-5]):
        result = cli("login", stdin=bad)
        assert result.code == 1
        assert result.err.startswith("InvalidToken: ")
        assert bad not in result.text and token not in result.text


def test_login_bound_token_by_script_key(cli: Cli) -> None:
    """A token bound to ``vfs:ikey?42`` logs in for script 42 only."""
    token = cli.authorize("7", "reports:read vfs:ikey?42")
    ok = cli("login", "--script-key", "42", stdin=token)
    assert ok.code == 0, ok.err
    assert "user: 7" in ok.out
    for args in (["--script-key", "7"], [], ["--script-path", "/jobs/a.py"]):
        refused = cli("login", *args, stdin=token)
        assert refused.code == 1
        assert refused.err.startswith("ScriptNotAuthorized: ")
        assert token not in refused.text


def test_login_bound_token_by_script_path(cli: Cli) -> None:
    """A ``ufs:`` binding matches the normalised script path, exactly."""
    token = cli.authorize("7", "ufs:/jobs/report.py")
    ok = cli("--json", "login", "--script-path", "/jobs/./report.py", stdin=token)
    assert ok.code == 0, ok.err
    refused = cli("login", "--script-path", "/jobs/other.py", "--script-key", "1",
                  stdin=token)
    assert refused.code == 1
    assert refused.err.startswith("ScriptNotAuthorized: ")


def test_login_negative_script_key(cli: Cli) -> None:
    """``--script-key -5`` is read as the integer -5."""
    token = cli.authorize("7", "vfs:ikey?-5")
    assert cli("login", "--script-key", "-5", stdin=token).code == 0


@pytest.mark.parametrize("key", ["abc", "4.2", FULLWIDTH_42, ""])
def test_bad_script_key_exits_2(cli: Cli, key: str) -> None:
    """A ``--script-key`` that is not an ASCII integer is a command-line error."""
    result = cli("login", "--script-key", key, stdin="")
    assert result.code == 2
    assert "usage:" in result.err


# -- list, show, update ---------------------------------------------------------------------
def test_list_newest_first_and_all(cli: Cli) -> None:
    """``list`` shows live tokens newest first; ``--all`` adds revoked ones."""
    keys = [cli.authorize("7", f"s{i}")[4:20] for i in range(3)]
    assert cli("revoke", keys[1]).code == 0
    live = cli("--json", "list").json()
    every = cli("list", "--all", "--json").json()
    assert isinstance(live, dict) and isinstance(every, dict)
    assert [t["key"] for t in live["tokens"]] == [keys[2], keys[0]]
    assert [t["key"] for t in every["tokens"]] == keys[::-1]
    assert all(set(t) == VIEW_KEYS for t in every["tokens"])
    assert every["tokens"][1]["revoked_at"] is not None


def test_list_human_table(cli: Cli) -> None:
    """The human ``list`` is a table, header first, newest token on the first row."""
    old = cli.authorize("7", "old:scope")[4:20]
    new = cli.authorize("alice", "new:scope")[4:20]
    cli("revoke", old)
    live = cli("list")
    assert live.code == 0
    lines = live.out.splitlines()
    assert lines[0].split() == ["KEY", "USER", "SCOPE", "DESCRIPTION", "EXPIRES", "STATUS"]
    assert len(lines) == 2 and lines[1].startswith(new)
    every = cli("list", "--all").out.splitlines()
    assert [line.split()[0] for line in every[1:]] == [new, old]
    assert "revoked" in every[2]


def test_list_filters_by_user(cli: Cli) -> None:
    """``list --user U`` shows only that user's tokens."""
    cli.authorize("7")
    mine = cli.authorize("alice")[4:20]
    listed = cli("--json", "list", "--user", "alice").json()
    assert isinstance(listed, dict)
    assert [t["key"] for t in listed["tokens"]] == [mine]
    assert cli("--json", "list", "--user", "nobody").json() == {"tokens": []}


def test_list_empty(cli: Cli) -> None:
    """An empty store lists no tokens and exits 0."""
    result = cli("list")
    assert result.code == 0
    assert "no" in result.out


def test_show_human_and_json(cli: Cli) -> None:
    """``show KEY`` prints the fields; with ``--json`` the view."""
    key = cli.authorize("7", "a b", "--description", "nightly", "--data", "d")[4:20]
    human = cli("show", key)
    assert human.code == 0
    fields = dict(line.split(":", 1) for line in human.out.splitlines())
    assert fields["key"].strip() == key
    assert fields["user"].strip() == "7"
    assert fields["scope"].strip() == "a b"
    assert fields["description"].strip() == "nightly"
    view = cli.view(key)
    assert set(view) == VIEW_KEYS
    assert view["key"] == key and view["scopes"] == ["a", "b"]


def test_show_escapes_control_characters(cli: Cli) -> None:
    """Human output escapes control characters instead of sending them to the terminal."""
    key = cli.authorize("7", "a", "--description", "evil\x1b[2Jtext")[4:20]
    result = cli("show", key)
    assert "\x1b" not in result.out
    assert "evil\\x1b[2Jtext" in result.out


def test_show_unknown_key_exits_1(cli: Cli) -> None:
    """An unknown key is TokenNotFound, exit 1."""
    result = cli("show", "aaaaaaaaaaaaaaaa")
    assert result.code == 1
    assert result.err.startswith("TokenNotFound: ")


def test_update_human_and_json(cli: Cli) -> None:
    """``update`` persists the changes and prints the token as ``show`` does."""
    key = cli.authorize("7", "a", "--data", "old")[4:20]
    human = cli("update", key, "--description", "renamed", "--scope", "a b")
    assert human.code == 0, human.err
    assert "renamed" in human.out
    result = cli("update", "--json", key, "--expires", "never", "--data", "new")
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict)
    assert set(view) == VIEW_KEYS
    assert view["expires"] is None and view["data"] == "new"
    assert view["description"] == "renamed" and view["scopes"] == ["a", "b"]
    assert cli.view(key) == view
    cleared = cli("--json", "update", key, "--no-data").json()
    assert isinstance(cleared, dict)
    assert cleared["data"] is None


def test_update_refusals(cli: Cli) -> None:
    """Bad values exit 1, a revoked token is TokenRevoked, no change at all exits 2."""
    key = cli.authorize("7", "a")[4:20]
    assert cli("update", key).code == 2
    past = cli("update", key, "--expires", "2001-01-01")
    assert (past.code, past.err.split(":")[0]) == (1, "InvalidArgument")
    scope = cli("update", key, "--scope", "ufs:%zz")
    assert (scope.code, scope.err.split(":")[0]) == (1, "ScopeError")
    missing = cli("update", "bbbbbbbbbbbbbbbb", "--description", "x")
    assert (missing.code, missing.err.split(":")[0]) == (1, "TokenNotFound")
    cli("revoke", key)
    revoked = cli("update", key, "--description", "x")
    assert (revoked.code, revoked.err.split(":")[0]) == (1, "TokenRevoked")


# -- revoke ------------------------------------------------------------------------------------
def test_revoke_by_key_then_login_is_refused(cli: Cli) -> None:
    """``revoke KEY`` prints one line; the token then fails to log in (TokenRevoked)."""
    token = cli.authorize("7")
    key = token[4:20]
    result = cli("revoke", key)
    assert result.code == 0
    assert result.out.count("\n") == 1 and key in result.out
    again = cli("--json", "revoke", key)
    assert again.json() == {"revoked": key}
    refused = cli("login", stdin=token)
    assert refused.code == 1
    assert refused.err.startswith("TokenRevoked: ")
    assert token not in refused.text


def test_revoke_by_token_from_standard_input(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``revoke --token`` reads the string from standard input (or AUTHTOKEN_TOKEN)."""
    token = cli.authorize("7")
    result = cli("--json", "revoke", "--token", stdin=token + "\n")
    assert result.code == 0, result.err
    assert result.json() == {"revoked": token[4:20]}
    assert token not in result.text
    other = cli.authorize("8")
    monkeypatch.setenv("AUTHTOKEN_TOKEN", other)
    human = cli("revoke", "--token")
    assert human.code == 0 and other[4:20] in human.out
    assert cli("login", stdin=other).err.startswith("TokenRevoked: ")


def test_revoke_needs_exactly_one_of_key_and_token(cli: Cli) -> None:
    """``revoke`` with neither or both of KEY and ``--token`` exits 2."""
    token = cli.authorize("7")
    assert cli("revoke", stdin=token).code == 2
    assert cli("revoke", token[4:20], "--token", stdin=token).code == 2
    assert cli.view(token[4:20])["revoked_at"] is None


def test_revoke_refusals_exit_1(cli: Cli) -> None:
    """An unknown key is TokenNotFound and a bad string InvalidToken, both exit 1."""
    missing = cli("revoke", "cccccccccccccccc")
    assert (missing.code, missing.err.split(":")[0]) == (1, "TokenNotFound")
    bad = cli("revoke", "--token", stdin="nonsense")
    assert (bad.code, bad.err.split(":")[0]) == (1, "InvalidToken")


def test_storage_errors_exit_1(cli: Cli, tmp_path: Path) -> None:
    """An unusable or unsupported database URL is an AuthTokenError, exit 1."""
    missing = cli.raw("--database", f"sqlite:///{tmp_path}/no/such/dir/t.db", "list")
    assert (missing.code, missing.err.split(":")[0]) == (1, "RepositoryError")
    scheme = cli.raw("--database", "mysql://db/x", "list")
    assert (scheme.code, scheme.err.split(":")[0]) == (1, "InvalidArgument")


def test_error_messages_are_one_line_and_redacted(
    cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error message is printed on one line, with anything token-shaped blanked out."""
    secret = "atk_" + "q" * 16 + "." + "S" * 43

    def failing(url: object = None, **_options: object) -> object:
        raise authtoken.RepositoryError(f"first line\n  second {secret}\n")

    monkeypatch.setattr("authtoken._cli._commands.open_security", failing)
    result = cli("list")
    assert result.code == 1
    assert result.err.startswith("RepositoryError: first line second ")
    assert result.err.count("\n") == 1
    assert "S" * 43 not in result.err


# -- global options and parsing --------------------------------------------------------------
@pytest.mark.parametrize(
    "layout",
    [
        ["--json", "--database", "{db}", "list"],
        ["--database", "{db}", "list", "--json"],
        ["--json", "list", "--database", "{db}"],
        ["list", "--json", "--database={db}"],
    ],
)
def test_global_options_before_or_after_the_command(
    cli: Cli, layout: list[str], tmp_path: Path,
) -> None:
    """``--json`` and ``--database`` work before and after the command name."""
    other = f"sqlite:///{tmp_path}/other.db"
    key = cli.raw("--database", other, "authorize", "--user", "7",
                  "--scope", "a").out[4:20]
    result = cli.raw(*(part.replace("{db}", other) for part in layout))
    assert result.code == 0, result.err
    listed = result.json()
    assert isinstance(listed, dict)
    assert [t["key"] for t in listed["tokens"]] == [key]


def test_database_defaults_to_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``--database`` the command uses AUTHTOKEN_DATABASE_URL."""
    monkeypatch.setenv("AUTHTOKEN_DATABASE_URL", cli.url)
    key = cli.authorize("7")[4:20]
    result = cli.raw("--json", "list")
    assert result.code == 0
    listed = result.json()
    assert isinstance(listed, dict)
    assert [t["key"] for t in listed["tokens"]] == [key]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["list", "--bogus"],
        ["--bogus", "list"],
        ["authorize", "--user", "7"],
        ["authorize", "--scope", "a"],
        ["show"],
        ["show", "a", "b"],
        ["list", "--al"],
        ["update", "k", "--data", "x", "--no-data"],
    ],
)
def test_command_line_errors_exit_2(cli: Cli, args: list[str]) -> None:
    """Unknown commands or options and missing required options exit 2 with usage."""
    result = cli.raw(*args)
    assert result.code == 2
    assert result.out == ""
    assert "usage:" in result.err


def test_help_and_version_exit_0(cli: Cli) -> None:
    """``--help`` (also per command) and ``--version`` exit 0."""
    assert cli.raw("--help").code == 0
    assert cli.raw("authorize", "--help").code == 0
    version = cli.raw("--version")
    assert version.code == 0 and authtoken.__version__ in version.out


# -- token strings as arguments -----------------------------------------------------------------
@pytest.mark.parametrize(
    "place",
    [
        ["show", "{t}"],
        ["revoke", "{t}"],
        ["update", "k", "--description", "{t}"],
        ["update", "k", "--scope={t}"],
        ["authorize", "--user", "7", "--scope", "a", "--data", '{{"token": "{t}"}}'],
        ["{t}"],
        ["--database", "{t}", "list"],
        ["login", "--script-path", "/x/{t}"],
    ],
)
def test_token_string_as_an_argument_exits_2_unechoed(cli: Cli, place: list[str]) -> None:
    """A token string anywhere on the command line exits 2 and is never echoed."""
    token = cli.authorize("7")
    result = cli.raw(*(part.replace("{t}", token) for part in place))
    assert result.code == 2
    assert token not in result.text
    assert token[4:] not in result.text
    assert "standard input" in result.err and "AUTHTOKEN_TOKEN" in result.err
    assert result.err.count("\n") == 1
    assert cli.view(token[4:20])["revoked_at"] is None


@pytest.mark.parametrize(
    "lookalike", ["atk_abcdefgh.rest", "atk_" + "A" * 20, "xatk_0123456789abcdefghij"],
)
def test_token_lookalikes_are_not_echoed(cli: Cli, lookalike: str) -> None:
    """A key argument that is no token key is not found, and never echoed back."""
    result = cli.raw("show", lookalike)
    assert result.code == 1 and "TokenNotFound" in result.err
    assert lookalike not in result.text


def test_token_prefix_is_refused(cli: Cli) -> None:
    """Even a truncated real token string (its key and a dot) is refused as an argument."""
    result = cli.raw("show", "atk_" + "a" * 16 + ".Kx")
    assert result.code == 2
    assert "Kx" not in result.text


def test_scope_named_like_atk_is_fine(cli: Cli) -> None:
    """An identifier that merely starts with atk_ is an ordinary scope."""
    result = cli.raw("authorize", "--user", "7", "--scope", "atk_reports_generator_v2")
    assert result.code == 0


def test_usage_errors_redact_token_strings(capsys: pytest.CaptureFixture[str]) -> None:
    """The parser's own usage errors blank out anything shaped like a token string."""
    token = "atk_" + "a" * 16 + "." + "B" * 43 + "." + "C" * 43
    parser = build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["show", "k", token])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert token not in err and "B" * 43 not in err


# -- demo -------------------------------------------------------------------------------------
def test_demo_narrates_the_life_cycle(home: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``demo`` runs on a temporary store, narrates the refusals, and leaks no token."""
    ignored = tmp_path / "ignored.db"
    monkeypatch.setenv("AUTHTOKEN_DATABASE_URL", f"sqlite:///{ignored}")
    monkeypatch.setattr("sys.stdin", FakeTerminal())
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for word in ("ScriptNotAuthorized", "TokenRevoked", "PermissionDenied", "shown once",
                 "alice", "vfs:ikey?42"):
        assert word in out
    assert not TOKEN_RE.search(out)
    assert not ignored.exists()
    assert files_under(home) == []
    assert not authtoken.default_key_path().exists()
    folder = re.search(r"temporary database,? (\S+?)[,.]?\s", out)
    assert folder is not None
    assert not Path(folder.group(1)).exists()


def test_demo_json(home: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``demo --json`` prints the steps as JSON, refusals marked, no token string."""
    monkeypatch.setattr("sys.stdin", FakeTerminal())
    assert main(["demo", "--json"]) == 0
    out = capsys.readouterr().out
    assert not TOKEN_RE.search(out)
    report = json.loads(out)
    refused = [s["error"] for s in report["steps"] if s["outcome"] == "refused"]
    assert refused == ["ScriptNotAuthorized", "PermissionDenied", "TokenRevoked",
                       "TokenRevoked"]
    assert files_under(home) == []


def test_demo_on_a_given_database(cli: Cli) -> None:
    """``demo --database URL`` leaves its (revoked) tokens in that database."""
    result = cli("demo")
    assert result.code == 0, result.err
    assert not TOKEN_RE.search(result.out)
    listed = cli("--json", "list", "--all").json()
    assert isinstance(listed, dict)
    assert len(listed["tokens"]) == 2
    assert all(t["revoked_at"] is not None for t in listed["tokens"])


# -- real processes --------------------------------------------------------------------------------
def _process_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHTOKEN_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "xdg"), PYTHONUTF8="1")
    return env


def _run(home: Path, *args: str, stdin: str = "",
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authtoken", *args],
        input=stdin, capture_output=True, text=True, timeout=60,
        env=env or _process_env(home), check=False,
    )


@pytest.mark.slow
def test_process_default_database_and_key_file(home: Path) -> None:
    """``python -m authtoken`` creates the key file 0600 in a 0700 folder and works."""
    created = _run(home, "authorize", "--user", "7", "--scope", "reports:read vfs:ikey?42")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert TOKEN_RE.fullmatch(token)
    key_file = authtoken.default_key_path()
    assert key_file.is_relative_to(home)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    stored = [p for p in files_under(key_file.parent) if p.is_file() and p != key_file]
    assert authtoken.default_database_path() in stored
    assert all(token.split(".")[1].encode() not in p.read_bytes() for p in stored)

    login = _run(home, "--json", "login", "--script-key", "42", stdin=token + "\n")
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["user"] == 7

    refused = _run(home, "login", "--script-key", "7", stdin=token)
    assert refused.returncode == 1
    assert refused.stderr.startswith("ScriptNotAuthorized: ")
    assert token not in refused.stdout + refused.stderr

    env = _process_env(home) | {"AUTHTOKEN_TOKEN": token}
    revoked = _run(home, "revoke", "--token", env=env)
    assert revoked.returncode == 0, revoked.stderr
    after = _run(home, "login", "--script-key", "42", env=env)
    assert after.returncode == 1
    assert after.stderr.startswith("TokenRevoked: ")

    listed = _run(home, "list", "--all", "--json")
    view = json.loads(listed.stdout)["tokens"][0]
    assert view["use_count"] == 1 and view["last_used_at"] is not None


@pytest.mark.slow
def test_process_refuses_token_argument(home: Path, tmp_path: Path) -> None:
    """A real process refuses a token string argument with exit 2 and no echo."""
    env = _process_env(home) | {"AUTHTOKEN_SECRET_KEYS": SECRET_KEY}
    url = f"sqlite:///{tmp_path}/p.db"
    token = _run(home, "--database", url, "authorize", "--user", "7", "--scope", "a",
                 env=env).stdout.strip()
    result = _run(home, "--database", url, "show", token, env=env)
    assert result.returncode == 2
    assert token not in result.stdout + result.stderr


@pytest.mark.slow
def test_process_demo_touches_nothing(home: Path) -> None:
    """``python -m authtoken demo`` exits 0 and creates no key file or database."""
    env = _process_env(home) | {"AUTHTOKEN_DATABASE_URL": f"sqlite:///{home}/no.db"}
    result = _run(home, "demo", env=env)
    assert result.returncode == 0, result.stderr
    assert "ScriptNotAuthorized" in result.stdout and "TokenRevoked" in result.stdout
    assert not TOKEN_RE.search(result.stdout + result.stderr)
    assert files_under(home) == []


# -- audit ------------------------------------------------------------------------------------
def test_audit_lists_the_trail_newest_first(cli: Cli) -> None:
    token = cli.authorize("7", "jobs:run vfs:ikey?4")
    assert cli("login", "--script-key", "4", stdin=token).code == 0
    assert cli("login", "--script-key", "5", stdin=token).code == 1
    assert cli("login", stdin="atk_not-a-token").code == 1
    key = cli("--json", "list").json()["tokens"][0]["key"]  # type: ignore[index]
    assert cli("revoke", key).code == 0
    table = cli("audit")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split() == ["AT", "ACTION", "OUTCOME", "TOKEN", "USER", "ACTOR", "SCRIPT",
                                "REASON"]
    actions = [line.split()[2] for line in lines[1:]]
    assert actions == ["revoke", "login", "login", "login", "authorize"]
    assert "ScriptNotAuthorized" in lines[3] and "key=5" in lines[3]
    assert token not in table.text
    events = cli("--json", "audit", "--token", key).json()["events"]  # type: ignore[index]
    assert [(e["action"], e["outcome"], e["reason"]) for e in events] == [
        ("revoke", "ok", None), ("login", "refused", "ScriptNotAuthorized"),
        ("login", "ok", None), ("authorize", "ok", None)]
    assert set(events[0]) == {"at", "actor", "action", "token_key", "script", "outcome",
                              "reason", "count", "user", "run_id"}
    assert len(cli("--json", "audit", "--limit", "2").json()["events"]) == 2  # type: ignore[index]
    assert cli("--json", "audit", "--user", "8").json() == {"events": []}
    assert cli("--json", "audit", "--since", "2999-01-01T00:00Z").json() == {"events": []}
    recent = cli("--json", "audit", "--since", "1h").json()["events"]  # type: ignore[index]
    assert len(recent) == 5


@pytest.mark.parametrize("args", [
    ("--since", "yesterday"), ("--since", ""), ("--limit", "0"), ("--limit", "10001"),
    ("--limit", "-3"), ("--limit", "1e3"), ("--user",),
])
def test_audit_refuses_bad_options(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("audit", *args)
    assert result.code == 2 and "usage:" in result.err


def test_audit_of_an_empty_trail(cli: Cli) -> None:
    result = cli("audit")
    assert result.code == 0 and result.out.strip() == "no events"


# -- serve-admin ------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [("--port", "0"), ("--port", "70000"), ("--port", "http")])
def test_serve_admin_refuses_bad_ports(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("serve-admin", *args)
    assert result.code == 2 and "usage:" in result.err


@pytest.mark.slow
def test_serve_admin_serves_the_api_and_page_on_loopback(tmp_path: Path, home: Path) -> None:
    """The real command in a real process: loopback only by default, API and page up."""
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"sqlite:///{tmp_path}/served.db"
    env = {**os.environ, "AUTHTOKEN_SECRET_KEYS": SECRET_KEY, "AUTHTOKEN_DATABASE_URL": url,
           "HOME": str(home)}
    made = subprocess.run(
        [sys.executable, "-m", "authtoken", "authorize", "--user", "ada", "--scope",
         "authtoken:admin jobs:run"], env=env, capture_output=True, text=True, check=True)
    token = made.stdout.strip()
    server = subprocess.Popen(
        [sys.executable, "-m", "authtoken", "serve-admin", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/tokens",
                                   headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "serve-admin did not start"
                time.sleep(0.1)
        assert answer.status_code == 200
        assert [t["user"] for t in answer.json()["tokens"]] == ["ada"]
        page = httpx.get(f"http://127.0.0.1:{port}/ui/")
        assert page.status_code == 200 and 'name="credential"' in page.text
        # loopback only: no other address of this machine answers
        addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None,
                                                                 socket.AF_INET)}
        for address in addresses - {"127.0.0.1"}:
            if not address.startswith("127."):
                with pytest.raises(httpx.TransportError):
                    httpx.get(f"http://{address}:{port}/openapi.json", timeout=2)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/ui/" in err
    assert token not in err
