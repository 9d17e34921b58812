"""Tokens for jobs on the command line: ``--max-uses``, ``--max-lifetime``, ``renew``,
``list --run``, and what ``list``/``show``/``login`` say about them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.cli import SECRET_KEY, TOKEN_RE, Cli, Result

from authtoken import AuthToken, Policy, Security, open_security
from authtoken.testing import FakeClock

POLICY_VARIABLES = ("AUTHTOKEN_MAX_LIFETIME", "AUTHTOKEN_REQUIRE_EXPIRY",
                    "AUTHTOKEN_MAX_TOKENS_PER_USER")
LOGIN_KEYS = {"user", "token_key", "scopes", "data", "expires"}


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         url: str) -> Cli:
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    for name in POLICY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return Cli(monkeypatch, capsys, url)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, no policy in the environment."""
    return _cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_cli(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, then over PostgreSQL."""
    url = (f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    return _cli(monkeypatch, capsys, url)


def at(text: object) -> datetime:
    assert isinstance(text, str)
    return datetime.fromisoformat(text)


def fields(result: Result) -> dict[str, str]:
    """The ``name: value`` lines of ``show`` (or ``login``)."""
    assert result.code == 0, result.err
    return {name: value.strip() for name, value in
            (line.split(":", 1) for line in result.out.splitlines())}


def authorized(cli: Cli, *extra: str, user: str = "7") -> tuple[str, str]:
    """Authorize through the command line; the token string and its key."""
    string = cli.authorize(user, "reports:read", *extra)
    assert TOKEN_RE.fullmatch(string)
    return string, string[4:20]


@contextlib.contextmanager
def engine(cli: Cli, now: datetime | None = None) -> Iterator[Security]:
    """The library over the command line's database, its clock standing at ``now``."""
    clock = None if now is None else FakeClock(now)
    with open_security(cli.url, secret_keys=SECRET_KEY, clock=clock,
                       policy=Policy()) as security:
        yield security


def past_token(cli: Cli, days_ago: float, **options: object) -> tuple[str, str]:
    """A token authorized ``days_ago`` days ago (its string and key)."""
    then = datetime.now(timezone.utc) - timedelta(days=days_ago)
    with engine(cli, then) as security:
        token = AuthToken("reports:read", **options)  # type: ignore[arg-type]
        string = security.authorize_token(token, user=7)
    assert token.key is not None
    return string, token.key


def renew_events(cli: Cli, key: str) -> list[dict[str, object]]:
    result = cli("--json", "audit", "--token", key)
    assert result.code == 0, result.err
    value = result.json()
    assert isinstance(value, dict)
    return [e for e in value["events"] if e["action"] == "renew"]


def test_a_renewable_token_without_an_expiry_lives_its_max_lifetime_first(cli: Cli) -> None:
    """The default expiry of a token renewable for 29 days is 29 days, not 30."""
    before = datetime.now(timezone.utc)
    result = cli("--json", "authorize", "--user", "7", "--scope", "a", "--max-lifetime", "29d")
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict)
    expires = datetime.fromisoformat(str(view["expires"]))
    assert timedelta(days=29) <= expires - before < timedelta(days=29, minutes=5)


def refused(result: Result, error: str) -> None:
    """Exit 1, ``error: message`` alone on stderr, nothing on stdout."""
    assert result.code == 1, result
    assert result.out == ""
    assert result.err.startswith(f"{error}: "), result.err
    assert result.err.count("\n") == 1


def usage(result: Result) -> None:
    """Exit 2, a usage error, nothing on stdout."""
    assert result.code == 2, result
    assert result.out == ""
    assert "usage:" in result.err


# -- authorize and show --------------------------------------------------------------------
def test_authorize_with_limits_shows_them(any_cli: Cli) -> None:
    """``--max-uses`` and ``--max-lifetime`` are stored; ``show`` gives uses left and
    the time the token is renewable until, ``--json`` the view's fields."""
    cli = any_cli
    result = cli("--json", "authorize", "--user", "7", "--scope", "a", "--expires", "1d",
                 "--max-uses", "3", "--max-lifetime", "60d")
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict)
    assert (view["max_uses"], view["max_lifetime"], view["run_id"]) == (3, "60d", None)
    created = at(view["created_at"])
    assert at(view["expires"]) - created == timedelta(days=1)
    shown = fields(cli("show", str(view["key"])))
    assert shown["max_uses"] == "3 (3 left)"
    until = (created + timedelta(days=60)).isoformat()
    assert shown["max_lifetime"] == f"60d (renewable until {until})"
    assert "run_id" not in shown
    assert cli.view(str(view["key"])) == {k: v for k, v in view.items() if k != "token"}


