"""``authtoken demo``: a token's whole life cycle, narrated step by step.

It ignores ``AUTHTOKEN_DATABASE_URL``: without ``--database`` it runs on a fresh
temporary SQLite file with a throwaway key, both removed at the end, and under no policy
(the environment's policy governs real databases, not this throwaway one).  Token
strings are only ever shown masked, and the database URL is shown redacted.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .._errors import AuthTokenError, PermissionDenied, ScriptNotAuthorized, TokenRevoked
from .._open import open_security
from .._policy import Policy
from .._redact import redact
from .._scopes import Script
from .._security import Security
from .._session import ScriptRunner
from .._token import AuthToken, Principal
from .._views import principal_view, token_view
from ._commands import json_mode
from ._output import PROG, fail, one_line, out, print_json, time_text, user_text

__all__ = ["cmd_demo"]


class _DemoFailed(Exception):
    """The engine did not behave as the demo expected."""


def _mask(string: str) -> str:
    return string[:12] + "…"


class _Narrator:
    """Prints the demo step by step, or collects the steps for ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.steps: list[dict[str, object]] = []

    def note(self, text: str) -> None:
        if not self.as_json:
            out(text)
            sys.stdout.flush()

    def step(self, action: str, outcome: str, result: str, *,
             error: str | None = None, **detail: object) -> None:
        number = len(self.steps) + 1
        self.steps.append({
            "step": number, "action": action, "outcome": outcome, "error": error,
            "result": result, **detail,
        })
        if not self.as_json:
            out(f"{number:>2}. {action}")
            out(f"    -> {result}")
            sys.stdout.flush()

    def refused(self, action: str, expected: type[AuthTokenError],
                attempt: Callable[[], object], why: str) -> None:
        try:
            attempt()
        except expected as exc:
            name = type(exc).__name__
            self.step(action, "refused", f"refused, as it should be: {name}: "
                      f"{one_line(str(exc))} ({why})", error=name)
            return
        raise _DemoFailed(f"{action}: expected {expected.__name__}, but it succeeded")


def _principal_text(principal: Principal) -> str:
    data = "" if principal.data is None else f", data {principal.data}"
    return (f"logged in as user {user_text(principal.user)} with scopes "
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
        f"description {token.description!r}, expires {time_text(token.expires)}",
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
        f"use_count {final.use_count}, last used {time_text(final.last_used_at)}, "
        f"revoked at {time_text(final.revoked_at)}",
        view=token_view(final),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    as_json = json_mode(args)
    say = _Narrator(as_json)
    database: str | None = getattr(args, "database", None)
    # Read before the narration starts, so that a policy that does not read is the
    # command's one line of output.
    policy = Policy() if database is None else Policy.from_env()
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
                                         secret_keys=secrets.token_urlsafe(32),
                                         policy=policy)
            else:
                shown = redact(database)
                say.note(f"Using the database {shown} (--database).")
                security = open_security(database, policy=policy)
            with security:
                say.note("")
                _run_demo(security, say)
        if database is None:
            say.note(f"\nRemoved the temporary database {shown}.")
    except _DemoFailed as exc:
        fail("DemoFailed", f"the engine misbehaved: {exc}",
             text=f"{PROG} demo: the engine misbehaved: {one_line(str(exc))}")
        return 1
    if as_json:
        print_json({"database": shown, "temporary": database is None, "steps": say.steps})
    else:
        out("The demo went as expected.")
    return 0
