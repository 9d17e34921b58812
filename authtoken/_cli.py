"""The ``authtoken`` command line.

Theory of operation
-------------------
Every command opens one ``Security`` (``--database`` or ``open_security``'s default;
secret keys only from ``AUTHTOKEN_SECRET_KEYS`` or the default key file), does one thing
and closes it, so buffered usage is written before the process ends.

A token string is a password: given as an argument it would land in ``ps`` output and
shell history.  So the raw argument list is scanned *before* argparse sees it, and any
argument that looks like a token string is refused (exit 2) without being echoed; the
commands that need a token (``login``, ``revoke --token``) read it from standard input,
or from ``AUTHTOKEN_TOKEN`` when standard input is a terminal or holds only whitespace.
Usage errors pass through the same redaction, and so does every error message.

Exit status: 0 done; 1 an ``AuthTokenError`` (``ClassName: message`` on stderr, one
line); 2 the command line does not parse.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, NoReturn

from ._errors import (
    AuthTokenError,
    InvalidArgument,
    InvalidToken,
    PermissionDenied,
    ScriptNotAuthorized,
    TokenRevoked,
)
from ._scopes import Script
from ._security import Security, open_security
from ._session import ScriptRunner
from ._token import AuthToken, Principal, UserKey, check_user
from ._views import event_view, principal_view, token_view

__all__ = ["main", "parse_user", "read_token"]

PROG: Final = "authtoken"
#: At most this much of standard input is read when looking for a token string.
MAX_STDIN: Final = 64 * 1024
TOKEN_ENV: Final = "AUTHTOKEN_TOKEN"  # noqa: S105 - a variable name, not a secret

# What a token string looks like, loosely: anything matching is refused as an argument.
_TOKEN_ARGUMENT: Final = re.compile(r"atk_[a-z2-7]{16}\.")
# What is blanked out of any text we print to stderr, just in case.
_TOKEN_TEXT: Final = re.compile(r"atk_[A-Za-z0-9._-]{8,}")
_DECIMAL: Final = re.compile(r"[0-9]+", re.ASCII)
_SCRIPT_KEY: Final = re.compile(r"-?[0-9]{1,30}", re.ASCII)
_URL_PASSWORD: Final = re.compile(r"(://[^/:@\s]*:)[^@/\s]*@")

_TOKEN_AS_ARGUMENT: Final = (
    f"{PROG}: error: a token string cannot be given as an argument (it would leak into "
    f"the process list and shell history); pipe it on standard input or set {TOKEN_ENV}"
)


# -- text helpers -------------------------------------------------------------------------
def _redact(text: str) -> str:
    return _TOKEN_TEXT.sub("atk_[redacted]", text)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def _out(text: str = "") -> None:
    _write(sys.stdout, text)


def _err(text: str) -> None:
    _write(sys.stderr, _redact(text))


def _json(value: object) -> None:
    _out(json.dumps(value, indent=2))


def _safe(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (no terminal tricks)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _user_text(user: UserKey | None) -> str:
    """A user as shown to people: strings that could pass for something else are quoted."""
    if user is None:
        return "-"
    if isinstance(user, int):
        return str(user)
    if _DECIMAL.fullmatch(user) or not user.isprintable() or " " in user or '"' in user:
        return json.dumps(user)
    return user


def _time_text(value: datetime | None, none: str = "-") -> str:
    if value is None:
        return none
    return value.astimezone(timezone.utc).isoformat()


def _short_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- arguments ------------------------------------------------------------------------------
def parse_user(text: str) -> UserKey:
    """A ``--user`` value: ASCII digits are the integer user, anything else a string.

    Raises ``InvalidArgument`` for a string that is not a valid user.
    """
    if _DECIMAL.fullmatch(text):
        try:
            return int(text)
        except ValueError as exc:  # more digits than int() will read
            raise InvalidArgument("the user number is too long") from exc
    return check_user(text)


def _script_key(text: str) -> int:
    if not _SCRIPT_KEY.fullmatch(text):
        raise argparse.ArgumentTypeError("a script key is an integer, such as 42")
    return int(text)


def _stdin_text(stream: Any) -> str:
    """What ``stream`` holds (at most ``MAX_STDIN``), or ``""`` when it is a terminal."""
    if stream is None:
        return ""
    isatty = getattr(stream, "isatty", None)
    try:
        if callable(isatty) and isatty():
            return ""
        source = getattr(stream, "buffer", None)
        if source is None or not callable(getattr(source, "read", None)):
            source = stream
        raw = source.read(MAX_STDIN + 1)
    except (OSError, ValueError):  # closed, unreadable or captured: nothing to read
        return ""
    if raw is None:
        return ""
    if len(raw) > MAX_STDIN and raw.strip():
        raise InvalidToken(
            "standard input holds more than 64 KiB; a token string is at most 256 characters"
        )
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "replace")
    return str(raw)


def read_token() -> str:
    """The token string: from standard input, else from ``AUTHTOKEN_TOKEN``.

    Surrounding whitespace is stripped.  Standard input is used unless it is a terminal
    or holds only whitespace.  Raises ``InvalidToken`` when neither holds anything.
    """
    text = _stdin_text(sys.stdin).strip()
    if not text:
        text = os.environ.get(TOKEN_ENV, "").strip()
    if not text:
        raise InvalidToken(
            f"no token string: pipe it on standard input or set {TOKEN_ENV}"
        )
    return text


# -- parser ----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors never echo a token string."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {_one_line(_redact(message))}\n")


_EPILOG: Final = f"""\
environment:
  AUTHTOKEN_DATABASE_URL  the database when --database is not given (default: an
                          SQLite file in the per-user data folder)
  AUTHTOKEN_SECRET_KEYS   secret keys, comma-separated, newest first (default: a key
                          file created with mode 0600 beside the default database)
  {TOKEN_ENV}         the token string for 'login' and 'revoke --token' when
                          standard input is a terminal or empty

