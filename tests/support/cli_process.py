"""The ``authtoken`` console script run as a real process over one SQLite file, and the
library beside it on the same file (for the tests of ``exec`` and ``--token-file``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from authtoken import AuthToken, Policy, Security, open_security
from support.cli import SECRET_KEY

_SCRIPT = Path(sys.executable).with_name("authtoken")
#: How the console script is started: the installed entry point, else ``-m``.
COMMAND: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m",
                                                               "authtoken"]
#: Generous: only a hang (a FIFO read, a lost child) should ever reach it.
TIMEOUT = 60


def base_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without any ``AUTHTOKEN_*`` variable, with the keys."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHTOKEN_")}
    environment["AUTHTOKEN_SECRET_KEYS"] = SECRET_KEY
    environment.update(extra or {})
    return environment


class Store:
    """One SQLite file: tokens made through the library, commands run as processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = f"sqlite:///{folder / 'tokens.db'}"

    def security(self, **options: object) -> Security:
        return open_security(self.url, secret_keys=SECRET_KEY, policy=Policy(),
                             **options)  # type: ignore[arg-type]

    def authorize(self, scope: str = "reports:read ufs:/opt/jobs/export.py",
                  user: str | int = "alice", **options: object) -> str:
        """A standing token's string."""
        with self.security() as security:
            return security.authorize_token(
                AuthToken(scope, **options), user=user)  # type: ignore[arg-type]

    def token_file(self, string: str, name: str = "standing.token", mode: int = 0o600,
                   content: bytes | None = None) -> Path:
        """A file holding ``string`` and a newline (or ``content``), with ``mode``."""
        path = self.folder / name
        path.write_bytes(string.encode() + b"\n" if content is None else content)
        path.chmod(mode)
        return path

    def run(self, *args: str, stdin: str | bytes | None = None,
            env: Mapping[str, str] | None = None, cwd: Path | None = None,
            database: bool = True) -> subprocess.CompletedProcess[str]:
        """``authtoken --database URL *args`` to its end; stdin is empty unless given."""
        data = stdin.encode() if isinstance(stdin, str) else stdin
        head = ["--database", self.url] if database else []
        done = subprocess.run(
            [*COMMAND, *head, *args], input=data or b"", capture_output=True,
            env=base_environment(env), cwd=cwd or self.folder, timeout=TIMEOUT,
            check=False,
        )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"))

    def start(self, *args: str, env: Mapping[str, str] | None = None,
              stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """``authtoken --database URL *args`` started in a session of its own (no
        terminal), its output piped."""
        return subprocess.Popen(
            [*COMMAND, "--database", self.url, *args], stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_environment(env),
            cwd=self.folder, start_new_session=True,
        )

    def run_tokens(self, run_id: str | None = None) -> list[AuthToken]:
        """Every run token stored (revoked ones included), or those of ``run_id``."""
        with self.security() as security:
            tokens = security.list_auth_tokens(include_revoked=True, run_id=run_id)
        return [t for t in tokens if t.run_id is not None]


def python(code: str) -> list[str]:
    """A command that runs ``code`` with this interpreter."""
    return [sys.executable, "-c", code]


def one_line(stderr: str) -> str:
    """The single line of ``stderr`` (asserting there is exactly one)."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def argv(*parts: str | Path | Sequence[str]) -> list[str]:
    """Flatten ``parts`` into an argument list."""
    flat: list[str] = []
    for part in parts:
        if isinstance(part, (str, Path)):
            flat.append(str(part))
        else:
            flat.extend(part)
    return flat
