"""``authtoken exec``: run one command as the user of a standing token, with a run token.

Theory of operation
-------------------
cron and systemd start a command; they hold no Python.  ``exec`` stands between them
and the job:

1. the standing token is read as ``login`` reads it (``--token-file`` first), and logged
   in for the script given; a refusal runs nothing (exit 1, one line on stderr);
2. SIGINT, SIGTERM and SIGHUP are caught from here on, before the run token exists, so
   that no signal can end ``exec`` between making the run token and revoking it;
3. a run token is made (``Session.run_token``: a child of the standing token, for this
   run id, an hour unless ``--run-expires`` says otherwise), the audit buffer is flushed,
   and the command is started without a shell, with the parent's environment except:
   ``AUTHTOKEN_TOKEN`` is the run token, ``AUTHTOKEN_PRINCIPAL`` what ``login --json``
   prints for it, ``AUTHTOKEN_RUN_ID`` the run id, ``AUTHTOKEN_DATABASE_URL`` the
   ``--database`` given (if any); any variable that held the standing token is dropped.
   When the standing token came on standard input, the command's standard input is
   ``/dev/null`` (what was piped was the token); otherwise it inherits ``exec``'s;
4. a caught signal is passed on to the command -- except a SIGINT that the terminal
   sent to the whole foreground process group, which the command got already;
5. when the command ends, however it ends, the run token is revoked (a storage error is
   retried for a few seconds) and the buffers flushed; ``exec`` exits with the command's
   status, 128+N when signal N ended it, 127 when it could not be found and 126 when it
   could not be run.  A revocation that fails after every retry is reported on stderr
   and, when the command succeeded, makes the exit status 1, so that the failure is seen.

``exec`` prints nothing on standard output: the command owns it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from .._errors import AuthTokenError, RepositoryError
from .._jobs import check_run_id
from .._token import Principal
from ._commands import (
    TOKEN_ENV,
    open_store,
    principal_json,
    script_login,
    usage_error,
)
from ._input import token_input
from ._output import fail, one_line, warn
from ._pinning import script_of

if TYPE_CHECKING:
    import subprocess

    from .._run import RunToken
    from .._security import Security

__all__ = ["FORWARDED", "PRINCIPAL_ENV", "RUN_ID_ENV", "child_environment", "cmd_exec"]

PRINCIPAL_ENV: Final = "AUTHTOKEN_PRINCIPAL"
RUN_ID_ENV: Final = "AUTHTOKEN_RUN_ID"
_DATABASE_ENV: Final = "AUTHTOKEN_DATABASE_URL"
#: The signals ``exec`` passes on to its command.
FORWARDED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long to wait before each new try of a revocation that storage refused.
_REVOKE_RETRIES: Final = (0.2, 0.5, 1.0, 2.0)
_NOT_FOUND: Final = 127
_NOT_EXECUTABLE: Final = 126


def child_environment(parent: Mapping[str, str], *, standing: str, run_token: str,
                      principal: str, run_id: str,
                      database: str | None) -> tuple[dict[str, str], list[str]]:
    """The command's environment: ``parent`` without any variable holding the standing
    token, with the run's variables set; and the names of the variables dropped (other
    than ``AUTHTOKEN_TOKEN``)."""
    environment: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in parent.items():
        if standing in value:
            if name != TOKEN_ENV:
                dropped.append(name)
            continue
        environment[name] = value
    environment[TOKEN_ENV] = run_token
    environment[PRINCIPAL_ENV] = principal
    environment[RUN_ID_ENV] = run_id
    if database is not None:
        environment[_DATABASE_ENV] = database
    return environment, dropped


def _terminal_sent(signum: int) -> bool:
    """Whether a SIGINT was most likely sent by the terminal to the whole foreground
    process group (Ctrl+C), the command included, so that passing it on would deliver
    it twice."""
    if signum != signal.SIGINT:
        return False
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


class _Relay:
    """Catches the forwarded signals while installed; passes them on to the child once
    there is one, and remembers the first that came before."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.early: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        child = self.child
        if child is None:
            if self.early is None:
                self.early = signum
            return
        if child.returncode is None and not _terminal_sent(signum):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def started(self, child: subprocess.Popen[bytes]) -> None:
        """``child`` is running: pass it the signal that came while it started."""
        self.child = child
        if self.early is not None and not _terminal_sent(self.early):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, self.early)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Relay]:
        previous: dict[int, Any] = {}
        try:
            for signum in FORWARDED:
                previous[signum] = signal.signal(signum, self._handle)
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _run(command: Sequence[str], environment: dict[str, str], *, stdin_null: bool,
         relay: _Relay) -> int:
    """Run ``command``; its exit status as a shell gives it."""
    import subprocess

    if relay.early is not None:  # stopped before the command started: run nothing
        return 128 + relay.early
    shown = repr(command[0])
    try:
        child = subprocess.Popen(  # noqa: S603 - argv as given, no shell
            list(command), env=environment, close_fds=True,
            stdin=subprocess.DEVNULL if stdin_null else None,
        )
    except FileNotFoundError:
        fail("CommandNotFound", f"{shown}: no such command or file (give a path, or a "
                                "name found on PATH)")
        return _NOT_FOUND
    except (PermissionError, IsADirectoryError):
        fail("CommandNotExecutable", f"{shown} cannot be run: permission denied, or "
                                     "not an executable file")
        return _NOT_EXECUTABLE
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        fail("CommandNotExecutable", f"{shown} cannot be run: {reason}")
        return _NOT_EXECUTABLE
    relay.started(child)
    return _status(child.wait())