def test_show_of_a_plain_token_has_no_limit_rows(cli: Cli) -> None:
    """A token without limits shows the fields it always showed, and no more."""
    _, key = authorized(cli)
    shown = fields(cli("show", key))
    assert not {"max_uses", "max_lifetime", "run_id"} & set(shown)
    view = cli.view(key)
    assert (view["max_uses"], view["max_lifetime"], view["run_id"]) == (None, None, None)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "", " 5", "0x10", "\uff15",
                                   "9" * 19, "9223372036854775808", "9" * 5000])
def test_a_bad_max_uses_is_a_usage_error(cli: Cli, value: str) -> None:
    """``--max-uses`` takes a whole number from 1 to 2**63-1; anything else is exit 2,
    and nothing is stored."""
    for command in (["authorize", "--user", "7", "--scope", "a"], ["update", "a" * 16]):
        result = cli(*command, f"--max-uses={value}")
        usage(result)
        assert "--max-uses" in result.err and "from 1" in result.err
        assert value not in result.err or value in ("0", "")
    assert cli("--json", "list", "--all").json() == {"tokens": []}


def test_the_largest_max_uses_is_accepted(cli: Cli) -> None:
    """``--max-uses 9223372036854775807`` (the storage's limit) is stored as given."""
    result = cli("--json", "authorize", "--user", "7", "--scope", "a",
                 "--max-uses", str(2**63 - 1))
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict) and view["max_uses"] == 2**63 - 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--expires", "30d", "--max-lifetime", "1d"], "shorter than the token's first"),
        (["--expires", "2d", "--max-lifetime", "1d"], "shorter than the token's first"),
        (["--expires", "never", "--max-lifetime", "1d"], "must expire"),
        (["--max-lifetime", "2030-01-01T00:00:00Z"], "not a point in time"),
        (["--max-lifetime", "0d"], "positive"),
        (["--max-lifetime", "soon"], "not readable"),
        (["--max-lifetime", "99999999999d"], "--max-lifetime"),
        (["--max-lifetime=-1d"], "--max-lifetime"),
    ],
)
def test_a_bad_max_lifetime_exits_1_and_stores_nothing(
        cli: Cli, args: list[str], says: str) -> None:
    """A ``--max-lifetime`` that is no duration, or that cannot hold the expiry, is
    ``InvalidArgument``; no token is stored."""
    result = cli("authorize", "--user", "7", "--scope", "a", *args)
    refused(result, "InvalidArgument")
    assert says in result.err
    assert cli("--json", "list", "--all").json() == {"tokens": []}


def test_max_lifetime_never_on_authorize_is_no_limit(cli: Cli) -> None:
    """``--max-lifetime never`` authorizes a token that is not renewable."""
    result = cli("--json", "authorize", "--user", "7", "--scope", "a",
                 "--max-lifetime", "never")
    assert result.code == 0, result.err
    view = result.json()
    assert isinstance(view, dict) and view["max_lifetime"] is None


# -- login and uses ----------------------------------------------------------------------------
def test_login_spends_uses_until_exhausted(any_cli: Cli) -> None:
    """Each login spends one use; the one after the last is ``TokenExhausted`` (exit 1,
    the token not echoed), and ``list``/``show`` count the uses left."""
    cli = any_cli
    string, key = authorized(cli, "--max-uses", "2")
    first = cli("--json", "login", stdin=string)
    assert first.code == 0, first.err
    principal = first.json()
    assert isinstance(principal, dict) and set(principal) == LOGIN_KEYS
    assert fields(cli("show", key))["max_uses"] == "2 (1 left)"
    assert cli("login", stdin=string).code == 0
    spent = cli("login", stdin=string)
    refused(spent, "TokenExhausted")
    assert string not in spent.err
    view = cli.view(key)
    assert (view["use_count"], view["max_uses"]) == (2, 2)
    assert fields(cli("show", key))["max_uses"] == "2 (0 left)"
    table = cli("list").out.splitlines()
    assert table[0].split() == ["KEY", "USER", "SCOPE", "DESCRIPTION", "EXPIRES", "USES",
                                "STATUS"]
    assert "0 of 2 left" in table[1] and table[1].endswith("used up")


