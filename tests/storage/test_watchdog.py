"""The watchdog that ends a call whose server stopped answering, on plain sockets."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from authtoken._watchdog import Watchdog

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="registers no socket there")


def _blocked_recv(sock: socket.socket) -> list[bytes]:
    """recv() in a thread, as a driver waits for a server; the list gets what it read."""
    got: list[bytes] = []
    thread = threading.Thread(target=lambda: got.append(sock.recv(10)), daemon=True)
    thread.start()
    thread.join(30)  # a hang bound, not a speed test
    assert not thread.is_alive(), "the watchdog never ended the wait"
    return got


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else -1


def test_a_watch_past_its_deadline_ends_the_wait() -> None:
    dog = Watchdog()
    left, right = socket.socketpair()
    with left, right, dog.watching(0.05) as watch:
        dog.add(left.fileno())
        dog.step()
        assert _blocked_recv(left) == [b""]  # the connection ended, as a dead server's
        assert watch.fired


def test_a_step_that_answers_in_time_is_never_cut() -> None:
    dog = Watchdog()
    left, right = socket.socketpair()
    with left, right:
        before = _open_fds()
        with dog.watching(0.2) as watch:
            dog.add(left.fileno())
            for _ in range(5):  # each step starts the patience again: 5 x 0.1 s > 0.2 s
                dog.step()
                right.send(b"x")
                assert left.recv(10) == b"x"
                time.sleep(0.1)
            dog.rest()  # answered: the call's own work after it is not on the clock
            time.sleep(0.3)
        assert not watch.fired
        time.sleep(0.3)  # past every deadline: the ended watch must not fire
        right.send(b"still open")
        assert left.recv(20) == b"still open"
        assert _open_fds() == before  # the watch's duplicate descriptors are closed


def test_a_socket_added_after_the_watch_fired_is_ended_at_once() -> None:
    dog = Watchdog()
    first, other = socket.socketpair()
    late, peer = socket.socketpair()
    with first, other, late, peer, dog.watching(0.05) as watch:
        dog.add(first.fileno())
        dog.step()
        assert _blocked_recv(first) == [b""]
        assert watch.fired
        dog.add(late.fileno())  # a reconnection inside a call that already timed out
        assert _blocked_recv(late) == [b""]


def test_no_watch_no_registration() -> None:
    dog = Watchdog()
    left, right = socket.socketpair()
    with left, right:
        before = _open_fds()
        dog.add(left.fileno())  # outside any watch: nothing to do
        dog.step()
        dog.rest()
        assert dog.current() is None
        assert _open_fds() == before


def test_watches_nest_and_each_thread_has_its_own() -> None:
    dog = Watchdog()
    seen: list[object] = []
    with dog.watching(5) as outer:
        with dog.watching(5) as inner:
            assert dog.current() is inner
            thread = threading.Thread(target=lambda: seen.append(dog.current()))
            thread.start()
            thread.join()
        assert dog.current() is outer
    assert dog.current() is None
    assert seen == [None]


def test_the_thread_serves_a_forked_child() -> None:
    """After fork the child has no watchdog thread; its first watch starts one."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    from authtoken._watchdog import WATCHDOG

    with WATCHDOG.watching(5):
        pass  # the parent's thread runs
    with warnings.catch_warnings():  # 3.12+ warns on fork with threads; the child is tiny
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: exit status says whether the watch ended the wait
        code = 1
        try:
            left, _right = socket.socketpair()
            with WATCHDOG.watching(0.05):
                WATCHDOG.add(left.fileno())
                WATCHDOG.step()
                left.settimeout(20)
                code = 0 if left.recv(10) == b"" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_watch_between_steps_never_fires() -> None:
    """Waiting for a pool slot, connecting, the call's own work: not a step."""
    dog = Watchdog()
    left, right = socket.socketpair()
    with left, right:
        with dog.watching(0.05) as watch:
            dog.add(left.fileno())
            time.sleep(0.3)  # six times the patience, no step begun
        assert not watch.fired
        right.send(b"x")
        assert left.recv(10) == b"x"


def test_an_earlier_step_wakes_a_thread_sleeping_for_a_later_one() -> None:
    """A long-patience watch must not keep the thread asleep past a short one's deadline."""
    dog = Watchdog()
    slow, slow_peer = socket.socketpair()
    fast, fast_peer = socket.socketpair()
    done = threading.Event()

    def long_call() -> None:
        with dog.watching(60):
            dog.add(slow.fileno())
            dog.step()
            done.wait(30)

    other = threading.Thread(target=long_call, daemon=True)
    with slow, slow_peer, fast, fast_peer:
        other.start()
        time.sleep(0.1)  # the thread now sleeps until the 60 s deadline
        with dog.watching(0.05) as watch:
            dog.add(fast.fileno())
            dog.step()
            assert _blocked_recv(fast) == [b""]
            assert watch.fired
        done.set()
        other.join(30)


def test_a_thread_that_cannot_start_leaves_the_call_unwatched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At interpreter exit no thread can start: the call goes on, and nothing leaks."""
    dog = Watchdog()

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    left, right = socket.socketpair()
    with left, right:
        before = _open_fds()
        with dog.watching(0.05):
            assert dog.current() is None
            dog.add(left.fileno())
            dog.step()
        assert dog.current() is None
        assert _open_fds() == before