def _revoke(run: RunToken) -> RepositoryError | None:
    """Revoke the run token, retrying a few seconds while storage fails; the last
    error when every try failed."""
    for pause in (*_REVOKE_RETRIES, None):
        try:
            run.revoke()
            return None
        except RepositoryError as exc:
            if pause is None:
                return exc
            time.sleep(pause)
    return None  # pragma: no cover - the loop returns


def _principal_of(security: Security, run: RunToken, standing: Principal) -> Principal:
    """The run token's principal, read from storage without spending one of its uses:
    what a login by the same script would return."""
    token = security.restore_auth_token(run.token)
    assert token.key is not None
    assert token.user is not None
    return Principal(user=token.user, token_key=token.key, scopes=token.scopes,
                     data=token.data, expires=token.expires, script=standing.script,
                     parent_key=token.parent_key, run_id=run.run_id,
                     chain=(*standing.chain, token.key))


def cmd_exec(args: argparse.Namespace) -> int:
    command: list[str] = list(getattr(args, "after_dashes", None) or ())
    if not command:
        if args.command_line:
            usage_error(args, "put '--' before the command to run: authtoken exec "
                              "[options] -- CMD [ARG ...]")
        usage_error(args, "give the command to run after '--': authtoken exec [options] "
                          "-- CMD [ARG ...]")
    import uuid

    run_id = check_run_id(args.run_id) if args.run_id is not None else str(uuid.uuid4())
    script = script_of(args)
    standing = token_input(args.token_file)
    database: str | None = getattr(args, "database", None)
    options: dict[str, Any] = {}
    if args.run_expires is not None:
        options["expires"] = args.run_expires
    if args.max_uses is not None:
        options["max_uses"] = args.max_uses
    relay = _Relay()
    with open_store(args) as security:
        session = script_login(security, standing.text, script)
        if session is None or session.principal is None:
            return 1
        with relay.installed():
            run = session.run_token(run_id, **options)
            failed: RepositoryError | None = None
            try:
                principal = _principal_of(security, run, session.principal)
                environment, dropped = child_environment(
                    os.environ, standing=standing.text, run_token=run.token,
                    principal=principal_json(principal), run_id=run.run_id,
                    database=database)
                for name in dropped:
                    warn(f"{name} held the standing token: left out of the command's "
                         "environment")
                security.flush()
                status = _run(command, environment, stdin_null=standing.read_stdin,
                              relay=relay)
            finally:
                failed = _revoke(run)
                with contextlib.suppress(AuthTokenError):
                    security.flush()
    if failed is not None:
        fail(type(failed).__name__, one_line(
            f"the run token {run.key} could not be revoked ({failed}); it expires "
            f"{'never' if run.expires is None else run.expires.isoformat()}: revoke it "
            f"with 'authtoken revoke {run.key}'"))
        return 1 if status == 0 else status
    return status
