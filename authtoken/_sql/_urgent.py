"""Revocations first on SQLite: how one waiting for the write lock makes a fold wait.

A SQLite file has one write lock and no queue for it.  A revocation polls for the lock
every half millisecond (``_lean.begin_urgent``), so it takes it as soon as the holder lets
go; but a fold (``_fold``) writes in a series of short transactions, and the next one
could take the lock before the revocation polls again.  So a revocation says that it
waits: while it polls, it holds a shared ``flock`` on a lock file beside the database,
``<file>-urgent`` (empty, mode 0600, created by the first revocation that has to wait).
Before each of its transactions a fold asks whether anyone holds that lock
(``waiting``) and, if so, waits until nobody does (``let_pass``) -- within one budget
of waiting for the whole fold, so that a signal that never ends cannot stall it.

The lock file is a signal only: no data lives in it.  Without it (a folder that refuses
a new file, a file of another owner, a system without ``flock``) every revocation still
gets the write lock, only without going ahead of a fold.  The file is named after the
database's real path (symlinks resolved, as SQLite does), opened without following a
symlink, and never locked by blocking: a revocation that cannot take its shared lock at
once goes on without it.  ``flock`` locks belong to open file descriptions, so threads
of one process signal each other too; a child forked while a revocation waits closes
the descriptor it inherited (``os.register_at_fork``), so it never keeps the signal up.
They never touch SQLite's own (``fcntl``) locks on the database file.
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

#: The lock file's name is the database file's real path with this appended.
SUFFIX: Final = "-urgent"
_FLAGS: Final = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_TRIES: Final = 8  # a fold's look holds the lock exclusively for a few microseconds

# Descriptors of signals up in this process (set.add and set.discard are atomic: no lock
# that a fork could copy while another thread holds it).
_held: set[int] = set()


def _forget_in_child() -> None:
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _open(database: str, *, create: bool) -> int | None:
    if fcntl is None or not database:
        return None
    try:
        fd = os.open(os.path.realpath(database) + SUFFIX,
                     _FLAGS | (os.O_CREAT if create else 0), 0o600)
    except OSError:
        return None  # a read-only folder, say (or, not creating, no file): no signal
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            return fd
    except OSError:
        pass
    os.close(fd)  # another user's file: not ours to signal through
    return None


@contextlib.contextmanager
def signalling(database: str) -> Iterator[None]:
    """While the block runs, tell folds on ``database`` (a file path) that a revocation
    waits for the write lock -- if the signal can be raised at once."""
    fd = _open(database, create=True)
    if fd is not None and not _lock_shared(fd):
        os.close(fd)
        fd = None
    if fd is None:
        yield
        return
    _held.add(fd)
    try:
        yield
    finally:
        _held.discard(fd)
        with contextlib.suppress(OSError):  # closed by a fork hook of this very thread
            os.close(fd)  # which drops the lock


def _lock_shared(fd: int) -> bool:
    for _ in range(_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.0001)
        except OSError:
            return False
    return False


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


def let_pass(database: str, until: float) -> None:
    """Return once no revocation waits for ``database``'s write lock (each has taken it),
    or at ``until`` (``time.monotonic()``)."""
    while time.monotonic() < until and waiting(database):
        time.sleep(0.0005)
