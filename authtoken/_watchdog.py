"""Breaks the connection of a database call whose server stopped answering.

psycopg waits for the server without a deadline of its own.  A server that is frozen --
stopped by a signal, stuck on a hung disk, its virtual machine paused -- still has its
kernel acknowledge every packet, so neither TCP keepalives nor the server's own
``statement_timeout`` can end that wait: the call would hang for good.

So each call to PostgreSQL opens a ``Watch``, the connections it uses register their
sockets with it (``add``), and each wait on the server -- a statement, a ping, a commit
-- is a step: ``step()`` gives the watch a deadline, ``rest()`` takes it away again when
the server has answered.  Only a step can overrun: the call's own work between steps,
waiting for a pool slot or connecting (bounded by their own timeouts) never does.  One
daemon thread sleeps until the earliest deadline and shuts down the sockets of a watch
that passed it.
The blocked wait then sees its connection end, and every layer above -- libpq, psycopg,
SQLAlchemy's disconnect handling -- deals with it as the dead connection it now is; the
caller checks ``Watch.fired`` to say what happened.

A watch holds its own duplicate of each socket's descriptor, closed when the watch
ends, so the thread can never shut down a socket that was closed and whose number was
reused meanwhile.  Where descriptors cannot be duplicated (Windows sockets), nothing is
registered and calls wait as psycopg does.
"""

from __future__ import annotations

import contextlib
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
    """One call's sockets, and the deadline of the step it waits on (None: none).

    ``limit``: a ``time.monotonic()`` no step of the call may run past, however much
    patience it has left (a call whose retries share one deadline); None: none.
    """

    __slots__ = ("deadline", "fds", "fired", "limit", "patience")

    def __init__(self, patience: float, limit: float | None = None) -> None:
        self.patience = patience
        self.limit = limit
        self.deadline: float | None = None
        self.fds: list[int] = []
        self.fired = False


class Watchdog:
    """The watches of this process and the daemon thread that fires them.

    One per process (``WATCHDOG``); tests make their own.  Thread-safe.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # In a child after fork: the parent's watches are not ours to keep or fire, but
        # their descriptors were inherited and would hold the parent's sockets open.
        for watch in getattr(self, "_watches", ()):
            for fd in watch.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            watch.fds.clear()
        self._generation = getattr(self, "_generation", 0) + 1
        self._cond = threading.Condition()
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None
        self._wake_at: float | None = None  # when the thread wakes next; None: when told
        self._local = threading.local()

    @contextmanager
    def watching(self, patience: float, limit: float | None = None) -> Iterator[Watch]:
        """Watch the calls in this block: each step may take ``patience`` seconds, and
        none may run past ``limit`` (a ``time.monotonic()``), if given."""
        watch = Watch(patience, limit)
        with self._cond:
            running = self._thread is not None and self._thread.is_alive()
            if not running:
                thread = threading.Thread(
                    target=self._run, name="authtoken-watchdog", daemon=True
                )
                with contextlib.suppress(RuntimeError):  # at interpreter exit
                    thread.start()
                    self._thread, running = thread, True
            if running:
                self._watches.add(watch)
        if not running:  # unwatched: the call waits as psycopg does
            yield watch
            return
        generation, local = self._generation, self._local
        outer = getattr(local, "watch", None)
        local.watch = watch
        try:
            yield watch
        finally:
            if generation == self._generation:  # else forked meanwhile: all was reset
                local.watch = outer
                with self._cond:
                    self._watches.discard(watch)
                for fd in watch.fds:  # no longer seen by the thread: safe to close
                    os.close(fd)

    def add(self, fd: int) -> None:
        """Register a socket the current watch (if any) must shut down on time."""
        watch = self.current()
        if watch is None or not _CAN_DUP:
            return
        try:
            copy = os.dup(fd)
        except OSError:  # out of descriptors: this call goes unwatched
            return
        with self._cond:
            watch.fds.append(copy)
            if watch.fired:
                _shut(copy)

    def current(self) -> Watch | None:
        """The current thread's innermost watch, if any."""
        watch: Watch | None = getattr(self._local, "watch", None)
        return watch

    def step(self, stretch: float = 1.0) -> None:
        """The current call (if watched) now waits on the server: start the clock.

        ``stretch``: this step may take that many times the patience (a new
        connection's setup is several round trips in one step).
        """
        watch = self.current()
        if watch is None:
            return
        deadline = time.monotonic() + watch.patience * stretch
        if watch.limit is not None and watch.limit < deadline:
            deadline = watch.limit
        with self._cond:  # so the thread cannot be between its scan and its sleep
            watch.deadline = deadline
            if self._wake_at is None or deadline < self._wake_at:
                self._cond.notify()

    def rest(self) -> None:
        """The server answered: stop the current call's clock until its next step."""
        watch = self.current()
        if watch is not None:
            with self._cond:  # never between the thread's look at it and its shutdown
                watch.deadline = None

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                earliest: float | None = None
                for watch in self._watches:
                    deadline = watch.deadline
                    if watch.fired or deadline is None:
                        continue
                    if deadline <= now:
                        watch.fired = True
                        for fd in watch.fds:
                            _shut(fd)
                    elif earliest is None or deadline < earliest:
                        earliest = deadline
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
