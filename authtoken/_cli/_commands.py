"""The commands of ``authtoken`` but ``demo``: each opens one ``Security``, does one
thing, closes it (so buffered usage is written before the process ends) and returns the
exit status.  An ``AuthTokenError`` is left to ``main`` to report.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Final, NoReturn

from .._errors import InvalidArgument, RepositoryError, ScriptNotAuthorized
from .._escape import unescape
from .._expiry import Relative, parse_duration
from .._jobs import check_run_id
from .._open import open_security
from .._scopes import Script, key_binding, path_binding, scope_warnings
from .._security import Security
from .._session import Session
from .._token import AuthToken, Principal, UserKey, check_user
from .._views import event_view, isoformat, principal_view, token_view
from ._input import MAX_STDIN, TOKEN_ENV, read_token
from ._output import (
    PROG,
    cut,
    fail,
    json_text,
    out,
    print_json,
    safe,
    short_time,
    table,
    time_text,
    user_text,
    warn,
)
from ._pinning import file_bindings, script_of
from ._tokens import renewable_until, show_token, token_table

__all__ = [
    "MAX_STDIN",
    "TOKEN_ENV",
    "cmd_audit",
    "cmd_authorize",
    "cmd_check",
    "cmd_db",
    "cmd_list",
    "cmd_login",
    "cmd_renew",
    "cmd_revoke",
    "cmd_show",
    "cmd_update",
    "duration",
    "json_mode",
    "open_store",
    "parse_user",
    "principal_json",
    "read_token",
    "script_login",
    "usage_error",
]



# -- arguments and input ------------------------------------------------------------------
def parse_user(text: str) -> UserKey:
    """A ``--user`` value: ASCII digits are the integer user, anything else a string.

    Raises ``InvalidArgument`` for a string that is not a valid user.
    """
    if text.isascii() and text.isdigit():
        try:
            return int(text)
        except ValueError as exc:  # more digits than int() will read
            raise InvalidArgument("the user number is too long") from exc
    return check_user(text)


def json_mode(args: argparse.Namespace) -> bool:
    """Whether ``--json`` was given."""
    return bool(getattr(args, "json", False))


def open_store(args: argparse.Namespace) -> Security:
    """The store the command works on: ``--database``, else ``open_security``'s default."""
    database: str | None = getattr(args, "database", None)
    # No policy given: open_security applies the environment's (Policy.from_env).
    return open_security(database)


def duration(text: str, option: str) -> Relative:
    """The duration ``option`` gives (``"90d"``); ``InvalidArgument`` for a time, a
    duration that is not positive, or ``never``."""
    value = parse_duration(text, option)
    if value is None:
        raise InvalidArgument(f"{option} is a duration such as '7d', not 'never'")
    return value


def usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    """Exit 2 with ``message`` as the command's usage error."""
    parser: argparse.ArgumentParser = args.command_parser
    parser.error(message)


def _scope(args: argparse.Namespace) -> str | None:
    """The scope given by ``--scope``, ``--bind-path``, ``--bind-key`` and
    ``--bind-file``; ``None`` when none was given.  ``InvalidArgument`` names a
    ``--bind-file`` that cannot be read."""
    parts: list[str] = list(args.scope or ())
    parts.extend(path_binding(path) for path in args.bind_path or ())
    parts.extend(key_binding(key) for key in args.bind_key or ())
    parts.extend(file_bindings(args))
    return " ".join(parts) if parts else None


def _warn_about_scope(args: argparse.Namespace) -> None:
    """Warn on stderr about each ``--scope`` slip.  Called once the command succeeded,
    so that a failure stays its error's one line on stderr."""
    for text in args.scope or ():
        for warning in scope_warnings(text):
            warn(warning)


# -- commands ---------------------------------------------------------------------------------
def cmd_authorize(args: argparse.Namespace) -> int:
    user = parse_user(args.user)
    scope = _scope(args)
    if scope is None:
        usage_error(args, "give the token's scope: --scope S, --bind-path P, "
                          "--bind-key K or --bind-file F (at least one)")
    description: str = args.description or ""
    lifetime = None if args.max_lifetime is None \
        else parse_duration(args.max_lifetime, "--max-lifetime")
    if args.expires is None:
        token = AuthToken(scope, args.data, description=description,
                          max_uses=args.max_uses, max_lifetime=lifetime)
    else:
        token = AuthToken(scope, args.data, description=description, expires=args.expires,
                          max_uses=args.max_uses, max_lifetime=lifetime)
    with open_store(args) as security:
        string = security.authorize_token(token, user=user)
    _warn_about_scope(args)
    if json_mode(args):
        print_json({**token_view(token), "token": string})
    else:
        out(string)
    return 0