Token strings are never accepted as arguments: they would leak into the process list
and shell history.

exit status: 0 done, 1 refused or failed (the error on stderr), 2 bad command line.
"""


def _common_options() -> _Parser:
    # SUPPRESS defaults: a value given before the command survives the subparser, and
    # one given after it wins.
    common = _Parser(add_help=False)
    common.add_argument(
        "--database", metavar="URL", default=argparse.SUPPRESS,
        help="'sqlite:///path.db', 'postgresql://...' or 'memory://' "
             "(default: AUTHTOKEN_DATABASE_URL, else the per-user SQLite file)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="machine-readable output on stdout",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``authtoken`` argument parser."""
    from . import __version__

    common = _common_options()
    parser = _Parser(
        prog=PROG, parents=[common], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Scoped, revocable delegation tokens: authorize, inspect, revoke.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser,
    )

    def command(name: str, handler: Callable[[argparse.Namespace], int],
                summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, parents=[common], allow_abbrev=False, help=summary, description=summary,
        )
        sub.set_defaults(handler=handler, command_parser=sub)
        return sub

    def token_fields(sub: argparse.ArgumentParser, *, required_scope: bool) -> None:
        sub.add_argument(
            "--scope", metavar="S", action="append", required=required_scope,
            help="identifiers separated by spaces (repeatable), e.g. 'reports:read "
                 "vfs:ikey?42'; vfs:/ufs: identifiers bind the token to scripts",
        )
        sub.add_argument(
            "--expires", metavar="E",
            help="'90m', '12h', '30d', '2w', an ISO 8601 time, or 'never'"
                 + (" (default: 30d)" if required_scope else ""),
        )
        data = sub.add_mutually_exclusive_group()
        data.add_argument("--data", metavar="D", help="a payload bound to the token")
        if not required_scope:
            data.add_argument("--no-data", action="store_true",
                              help="remove the payload")
        sub.add_argument("--description", metavar="T", help="what the token is for")

    sub = command("authorize", _cmd_authorize,
                  "authorize a new token and print its string (shown this once)")
    sub.add_argument("--user", metavar="U", required=True,
                     help="the user the token logs in as (digits: an integer user)")
    token_fields(sub, required_scope=True)

    sub = command("login", _cmd_login,
                  f"log in with the token string read from standard input (or {TOKEN_ENV})")
    sub.add_argument("--script-key", metavar="K", type=_script_key,
                     help="the integer key of the script logging in")
    sub.add_argument("--script-path", metavar="P", help="the path of the script logging in")

    sub = command("list", _cmd_list, "list tokens, newest first")
    sub.add_argument("--user", metavar="U", help="only this user's tokens")
    sub.add_argument("--all", action="store_true", help="include revoked tokens")

    sub = command("show", _cmd_show, "show one token")
    sub.add_argument("key", metavar="KEY", help="the token's key")

    sub = command("update", _cmd_update, "change a token's scope, expiry, data or description")
    sub.add_argument("key", metavar="KEY", help="the token's key")
    token_fields(sub, required_scope=False)

    sub = command("revoke", _cmd_revoke,
                  "revoke a token (and every token derived from it) by key, or by the "
                  "token string read from standard input with --token")
    sub.add_argument("key", metavar="KEY", nargs="?", help="the token's key")
    sub.add_argument("--token", action="store_true",
                     help=f"read the token string from standard input (or {TOKEN_ENV})")

    command("demo", _cmd_demo,
            "walk through a token's life cycle on a temporary database, narrated")

    sub = command("audit", _cmd_audit,
                  "the audit trail, newest first: who authorized, updated, revoked and "
                  "logged in with which token, and what was refused")
    sub.add_argument("--user", metavar="U", help="only events about this user's tokens")
    sub.add_argument("--token", metavar="KEY", dest="token_key",
                     help="only events about the token with this key")
    sub.add_argument("--since", metavar="WHEN", type=_since,
                     help="only events at or after WHEN: an ISO 8601 time, or a duration "
                          "such as '1h' or '7d' meaning that long ago")
    sub.add_argument("--limit", metavar="N", type=_limit, default=100,
                     help="at most N events (default 100, at most 10000)")

    sub = command("serve-admin", _cmd_serve_admin,
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

    sub = command("db", _cmd_db,
                  "the database schema: 'current' shows its revision, 'upgrade' migrates "
                  "it to the one this authtoken needs")
    sub.add_argument("action", choices=("current", "upgrade"))
    return parser


# -- commands -----------------------------------------------------------------------------------
def _json_mode(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _open(args: argparse.Namespace) -> Security:
    database: str | None = getattr(args, "database", None)
    return open_security(database)


def _usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    parser: argparse.ArgumentParser = args.command_parser
    parser.error(message)


def _show_token(token: AuthToken) -> None:
    rows = [
        ("key", token.key or "-"),
        ("user", _user_text(token.user)),
        ("scope", _safe(token.scope)),
        ("description", _safe(token.description) or "-"),
        ("data", "-" if token.data is None else _safe(token.data)),
        ("expires", _time_text(token.expires, none="never")),
        ("created_at", _time_text(token.created_at)),
        ("updated_at", _time_text(token.updated_at)),
        ("revoked_at", _time_text(token.revoked_at)),
        ("last_used_at", _time_text(token.last_used_at)),
        ("use_count", str(token.use_count)),
        ("parent_key", token.parent_key or "-"),
    ]
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        _out(f"{name + ':':<{width}} {value}")


def _cmd_authorize(args: argparse.Namespace) -> int:
    user = parse_user(args.user)
    scope = " ".join(args.scope)
    description: str = args.description or ""
    if args.expires is None:
        token = AuthToken(scope, args.data, description=description)
    else:
        token = AuthToken(scope, args.data, description=description, expires=args.expires)
    with _open(args) as security:
        string = security.authorize_token(token, user=user)
    if _json_mode(args):
        _json({**token_view(token), "token": string})
    else:
        _out(string)
    return 0


def _show_principal(principal: Principal) -> None:
    _out(f"user: {_user_text(principal.user)}")
    _out(f"scopes: {_safe(' '.join(principal.scopes))}")
    _out(f"token_key: {principal.token_key}")
    _out(f"expires: {_time_text(principal.expires, none='never')}")
    if principal.data is not None:
        _out(f"data: {_safe(principal.data)}")


def _cmd_login(args: argparse.Namespace) -> int:
    key: int | None = args.script_key
    path: str | None = args.script_path
    script = None if key is None and path is None else Script(key=key, path=path)
    string = read_token()
    with _open(args) as security:
        principal = security.login_by_auth_token(string, script=script)
    if _json_mode(args):
        _json(principal_view(principal))
    else:
        _show_principal(principal)
    return 0


def _status(token: AuthToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return f"revoked {_short_time(token.revoked_at)}"
    expires = token.expires
    if expires is not None and now >= expires:
        return "expired"
    if token.last_used_at is not None:
        return f"used {token.use_count}x, last {_short_time(token.last_used_at)}"
    return "unused"


def _cmd_list(args: argparse.Namespace) -> int:
    user = None if args.user is None else parse_user(args.user)
    with _open(args) as security:
        tokens = security.list_auth_tokens(user=user, include_revoked=args.all)
        now = security.now()
    if _json_mode(args):
        _json({"tokens": [token_view(t) for t in tokens]})
        return 0
    if not tokens:
        _out("no tokens" if args.all else "no live tokens (--all shows revoked ones too)")
        return 0
    header = ("KEY", "USER", "SCOPE", "EXPIRES", "STATUS")
    rows = [header] + [
        (
            t.key or "-",
            _cut(_user_text(t.user), 24),
            _cut(_safe(t.scope), 40),
            "never" if t.expires is None else _short_time(t.expires),
            _status(t, now),
        )
        for t in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as security:
        token = security.get_auth_token(args.key)
    if _json_mode(args):
        _json(token_view(token))
    else:
        _show_token(token)
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    if (args.scope is None and args.expires is None and args.data is None
            and not args.no_data and args.description is None):
        _usage_error(args, "nothing to change: give --scope, --expires, --data, "
                           "--no-data or --description")
    with _open(args) as security:
        token = security.get_auth_token(args.key)
        if args.scope is not None:
            token.scope = " ".join(args.scope)
        if args.expires is not None:
            token.expires = args.expires
        if args.no_data:
            token.data = None
        elif args.data is not None:
            token.data = args.data
        if args.description is not None:
            token.description = args.description
        security.update_auth_token(token)
    if _json_mode(args):
        _json(token_view(token))
    else:
        _show_token(token)
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    if args.key is None and not args.token:
        _usage_error(args, "give the token's KEY, or --token to read the token string "
                           "from standard input")
    if args.key is not None and args.token:
        _usage_error(args, "give KEY or --token, not both")
    if args.token:
        string = read_token()
        with _open(args) as security:
            key = security.restore_auth_token(string).key
            security.revoke_auth_token(string)
    else:
        key = args.key
        with _open(args) as security:
            security.revoke_auth_token_by_key(key)
    if _json_mode(args):
        _json({"revoked": key})
    else:
        _out(f"revoked {key} (and every token derived from it)")
    return 0


# -- demo ------------------------------------------------------------------------------------------
class _DemoFailed(Exception):
    """The engine did not behave as the demo expected."""


def _since(text: str) -> datetime:
    from dateutil.parser import isoparse

    from ._expiry import _DURATION, _parse_duration

    text = text.strip()
    try:
        if _DURATION.fullmatch(text):
            return datetime.now(timezone.utc) - _parse_duration(text)
        when = isoparse(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            "not an ISO 8601 time (2027-01-31T08:00Z) or a duration (90m, 12h, 7d)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _limit(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text, re.ASCII) or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 10000")
    return int(text)


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text, re.ASCII) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError("a port number from 1 to 65535")
    return int(text)


def _cmd_audit(args: argparse.Namespace) -> int:
    user = None if args.user is None else parse_user(args.user)
    with _open(args) as security:
        events = security.audit_events(user=user, token_key=args.token_key,
                                       since=args.since, limit=args.limit)
    if _json_mode(args):
        _json({"events": [{**event_view(e), "count": e.count} for e in events]})  # always
        return 0
    if not events:
        _out("no events")
        return 0
    header = ("AT", "ACTION", "OUTCOME", "TOKEN", "ACTOR", "SCRIPT", "REASON")
    rows = [header]
    for e in events:
        script = "-" if e.script is None else _cut(_safe(" ".join(
            ([f"key={e.script.key}"] if e.script.key is not None else [])
            + ([e.script.path] if e.script.path is not None else []))), 30)
        outcome = e.outcome if e.count == 1 else f"{e.outcome} x{e.count}"
        rows.append((_short_time(e.at), e.action, outcome, e.token_key or "-",
                     _cut(_safe(e.actor or "-"), 30), script, e.reason or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


_LOOPBACK: Final = ("127.0.0.1", "::1", "localhost")


def _cmd_serve_admin(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .admin import DelegationTokenAuth, create_app
    except ImportError:
        _err(f"{PROG} serve-admin needs the web server: pip install 'authtoken[serve]'")
        return 1
    host = args.host.strip()
    security = _open(args)
    with security:
        security.list_auth_tokens(user="-")  # storage reachable and schema current
        app = create_app(security, authenticate=DelegationTokenAuth(
            security, admin_scope=args.admin_scope or None))
        shown = f"[{host}]" if ":" in host else host
        _err(f"{PROG}: the admin API and the token page on http://{shown}:{args.port}/ui/ "
             f"-- sign in with a token ('{PROG} authorize --user U --scope "
             f"\"{args.admin_scope} ...\"' makes an admin one). Ctrl+C stops.")
        if host not in _LOOPBACK:
            _err(f"{PROG}: warning: listening on {host}, beyond this machine, without "
                 "TLS: put it behind an HTTPS reverse proxy.")
        uvicorn.run(app, host=host, port=args.port, lifespan="off", log_level="warning",
                    access_log=False, server_header=False, proxy_headers=args.proxy_headers,
                    forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from ._migrate import HEAD
    from ._security import default_database_url, open_repository
    from ._sql import SQLRepository, redact_url

    database: str | None = getattr(args, "database", None)
    url = default_database_url() if database is None else database
    repository = open_repository(url)
    try:
        if not isinstance(repository, SQLRepository):
            raise InvalidArgument(f"{redact_url(url)!r} has no schema to migrate")
        if args.action == "current":
            revision = repository.schema_revision()
            if _json_mode(args):
                _json({"revision": revision, "head": HEAD})
            else:
                _out(f"schema revision: {revision or 'none (empty database)'}; "
                     f"this authtoken needs {HEAD}")
        else:
            before, after = repository.upgrade_schema()
            if _json_mode(args):
                _json({"before": before, "after": after})
            elif before == after:
                _out(f"schema already at {after}")
            else:
                _out(f"schema upgraded from {before or 'empty'} to {after}")
    finally:
        repository.close()
    return 0


def _mask(string: str) -> str:
    return string[:12] + "…"


class _Narrator:
    """Prints the demo step by step, or collects the steps for ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.steps: list[dict[str, object]] = []

    def note(self, text: str) -> None:
        if not self.as_json:
            _out(text)
            sys.stdout.flush()

    def step(self, action: str, outcome: str, result: str, *,
             error: str | None = None, **detail: object) -> None:
        number = len(self.steps) + 1
        self.steps.append({
            "step": number, "action": action, "outcome": outcome, "error": error,
            "result": result, **detail,
        })
        if not self.as_json:
            _out(f"{number:>2}. {action}")
            _out(f"    -> {result}")
            sys.stdout.flush()

    def refused(self, action: str, expected: type[AuthTokenError],
                attempt: Callable[[], object], why: str) -> None:
        try:
            attempt()
        except expected as exc:
            name = type(exc).__name__
            self.step(action, "refused", f"refused, as it should be: {name}: "
                      f"{_one_line(str(exc))} ({why})", error=name)
            return
        raise _DemoFailed(f"{action}: expected {expected.__name__}, but it succeeded")


def _principal_text(principal: Principal) -> str:
    data = "" if principal.data is None else f", data {principal.data}"
    return (f"logged in as user {_user_text(principal.user)} with scopes "
            f"{' '.join(principal.scopes)}{data}")


def _run_demo(security: Security, say: _Narrator) -> None:
    user = "alice"
    report_script = Script(key=42)
    other_script = Script(key=7)

    token = AuthToken(
        "reports:read vfs:ikey?42",
        '{"report": "weekly-sales"}',
        description="weekly sales report, run by script 42",
        expires="7d",
    )
    string = security.authorize_token(token, user=user)
    say.step(
        f"Authorize a token for user {user!r}: scope {token.scope!r} (vfs:ikey?42 binds it "
        "to script 42), a data payload, expiring in 7 days.",
        "ok",
        f"token {token.key} authorized; its string is shown once, to the user who "
        f"authorized it: {_mask(string)} (masked here). Storage keeps only a digest "
        "of its secret.",
        token_key=token.key, token_string_masked=_mask(string),
    )

    principal = security.login_by_auth_token(string, script=report_script)
    say.step("Script 42 logs in with the token string.", "ok", _principal_text(principal),
             principal=principal_view(principal))

    say.refused(
        "Script 7 tries to log in with the same token string.", ScriptNotAuthorized,
        lambda: security.login_by_auth_token(string, script=other_script),
        "the token is bound to script 42 only",
    )

    session = ScriptRunner(security, report_script).login_by_auth_token(string)
    child = AuthToken("vfs:ikey?42", description="one-off rerun of the report", expires="1h")
    child_string = session.authorize_token(child)
    say.step(
        "Logged in as script 42, the job delegates a narrower child token: still bound "
        "to script 42, without reports:read, for one hour.",
        "ok",
        f"child token {child.key} authorized ({_mask(child_string)}), parent "
        f"{child.parent_key}",
        token_key=child.key, parent_key=child.parent_key,
    )
    say.refused(
        "The same session tries to delegate a wider token, with reports:write.",
        PermissionDenied,
        lambda: session.authorize_token(AuthToken("reports:write vfs:ikey?42", expires="1h")),
        "a token can only delegate what it holds itself",
    )

    token.description = "weekly sales report, run by script 42 on Mondays"
    token.expires = "3d"
    security.update_auth_token(token)
    say.step(
        "Update the token: a new description, and it now expires in 3 days.",
        "ok",
        f"description {token.description!r}, expires {_time_text(token.expires)}",
        view=token_view(token),
    )

    assert token.key is not None
    security.revoke_auth_token_by_key(token.key)
    say.step(f"Revoke token {token.key} by its key.", "ok",
             "revoked, and with it every token derived from it", token_key=token.key)

    say.refused(
        "Script 42 logs in with the revoked token.", TokenRevoked,
        lambda: security.login_by_auth_token(string, script=report_script),
        "every later login, in every process, sees the revocation",
    )
    say.refused(
        "Script 42 logs in with the child token.", TokenRevoked,
        lambda: security.login_by_auth_token(child_string, script=report_script),
        "revoking a token revokes the tokens derived from it",
    )

    security.flush()
    final = security.get_auth_token(token.key)
    say.step(
        "Read the token back: what the database recorded.", "ok",
        f"use_count {final.use_count}, last used {_time_text(final.last_used_at)}, "
        f"revoked at {_time_text(final.revoked_at)}",
        view=token_view(final),
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    as_json = _json_mode(args)
    say = _Narrator(as_json)
    database: str | None = getattr(args, "database", None)
    say.note("authtoken demo: the life of a delegation token, step by step.")
    try:
        with contextlib.ExitStack() as stack:
            if database is None:
                folder = stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="authtoken-demo-", ignore_cleanup_errors=True,
                ))
                path = Path(folder) / "demo.db"
                shown = str(path)
                say.note(f"Using a temporary database, {shown}, and a throwaway secret key.")
                security = open_security(f"sqlite:///{path}",
                                         secret_keys=secrets.token_urlsafe(32))
            else:
                shown = _URL_PASSWORD.sub(r"\1***@", database)
                say.note(f"Using the database {shown} (--database).")
                security = open_security(database)
            with security:
                say.note("")
                _run_demo(security, say)
        if database is None:
            say.note(f"\nRemoved the temporary database {shown}.")
    except _DemoFailed as exc:
        _err(f"{PROG} demo: the engine misbehaved: {_one_line(str(exc))}")
        return 1
    if as_json:
        _json({"database": shown, "temporary": database is None, "steps": say.steps})
    else:
        _out("The demo went as expected.")
    return 0


# -- entry point -----------------------------------------------------------------------------------
def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


@contextlib.contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        # The reader went away (``authtoken list | head``): stop writing, quietly.
        with contextlib.suppress(Exception):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``authtoken`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0 done, 1 an ``AuthTokenError`` (reported on stderr as
    ``ClassName: message``), 2 a command line that does not parse.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(_TOKEN_ARGUMENT.search(argument) for argument in arguments):
        _err(_TOKEN_AS_ARGUMENT)
        return 2
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        return _exit_code(exc.code)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with _quiet_broken_pipe():
            return handler(args)
    except SystemExit as exc:  # a usage error found after parsing
        return _exit_code(exc.code)
    except AuthTokenError as exc:
        _err(f"{type(exc).__name__}: {_one_line(str(exc))}")
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted")
        return 130
