"""Revocations while other processes log in: ``scale.py``'s concurrent-revocation figure.

The parent revokes tokens one at a time with ``revoke_auth_token_by_key``, a random
20-50 ms apart, timing each call, first with nothing else running ("alone"), then while
``workers`` processes (spawn context) log in continuously, each with its own tokens
round-robin.  After each revocation a second ``Security`` of the parent (its own
connection) logs in with the revoked token's string, which must be refused with
``TokenRevoked``: the revocation is seen at once by another connection.

A worker receives the URL, the secret key and its tokens through a pipe (never on a
command line), logs in once with each token to warm up, says it is ready, and logs in
until told to stop; then it closes its ``Security`` (which writes its buffered usage and
audit events) and only then reports how many logins it made, so the parent can check
every count against storage.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from authtoken import AuthTokenError, Script, Security, TokenRevoked, open_security

START_TIMEOUT = 180.0  # a worker imports SQLAlchemy and opens its connection first
CHUNK = 64  # logins between looks at the stop flag


@dataclass(frozen=True)
class Token:
    """A token the benchmark holds the string of; ``script`` is what it logs in as."""

    string: str
    key: str
    script: Script | None


def _worker(pipe: Connection, stop: Any) -> None:
    try:
        url, secret_key, pairs = pipe.recv()
        calls, began = 0, time.perf_counter()
        with open_security(url, secret_keys=secret_key) as security:
            login = security.login_by_auth_token
            pairs = [(t, None if k is None else Script(key=k)) for t, k in pairs]
            for token, script in pairs:
                login(token, script=script)
            calls, pos, n = len(pairs), 0, len(pairs)
            pipe.send(("ready",))
            began = time.perf_counter()
            while not stop.is_set():
                chunk = pairs[pos:pos + CHUNK]
                for token, script in chunk:
                    login(token, script=script)
                calls += len(chunk)
                pos = (pos + len(chunk)) % n
            seconds = time.perf_counter() - began
        pipe.send(("done", calls, seconds))  # after close(): every login is written
    except BaseException as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    finally:
        pipe.close()


def _answer(pipe: Connection, timeout: float) -> tuple[Any, ...]:
    if not pipe.poll(timeout):
        raise RuntimeError(f"a worker did not answer within {timeout:g} s")
    message: tuple[Any, ...] = pipe.recv()
    if message[0] == "error":
        raise RuntimeError(f"a worker failed: {message[1]}")
    return message


def revocations(security: Security, checker: Security, targets: list[Token],
                seed: int) -> dict[str, Any]:
    """Revoke ``targets`` one by one; latency figures, failures and the immediacy check."""
    pause = random.Random(seed)
    times: list[float] = []
    failures: list[str] = []
    refused = 0
    for target in targets:
        start, failed = time.perf_counter(), False
        try:
            security.revoke_auth_token_by_key(target.key)
        except Exception as exc:  # any failure is a figure here, not a crash
            failures.append(f"{type(exc).__name__}: {exc}"[:300])
            failed = True
        times.append(time.perf_counter() - start)
        try:  # a token whose revocation failed need not be refused
            if not failed:
                checker.login_by_auth_token(target.string, script=target.script)
        except TokenRevoked:
            refused += 1
        except AuthTokenError:
            pass
        time.sleep(pause.uniform(0.02, 0.05))
    ms = sorted(t * 1000 for t in times)
    quantile = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "count": len(targets), "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(quantile[98], 2),
        "max_ms": round(ms[-1], 2), "revoked": len(targets) - len(failures),
        "refused_after": refused,
    }


def under_load(url: str, secret_key: str, security: Security, checker: Security,
               targets: list[Token], loads: list[list[Token]]) -> dict[str, Any]:
    """Revocations of ``targets`` while one worker per entry of ``loads`` logs in.

    Returns the revocation figures, the workers' logins (``calls`` per worker, counted
    from the first token of its list round-robin) and their wall-clock window, or
    ``error`` if a worker failed (then no counts).
    """
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    workers: list[tuple[Any, Connection]] = []
    result: dict[str, Any] = {"error": None, "calls": [], "logins_per_s": None}
    try:
        result["wall_start"] = time.time()
        for number, tokens in enumerate(loads, 1):
            pipe, child_pipe = context.Pipe()
            process = context.Process(target=_worker, args=(child_pipe, stop),
                                      name=f"scale-worker-{number}", daemon=True)
            process.start()
            child_pipe.close()
            pairs = [(t.string, None if t.script is None else t.script.key) for t in tokens]
            pipe.send((url, secret_key, pairs))
            workers.append((process, pipe))
        for _, pipe in workers:
            _answer(pipe, START_TIMEOUT)
        result.update(revocations(security, checker, targets, seed=2))
        stop.set()
        done = [_answer(pipe, START_TIMEOUT) for _, pipe in workers]
        result["wall_end"] = time.time()
        result["calls"] = [calls for _, calls, _ in done]
        result["logins_per_s"] = round(sum(calls / s for _, calls, s in done), 1)
    except (RuntimeError, OSError, EOFError) as exc:
        stop.set()
        result["error"] = str(exc)
    finally:
        for process, pipe in workers:
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)
            pipe.close()
    return result
