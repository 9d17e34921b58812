"""Revocations first on SQLite: how one waiting for the write lock makes a fold step aside.

A SQLite file has one write lock and no queue for it.  A revocation polls for the lock
every half millisecond (``_lean.begin_urgent``), so it takes it as soon as the holder lets
go; but a fold chunk of many distinct tokens holds it for a page write per token, long
enough to keep a revocation waiting for a tenth of a second on a busy machine.  So a
revocation says that it waits: while it polls, it holds a shared ``flock`` on a lock file
beside the database, ``<file>-urgent`` (empty, mode 0600, created at the first
revocation).  A fold asks between its statements whether anyone holds that lock
(``waiting``); if so it rolls its chunk back -- nothing of it was written -- lets the
revocation through (``let_pass``) and files a smaller chunk next time.

The lock file is a signal only: no data lives in it, and without it (a folder that
refuses a new file, a system without ``flock``) every revocation still gets the write
lock, only without overtaking a fold.  ``flock`` locks belong to open file descriptions,
not processes, so threads of one process signal each other too; and they never touch
SQLite's own (``fcntl``) locks on the database file.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Final

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: revocations only poll
    fcntl = None  # type: ignore[assignment]

__all__ = ["SUFFIX", "let_pass", "signalling", "waiting"]

#: The lock file's name is the database file's with this appended.
SUFFIX: Final = "-urgent"
_FLAGS: Final = os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def _open(database: str, *, create: bool) -> int | None:
    if fcntl is None or not database:
        return None
    try:
        return os.open(database + SUFFIX, _FLAGS | (os.O_CREAT if create else 0), 0o600)
    except OSError:
        return None  # a read-only folder, say (or, not creating, no file): no signal


@contextlib.contextmanager
def signalling(database: str) -> Iterator[None]:
    """While the block runs, tell folds on ``database`` (a file path) that a revocation
    waits for the write lock."""
    fd = _open(database, create=True)
    try:
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # which drops the lock


def waiting(database: str) -> bool:
    """Whether a revocation waits for ``database``'s write lock now."""
    fd = _open(database, create=False)  # no file: no revocation ever had to wait
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def let_pass(database: str, seconds: float) -> None:
    """Return once no revocation waits for ``database``'s write lock (each has taken it),
    or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while waiting(database) and time.monotonic() < deadline:
        time.sleep(0.0005)