def _show_principal(principal: Principal) -> None:
    out(f"user: {user_text(principal.user)}")
    out(f"scopes: {safe(' '.join(principal.scopes))}")
    out(f"token_key: {principal.token_key}")
    out(f"expires: {time_text(principal.expires, none='never')}")
    if principal.data is not None:
        out(f"data: {safe(principal.data)}")
    if principal.run_id is not None:
        out(f"run_id: {safe(principal.run_id)}")


_SHELL_ESCAPES: Final = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _shell_word(text: str) -> str:
    """``text`` quoted for a shell, on one line: bash's ``$'...'`` when it holds a
    character that cannot be shown as it is (a newline, an escape)."""
    if text.isprintable():
        return shlex.quote(text)
    return "$'" + "".join(_shell_character(c) for c in text) + "'"


def _shell_character(c: str) -> str:
    if c in _SHELL_ESCAPES:
        return _SHELL_ESCAPES[c]
    if "\udc80" <= c <= "\udcff":  # a byte of a non-UTF-8 path (surrogateescape)
        return f"\\x{ord(c) - 0xDC00:02x}"
    return c if c.isprintable() else ascii(c)[1:-1]


def _path_option(path: str) -> str:
    # argparse takes '--script-path -x' for a missing value: glue one that starts with '-'.
    word = _shell_word(path)
    return f"--script-path={word}" if path.startswith("-") else f"--script-path {word}"


def _binding_options(token: AuthToken) -> str:
    """The login options that satisfy ``token``'s script bindings, ready to paste."""
    options: list[str] = []
    for scope in token.scopes:
        if scope.startswith("vfs:ikey?"):
            options.append(f"--script-key {scope[len('vfs:ikey?'):]}")
        elif scope.startswith("ufs:"):
            options.append(_path_option(unescape(scope[4:])))
    code = ("--script-file F, F the file of the code it is pinned to"
            if any(scope.startswith("sha256:") for scope in token.scopes) else "")
    if not options:
        return f"pass {code}" if code else ""
    shown = " or ".join(options[:4]) + (" or ..." if len(options) > 4 else "")
    also = f", and {code}" if code else ""
    return f"pass {shown} to log in as a script it is bound to{also}"


def script_login(security: Security, string: str, script: Script | None) -> Session | None:
    """A session logged in with ``string`` for ``script``; ``None`` once a refusal for
    another script was reported on stderr with the options that would pass (the caller
    exits 1).  Any other refusal is raised for ``main`` to report."""
    session = Session(security, script=script)
    try:
        session.login_by_auth_token(string)
    except ScriptNotAuthorized as exc:
        # Raised only after the secret matched: the caller holds the token and may
        # learn what it is bound to.
        hint = _binding_options(security.restore_auth_token(string)) \
            or "pass --script-key or --script-path"
        # The engine's message speaks of the Python API when no script was named.
        told = "the token is bound to scripts" if script is None else str(exc)
        fail(type(exc).__name__, f"{told}; {hint}")
        return None
    return session


def principal_json(principal: Principal) -> str:
    """What ``login --json`` prints for ``principal`` (``AUTHTOKEN_PRINCIPAL`` too)."""
    return json_text(principal_view(principal))


def cmd_login(args: argparse.Namespace) -> int:
    script = script_of(args)
    string = read_token(args.token_file)
    with open_store(args) as security:
        session = script_login(security, string, script)
    if session is None or session.principal is None:
        return 1
    if json_mode(args):
        out(principal_json(session.principal))
    else:
        _show_principal(session.principal)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    script = script_of(args)
    with open_store(args) as security:
        check = security.explain_login(args.key, script=script)
    if json_mode(args):
        print_json({"ok": check.ok, "reason": check.reason, "message": check.message})
    else:
        out(f"{'ok' if check.ok else check.reason}: {safe(check.message)}")
    return 0 if check.ok else 1


