"""The calls in flight on one ``SQLRepository``, and the connections ``close()`` must close.

Every call -- a pooled transaction or a read on a per-thread connection -- is counted
while it runs (``enter``/``leave``), so that ``close()`` can refuse new calls and wait
for those in flight before it closes their connections.  Per-thread connections (the
login path of ``_sqlite`` and ``_pg_login``) are registered here when made and
discarded here when dropped; ``release`` closes those left.  This object never refers
to the repository, so the finalizer of a repository dropped without ``close()`` can
hold it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Final

from .._errors import InvalidArgument, RepositoryError

__all__ = ["DEFAULT_TIMEOUT", "MIN_RETRY", "Calls", "check_timeout"]

# A retry of a call gets what is left of its deadline, if at least this many seconds:
# less would not do (psycopg gives a new connection at least 2 s to connect).
MIN_RETRY: Final = 2.0


#: A repository's ``timeout`` unless it is given (seconds).
DEFAULT_TIMEOUT: Final = 5.0


def check_timeout(timeout: object) -> float:
    """A repository's ``timeout``: seconds in (0, 60]."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
        0 < timeout <= 60
    ):
        raise InvalidArgument("timeout is a number of seconds in (0, 60]")
    return float(timeout)


class Calls:
    """Counts the calls in flight and holds the per-thread connections made for them."""

    __slots__ = ("_closed", "_connections", "_idle", "_in_flight", "_lock")

    def __init__(self) -> None:
        self._closed = False
        self._in_flight = 0
        self._idle = threading.Condition()  # guards both; close() waits on it
        self._connections: list[Any] = []
        self._lock = threading.Lock()  # guards _connections

    def check_open(self) -> None:
        """Raise ``RepositoryError`` once ``close()`` has begun."""
        if self._closed:
            raise RepositoryError("the repository is closed; open a new one")

    def enter(self) -> None:
        """A call begins: counted until ``leave``.  Refused after ``close()``."""
        with self._idle:
            self.check_open()
            self._in_flight += 1

    def leave(self) -> None:
        """The call that ``enter`` counted is over."""
        with self._idle:
            self._in_flight -= 1
            if self._closed:
                self._idle.notify_all()

    def alone(self) -> bool:
        """Whether the calling call is the only one in flight (a hint: read unlocked)."""
        return self._in_flight == 1

    def register(self, conn: Any) -> None:
        """Track a new per-thread connection; close it and refuse it after ``close()``."""
        with self._lock:
            if not self._closed:
                self._connections.append(conn)
                return
        conn.close()
        self.check_open()

    def discard(self, conn: Any) -> None:
        """Stop tracking ``conn`` and close it (a broken connection may fail to close)."""
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def close(self, wait: float) -> None:
        """Refuse new calls and wait up to ``wait`` seconds for those in flight."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=wait)

    def release(self) -> None:
        """Close every per-thread connection still tracked."""
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()
