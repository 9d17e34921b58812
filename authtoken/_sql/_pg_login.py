"""The PostgreSQL login path: reads by key on one connection per thread, through libpq.

Theory of operation
-------------------
Each thread that logs in holds one autocommit connection of its own (``PgThread``), so
each statement starts a fresh read transaction: a revocation committed by any process
is seen by the very next login, and nothing is cached.  A login is one prepared
``SELECT`` sent straight through libpq (psycopg's ``pgconn``): psycopg's cursor
machinery around it would cost about a third of the round trip.  A read of a whole row
by key (``restore_auth_token``) goes through psycopg's cursor on the same connection,
under the watchdog.

The login waits for its answer itself rather than inside libpq, for two reasons.  The
wait is bounded (``timeout`` plus a second), so a server that accepts the query and
never answers -- frozen, or behind a dead link -- cannot hang a login.  And it polls
before it sleeps: the round trip of a login is tens of microseconds, and a thread put to
sleep for it pays the wake-up of an idle CPU on return, which on a virtual machine costs
more than the round trip (measured on a 2-CPU VM, bare round trips: 5,600/s asleep,
17,000/s polling, at no more CPU each; whole logins: +40 %, for 15 % more CPU).  The poll
is bounded (``POLL_NS``) and stops against a server whose answers it keeps missing -- a
far one, or a loaded one -- so polling costs CPU only where it wins; the Linux
``haltpoll`` cpuidle governor makes the same trade in the kernel, which this kind of VM
often runs with polling off.

A call's waits, its retry on a new connection included, share one deadline: ``timeout``
+ 1 s from its first wait.  A connection that died while idle (a restart, a failover)
gets that one retry; a fresh one that fails, a server that stopped answering and a
statement the server cancelled are the answer.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from .._watchdog import WATCHDOG, Watch
from ._calls import MIN_RETRY, Calls
from ._failures import Failures
from ._statements import GET_SQL, LOGIN_SQL

__all__ = ["POLL_NS", "POLL_PROBE_EVERY", "POLL_TRUST_MAX", "PgReads", "PgThread",
           "next_poll_trust", "read_waiter"]

# The get by key in psycopg's placeholders; the login runs through libpq, with libpq's.
_GET_SQL: Final = GET_SQL.replace("?", "%s")
_LOGIN_NAME: Final = b"authtoken_login"
_LOGIN_SQL: Final = LOGIN_SQL.replace("?", "$1").encode()
# How a login waits for its answer: it polls for up to POLL_NS before it sleeps, while
# polling keeps catching answers; after misses it only sleeps, and every
# POLL_PROBE_EVERY-th login polls again to see whether that changed.
POLL_NS: Final = 200_000
POLL_TRUST_MAX: Final = 8
POLL_PROBE_EVERY: Final = 32


def next_poll_trust(trust: int, caught: bool) -> int:
    """How much the next login trusts polling, after one that polled.

    A caught answer adds one, up to ``POLL_TRUST_MAX``; a miss halves it, so a server
    that stopped answering within the poll stops being polled for after four misses in
    a row, while one miss among catches does not.  At zero a login sleeps at once.
    """
    return min(POLL_TRUST_MAX, trust + 1) if caught else trust // 2


def read_waiter(fd: int) -> Callable[[float], bool]:
    """A function that sleeps until ``fd`` is readable or ``timeout`` seconds pass, and
    says whether it is readable.

    ``poll`` where there is one (``select`` fails on descriptors above 1023, which a busy
    scheduler may reach); ``select`` on Windows, where sockets are all it takes anyway.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return lambda timeout: bool(poller.poll(timeout * 1000))
    return lambda timeout: bool(select.select([fd], [], [], timeout)[0])