def test_an_exhausted_token_stays_refused_through_the_environment(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-time token read from ``AUTHTOKEN_TOKEN`` logs in once, then is refused."""
    string, _ = authorized(cli, "--max-uses", "1")
    monkeypatch.setenv("AUTHTOKEN_TOKEN", string)
    assert cli("login").code == 0
    again = cli("login")
    refused(again, "TokenExhausted")
    as_json = cli("--json", "login")
    assert as_json.code == 1 and as_json.out == ""
    assert '"error": "TokenExhausted"' in as_json.err and string not in as_json.err


def test_login_of_a_run_token_names_its_run(cli: Cli) -> None:
    """A run token's login says which run it is for; ``--json`` keeps its five keys."""
    with engine(cli) as security:
        string = security.authorize_token(AuthToken("a"), user=7, run_id="nightly-42")
    assert fields(cli("login", stdin=string))["run_id"] == "nightly-42"
    principal = cli("--json", "login", stdin=string).json()
    assert isinstance(principal, dict) and set(principal) == LOGIN_KEYS
    plain, _ = authorized(cli)
    assert "run_id" not in fields(cli("login", stdin=plain))


# -- list --------------------------------------------------------------------------------------
def test_list_run_filters_by_run(any_cli: Cli) -> None:
    """``list --run R`` lists the tokens made for run R only (revoked ones with
    ``--all``); the table gains a RUN column, ``-`` for tokens of no run."""
    cli = any_cli
    with engine(cli) as security:
        security.authorize_token(AuthToken("a"), user=7, run_id="build 17")
        other = AuthToken("a")
        security.authorize_token(other, user=7, run_id="build 18")
        mine = AuthToken("a")
        security.authorize_token(mine, user=7, run_id="build 17")
    _, plain = authorized(cli)
    listed = cli("--json", "list", "--run", "build 17").json()
    assert isinstance(listed, dict)
    runs = listed["tokens"]
    assert [t["run_id"] for t in runs] == ["build 17", "build 17"]
    assert runs[0]["key"] == mine.key
    table = cli("list").out.splitlines()
    assert table[0].split()[-2:] == ["RUN", "STATUS"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert "build 18" in rows[str(other.key)] and " - " in rows[plain]
    assert cli("revoke", str(mine.key)).code == 0
    live = cli("--json", "list", "--run", "build 17").json()
    every = cli("--json", "list", "--run", "build 17", "--all").json()
    assert isinstance(live, dict) and isinstance(every, dict)
    assert len(live["tokens"]) == 1 and len(every["tokens"]) == 2


def test_list_run_with_no_match(cli: Cli) -> None:
    """A run no token was made for lists nothing and says so, exit 0."""
    authorized(cli)
    assert cli("--json", "list", "--run", "nope").json() == {"tokens": []}
    result = cli("list", "--run", "nope")
    assert result.code == 0
    assert result.out == "no live tokens of run 'nope' (--all shows revoked ones too)\n"
    assert cli("list", "--run", "nope", "--all").out == "no tokens of run 'nope'\n"


@pytest.mark.parametrize("run", ["", "x" * 201, "a\x1b[2Jb", "line\nbreak"])
def test_list_run_refuses_what_no_run_id_can_be(cli: Cli, run: str) -> None:
    """``--run`` with a value no run token can carry is ``InvalidArgument``, and the
    value is not sent back to the terminal."""
    result = cli("list", f"--run={run}")
    refused(result, "InvalidArgument")
    assert "\x1b" not in result.err


def test_list_keeps_its_columns_without_limits(cli: Cli) -> None:
    """Tokens without limits or runs list under the six columns they always had."""
    authorized(cli)
    header = cli("list").out.splitlines()[0].split()
    assert header == ["KEY", "USER", "SCOPE", "DESCRIPTION", "EXPIRES", "STATUS"]


def test_list_shows_renewable_until(cli: Cli) -> None:
    """A renewable token's row gives ``created_at + max_lifetime`` to the minute."""
    _, key = authorized(cli, "--expires", "1h", "--max-lifetime", "2d")
    created = at(cli.view(key)["created_at"])
    table = cli("list").out.splitlines()
    assert table[0].split() == ["KEY", "USER", "SCOPE", "DESCRIPTION", "EXPIRES",
                                "RENEWABLE", "UNTIL", "STATUS"]
    until = (created + timedelta(days=2)).strftime("%Y-%m-%d %H:%MZ")
    assert until in table[1]


# -- renew -------------------------------------------------------------------------------------
def test_renew_by_key_extends_and_prints_the_new_expiry(any_cli: Cli) -> None:
    """``renew KEY --by D`` moves the expiry to now + D and prints it, with the time
    the token is renewable until; ``show`` agrees."""
    cli = any_cli
    _, key = authorized(cli, "--expires", "1h", "--max-lifetime", "30d")
    before = cli.view(key)
    low = datetime.now(timezone.utc)
    result = cli("renew", key, "--by", "2d")
    high = datetime.now(timezone.utc)
    assert result.code == 0, result.err
    after = cli.view(key)
    expires = at(after["expires"])
    assert low + timedelta(days=2) <= expires <= high + timedelta(days=2)
    until = at(before["created_at"]) + timedelta(days=30)
    assert result.out == (f"renewed {key}: expires {expires.isoformat()}, renewable until "
                          f"{until.isoformat()}\n")
    assert result.err == ""
    assert after["created_at"] == before["created_at"]
    assert [e["outcome"] for e in renew_events(cli, key)] == ["ok"]


def test_renew_json_is_key_expires_and_renewable_until(cli: Cli) -> None:
    """``--json renew`` prints ``{"key", "expires", "renewable_until"}``."""
    _, key = authorized(cli, "--expires", "1h", "--max-lifetime", "30d")
    result = cli("--json", "renew", key)
    assert result.code == 0, result.err
    value = result.json()
    assert isinstance(value, dict)
    assert set(value) == {"key", "expires", "renewable_until"}
    view = cli.view(key)
    assert value["key"] == key and value["expires"] == view["expires"]
    created = at(view["created_at"])
    assert at(value["renewable_until"]) == created + timedelta(days=30)


def test_renew_stops_at_max_lifetime(cli: Cli) -> None:
    """A renewal asking past ``created_at + max_lifetime`` stops exactly there; a
    second one changes nothing and says the same."""
    _, key = past_token(cli, 10, expires="11d", max_lifetime="12d")
    created = at(cli.view(key)["created_at"])
    first = cli("--json", "renew", key, "--by", "7d").json()
    assert isinstance(first, dict)
    assert at(first["expires"]) == created + timedelta(days=12)
    assert first["renewable_until"] == first["expires"]
    again = cli("--json", "renew", key, "--by", "7d").json()
    assert again == first


def test_renew_defaults_to_the_first_lifetime(cli: Cli) -> None:
    """Without ``--by`` a renewal extends by the token's first lifetime."""
    _, key = past_token(cli, 1, expires="3d", max_lifetime="60d")
    low = datetime.now(timezone.utc)
    result = cli("--json", "renew", key).json()
    high = datetime.now(timezone.utc)
    assert isinstance(result, dict)
    assert low + timedelta(days=3) <= at(result["expires"]) <= high + timedelta(days=3)


def test_renew_never_shortens(cli: Cli) -> None:
    """``--by`` shorter than what is left keeps the expiry."""
    _, key = authorized(cli, "--expires", "5d", "--max-lifetime", "30d")
    before = cli.view(key)["expires"]
    result = cli("--json", "renew", key, "--by", "1h").json()
    assert isinstance(result, dict) and result["expires"] == before


def test_renew_token_reads_standard_input(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``renew --token`` takes the string from standard input, else ``AUTHTOKEN_TOKEN``,
    and never prints it."""
    string, key = authorized(cli, "--expires", "1h", "--max-lifetime", "30d")
    piped = cli("renew", "--token", "--by", "3h", stdin=f"  {string}\n")
    assert piped.code == 0, piped.err
    assert piped.out.startswith(f"renewed {key}: expires ")
    assert string not in piped.text
    monkeypatch.setenv("AUTHTOKEN_TOKEN", string)
    from_env = cli("--json", "renew", "--token", "--by", "4h")
    assert from_env.code == 0, from_env.err
    value = from_env.json()
    assert isinstance(value, dict) and value["key"] == key
    assert string not in from_env.text
    assert [e["outcome"] for e in renew_events(cli, key)] == ["ok", "ok"]


@pytest.mark.parametrize("stdin", ["", "   \n", "not a token", "atk_" + "a" * 16 + ".x.y"])
def test_renew_token_without_a_good_string_is_invalid_token(cli: Cli, stdin: str) -> None:
    """No string, or a malformed one, is ``InvalidToken`` and echoes nothing of it."""
    result = cli("renew", "--token", stdin=stdin)
    refused(result, "InvalidToken")
    assert stdin.strip() == "" or stdin.strip() not in result.err


def test_renew_token_of_a_tampered_string_is_invalid_token(cli: Cli) -> None:
    """A string whose secret does not match is ``InvalidToken``; nothing moves."""
    string, key = authorized(cli, "--expires", "1h", "--max-lifetime", "30d")
    before = cli.view(key)
    tampered = string[:-3] + ("AAA" if not string.endswith("AAA") else "BBB")
    result = cli("renew", "--token", stdin=tampered)
    refused(result, "InvalidToken")
    assert tampered not in result.err and string not in result.err
    assert cli.view(key) == before


@pytest.mark.parametrize(
    "args",
    [(), ("aaaaaaaaaaaaaaaa", "--token"), ("--by",), ("aaaaaaaaaaaaaaaa", "extra")],
)
def test_renew_usage_errors(cli: Cli, args: tuple[str, ...]) -> None:
    """``renew`` needs exactly one of KEY and ``--token``: anything else is exit 2."""
    usage(cli("renew", *args, stdin=""))


@pytest.mark.parametrize(
    ("by", "says"),
    [
        ("0d", "positive"),
        ("0s", "positive"),
        ("2030-01-01", "not a point in time"),
        ("2030-01-01T00:00:00Z", "not a point in time"),
        ("never", "not 'never'"),
        ("soon", "not readable"),
        ("-1d", "--by"),
        ("99999999999d", "--by"),
        ("1d 2h", None),
    ],
)
def test_a_bad_by_exits_1_and_writes_nothing(cli: Cli, by: str, says: str | None) -> None:
    """A ``--by`` that is not a positive duration is ``InvalidArgument`` before the
    database is touched: the token and its trail are as they were."""
    _, key = authorized(cli, "--expires", "1h", "--max-lifetime", "30d")
    before = cli.view(key)
    result = cli("renew", key, f"--by={by}")
    if says is None:  # spaces inside a duration are allowed, as for max_lifetime
        assert result.code == 0, result.err
        return
    refused(result, "InvalidArgument")
    assert says in result.err
    assert cli.view(key) == before
    assert renew_events(cli, key) == []


def test_renew_of_a_token_that_is_not_renewable(cli: Cli) -> None:
    """A token without ``max_lifetime`` is not renewable: ``InvalidArgument``, its
    expiry unchanged, the refusal on the trail."""
    _, key = authorized(cli, "--expires", "1h")
    before = cli.view(key)
    result = cli("renew", key, "--by", "1d")
    refused(result, "InvalidArgument")
    assert "not renewable" in result.err
    assert cli.view(key) == before
    assert [(e["outcome"], e["reason"]) for e in renew_events(cli, key)] == [
        ("refused", "InvalidArgument")]


def test_renew_of_a_revoked_token(cli: Cli) -> None:
    """A revoked token is ``TokenRevoked``, by key and by string."""
    string, key = authorized(cli, "--expires", "1h", "--max-lifetime", "30d")
    assert cli("revoke", key).code == 0
    before = cli.view(key)
    refused(cli("renew", key), "TokenRevoked")
    by_string = cli("renew", "--token", stdin=string)
    refused(by_string, "TokenRevoked")
    assert string not in by_string.err
    assert cli.view(key) == before


def test_renew_of_an_expired_token(cli: Cli) -> None:
    """A token past its expiry is ``TokenExpired``: renewal does not revive it."""
    string, key = past_token(cli, 2, expires="1d", max_lifetime="30d")
    before = cli.view(key)
    refused(cli("renew", key, "--by", "7d"), "TokenExpired")
    refused(cli("renew", "--token", stdin=string), "TokenExpired")
    assert cli.view(key) == before


def test_renew_of_an_unknown_key(cli: Cli) -> None:
    """An unknown key is ``TokenNotFound``; a key that cannot be one says so too."""
    refused(cli("renew", "b" * 16), "TokenNotFound")
    refused(cli("renew", "not-a-key"), "TokenNotFound")


def test_a_child_renews_no_further_than_its_parent(cli: Cli) -> None:
    """A child token's renewal stops at its parent's expiry."""
    from authtoken import Session

    with engine(cli) as security:
        parent = security.authorize_token(AuthToken("a b", expires="2d"), user=7)
        session = Session(security)
        session.login_by_auth_token(parent)
        child = AuthToken("a", expires="1h", max_lifetime="30d")
        security.authorize_token(child, user=None, actor=session.actor)
        parent_expires = security.restore_auth_token(parent).expires
    assert child.key is not None and parent_expires is not None
    result = cli("--json", "renew", child.key, "--by", "7d").json()
    assert isinstance(result, dict)
    assert at(result["expires"]) == parent_expires


# -- update ------------------------------------------------------------------------------------
def test_update_changes_max_uses_and_max_lifetime(any_cli: Cli) -> None:
    """``update --max-uses`` changes a limit; ``--max-lifetime D`` makes a token
    renewable up to ``created_at + D``; ``--max-lifetime never`` takes that off."""
    cli = any_cli
    string, key = authorized(cli, "--max-uses", "2", "--expires", "1d")
    assert cli("login", stdin=string).code == 0
    shown = fields(cli("update", key, "--max-uses", "5", "--max-lifetime", "90d"))
    created = at(cli.view(key)["created_at"])
    assert shown["max_uses"] == "5 (4 left)"
    assert shown["max_lifetime"] == (
        f"90d (renewable until {(created + timedelta(days=90)).isoformat()})")
    assert cli("renew", key, "--by", "2d").code == 0
    cleared = cli("--json", "update", key, "--max-lifetime", "never").json()
    assert isinstance(cleared, dict)
    assert (cleared["max_uses"], cleared["max_lifetime"]) == (5, None)
    refused(cli("renew", key), "InvalidArgument")


@pytest.mark.parametrize(
    ("authorize", "update", "error"),
    [
        ((), ("--max-uses", "3"), "InvalidArgument"),  # no limit to change
        (("--expires", "10d", "--max-lifetime", "30d"), ("--max-lifetime", "5d"),
         "InvalidArgument"),  # ends before the current expiry
        (("--expires", "never"), ("--max-lifetime", "30d"), "InvalidArgument"),
        (("--expires", "1d", "--max-lifetime", "30d"), ("--expires", "never"),
         "InvalidArgument"),
        ((), ("--max-lifetime", "2030-01-01"), "InvalidArgument"),
        ((), ("--max-lifetime", "0d"), "InvalidArgument"),
    ],
)
def test_update_refusals_change_nothing(cli: Cli, authorize: tuple[str, ...],
                                        update: tuple[str, ...], error: str) -> None:
    """A limit the token cannot take is refused, exit 1, and the token is unchanged."""
    _, key = authorized(cli, *authorize)
    before = cli.view(key)
    refused(cli("update", key, *update), error)
    assert cli.view(key) == before


def test_update_with_only_a_limit_is_something_to_change(cli: Cli) -> None:
    """``update KEY --max-lifetime D`` alone is a change; with nothing at all, the usage
    error names the new options."""
    _, key = authorized(cli)
    assert cli("update", key, "--max-lifetime", "60d").code == 0
    nothing = cli("update", key)
    usage(nothing)
    assert "--max-uses" in nothing.err and "--max-lifetime" in nothing.err