def cmd_list(args: argparse.Namespace) -> int:
    user = None if args.user is None else parse_user(args.user)
    run_id = None if args.run is None else check_run_id(args.run)
    with open_store(args) as security:
        tokens = security.list_auth_tokens(user=user, include_revoked=args.all,
                                           run_id=run_id)
        now = security.now()
    if json_mode(args):
        print_json({"tokens": [token_view(t) for t in tokens]})
    elif tokens:
        token_table(tokens, now)
    else:
        of_run = "" if run_id is None else f" of run {safe(run_id)!r}"
        out(f"no tokens{of_run}" if args.all
            else f"no live tokens{of_run} (--all shows revoked ones too)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_store(args) as security:
        token = security.get_auth_token(args.key)
    if json_mode(args):
        print_json(token_view(token))
    else:
        show_token(token)
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    scope = _scope(args)
    if (scope is None and args.expires is None and args.data is None
            and not args.no_data and args.description is None
            and args.max_uses is None and args.max_lifetime is None):
        usage_error(args, "nothing to change: give --scope, --bind-path, --bind-key, "
                          "--bind-file, --expires, --data, --no-data, --description, "
                          "--max-uses or --max-lifetime")
    lifetime = None if args.max_lifetime is None \
        else parse_duration(args.max_lifetime, "--max-lifetime")
    with open_store(args) as security:
        token = security.get_auth_token(args.key)
        if scope is not None:
            token.scope = scope
        if args.expires is not None:
            token.expires = args.expires
        if args.no_data:
            token.data = None
        elif args.data is not None:
            token.data = args.data
        if args.description is not None:
            token.description = args.description
        if args.max_uses is not None:
            token.max_uses = args.max_uses
        if args.max_lifetime is not None:  # 'never' (None) takes the limit off
            token.max_lifetime = lifetime
        security.update_auth_token(token)
    _warn_about_scope(args)
    if json_mode(args):
        print_json(token_view(token))
    else:
        show_token(token)
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    by_string = args.token or args.token_file is not None
    if args.key is None and not by_string:
        usage_error(args, "give the token's KEY, --token to read the token string from "
                          "standard input, or --token-file F")
    if args.key is not None and by_string:
        usage_error(args, "give KEY or --token/--token-file, not both")
    by = None if args.by is None else duration(args.by, "--by")
    if by_string:
        string = read_token(args.token_file)
        with open_store(args) as security:
            expires = security.renew_auth_token(string, by=by)
            token = security.restore_auth_token(string)
    else:
        with open_store(args) as security:
            expires = security.renew_auth_token_by_key(args.key, by=by)
            token = security.get_auth_token(args.key)
    until = renewable_until(token)
    if json_mode(args):
        print_json({"key": token.key, "expires": isoformat(expires),
                    "renewable_until": isoformat(until)})
    else:
        out(f"renewed {token.key}: expires {time_text(expires)}, renewable until "
            f"{time_text(until)}")
    return 0


def _revoke_all(args: argparse.Namespace) -> int:
    if args.user is None:
        usage_error(args, "--all needs --user U: it revokes every token of that user")
    if args.key is not None or args.token or args.token_file is not None:
        usage_error(args, "--user U --all revokes by user: give no KEY, --token or "
                          "--token-file with it")
    user = parse_user(args.user)
    with open_store(args) as security:
        count = security.revoke_user_tokens(user)
    if json_mode(args):
        print_json({"revoked": count, "user": user})
    else:
        out(f"revoked {count} token{'' if count == 1 else 's'}: those of user "
            f"{user_text(user)} and every token derived from them")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    if args.all:
        return _revoke_all(args)
    if args.user is not None:
        usage_error(args, "--user U needs --all to revoke every token of that user")
    by_string = args.token or args.token_file is not None
    if args.key is None and not by_string:
        usage_error(args, "give the token's KEY, --token to read the token string "
                          "from standard input, --token-file F, or --user U --all")
    if args.key is not None and by_string:
        usage_error(args, "give KEY or --token/--token-file, not both")
    if by_string:
        string = read_token(args.token_file)
        with open_store(args) as security:
            key = security.restore_auth_token(string).key
            security.revoke_auth_token(string)
    else:
        key = args.key
        with open_store(args) as security:
            security.revoke_auth_token_by_key(key)
    if json_mode(args):
        print_json({"revoked": key})
    else:
        out(f"revoked {key} (and every token derived from it)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "prune":
        return _prune(args)
    if args.before is not None:
        usage_error(args, "--before is for 'audit prune --before WHEN'")
    user = None if args.user is None else parse_user(args.user)
    with open_store(args) as security:
        events = security.audit_events(user=user, token_key=args.token_key,
                                       since=args.since, limit=args.limit)
    if json_mode(args):
        print_json({"events": [{**event_view(e), "user": e.user, "count": e.count}
                               for e in events]})
        return 0
    if not events:
        out("no events")
        return 0
    header = ("AT", "ACTION", "OUTCOME", "TOKEN", "USER", "ACTOR", "SCRIPT", "REASON")
    rows = [header]
    for e in events:
        script = "-" if e.script is None else cut(safe(" ".join(
            ([f"key={e.script.key}"] if e.script.key is not None else [])
            + ([e.script.path] if e.script.path is not None else []))), 30)
        outcome = e.outcome if e.count == 1 else f"{e.outcome} x{e.count}"
        rows.append((short_time(e.at, seconds=True), e.action, outcome, e.token_key or "-",
                     cut(user_text(e.user), 24), cut(safe(e.actor or "-"), 30), script,
                     e.reason or "-"))
    table(rows)
    return 0


def _prune(args: argparse.Namespace) -> int:
    if args.before is None:
        usage_error(args, "audit prune needs --before WHEN (say --before 90d)")
    if args.user is not None or args.token_key is not None or args.since is not None:
        usage_error(args, "audit prune drops every event before --before: it takes no "
                          "--user, --token or --since")
    with open_store(args) as security:
        dropped = security.prune_audit(before=args.before)
    if json_mode(args):
        print_json({"pruned": dropped, "before": args.before.isoformat()})
    else:
        out(f"pruned {dropped} audit event{'' if dropped == 1 else 's'} recorded before "
            f"{short_time(args.before, seconds=True)}")
    return 0


def _missing_sqlite_file(url: str) -> str | None:
    """The path of the SQLite file ``url`` names when that file does not exist."""
    if url.split(":", 1)[0].split("+", 1)[0].lower() != "sqlite":
        return None
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # open_repository reports a bad URL properly
        return None
    path = parsed.database
    if not path or path == ":memory:" or "mode" in parsed.query or "uri" in parsed.query:
        return None
    path = os.path.abspath(os.path.expanduser(path))
    return None if os.path.exists(path) else path


def cmd_db(args: argparse.Namespace) -> int:
    from .._defaults import default_database_path, default_database_url
    from .._migrate import HEAD
    from .._open import open_repository
    from .._redact import redact
    from .._sql import SQLRepository

    database: str | None = getattr(args, "database", None)
    if args.action == "current":
        # Read only: neither the default folder nor an SQLite file is created here.
        url = database or os.environ.get("AUTHTOKEN_DATABASE_URL", "").strip() \
            or f"sqlite:///{default_database_path()}"
        missing = _missing_sqlite_file(url)
        if missing is not None:
            raise RepositoryError(
                f"no database at {missing!r} (nothing was created); '{PROG} db upgrade' "
                "creates it, and so does the first command that stores a token"
            )
    else:
        url = default_database_url() if database is None else database
    repository = open_repository(url)
    try:
        if not isinstance(repository, SQLRepository):
            raise InvalidArgument(f"{redact(url)!r} has no schema to migrate")
        if args.action == "current":
            revision = repository.schema_revision()
            if json_mode(args):
                print_json({"revision": revision, "head": HEAD})
            else:
                out(f"schema revision: {revision or 'none (empty database)'}; "
                    f"this authtoken needs {HEAD}")
        else:
            before, after = repository.upgrade_schema()
            if json_mode(args):
                print_json({"before": before, "after": after})
            elif before == after:
                out(f"schema already at {after}")
            else:
                out(f"schema upgraded from {before or 'empty'} to {after}")
    finally:
        repository.close()
    return 0
