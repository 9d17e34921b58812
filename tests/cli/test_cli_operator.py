"""What a scheduler operator expects of the command line: bulk revocation, JSON errors,
readable tables, helpful refusals, a ``db current`` that changes nothing, no leaks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli import SECRET_KEY, Cli, files_under

import authtoken


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, keys from AUTHTOKEN_SECRET_KEYS."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


def json_error(err: str) -> dict[str, object]:
    """The one JSON line on stderr."""
    assert err.count("\n") == 1, err
    value = json.loads(err)
    assert isinstance(value, dict)
    assert set(value) == {"error", "message"}
    return value


# -- revoke --user U --all ------------------------------------------------------------------------
def test_revoke_all_of_a_users_tokens(cli: Cli) -> None:
    """``revoke --user U --all`` revokes that user's tokens only, and says how many."""
    alice = [cli.authorize("alice") for _ in range(3)]
    bob = cli.authorize("bob")
    cli("revoke", alice[0][4:20])
    result = cli("revoke", "--user", "alice", "--all")
    assert result.code == 0, result.err
    assert re.search(r"\b2\b", result.out) and "alice" in result.out
    for token in alice:
        assert cli("login", stdin=token).err.startswith("TokenRevoked")
    assert cli("login", stdin=bob).code == 0
    again = cli("--json", "revoke", "--all", "--user", "alice")
    assert again.code == 0
    assert again.json() == {"revoked": 0, "user": "alice"}


def test_revoke_all_integer_user_json(cli: Cli) -> None:
    """With ``--json`` the count and the user (an integer user stays an integer)."""
    cli.authorize("42")
    result = cli("--json", "revoke", "--user", "42", "--all")
    assert result.json() == {"revoked": 1, "user": 42}


@pytest.mark.parametrize("args", [
    ("revoke", "--all"),
    ("revoke", "--user", "alice"),
    ("revoke", "--user", "alice", "--all", "somekey"),
    ("revoke", "--user", "alice", "--all", "--token"),
    ("revoke", "somekey", "--all"),
])
def test_revoke_all_usage_errors(cli: Cli, args: tuple[str, ...]) -> None:
    """``--all`` needs ``--user`` and nothing else to revoke; ``--user`` needs ``--all``."""
    token = cli.authorize("alice")
    result = cli(*args)
    assert result.code == 2 and "usage:" in result.err
    assert cli("login", stdin=token).code == 0


# -- --json errors --------------------------------------------------------------------------------
def test_json_errors_are_json_on_stderr(cli: Cli) -> None:
    """With ``--json`` an AuthTokenError is ``{"error", "message"}`` on stderr, exit 1."""
    result = cli("--json", "show", "cccccccccccccccc")
    assert result.code == 1 and result.out == ""
    error = json_error(result.err)
    assert error["error"] == "TokenNotFound"
    login = cli("login", "--json", stdin="atk_garbage")
    assert login.code == 1
    assert json_error(login.err)["error"] == "InvalidToken"


@pytest.mark.parametrize("args", [
    ("--json", "bogus"),
    ("list", "--json", "--bogus"),
    ("--json", "authorize", "--user", "7"),
    ("--json", "revoke"),
    ("--json", "revoke", "--all"),
])
def test_json_usage_errors_are_json_too(cli: Cli, args: tuple[str, ...]) -> None:
    """Usage errors with ``--json``: ``{"error": "UsageError", ...}``, exit 2, no usage text."""
    result = cli.raw(*args)
    assert result.code == 2 and result.out == ""
    assert json_error(result.err)["error"] == "UsageError"


def test_json_error_for_a_token_argument_hides_it(cli: Cli) -> None:
    """A token string as an argument under ``--json``: a JSON usage error, never the token."""
    token = cli.authorize("7")
    result = cli("--json", "show", token)
    assert result.code == 2
    assert json_error(result.err)["error"] == "UsageError"
    assert token not in result.text and token[21:] not in result.text


# -- list, audit ----------------------------------------------------------------------------------
def test_list_shows_the_description(cli: Cli) -> None:
    """The ``list`` table has a DESCRIPTION column."""
    cli.authorize("7", "a", "--description", "nightly sales report")
    cli.authorize("7", "b")
    lines = cli("list").out.splitlines()
    assert "DESCRIPTION" in lines[0].split()
    assert "nightly sales report" in lines[2]


def test_audit_shows_the_user_and_seconds(cli: Cli) -> None:
    """The ``audit`` table names whose token each event is about, with times to the second."""
    cli.authorize("alice")
    cli.authorize("42")
    table = cli("audit")
    lines = table.out.splitlines()
    assert "USER" in lines[0].split()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ ", lines[1])
    assert " 42 " in lines[1] and " alice " in lines[2]
    events = cli("--json", "audit").json()["events"]  # type: ignore[index]
    assert [e["user"] for e in events] == [42, "alice"]


# -- refused logins say what to pass --------------------------------------------------------------
def test_refused_bound_login_names_the_option(cli: Cli) -> None:
    """A ``ScriptNotAuthorized`` login says which ``--script-key``/``--script-path`` to pass."""
    token = cli.authorize("7", "reports:read vfs:ikey?42 ufs:/jobs/my%20job.py")
    result = cli("login", stdin=token)
    assert result.code == 1
    assert result.err.startswith("ScriptNotAuthorized: ")
    assert result.err.count("\n") == 1
    assert "--script-key 42" in result.err
    assert "--script-path '/jobs/my job.py'" in result.err
    wrong = cli("login", "--script-key", "7", stdin=token)
    assert wrong.err.startswith("ScriptNotAuthorized: ") and "--script-key 42" in wrong.err


