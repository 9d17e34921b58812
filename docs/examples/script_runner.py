"""A script runner: log a script in as a user with a token read from the environment.

Needs ``pip install authtoken`` (no extra).  Run it with
``python docs/examples/script_runner.py``.  It plays three parts, each in its own process,
as they would be in production:

- the *launcher* (the user's side): alice authorizes one token for an export pipeline --
  the export script (key 42) and its worker (key 43) -- and starts the export script
  with the token in ``AUTHTOKEN_TOKEN``;
- the *export script* (``script_runner.py run export``): logs in as alice through a
  ``ScriptRunner`` bound to script 42, checks its scopes, derives a narrower child token
  (read-only, worker only, 15 minutes) and starts the worker with it;
- the *worker* (``script_runner.py run worker``): logs in with the child token.

Every process finds the database and the secret key in ``AUTHTOKEN_DATABASE_URL`` and
``AUTHTOKEN_SECRET_KEYS``, set by the launcher to a temporary SQLite file and a
throwaway key.  No token string is ever printed or put on a command line.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from authtoken import (
    AuthToken,
    LoginError,
    PermissionDenied,
    Script,
    ScriptRunner,
    Session,
    open_security,
)

WORKER_KEY = 43
# The scripts this runner knows, by name: an integer key and a path each.
SCRIPTS = {
    "export": Script(key=42, path="/jobs/export.js"),
    "worker": Script(key=WORKER_KEY, path="/jobs/export-worker.js"),
    "cleanup": Script(key=44, path="/jobs/cleanup.js"),
}


def read_token() -> str:
    """The token handed to this process, taken out of the environment.

    Popping it means the processes this one starts do not inherit it by accident.
    """
    return os.environ.pop("AUTHTOKEN_TOKEN", "").strip()


def start(name: str, token_string: str) -> int:
    """Run script ``name`` in a new process with ``token_string`` in its environment."""
    env = dict(os.environ, AUTHTOKEN_TOKEN=token_string)
    done = subprocess.run(  # noqa: S603 - our own interpreter and file, no shell
        [sys.executable, __file__, "run", name],
        env=env, stdin=subprocess.DEVNULL, check=False,
    )
    return done.returncode


# -- the script runner ------------------------------------------------------------------
def run_script(name: str) -> int:
    """Log in as script ``name`` with the token from the environment and run its body."""
    script = SCRIPTS[name]
    tag = f"[{name} {script.key}]"
    with open_security() as security:  # AUTHTOKEN_DATABASE_URL, AUTHTOKEN_SECRET_KEYS
        runner = ScriptRunner(security, script)
        try:
            session = runner.login_by_auth_token(read_token())
        except LoginError as exc:
            # The message never holds the token; the class says which check failed.
            print(f"{tag} login refused: {type(exc).__name__}: {exc}")
            return 1
        assert session.principal is not None
        print(f"{tag} logged in as {session.user!r} with token {session.principal.token_key}")
        body = {"export": export_body, "worker": worker_body}.get(name)
        if body is None:
            print(f"{tag} nothing to do")
            return 0
        return body(session, tag)


def export_body(session: Session, tag: str) -> int:
    principal = session.principal
    assert principal is not None
    principal.require("reports:read", "reports:export")
    print(f"{tag} has reports:read and reports:export; payload {principal.data}")

    # A child for the worker: a subset of our scopes, bound to the worker only,
    # expiring long before we do.  Its parent_key is our token's key.
    child = AuthToken(
        ["reports:read", WORKER_KEY],  # an int item K means vfs:ikey?K
        principal.data,
        description="export worker, one run",
        expires="15m",
    )
    child_string = session.authorize_token(child)
    print(f"{tag} derived child token {child.key} (parent {child.parent_key}) "
          f"with scope {child.scope!r}, expires {child.expires:%H:%M} UTC")

    # Anything wider than our own token is refused, and nothing is stored.
    try:
        session.authorize_token(AuthToken("reports:read billing:write vfs:ikey?43"))
    except PermissionDenied as exc:
        print(f"{tag} a wider child is refused: PermissionDenied: {exc}")

    code = start("worker", child_string)
    print(f"{tag} worker finished with exit status {code}")
    return code


def worker_body(session: Session, tag: str) -> int:
    principal = session.principal
    assert principal is not None
    principal.require("reports:read")
    print(f"{tag} reading the report for {principal.user!r}; payload {principal.data}")
    try:
        principal.require("reports:export")
    except PermissionDenied:
        print(f"{tag} cannot export: the child token holds reports:read only")
    return 0


# -- the launcher: the user's side --------------------------------------------------------
def launcher() -> int:
    with tempfile.TemporaryDirectory() as folder:
        os.environ["AUTHTOKEN_DATABASE_URL"] = f"sqlite:///{Path(folder) / 'tokens.db'}"
        os.environ["AUTHTOKEN_SECRET_KEYS"] = secrets.token_urlsafe(32)  # throwaway
        os.environ.pop("AUTHTOKEN_TOKEN", None)

        with open_security() as security:
            token = AuthToken(
                "reports:read reports:export vfs:ikey?42 vfs:ikey?43",
                '{"report": "sales"}',
                description="export pipeline",
                expires="1d",
            )
            token_string = security.authorize_token(token, user="alice")
            key = token.key  # set by authorize_token: safe to show and log
            assert key is not None
            print(f"[launcher] alice authorized token {key} for scripts 42 and 43")

        print("[launcher] starting the export script (42) with the token in AUTHTOKEN_TOKEN")
        if start("export", token_string) != 0:
            print("[launcher] the export script failed")
            return 1

        print("[launcher] starting the cleanup script (44) with the same token")
        if start("cleanup", token_string) == 0:
            print("[launcher] the cleanup script should have been refused")
            return 1

        with open_security() as security:
            security.revoke_auth_token_by_key(key)
            print(f"[launcher] alice revoked token {key}")
            for stored in security.list_auth_tokens(user="alice", include_revoked=True):
                role = "child" if stored.parent_key == key else "token"
                print(f"[launcher]   {role} {stored.key}: revoked={stored.revoked}, "
                      f"use_count={stored.use_count}")

        print("[launcher] starting the export script again")
        if start("export", token_string) == 0:
            print("[launcher] the revoked token should have been refused")
            return 1
        print("[launcher] done")
        return 0


def main(argv: list[str]) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # keep our lines in order with children's
    if len(argv) == 2 and argv[0] == "run" and argv[1] in SCRIPTS:
        return run_script(argv[1])
    if argv:
        print("usage: script_runner.py [run {export,worker,cleanup}]", file=sys.stderr)
        return 2
    return launcher()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
