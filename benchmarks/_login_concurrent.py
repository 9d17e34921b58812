"""``login.py``'s logins at once: threads of one process, then worker processes.

``measure_threads(security, tokens, seconds)``: one thread per token, all logging in
through one ``Security`` as a multi-threaded scheduler would; the best aggregate
logins/s.  ``measure_concurrent(label, url, secret_key, tokens, seconds)``: one worker
process per token (spawn context), each with its own ``Security`` on the same database,
all starting together at a barrier; every round's per-worker logins/s, or the error.
The tokens, the URL and the key reach a worker through a pipe, never a command line.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from multiprocessing.connection import Connection
from typing import Any

from authtoken import Security, open_security

__all__ = ["THREADS", "Concurrent", "measure_concurrent", "measure_threads"]

THREADS = 4
# Workers: how long the parent waits for them (start-up imports a lot on a busy machine).
START_TIMEOUT = 180.0
WORKER_WARM_UP = 200  # logins before the first round: connection, prepared statement
WORKER_BATCH = 16  # logins between clock reads in a worker (a login is >10 µs)


# -- several threads of one process -----------------------------------------------------
def _login_thread(login: Callable[[], object], start: threading.Barrier,
                  stop: threading.Event, counts: list[int], i: int) -> None:
    for _ in range(50):  # warm up: this thread's connection, prepared statement
        login()
    start.wait()
    done = 0
    while not stop.is_set():
        for _ in range(20):
            login()
        done += 20
    counts[i] = done


def measure_threads(security: Security, tokens: Sequence[str], seconds: float,
                    rounds: int) -> float:
    """Best aggregate logins/s of one thread per token logging in at once.

    One ``Security``, as a scheduler would hold; each thread logs in with its own token,
    and (as every thread does) on its own connection.
    """
    threads = len(tokens)
    best = 0.0
    for _ in range(rounds):
        counts = [0] * threads
        stop = threading.Event()
        start = threading.Barrier(threads + 1)

        workers = [
            threading.Thread(target=_login_thread, args=(
                partial(security.login_by_auth_token, token), start, stop, counts, i,
            ))
            for i, token in enumerate(tokens)
        ]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        best = max(best, sum(counts) / (time.perf_counter() - began))
    return best


# -- several processes ----------------------------------------------------------------------
def _worker(pipe: Connection, start: threading.Barrier, rounds: int, seconds: float) -> None:
    """One worker process: its own ``Security``, one token, ``rounds`` timed windows.

    Receives ``(url, secret_key, token)`` through ``pipe``; sends ``("round", logins,
    seconds)`` after each window, ``("done",)`` at the end, or ``("error", message)``.
    """
    try:
        url, secret_key, token = pipe.recv()
        with open_security(url, secret_keys=secret_key) as security:
            login = partial(security.login_by_auth_token, token)
            for _ in repeat(None, WORKER_WARM_UP):
                login()
            for _ in range(rounds):
                gc.collect()
                start.wait(START_TIMEOUT)
                logins, began = 0, time.perf_counter()
                deadline, now = began + seconds, began
                while (now := time.perf_counter()) < deadline:
                    for _ in repeat(None, WORKER_BATCH):
                        login()
                    logins += WORKER_BATCH
                pipe.send(("round", logins, now - began))
        pipe.send(("done",))
    except BaseException as exc:
        start.abort()
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    finally:
        pipe.close()


class WorkerFailed(Exception):
    pass


def _answer(pipe: Connection, timeout: float) -> tuple[Any, ...]:
    if not pipe.poll(timeout):
        raise WorkerFailed(f"a worker did not answer within {timeout:g} s")
    try:
        message: tuple[Any, ...] = pipe.recv()
    except EOFError:
        raise WorkerFailed("a worker exited without answering") from None
    if message[0] == "error":
        raise WorkerFailed(f"a worker failed: {message[1]}")
    return message


@dataclass
class Concurrent:
    """The concurrent figures of one database."""

    label: str
    rounds: list[list[float]] = field(default_factory=list)  # per-worker logins/s
    error: str | None = None

    @property
    def best(self) -> list[float]:
        return max(self.rounds, key=sum) if self.rounds else []


def measure_concurrent(label: str, url: str, secret_key: bytes, tokens: Sequence[str],
                       seconds: float, rounds: int) -> Concurrent:
    """One worker process per token logs in at once on ``url``'s database, ``rounds`` times."""
    result = Concurrent(label)
    context = multiprocessing.get_context("spawn")
    processes = len(tokens)
    start = context.Barrier(processes + 1)
    workers: list[tuple[Any, Connection]] = []
    try:
        for number, token in enumerate(tokens, 1):
            pipe, child_pipe = context.Pipe()
            process = context.Process(
                target=_worker, args=(child_pipe, start, rounds, seconds),
                name=f"login-worker-{number}", daemon=True,
            )
            process.start()
            child_pipe.close()
            pipe.send((url, secret_key, token))
            workers.append((process, pipe))
        for _ in range(rounds):
            start.wait(START_TIMEOUT)
            answers = [_answer(pipe, seconds + START_TIMEOUT) for _, pipe in workers]
            result.rounds.append([logins / elapsed for _, logins, elapsed in answers])
        for _, pipe in workers:
            _answer(pipe, START_TIMEOUT)  # ("done",): usage written, Security closed
    except (WorkerFailed, threading.BrokenBarrierError) as exc:
        start.abort()
        reasons = [str(exc)]
        for _, pipe in workers:  # a worker's own message says more than a broken barrier
            try:
                _answer(pipe, 1.0)
            except WorkerFailed as failed:
                reasons.append(str(failed))
            except OSError:
                pass
        result.error = reasons[-1] if len(reasons) > 1 else reasons[0]
    finally:
        for process, pipe in workers:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
            pipe.close()
    return result
