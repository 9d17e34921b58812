"""Breaks the connection of a database call whose server stopped answering.

psycopg waits for the server without a deadline of its own.  A server that is frozen --
stopped by a signal, stuck on a hung disk, its virtual machine paused -- still has its
kernel acknowledge every packet, so neither TCP keepalives nor the server's own
``statement_timeout`` can end that wait: the call would hang for good.

So each call to PostgreSQL arms a ``Watch`` with a deadline, the connections it uses
register their sockets with it (``add``), and each statement moves the deadline on
(``touch``), so the watch bounds one step, not a whole transaction.  One daemon thread
sleeps until the earliest deadline and shuts down the sockets of a watch that passed it.
The blocked wait then sees its connection end, and every layer above -- libpq, psycopg,
SQLAlchemy's disconnect handling -- deals with it as the dead connection it now is; the
caller checks ``Watch.fired`` to say what happened.

A watch holds its own duplicate of each socket's descriptor, closed when the watch
ends, so the thread can never shut down a socket that was closed and whose number was
reused meanwhile.  Where descriptors cannot be duplicated (Windows sockets), nothing is
registered and calls wait as psycopg does.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["WATCHDOG", "Watch", "Watchdog"]

_CAN_DUP = sys.platform != "win32"


class Watch:
    """One call's deadline and the sockets to shut down when it passes."""

    __slots__ = ("deadline", "fds", "fired", "patience")

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.deadline = time.monotonic() + patience
        self.fds: list[int] = []
        self.fired = False


class Watchdog:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None
        self._wake_at: float | None = None  # when the thread wakes next; None: when told
        self._local = threading.local()

    @contextmanager
    def watching(self, patience: float) -> Iterator[Watch]:
        """Arm a watch of ``patience`` seconds per step for the calls in this block."""
        watch = Watch(patience)
        outer = getattr(self._local, "watch", None)
        self._local.watch = watch
        with self._cond:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="authtoken-watchdog", daemon=True
                )
                self._thread.start()
            elif self._wake_at is None or watch.deadline < self._wake_at:
                self._cond.notify()
        try:
            yield watch
        finally:
            self._local.watch = outer
            with self._cond:
                self._watches.discard(watch)
            for fd in watch.fds:  # no longer seen by the thread: safe to close
                os.close(fd)

    def add(self, fd: int) -> None:
        """Register a socket the current watch (if any) must shut down on time."""
        watch: Watch | None = getattr(self._local, "watch", None)
        if watch is None or not _CAN_DUP:
            return
        copy = os.dup(fd)
        with self._cond:
            watch.fds.append(copy)
            if watch.fired:
                _shut(copy)

    def current(self) -> Watch | None:
        """The current thread's innermost watch, if any."""
        watch: Watch | None = getattr(self._local, "watch", None)
        return watch

    def touch(self) -> None:
        """A new step starts: give the current watch (if any) its patience again."""
        watch: Watch | None = getattr(self._local, "watch", None)
        if watch is not None:
            watch.deadline = time.monotonic() + watch.patience

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                earliest: float | None = None
                for watch in self._watches:
                    if watch.fired:
                        continue
                    if watch.deadline <= now:
                        watch.fired = True
                        for fd in watch.fds:
                            _shut(fd)
                    elif earliest is None or watch.deadline < earliest:
                        earliest = watch.deadline
                self._wake_at = earliest
                self._cond.wait(None if earliest is None else earliest - now)


def _shut(fd: int) -> None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # not a socket (any more): nothing to end
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
    finally:
        sock.detach()  # the descriptor stays the watch's, closed when it ends


WATCHDOG = Watchdog()
if hasattr(os, "register_at_fork"):
    # A child has no watchdog thread, and the lock may have been held by it at the fork.
    os.register_at_fork(after_in_child=WATCHDOG._reset)
