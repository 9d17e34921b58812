"""``authtoken exec``: run one command as the user of a standing token, with a run token.

Theory of operation
-------------------
cron and systemd start a command; they hold no Python.  ``exec`` stands between them
and the job:

0. first of all, ``exec`` makes itself undumpable (``_relay.close_own_proc``): other
   processes of the user, the job included, can no longer read its environment,
   memory or descriptors under ``/proc``, where the standing token and the secret keys
   are;
1. the standing token is read as ``login`` reads it (``--token-file`` first), and logged
   in for the script given; a refusal runs nothing (exit 1, one line on stderr);
2. the forwarded signals are held (blocked) from here on, before the run token exists,
   so that no signal can end ``exec`` between making the run token and revoking it; one
   the caller ignored stays ignored (``_relay``);
3. a run token is made (``Session.run_token``: a child of the standing token, for this
   run id, an hour unless ``--run-expires`` says otherwise), the audit buffer is flushed,
   and the command is started without a shell, with the parent's environment except:
   ``AUTHTOKEN_TOKEN`` is the run token, ``AUTHTOKEN_PRINCIPAL`` what ``login --json``
   prints for it, ``AUTHTOKEN_RUN_ID`` the run id, ``AUTHTOKEN_DATABASE_URL`` the
   ``--database`` given (if any); any variable that held the standing token is dropped,
   and so is :data:`WITHHELD` (systemd's credentials folder).  When the standing token
   came on standard input -- piped, or a ``--token-file`` that is the file open as
   standard input -- the command's standard input is ``/dev/null``; otherwise it
   inherits ``exec``'s.  No descriptor above 2 reaches it;
4. a held signal is passed on to the command -- except one a terminal sent to the whole
   foreground process group, which the command got already; a stopping signal that
   came before the command started runs nothing (exit 128+N);
5. when the command ends, however it ends, the run token is revoked (a storage error is
   retried for at most :data:`REVOKE_WITHIN` seconds, and not after a stopping signal)
   and the buffers flushed; ``exec`` exits with the command's status, 128+N when signal
   N ended it, 127 when it could not be found and 126 when it could not be run.  A
   revocation that fails after every retry is reported on stderr and, when the command
   succeeded, makes the exit status 1, so that the failure is seen.

``exec`` prints nothing on standard output: the command owns it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._errors import AuthTokenError, InvalidArgument, RepositoryError
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
from ._relay import FORWARDED, Relay, close_own_proc

if TYPE_CHECKING:
    from .._run import RunToken
    from .._security import Security

__all__ = ["FORWARDED", "PRINCIPAL_ENV", "RUN_ID_ENV", "WITHHELD", "child_environment",
           "cmd_exec"]

PRINCIPAL_ENV: Final = "AUTHTOKEN_PRINCIPAL"
RUN_ID_ENV: Final = "AUTHTOKEN_RUN_ID"
_DATABASE_ENV: Final = "AUTHTOKEN_DATABASE_URL"
#: Variables of ``exec``'s own that the command never gets: systemd's credentials
#: folder holds the standing token's file.
WITHHELD: Final = ("CREDENTIALS_DIRECTORY",)
# How long to wait before each new try of a revocation that storage refused.
_REVOKE_RETRIES: Final = (0.2, 0.5, 1.0, 2.0)
#: No new try of a revocation starts this many seconds after the first.
REVOKE_WITHIN: Final = 10.0


def child_environment(parent: Mapping[str, str], *, standing: str, run_token: str,
                      principal: str, run_id: str,
                      database: str | None) -> tuple[dict[str, str], list[str]]:
    """The command's environment: ``parent`` without any variable holding the standing
    token or named in :data:`WITHHELD`, with the run's variables set; and the names of
    the variables holding the standing token that were dropped (other than
    ``AUTHTOKEN_TOKEN``)."""
    environment: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in parent.items():
        if name in WITHHELD:
            continue
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


def _run(command: Sequence[str], environment: dict[str, str], *, stdin_null: bool,
         relay: Relay) -> int:
    """Run ``command``, passing signals on; its exit status as a shell gives it."""
    early = relay.stopped()
    if early is not None:  # stopped before the command started: run nothing
        return 128 + early
    pid = relay.spawn(command, environment, stdin_null=stdin_null)
    if pid is None:
        return relay.failure
    return relay.supervise(pid)


def _revoke(run: RunToken, relay: Relay) -> RepositoryError | None:
    """Revoke the run token, retrying while storage fails, for at most
    :data:`REVOKE_WITHIN` seconds and until a stopping signal comes; the last error when
    every try failed."""
    deadline = time.monotonic() + REVOKE_WITHIN
    for pause in (*_REVOKE_RETRIES, None):
        try:
            run.revoke()
            return None
        except RepositoryError as exc:
            if pause is None or time.monotonic() + pause > deadline:
                return exc
            if relay.stopped(pause) is not None:  # told to stop: report, and go
                return exc
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


def _close_own_proc() -> None:
    """Keep other processes of this user out of ``exec``'s memory, environment and
    descriptors (see ``_relay``); refuse to go on where that fails on Linux."""
    if not close_own_proc() and os.path.isdir("/proc/self"):
        raise InvalidArgument(
            "exec could not make itself undumpable (prctl PR_SET_DUMPABLE), so other "
            "processes of this user could read the standing token from /proc: run it "
            "where prctl is allowed")


def _is_standard_input(path: str) -> bool:
    """Whether the token file ``path`` is the file open as standard input (``--token-file
    /dev/stdin < F``): the command then must not inherit it."""
    try:
        named, given = os.stat(path), os.fstat(0)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (given.st_dev, given.st_ino)


def cmd_exec(args: argparse.Namespace) -> int:
    command: list[str] = list(getattr(args, "after_dashes", None) or ())
    if not command:
        if args.command_line:
            usage_error(args, "put '--' before the command to run: authtoken exec "
                              "[options] -- CMD [ARG ...]")
        usage_error(args, "give the command to run after '--': authtoken exec [options] "
                          "-- CMD [ARG ...]")
    import uuid

    _close_own_proc()
    run_id = check_run_id(args.run_id) if args.run_id is not None else str(uuid.uuid4())
    script = script_of(args)
    standing = token_input(args.token_file)
    stdin_null = standing.read_stdin or (
        args.token_file is not None and _is_standard_input(args.token_file))
    database: str | None = getattr(args, "database", None)
    options: dict[str, Any] = {}
    if args.run_expires is not None:
        options["expires"] = args.run_expires
    if args.max_uses is not None:
        options["max_uses"] = args.max_uses
    relay = Relay()
    with open_store(args) as security:
        session = script_login(security, standing.text, script)
        if session is None or session.principal is None:
            return 1
        with relay.holding():
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
                status = _run(command, environment, stdin_null=stdin_null, relay=relay)
            finally:
                failed = _revoke(run, relay)
                with contextlib.suppress(AuthTokenError):
                    security.flush()
    if failed is not None:
        fail(type(failed).__name__, one_line(
            f"the run token {run.key} could not be revoked ({failed}); it expires "
            f"{'never' if run.expires is None else run.expires.isoformat()}: revoke it "
            f"with 'authtoken revoke {run.key}'"))
        return 1 if status == 0 else status
    return status