def _writable(fd: int, timeout: float) -> bool:
    """Sleep until ``fd`` can take more bytes, has some to read, or ``timeout`` passes.

    Rarely needed: only when a send did not fit the socket's buffer.  Readable counts
    too, since libpq must read what the server sends while it waits to send more.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLOUT)
        return bool(poller.poll(timeout * 1000))
    ready = select.select([fd], [fd], [], timeout)
    return bool(ready[0] or ready[1])


def _statement_error(result: Any, pgconn: Any) -> Exception:
    """The error of a failed login statement, operational if a new connection may help.

    It may if the connection died, or if the prepared statement is gone or stale (a
    pooler that discards statements; "cached plan must not change result type" after
    an upgrade altered the table): a new connection prepares it afresh.  Anything else
    the server refused on a live connection (its statement timeout, say) is the answer,
    not a reason to wait all over again.
    """
    import psycopg

    raw = result.error_message or pgconn.error_message or b"the login query failed"
    message = bytes(raw).decode("utf-8", "replace").strip()
    sqlstate = result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b""
    if pgconn.status != psycopg.pq.ConnStatus.OK or sqlstate[:2] in (b"0A", b"26"):
        return psycopg.OperationalError(message)
    return psycopg.DatabaseError(message)


class PgThread:
    """One thread's connection for reads by key, and what its logins learned of it."""

    __slots__ = ("conn", "cursor", "pgconn", "poll_skipped", "poll_trust", "prepared",
                 "readable")

    def __init__(self, conn: Any) -> None:
        self.conn = conn  # psycopg, in autocommit mode
        self.pgconn = conn.pgconn  # its libpq connection, for the login
        self.cursor = conn.cursor()  # for reads of a whole row; reused: a new one costs
        self.prepared = False  # whether the login statement is prepared on it
        # How far polling for the answer is trusted (``next_poll_trust``).  The first
        # statement on a new backend is slow (catalog caches, planning): begin with
        # enough trust that its miss does not switch polling off.
        self.poll_trust = POLL_TRUST_MAX // 2
        self.poll_skipped = 0  # logins that slept at once since trust fell to zero
        self.readable: Callable[[float], bool] | None = None  # made at the first sleep


class _Local(threading.local):
    state: PgThread | None = None


