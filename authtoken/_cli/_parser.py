"""The ``authtoken`` argument parser, its argument types, and its usage errors.

Usage errors never echo a token string (every message is redacted), are one JSON line
under ``--json``, and suggest the nearest command for a mistyped one (Python 3.10 has
no ``suggest_on_error``).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, NoReturn

from .._errors import AuthTokenError
from .._scopes import MAX_IDENTIFIER_LENGTH
from . import _commands, _demo, _exec, _scan, _serve, _upstream
from ._output import JSON_ERRORS, PROG, fail, note, one_line

__all__ = ["Parser", "build_parser", "with_suggestion"]

_SCRIPT_KEY: Final = re.compile(r"-?[0-9]+", re.ASCII)
# As many characters as a vfs:ikey? identifier leaves for the key: any key a scope can
# bind, login can name.
_SCRIPT_KEY_LENGTH: Final = MAX_IDENTIFIER_LENGTH - len("vfs:ikey?")
_INVALID_CHOICE: Final = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def with_suggestion(message: str) -> str:
    """``message``, plus ``did you mean 'X'?`` when it is argparse's invalid choice."""
    found = _INVALID_CHOICE.search(message)
    if found is None or "did you mean" in message:
        return message
    choices = [c.strip().strip("'\"") for c in found.group(2).split(",")]
    near = difflib.get_close_matches(found.group(1), choices, n=1)
    return f"{message}; did you mean {near[0]!r}?" if near else message


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors never echo a token string."""

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Before Python 3.13, argparse drops the '--' of '--user=--' and hands the
        # command an empty list (a crash, or an option silently emptied); give it '--',
        # as 3.13 does.  Only '--opt=--' gets here with ['--']: '--opt --' is refused.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            return self._get_value(action, "--")
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        message = with_suggestion(message)
        if JSON_ERRORS.get():
            fail("UsageError", message)
        else:
            self.print_usage(sys.stderr)
            note(f"{self.prog}: error: {one_line(message)}")
        self.exit(2)


def _script_key(text: str) -> int:
    if not _SCRIPT_KEY.fullmatch(text):
        raise argparse.ArgumentTypeError("a script key is an integer, such as 42")
    if len(text) > _SCRIPT_KEY_LENGTH:
        raise argparse.ArgumentTypeError(
            f"a script key has at most {_SCRIPT_KEY_LENGTH} characters"
        )
    return int(text)


def _since(text: str) -> datetime:
    from .._clock import system_clock
    from .._expiry import parse_expires

    try:
        spec = parse_expires(text)
        if spec.relative is not None:
            return system_clock() - spec.relative
        if spec.absolute is not None:
            return spec.absolute
    except (AuthTokenError, OverflowError, ValueError):
        pass
    raise argparse.ArgumentTypeError(
        "not an ISO 8601 time (2027-01-31T08:00Z) or a duration (90m, 12h, 7d)"
    )


def _limit(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text, re.ASCII) or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 10000")
    return int(text)


_MAX_USES_LIMIT: Final = 2**63 - 1  # what the storage's BIGINT column holds


def _max_uses(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text, re.ASCII) \
            or not 1 <= int(text) <= _MAX_USES_LIMIT:
        raise argparse.ArgumentTypeError(
            f"a whole number of logins from 1 (a one-time token) to {_MAX_USES_LIMIT}"
        )
    return int(text)


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text, re.ASCII) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError("a port number from 1 to 65535")
    return int(text)


_EPILOG: Final = f"""\
environment:
  AUTHTOKEN_DATABASE_URL  the database when --database is not given (default: an
                          SQLite file in the per-user data folder)
  AUTHTOKEN_SECRET_KEYS   secret keys, comma-separated, newest first (default: a key
                          file created with mode 0600 beside the default database)
  {_commands.TOKEN_ENV}         the token string for 'login', 'exec', 'revoke --token' and
                          'renew --token' when standard input is a terminal or empty
                          (--token-file F wins over both)
  AUTHTOKEN_MAX_LIFETIME  the policy: no token may live (or be renewed) longer than
                          this duration after it was authorized, such as 90d
  AUTHTOKEN_REQUIRE_EXPIRY
                          the policy: 1/true/yes/on refuses tokens that never expire
  AUTHTOKEN_MAX_TOKENS_PER_USER
                          the policy: how many live tokens a user may hold

Token strings are never accepted as arguments: they would leak into the process list
and shell history.