# -- db current -----------------------------------------------------------------------------------
def test_db_current_never_creates_a_database(cli: Cli, tmp_path: Path) -> None:
    """``db current`` on a missing SQLite file says so, exits 1 and creates nothing."""
    missing = tmp_path / "missing.db"
    result = cli.raw("--database", f"sqlite:///{missing}", "db", "current")
    assert result.code == 1
    assert "RepositoryError" in result.err and "missing.db" in result.err
    assert not missing.exists()
    made = cli.raw("--database", f"sqlite:///{missing}", "db", "upgrade")
    assert made.code == 0 and missing.exists()
    assert cli.raw("--database", f"sqlite:///{missing}", "db", "current").code == 0


def test_db_current_on_the_default_database_creates_nothing(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``--database`` and with no database yet, not even the folder is made."""
    home = authtoken.default_database_path().parents[2]
    before = files_under(home)
    result = cli.raw("--json", "db", "current")
    assert result.code == 1
    assert json_error(result.err)["error"] == "RepositoryError"
    assert files_under(home) == before
    assert not authtoken.default_database_path().parent.exists()


@pytest.mark.slow
def test_db_current_on_postgresql_creates_no_table(cli: Cli, pg_url: str) -> None:
    """``db current`` on an empty PostgreSQL database reads, and creates no table."""
    import psycopg

    result = cli.raw("--json", "--database", pg_url, "db", "current")
    assert result.code == 0, result.err
    assert result.json()["revision"] is None  # type: ignore[index]
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert tables == []


# -- help and mistakes ----------------------------------------------------------------------------
def test_demo_help_says_what_it_does(cli: Cli) -> None:
    """``demo --help`` names the steps and what ``--database`` changes."""
    result = cli.raw("demo", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for words in ("delegat", "refused", "revoke", "throwaway key",
                  "AUTHTOKEN_DATABASE_URL", "--database"):
        assert words in text


@pytest.mark.parametrize(("args", "meant"), [
    (("revokee",), "revoke"),
    (("autorize", "--user", "7"), "authorize"),
    (("db", "curent"), "current"),
])
def test_a_mistyped_command_suggests_the_nearest(
    cli: Cli, args: tuple[str, ...], meant: str,
) -> None:
    """A mistyped command exits 2 and asks ``did you mean '...'?``."""
    result = cli.raw(*args)
    assert result.code == 2
    assert f"did you mean '{meant}'?" in result.err


# -- redaction ------------------------------------------------------------------------------------
def test_demo_never_shows_a_query_password(cli: Cli) -> None:
    """``demo --database URL?password=...`` shows the URL with the password masked."""
    url = "postgresql://someone@127.0.0.1:1/db?password=Hunter2Secret&sslmode=disable"
    result = cli.raw("demo", "--database", url)
    assert "Hunter2Secret" not in result.text
    assert "127.0.0.1" in result.out


def test_error_messages_mask_upper_case_token_strings(
    cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error message holding a token string in any case is masked on stderr."""
    token = cli.authorize("7")

    def failing(*args: object, **kwargs: object) -> object:
        raise authtoken.RepositoryError(f"odd {token.upper()} and {token[4:]}")

    monkeypatch.setattr(authtoken.Security, "list_auth_tokens", failing)
    for args in (("list",), ("--json", "list")):
        result = cli(*args)
        assert result.code == 1
        assert token.upper()[4:30] not in result.err
        assert token[21:] not in result.err


@pytest.mark.parametrize("shape", ["upper", "glued", "body"])
def test_token_arguments_in_any_shape_are_refused(cli: Cli, shape: str) -> None:
    """An upper-cased token, one glued into an argument, or its body alone: exit 2."""
    token = cli.authorize("7")
    argument = {"upper": token.upper(), "glued": f"--description=x{token}",
                "body": token[4:]}[shape]
    result = cli("update", token[4:20], argument) if shape == "glued" else cli(
        "show", argument)
    assert result.code == 2
    assert argument not in result.text and token[21:].upper() not in result.text.upper()


# -- audit prune ----------------------------------------------------------------------------------
def test_audit_prune_drops_old_events(cli: Cli) -> None:
    """``audit prune --before`` drops what is older and says how many; JSON too."""
    cli.authorize("alice")
    result = cli("audit", "prune", "--before", "1d")
    assert result.code == 0, result.err
    assert result.out.startswith("pruned 0 audit events recorded before ")
    future = cli("--json", "audit", "prune", "--before", "2999-01-01T00:00Z")
    assert future.code == 1 and "in the future" in future.err
    done = cli("--json", "audit", "prune", "--before", "0s")
    assert done.code == 0, done.err
    assert done.json()["pruned"] == 1  # type: ignore[index]
    assert cli("audit").out.strip() == "no events"


@pytest.mark.parametrize("args", [
    ("audit", "prune"), ("audit", "--before", "1d"),
    ("audit", "prune", "--before", "1d", "--user", "alice"),
    ("audit", "prune", "--before", "yesterday"), ("audit", "purge", "--before", "1d"),
])
def test_audit_prune_usage_errors(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 2, result
    assert result.err.strip()