class PgReads:
    """``FastReads`` on PostgreSQL: the login through libpq, on a connection per thread.

    Its steps are methods, each bounded by the call's deadline ``started`` +
    ``timeout`` + 1 s (``started``: a ``time.perf_counter_ns()``): ``connection``,
    ``login_rows`` (prepare once, send), ``answer`` (flush, wait, drain), ``wait``
    (poll, then sleep) and ``drop`` after a failure.
    """

    def __init__(self, conninfo: str, timeout: float, calls: Calls, failures: Failures) -> None:
        self._conninfo = conninfo
        self._timeout = timeout
        self._budget_ns = round((timeout + 1) * 1e9)  # a call's deadline, in ns
        self._calls = calls
        self._failures = failures
        self._local = _Local()

    @property
    def timeout(self) -> float:
        """The statement timeout in seconds; a call waits at most this and a second."""
        return self._timeout

    @property
    def failures(self) -> Failures:
        """How a failure becomes the repository's ``RepositoryError``."""
        return self._failures

    def current(self) -> PgThread | None:
        """This thread's connection, if it has one."""
        return self._local.state

    def login(self, key: str) -> tuple[Any, ...] | None:
        return self._read(key, login=True)

    def get(self, key: str) -> tuple[Any, ...] | None:
        return self._read(key, login=False)

    def _read(self, key: str, *, login: bool) -> tuple[Any, ...] | None:
        import psycopg

        budget = self._budget_ns
        started = 0
        watch: Watch | None = None
        for attempt in range(2):
            fresh = self._local.state is None
            try:
                if attempt:  # a new connection, connected within what is left
                    left = (started + budget - time.perf_counter_ns()) / 1e9
                    self.connection(max(2, int(left)))
                else:
                    if fresh:
                        self.connection()
                    started = time.perf_counter_ns()
                if login:
                    return self.login_rows(key, started)
                limit = time.monotonic() + (started + budget - time.perf_counter_ns()) / 1e9
                with WATCHDOG.watching(self._timeout + 1, limit) as watch:
                    cursor = self.connection().cursor
                    WATCHDOG.add(cursor.connection.pgconn.socket)
                    WATCHDOG.step()
                    rows = cursor.execute(_GET_SQL, (key,), prepare=True).fetchall()
                return tuple(rows[0]) if rows else None
            except psycopg.Error as exc:
                self.drop()
                # A connection that died while idle (server restart, failover) gets one
                # retry on a new connection, if enough of the deadline is left; a fresh
                # connection that fails is the answer, and so is one that the server
                # stopped answering, or whose statement it cancelled at its timeout.
                if fresh or attempt or not isinstance(exc, psycopg.OperationalError) or (
                    watch is not None and watch.fired
                ) or started + budget - time.perf_counter_ns() < MIN_RETRY * 1e9:
                    raise self._failures.of(exc, watch) from exc
        raise AssertionError("unreachable")

    def connection(self, connect_timeout: int | None = None) -> PgThread:
        """This thread's connection, connected now if it has none."""
        state = self._local.state
        if state is None:
            import psycopg

            self._calls.check_open()
            conn = psycopg.connect(
                self._conninfo, autocommit=True,
                connect_timeout=connect_timeout or max(2, round(self._timeout)),
                options=f"-c statement_timeout={round(self._timeout * 1000)}",
            )
            self._calls.register(conn)
            state = self._local.state = PgThread(conn)
        return state

    def login_rows(self, key: str, started: int) -> tuple[Any, ...] | None:
        """The login read on this thread's connection, prepared at its first login.

        Sent with ``PQsendQueryPrepared`` and waited for by ``answer``; binary results
        are decoded here.  The PREPARE and the login share the call's deadline.
        """
        import psycopg  # loaded already: the connection was made with it

        state = self.connection()
        pgconn = state.pgconn
        status = psycopg.pq.ExecStatus
        if not state.prepared:
            pgconn.send_prepare(_LOGIN_NAME, _LOGIN_SQL)
            done = self.answer(state, started, poll=False)
            if done.status != status.COMMAND_OK:
                raise _statement_error(done, pgconn)
            state.prepared = True
        pgconn.send_query_prepared(_LOGIN_NAME, [key.encode()], result_format=1)
        result = self.answer(state, started, poll=True)
        if result.status != status.TUPLES_OK:
            raise _statement_error(result, pgconn)
        if result.ntuples == 0:
            return None
        value = result.get_value
        data, expires, revoked = value(0, 3), value(0, 4), value(0, 5)
        uses, parent, run, chain = value(0, 6), value(0, 7), value(0, 8), value(0, 9)
        return (
            bytes(value(0, 0) or b""), bytes(value(0, 1) or b"").decode(),
            bytes(value(0, 2) or b"").decode(), None if data is None else bytes(data),
            None if expires is None else int.from_bytes(expires, "big", signed=True),
            None if revoked is None else int.from_bytes(revoked, "big", signed=True),
            None if uses is None else int.from_bytes(uses, "big", signed=True),
            None if parent is None else bytes(parent).decode(),
            None if run is None else bytes(run).decode(),
            None if chain is None else bytes(chain).decode(),
        )

    def answer(self, state: PgThread, started: int, *, poll: bool) -> Any:
        """The result of the one statement just sent on ``state``'s connection.

        Polls first if ``poll`` and polling pays (``next_poll_trust``), then sleeps on
        the socket; every wait is bounded by the call's deadline (the server's own
        ``statement_timeout`` answers first unless the server cannot answer at all).
        Only a lone call polls: when other calls of this repository are in flight, the
        process has other work for the CPU and the thread sleeps at once.
        """
        pgconn = state.pgconn
        # psycopg's connections are nonblocking: the send may have left bytes in
        # libpq's buffer (not for a login's few bytes, but a full socket buffer can).
        while pgconn.flush():
            self._sleep(state, started, write=True)
            pgconn.consume_input()
        trust = 0
        if poll and self._calls.alone():
            trust = state.poll_trust
            if not trust:
                state.poll_skipped += 1
                poll = state.poll_skipped % POLL_PROBE_EVERY == 0
        else:
            poll = False
        caught = self.wait(state, started, POLL_NS if poll else 0)
        if poll:
            state.poll_trust = next_poll_trust(trust, caught)
        result = pgconn.get_result()
        # The server ends each statement with ReadyForQuery, nearly always in the same
        # packet as the rows: drain to it, so the connection is idle for the next login.
        # One statement gives one result; more (say, a COPY) means something is wrong.
        for _ in range(4):
            self.wait(state, started, 0)
            if pgconn.get_result() is None:
                if result is None:
                    break
                return result
        import psycopg

        raise psycopg.OperationalError("unexpected results from the login statement")

    def wait(self, state: PgThread, started: int, budget: int) -> bool:
        """Wait until the connection has a whole result, polling for up to ``budget``
        ns from ``started`` first; ``True`` if polling caught it."""
        pgconn = state.pgconn
        consume, busy = pgconn.consume_input, pgconn.is_busy
        if budget > 0:
            until = started + budget
            while True:
                consume()
                if not busy():
                    return True
                if time.perf_counter_ns() >= until:
                    break
        elif not busy():
            return False
        while True:
            self._sleep(state, started)
            consume()
            if not busy():
                return False

    def _sleep(self, state: PgThread, started: int, *, write: bool = False) -> None:
        """Sleep until the socket is readable (writable), or fail at the deadline."""
        left = started + self._budget_ns - time.perf_counter_ns()
        if left > 0:
            socket = state.pgconn.socket
            if write:
                _writable(socket, left / 1e9 + 0.001)
                return
            readable = state.readable
            if readable is None:
                readable = state.readable = read_waiter(socket)
            if readable(left / 1e9 + 0.001):
                return
        self.drop()
        raise self._failures.no_answer()

    def drop(self) -> None:
        """Close this thread's connection (after a failure); the next read makes one."""
        state, self._local.state = self._local.state, None
        if state is not None:
            self._calls.discard(state.conn)