exit status: 0 done, 1 refused or failed (the error on stderr), 2 bad command line.
With --json, errors on stderr are JSON too: {{"error": CLASS, "message": TEXT}}.
"""

_DEMO: Final = (
    "walk through a token's life cycle, narrated: authorize a token bound to script 42, "
    "log in as script 42, be refused as script 7, delegate a narrower child token and be "
    "refused a wider one, update the token, revoke it, be refused with it and its child"
)
_DEMO_DETAIL: Final = (
    "Without --database the demo uses a fresh temporary database and a throwaway key, "
    "both removed at the end, under no policy; AUTHTOKEN_DATABASE_URL is ignored. With "
    "--database URL it runs on that database with your secret keys "
    "(AUTHTOKEN_SECRET_KEYS or the key file) and the policy of the environment, and "
    "leaves its two revoked tokens there."
)


_DATABASE_HELP: Final = (
    "'sqlite:///path.db', 'postgresql://...' or 'memory://' "
    "(default: AUTHTOKEN_DATABASE_URL, else the per-user SQLite file)"
)
_DEMO_DATABASE_HELP: Final = (
    "'sqlite:///path.db', 'postgresql://...' or 'memory://', used with your secret keys "
    "(default: a temporary database and a throwaway key; AUTHTOKEN_DATABASE_URL is "
    "ignored)"
)


def _common_options(database_help: str = _DATABASE_HELP) -> Parser:
    # SUPPRESS defaults: a value given before the command survives the subparser, and
    # one given after it wins.
    common = Parser(add_help=False)
    common.add_argument(
        "--database", metavar="URL", default=argparse.SUPPRESS, help=database_help,
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="machine-readable output on stdout (and errors as JSON on stderr)",
    )
    return common


def _token_fields(sub: argparse.ArgumentParser, *, authorize: bool) -> None:
    sub.add_argument(
        "--scope", metavar="S", action="append",
        help="identifiers separated by spaces (repeatable), e.g. 'reports:read "
             "vfs:ikey?42'; vfs:/ufs: identifiers bind the token to scripts"
             + ("" if authorize else "; replaces the whole scope"),
    )
    sub.add_argument(
        "--bind-path", metavar="P", action="append",
        help="bind the token to the script at path P, given plainly (spaces and all): "
             "added to the scope as an escaped ufs: identifier (repeatable)",
    )
    sub.add_argument(
        "--bind-file", metavar="F", action="append",
        help="pin the token to the code in file F as it is now: its SHA-256 is added to "
             "the scope as sha256:<digest> (repeatable; a file that cannot be read is "
             "an error naming it)",
    )
    sub.add_argument(
        "--bind-key", metavar="K", action="append", type=_script_key,
        help="bind the token to the script with integer key K: added to the scope as "
             "vfs:ikey?K (repeatable)",
    )
    sub.add_argument(
        "--expires", metavar="E",
        help="'90m', '12h', '30d', '2w', an ISO 8601 time, or 'never'"
             + (" (default: 30d)" if authorize else ""),
    )
    data = sub.add_mutually_exclusive_group()
    data.add_argument("--data", metavar="D", help="a payload bound to the token")
    if not authorize:
        data.add_argument("--no-data", action="store_true", help="remove the payload")
    sub.add_argument("--description", metavar="T", help="what the token is for")
    sub.add_argument(
        "--max-uses", metavar="N", type=_max_uses,
        help="how many logins the token allows (1: a one-time token)" + (
            "" if authorize else "; only a token authorized with a limit has one to change"),
    )
    sub.add_argument(
        "--max-lifetime", metavar="D",
        help="make the token renewable ('authtoken renew') up to this long after it was "
             "authorized: a duration such as '90d'; it needs an expiry no later"
             + ("" if authorize else "; 'never' makes the token not renewable"),
    )


def _script_options(sub: argparse.ArgumentParser, doing: str) -> None:
    sub.add_argument("--script-key", metavar="K", type=_script_key,
                     help=f"the integer key of the script {doing}")
    sub.add_argument("--script-path", metavar="P", help=f"the path of the script {doing}")
    sub.add_argument("--script-file", metavar="F",
                     help=f"the file the script {doing} runs: read now for its SHA-256 "
                          "(for tokens pinned to code); its path too, unless "
                          "--script-path gives another")


_TOKEN_FILE_HELP: Final = (
    "read the token string from file F instead: a regular file, yours or root's, that "
    "group and others may neither read nor write (chmod 600), as systemd's "
    f"LoadCredential= hands one over; it wins over standard input and {_commands.TOKEN_ENV}"
)


def _token_file(sub: argparse.ArgumentParser, *, implies_token: bool = False) -> None:
    sub.add_argument("--token-file", metavar="F",
                     help=_TOKEN_FILE_HELP + ("; needs no --token" if implies_token else ""))


def _exec_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--script-key", metavar="K", type=_script_key,
                     help="the integer key of the script CMD is")
    script = sub.add_mutually_exclusive_group()
    script.add_argument("--script-path", metavar="P", help="the path of the script CMD is")
    script.add_argument("--script-file", metavar="F",
                        help="the file of the script CMD runs: read now for its SHA-256 "
                             "(for tokens pinned to code), and its path")
    sub.add_argument("--run-id", metavar="ID",
                     help="the run's id, stored on the run token (default: a fresh UUID)")
    sub.add_argument("--run-expires", metavar="E",
                     help="the run token's expiry: a duration such as '2h', or an ISO 8601 "
                          "time (default: 1h, cut to the standing token's expiry)")
    sub.add_argument("--max-uses", metavar="N", type=_max_uses,
                     help="how many logins the run token allows (default: unlimited, or "
                          "the standing token's own limit)")
    _token_file(sub)
    sub.add_argument("command_line", metavar="CMD", nargs="*",
                     help="the command to run and its arguments, after '--' (run without "
                          "a shell)")


def build_parser() -> argparse.ArgumentParser:
    """The ``authtoken`` argument parser."""
    from .. import __version__

    common = _common_options()
    parser = Parser(
        prog=PROG, parents=[common], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Scoped, revocable delegation tokens: authorize, inspect, revoke.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser,
    )

    def command(name: str, handler: Callable[[argparse.Namespace], int],
                summary: str, detail: str = "",
                options: Parser = common) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, parents=[options], allow_abbrev=False, help=summary,
            description=f"{summary}. {detail}" if detail else summary,
        )
        sub.set_defaults(handler=handler, command_parser=sub)
        return sub

    sub = command("authorize", _commands.cmd_authorize,
                  "authorize a new token and print its string (shown this once)",
                  "Give its scope with --scope, --bind-path or --bind-key (at least one; "
                  "they add up).")
    sub.add_argument("--user", metavar="U", required=True,
                     help="the user the token logs in as (digits: an integer user)")
    _token_fields(sub, authorize=True)

    sub = command("login", _commands.cmd_login,
                  "log in with the token string read from standard input (or "
                  f"{_commands.TOKEN_ENV}, or --token-file F)")
    _script_options(sub, "logging in")
    _token_file(sub)

    sub = command("list", _commands.cmd_list, "list tokens, newest first")
    sub.add_argument("--user", metavar="U", help="only this user's tokens")
    sub.add_argument("--all", action="store_true", help="include revoked tokens")
    sub.add_argument("--run", metavar="RUN_ID",
                     help="only the tokens made for this run of a job")

    sub = command("show", _commands.cmd_show, "show one token")
    sub.add_argument("key", metavar="KEY", help="the token's key")

    sub = command("update", _commands.cmd_update,
                  "change a token's scope, expiry, data or description",
                  "--scope, --bind-path and --bind-key together make the new scope, "
                  "which replaces the old one.")
    sub.add_argument("key", metavar="KEY", help="the token's key")
    _token_fields(sub, authorize=False)

    sub = command("revoke", _commands.cmd_revoke,
                  "revoke a token (and every token derived from it) by key, by the token "
                  "string read from standard input with --token, or every token of a "
                  "user with --user U --all")
    sub.add_argument("key", metavar="KEY", nargs="?", help="the token's key")
    sub.add_argument("--token", action="store_true",
                     help=f"read the token string from standard input (or "
                          f"{_commands.TOKEN_ENV})")
    _token_file(sub, implies_token=True)
    sub.add_argument("--user", metavar="U",
                     help="with --all: the user whose tokens to revoke")
    sub.add_argument("--all", action="store_true",
                     help="with --user U: revoke every token of that user, and every "
                          "token derived from them; prints how many")

    sub = command("renew", _commands.cmd_renew,
                  "renew a token authorized with --max-lifetime, by key or by the token "
                  "string read from standard input with --token, and print its new expiry",
                  "The new expiry is now plus --by (default: the token's first lifetime), "
                  "no later than its max-lifetime, its parent's expiry or the policy "
                  "allow; a renewal never shortens a token.")
    sub.add_argument("key", metavar="KEY", nargs="?", help="the token's key")
    sub.add_argument("--token", action="store_true",
                     help=f"read the token string from standard input (or "
                          f"{_commands.TOKEN_ENV})")
    _token_file(sub, implies_token=True)
    sub.add_argument("--by", metavar="D",
                     help="extend the token this long from now: a duration such as '7d' "
                          "(default: its first lifetime)")

    sub = command("check", _commands.cmd_check,
                  "say whether a login with the token KEY by the script given would pass "
                  "now, and if not, why and what to change (exit 0: it would pass, 1: "
                  "refused)",
                  "Needs no token string: for the token's owner. Give the script as the "
                  "job runs it, or nothing for a login that names no script.")
    sub.add_argument("key", metavar="KEY", help="the token's key")
    _script_options(sub, "that would log in")

    sub = command("scan", _scan.cmd_scan,
                  "find token strings in files, folders (recursively, .git left out) and "
                  "standard input ('-'), and print PATH:LINE: KEY for each, never the "
                  "string (exit 0: none found, 1: some found)",
                  "Binary files are skipped; unreadable ones with a note on stderr; a path "
                  "that does not exist is a usage error (exit 2) before anything is "
                  "scanned. Only --check and --revoke open the database.")
    sub.add_argument("paths", metavar="PATH", nargs="*",
                     help="a file, a folder, or '-' for standard input (default: .)")
    sub.add_argument("--check", action="store_true",
                     help="add what the store knows of each key: live, revoked, expired "
                          "or unknown")
    sub.add_argument("--revoke", action="store_true",
                     help="revoke each live token found (and every token derived from "
                          "it), and say so; implies --check")

    command("demo", _demo.cmd_demo, _DEMO, _DEMO_DETAIL,
            options=_common_options(_DEMO_DATABASE_HELP))

    sub = command("audit", _commands.cmd_audit,
                  "the audit trail, newest first: who authorized, updated, revoked and "
                  "logged in with which token, and what was refused; 'audit prune "
                  "--before WHEN' drops the events older than WHEN")
    sub.add_argument("action", nargs="?", choices=("prune",),
                     help="prune: drop the events recorded before --before")
    sub.add_argument("--before", metavar="WHEN", type=_since,
                     help="with prune: an ISO 8601 time, or a duration such as '90d' "
                          "meaning that long ago")
    sub.add_argument("--user", metavar="U", help="only events about this user's tokens")
    sub.add_argument("--token", metavar="KEY", dest="token_key",
                     help="only events about the token with this key")
    sub.add_argument("--since", metavar="WHEN", type=_since,
                     help="only events at or after WHEN: an ISO 8601 time, or a duration "
                          "such as '1h' or '7d' meaning that long ago")
    sub.add_argument("--limit", metavar="N", type=_limit, default=100,
                     help="at most N events (default 100, at most 10000)")

    sub = command("serve-admin", _serve.cmd_serve_admin,
                  "serve the admin API and the token management page (/ui/)")
    sub.add_argument("--host", default="127.0.0.1",
                     help="the address to listen on (default 127.0.0.1: this machine only)")
    sub.add_argument("--port", type=_port, default=8181, help="the port (default 8181)")
    sub.add_argument("--proxy-headers", action="store_true",
                     help="behind a reverse proxy: take the client address and scheme "
                          "from X-Forwarded-For/-Proto (needed for the rate limit and the "
                          "page's origin check)")
    sub.add_argument("--forwarded-allow-ips", metavar="IPS", default="127.0.0.1",
                     help="with --proxy-headers: the proxies trusted to set them, "
                          "comma-separated (default 127.0.0.1)")
    sub.add_argument("--admin-scope", metavar="S", default="authtoken:admin",
                     help="callers whose token holds this scope are admins "
                          "(default authtoken:admin)")
    _serve.add_serve_options(sub)

    sub = command("exec", _exec.cmd_exec,
                  "run a command as the user of the standing token: log in with it for "
                  "the script given, make a run token, run CMD with AUTHTOKEN_TOKEN set to "
                  "the run token and AUTHTOKEN_PRINCIPAL to its login as JSON, revoke the "
                  "run token when CMD ends, and exit with CMD's status",
                  "The standing token is read as by 'login' (--token-file F, else standard "
                  "input, else AUTHTOKEN_TOKEN) and is not passed to CMD (a CMD running as "
                  "the token file's user can still read that file). SIGINT, SIGTERM, "
                  "SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM and SIGWINCH are passed on "
                  "to CMD, unless ignored when exec started; a signal N that ends CMD is "
                  "exit status 128+N; a command that cannot be found is 127, one that "
                  "cannot be run 126. A refused login runs nothing and exits 1. Writes nothing to "
                  "standard output itself.")
    _exec_options(sub)
    sub.usage = ("%(prog)s [-h] [--database URL] [--json] [--script-key K]\n"
                 "       [--script-path P | --script-file F] [--run-id ID] "
                 "[--run-expires E]\n       [--max-uses N] [--token-file F] "
                 "-- CMD [ARG ...]")

    sub = command("db", _commands.cmd_db,
                  "the database schema: 'current' shows its revision (and creates "
                  "nothing), 'upgrade' migrates it to the one this authtoken needs")
    sub.add_argument("action", choices=("current", "upgrade"))

    sub = command("upstream", _upstream.cmd_upstream,
                  "link a user's account at an upstream named in the upstreams file "
                  "('link'), list the user's links ('list') or forget one ('unlink'); "
                  "needs authtoken[broker]")
    _upstream.add_upstream_commands(sub, common, Parser)
    return parser
