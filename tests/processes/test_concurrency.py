"""Several processes x threads hammering one database: the engine stays correct.

Every test runs against a SQLite file and a PostgreSQL database.  ``PROCESSES`` worker
processes run ``WORKER`` (``python -c``), each with ``THREADS`` threads sharing one
Security, and speak JSON lines: the parent writes commands on their standard input,
they answer on standard output.  The database URL (which may hold a password) and every
token string travel through those pipes, never through ``argv``, which any user can
read in ``ps``.  Where an order matters the parent makes it so: it commits first and
tells the workers afterwards, or it holds every writer at a barrier between reading
and writing.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from authtoken import (
    AuthToken,
    RepositoryError,
    Script,
    Security,
    Session,
    open_security,
)

PROCESSES = 4
THREADS = 4  # even: the different-fields test gives half the threads each field
KEY = "concurrency-test-key"
ANSWER_TIMEOUT = 60.0
REPO_ROOT = Path(__file__).parents[2]
UTC = timezone.utc

WORKER = r'''
import json
import sys
import threading
import time
import traceback

from authtoken import AuthToken, Script, Security, Session
from authtoken._audit import FLUSH_EVERY_LOGINS, AuditBuffer
from authtoken._open import open_repository

_out = threading.Lock()


def send(**message):
    with _out:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def receive():
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("the parent closed the pipe")
    return json.loads(line)


def attempt(call, *args, **kwargs):
    """("ok", result), or (the exception's class name, its message)."""
    try:
        return "ok", call(*args, **kwargs)
    except Exception as exc:
        return type(exc).__name__, str(exc)[:300]


def in_threads(count, target):
    """Run target(i) for i in range(count) in as many threads; their results."""
    results = [None] * count
    crashes = []

    def run(i):
        try:
            results[i] = target(i)
        except BaseException:
            crashes.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if crashes:
        raise RuntimeError("a worker thread crashed:\n" + crashes[0])
    return results


class Background:
    """in_threads in a background thread, so the main thread keeps reading commands."""

    def __init__(self, count, target):
        self.results = None
        self.crash = None
        self.thread = threading.Thread(target=self._run, args=(count, target), daemon=True)
        self.thread.start()

    def _run(self, count, target):
        try:
            self.results = in_threads(count, target)
        except BaseException:
            self.crash = traceback.format_exc()

    def join(self):
        self.thread.join()
        if self.crash:
            raise RuntimeError(self.crash)
        return self.results


def task_logins(security, index, threads, config):
    # Tiny batches (config["batch"], given to the AuditBuffer): many usage flushes from
    # every process race each other.
    tokens, rounds = config["tokens"], config["rounds"]
    receive()  # go
    start = threading.Barrier(threads)

    def work(i):
        done = [0] * len(tokens)
        start.wait()
        for n in range(rounds):
            for step in range(len(tokens)):
                j = (step + i + n) % len(tokens)  # threads start on different tokens
                security.login_by_auth_token(tokens[j])  # any failure crashes the worker
                done[j] += 1
            if i == 0 and n % 7 == 6:
                security.flush()  # an explicit flush racing the automatic ones
        return done

    counts = in_threads(threads, work)
    send(logins=[sum(c[j] for c in counts) for j in range(len(tokens))])


def task_revocation(security, index, threads, config):
    tokens = config["tokens"]
    names = sorted(tokens)
    script = Script(key=config["script"])
    state = {"phase": -1, "stop": False}
    cond = threading.Condition()
    # the latest phase for which each thread ran a whole round begun after the signal
    rounds_done = [-1] * threads
    crashes = []
    odd = []  # messages of unexpected errors

    def work(i):
        try:
            tally = {}
            order = names[i % len(names):] + names[:i % len(names)]
            while not state["stop"]:
                round_phase = state["phase"]
                for name in order:
                    seen = state["phase"]  # read *before* the attempt
                    result, detail = attempt(security.login_by_auth_token, tokens[name],
                                             script=script)
                    if result not in ("ok", "TokenRevoked") and len(odd) < 5:
                        odd.append(f"{result}: {detail}")
                    entry = f"{seen}|{name}|{result}"
                    tally[entry] = tally.get(entry, 0) + 1
                with cond:
                    if rounds_done[i] < round_phase:
                        rounds_done[i] = round_phase
                        cond.notify_all()
            return tally
        except BaseException:
            crashes.append(traceback.format_exc())
            with cond:
                rounds_done[i] = 1 << 30
                cond.notify_all()
            raise

    runner = None
    while True:
        message = receive()
        if "stop" in message:
            break
        with cond:
            state["phase"] = message["phase"]
        if runner is None:
            runner = Background(threads, work)
        with cond:
            if not cond.wait_for(lambda: min(rounds_done) >= message["phase"], timeout=60):
                raise RuntimeError("the login threads stopped making rounds")
        if crashes:
            raise RuntimeError(crashes[0])
        send(phase=message["phase"])
    state["stop"] = True
    send(tallies=runner.join(), odd=odd)


def task_updates(security, index, threads, config):
    while True:
        message = receive()
        if message["cmd"] == "stop":
            return
        if message["cmd"] == "round":
            plan = message["plan"]
            have_read = threading.Barrier(threads + 1, timeout=60)
            go = threading.Event()

            def work(i):
                key, field, value = plan[i]
                token = security.get_auth_token(key)
                read = [token.description, token.data]
                have_read.wait()
                go.wait(60)
                setattr(token, field, value)
                result, detail = attempt(security.update_auth_token, token)
                return {"read": read, "result": result,
                        "detail": None if result == "ok" else detail}

            runner = Background(threads, work)
            have_read.wait()
            send(read=True)
            assert receive()["cmd"] == "write"
            go.set()
            send(results=runner.join())
        elif message["cmd"] == "free":
            key, count = message["key"], message["n"]

            def work(i):
                log = []
                for n in range(count):
                    token = security.get_auth_token(key)
                    before = token.description
                    token.description = after = f"free-{index}-{i}-{n}"
                    result, detail = attempt(security.update_auth_token, token)
                    if result not in ("ok", "ConcurrentUpdate"):
                        result = f"{result}: {detail}"
                    log.append([before, after, result])
                return log

            send(log=in_threads(threads, work))


def task_authorize(security, index, threads, config):
    specs = receive()["specs"]  # per thread, a list of field sets
    start = threading.Barrier(threads)

    def work(i):
        made = []
        start.wait()
        for n, spec in enumerate(specs[i]):
            token = AuthToken(spec["scope"], spec["data"], description=spec["description"],
                              expires=spec["expires"])
            string = security.authorize_token(token, user=spec["user"])
            made.append([i, n, token.key, string])
        return made

    send(made=[row for rows in in_threads(threads, work) for row in rows])


def task_delegate(security, index, threads, config):
    # Usage of the trees' tokens is written often (config["batch"], given to the
    # AuditBuffer), as by a busy service: those writes contend with the revocations for
    # the same rows.
    while True:
        message = receive()
        if message["cmd"] == "stop":
            return
        roots = message["roots"]
        state = {"revoked": False}
        cond = threading.Condition()
        warm = [False] * threads

        def work(i):
            # per root: a session logged in with it, and one with this thread's latest
            # child of it (None until there is one)
            sessions = [Session(security) for _ in roots]
            for session, root in zip(sessions, roots):
                session.login_by_auth_token(root)  # live when sent: must work
            children = [None] * len(roots)
            made, tally, late, errors = [], {}, [], []
            after_signal = n = 0
            while after_signal < 2 * len(roots):
                time.sleep(config["pause"])
                signalled = state["revoked"]  # read *before* the attempt
                k = (n + i) % len(roots)
                if children[k] is not None and (n // len(roots)) % 2:
                    actor, token = children[k], AuthToken("a", description=f"g{index}/{i}/{n}")
                else:
                    actor, token = sessions[k], AuthToken("a b", description=f"c{index}/{i}/{n}")
                n += 1
                result, string = attempt(actor.authorize_token, token)
                if result not in ("ok", "TokenRevoked"):
                    errors.append(f"{result}: {string}")
                if result == "ok":
                    made.append([token.key, token.parent_key, string])
                    if actor is sessions[k]:
                        child = Session(security)
                        if attempt(child.login_by_auth_token, string)[0] == "ok":
                            children[k] = child  # else revoked with its root meanwhile
                entry = f"{int(signalled)}|{result}"
                tally[entry] = tally.get(entry, 0) + 1
                if signalled:
                    after_signal += 1
                    if result != "TokenRevoked":
                        late.append(result)
                if n == 2 * len(roots):  # a child of each root, then a grandchild
                    with cond:
                        warm[i] = True
                        cond.notify_all()
            return {"made": made, "tally": tally, "late": late, "errors": errors}

        runner = Background(threads, work)
        with cond:
            cond.wait_for(lambda: all(warm) or not runner.thread.is_alive(), timeout=60)
        send(warm=True)
        assert receive()["cmd"] == "revoked"
        state["revoked"] = True
        send(results=runner.join())


TASKS = {
    "logins": task_logins,
    "revocation": task_revocation,
    "updates": task_updates,
    "authorize": task_authorize,
    "delegate": task_delegate,
}

# Import the heavy parts now, so that tasks start at the same moment in every process.
import authtoken._sql
try:
    import psycopg
except ImportError:
    pass
send(hello=True)

# One task per test, each with a Security of its own, closed before the next task.
for line in sys.stdin:
    config = json.loads(line)
    try:
        audit = AuditBuffer(flush_every_logins=config.get("batch", FLUSH_EVERY_LOGINS))
        security = Security(open_repository(config["url"]), secret_keys=config["key"],
                            audit=audit)
        security.list_auth_tokens(user="nobody")  # connected, schema checked
        send(ready=True)
        TASKS[config["task"]](security, config["index"], config["threads"], config)
        security.close()  # writes the buffered usage
    except BaseException:
        send(error=traceback.format_exc())
        sys.exit(1)
    send(done=True)
'''


# -- the worker processes, seen from the parent ---------------------------------------------


class Worker:
    """One ``WORKER`` process; JSON lines in, JSON lines out, stderr kept in a file."""

    def __init__(self, index: int, folder: Path) -> None:
        self.index = index
        self._err_path = folder / f"worker-{index}.stderr"
        self._err = self._err_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, **message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=ANSWER_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"worker {self.index} gave no answer in {ANSWER_TIMEOUT} s"
                        f"{self.stderr()}")
        if line is None:
            pytest.fail(f"worker {self.index} exited early{self.stderr()}")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            pytest.fail(f"worker {self.index} failed:\n{message['error']}")
        return message

    def stderr(self) -> str:
        self._err.flush()
        text = self._err_path.read_text()[-4000:]
        return f"; its stderr:\n{text}" if text else ""

    def stop(self) -> None:
        """Let the process end by itself (end of input), or kill it if it will not."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)  # it stops at the end of the dead process's output
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._err.close()


class Pool:
    """``PROCESSES`` long-lived workers shared by the tests of this module.

    Starting a Python process that imports SQLAlchemy costs about a second of CPU, so
    the processes are started once; each test gives them one task, for which they open
    (and then close) a Security of their own.  A test that fails mid-task discards the
    processes, and the next test starts fresh ones.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.workers: list[Worker] = []

    def get(self) -> list[Worker]:
        if not self.workers:
            self.workers = [Worker(index, self.folder) for index in range(PROCESSES)]
            for worker in self.workers:
                assert worker.receive() == {"hello": True}
        return self.workers

    def discard(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.stop()


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """The worker processes of this module's tests (stopped at its end)."""
    keeper = Pool(tmp_path_factory.mktemp("workers"))
    yield keeper
    keeper.discard()


@contextmanager
def workers(processes: Pool, url: str, task: str, **config: Any,
            ) -> Iterator[list[Worker]]:
    """The workers, each set to ``task`` on ``url`` and ready (connected); on leaving,
    each has finished the task and closed its Security (usage written)."""
    done = False
    try:
        running = processes.get()
        for worker in running:
            worker.send(task=task, url=url, key=KEY, index=worker.index, threads=THREADS,
                        **config)
        for worker in running:
            assert worker.receive() == {"ready": True}
        yield running
        for worker in running:
            assert worker.receive() == {"done": True}
        done = True
    finally:
        if not done:
            processes.discard()


def everyone(pool: list[Worker], **message: Any) -> list[dict[str, Any]]:
    """Send ``message`` to every worker, then collect one answer from each."""
    for worker in pool:
        worker.send(**message)
    return [worker.receive() for worker in pool]


def revoke_until_done(revoke: Callable[[], object], problems: list[str]) -> None:
    """Call ``revoke``, retrying (as a caller would) if storage fails; each failure is
    recorded in ``problems``: a revocation must not fail because others are busy."""
    for _ in range(5):
        try:
            revoke()
            return
        except RepositoryError as exc:
            problems.append(f"the revocation failed: {exc}")
    pytest.fail("\n".join(problems))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database shared by the parent and its worker processes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("pg_url"))


# -- 1. usage ----------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_logins_count_every_use(url: str, processes: Pool) -> None:
    """Processes x threads logging in with the same tokens leave the exact use_count."""
    rounds, tokens = 100, 3
    with open_security(url, secret_keys=KEY) as security:
        strings = [security.authorize_token(AuthToken("jobs:run"), user=f"u{n}")
                   for n in range(tokens)]
        keys = [security.restore_auth_token(s).key for s in strings]
        idle = AuthToken("jobs:run")
        security.authorize_token(idle, user="idle")
    with workers(processes, url, "logins", tokens=strings, rounds=rounds, batch=25) as pool:
        started = datetime.now(UTC)
        answers = everyone(pool, go=True)
    ended = datetime.now(UTC)  # every worker has closed its Security: usage written
    assert [a["logins"] for a in answers] == [[THREADS * rounds] * tokens] * PROCESSES
    with open_security(url, secret_keys=KEY) as fresh:
        for key in keys:
            token = fresh.get_auth_token(key)
            assert token.use_count == PROCESSES * THREADS * rounds
            assert token.last_used_at is not None
            assert started <= token.last_used_at <= ended
        assert idle.key is not None
        untouched = fresh.get_auth_token(idle.key)
        assert (untouched.use_count, untouched.last_used_at) == (0, None)


# -- 2. revocation ------------------------------------------------------------------------


def _delegation_tree(security: Security, script: int) -> dict[str, str]:
    """root -> c0..c2 -> g<c><0..1>, each made through a Session logged in with its parent,
    plus an unrelated tree (other, other.c) that is never revoked."""
    tokens: dict[str, str] = {}
    runner = Session(security, script=Script(key=script))
    bound = f"jobs:run vfs:ikey?{script}"
    tokens["root"] = security.authorize_token(AuthToken(f"{bound} extra"), user="alice")
    runner.login_by_auth_token(tokens["root"])
    for c in range(3):
        tokens[f"c{c}"] = runner.authorize_token(AuthToken(bound))
        child = Session(security, script=Script(key=script))
        child.login_by_auth_token(tokens[f"c{c}"])
        for g in range(2):
            tokens[f"g{c}{g}"] = child.authorize_token(AuthToken(bound))
    tokens["other"] = security.authorize_token(AuthToken(bound), user="bob")
    other = Session(security, script=Script(key=script))
    other.login_by_auth_token(tokens["other"])
    tokens["other.c"] = other.authorize_token(AuthToken(bound))
    return tokens


@pytest.mark.slow
def test_cascading_revocation_is_refused_by_the_next_login_everywhere(
        url: str, processes: Pool) -> None:
    """After a revocation is committed and announced, every later login in every process
    and thread is TokenRevoked for the whole revoked subtree, and only for it."""
    with open_security(url, secret_keys=KEY) as security:
        tokens = _delegation_tree(security, script=5)
        keys = {name: security.restore_auth_token(s).key for name, s in tokens.items()}
        # building the tree logged in with some of them already
        used_before = {name: security.get_auth_token(keys[name]).use_count for name in tokens}
        subtree = {"c1", "g10", "g11"}
        tree = {"root"} | {n for n in tokens if n[0] in "cg"}
        assert subtree < tree and len(tree) == 10
        # phase -> what is revoked once that phase is announced
        revoked = {0: set(), 1: subtree, 2: tree, 3: tree}
        revocations = {
            1: lambda: security.revoke_auth_token_by_key(keys["c1"]),  # a middle node
            2: lambda: security.revoke_auth_token(tokens["root"]),  # the root, by string
        }
        problems: list[str] = []
        with workers(processes, url, "revocation", tokens=tokens, script=5) as pool:
            # phase 0: every thread of every worker has logged in with every token
            assert everyone(pool, phase=0) == [{"phase": 0}] * PROCESSES
            for phase, revoke in revocations.items():
                revoke_until_done(revoke, problems)  # committed first ...
                # ... then announced; each answer means every thread has since tried
                # every token at least once
                assert everyone(pool, phase=phase) == [{"phase": phase}] * PROCESSES
            answers = everyone(pool, stop=True)
        successes = dict.fromkeys(tokens, 0)
        for p, answer in enumerate(answers):
            assert len(answer["tallies"]) == THREADS
            for t, tally in enumerate(answer["tallies"]):
                tried = set()
                for entry, count in tally.items():
                    seen_text, name, result = entry.split("|")
                    seen = int(seen_text)
                    tried.add((seen, name))
                    if result == "ok":
                        successes[name] += count
                    if name in revoked[seen]:
                        allowed = {"TokenRevoked"}
                    elif name in revoked[seen + 1]:  # revoked, not yet announced
                        allowed = {"ok", "TokenRevoked"}
                    else:
                        allowed = {"ok"}
                    if result not in allowed:
                        problems.append(f"worker {p} thread {t}: {count} x {result} for "
                                        f"{name} after phase {seen} was announced")
                missing = {(s, n) for s in revoked if s < 3 for n in tokens} - tried
                if missing:
                    problems.append(f"worker {p} thread {t} never tried {sorted(missing)}")
            problems.extend(answer["odd"])
        assert not problems, "\n".join(problems)
        stored = {t.key: t for t in security.list_auth_tokens(include_revoked=True)}
        assert {n for n in tokens if stored[keys[n]].revoked} == tree
        # every login that succeeded was counted, and nothing else
        for name in tokens:
            assert stored[keys[name]].use_count == used_before[name] + successes[name], name


# -- 3. updates ---------------------------------------------------------------------------


def _barrier_round(pool: list[Worker], plans: dict[int, list[list[str]]],
                   ) -> list[dict[str, Any]]:
    """Every thread of every worker reads its token, all wait, then all write at once.

    Returns one result per writer, with ``worker``, ``thread``, ``key``, ``field``,
    ``value``, ``read`` ([description, data] as read) and ``result``.
    """
    for worker in pool:
        worker.send(cmd="round", plan=plans[worker.index])
    for worker in pool:
        assert worker.receive() == {"read": True}
    out = []
    for worker, answer in zip(pool, everyone(pool, cmd="write"), strict=True):
        for t, result in enumerate(answer["results"]):
            key, field, value = plans[worker.index][t]
            out.append({"worker": worker.index, "thread": t, "key": key, "field": field,
                        "value": value, **result})
    return out


def _same_field_rounds(security: Security, pool: list[Worker], key: str) -> str:
    """Every writer reads, waits, then sets its own description: one wins per round."""
    current = security.get_auth_token(key).description
    for r in range(5):
        plans = {p: [[key, "description", f"r{r}-p{p}-t{t}"] for t in range(THREADS)]
                 for p in range(PROCESSES)}
        results = _barrier_round(pool, plans)
        # everyone read the previous winner's value, i.e. the same version
        assert {tuple(x["read"]) for x in results} == {(current, "payload")}
        winners = [x["value"] for x in results if x["result"] == "ok"]
        assert len(winners) == 1, results  # at most one per version, and never none
        assert sorted({x["result"] for x in results}) == ["ConcurrentUpdate", "ok"]
        stored = security.get_auth_token(key)
        assert (stored.description, stored.data, stored.scope) == (
            winners[0], "payload", "docs:edit")
        current = winners[0]
    return current


def _free_for_all(security: Security, pool: list[Worker], key: str, current: str) -> None:
    """Read, change, write in a loop with no barrier: a win means the stored description
    was still the one read, so the wins form one chain ending at the stored value."""
    log = [row for answer in everyone(pool, cmd="free", key=key, n=10)
           for thread_log in answer["log"] for row in thread_log]
    assert {result for _, _, result in log} <= {"ok", "ConcurrentUpdate"}
    wins = [(before, after) for before, after, result in log if result == "ok"]
    assert wins
    follows = dict(wins)
    assert len(follows) == len(wins), "two wins built on the same value: one was lost"
    steps = 0
    while current in follows:
        current = follows.pop(current)
        steps += 1
    assert (steps, follows) == (len(wins), {}), "a win was lost or went astray"
    assert security.get_auth_token(key).description == current


def _different_fields_rounds(security: Security, pool: list[Worker], keys: list[str]) -> None:
    """Token j's description and data are written at once by two processes: both win."""
    half = THREADS // 2
    for r in range(3):
        # token j: its description written by worker j % P, its data by the next worker
        plans = {
            p: [[keys[j], "description", f"d{r}-{j}"]
                for j in (t * PROCESSES + p for t in range(half))]
            + [[keys[j], "data", f"x{r}-{j}"]
               for j in (t * PROCESSES + (p - 1) % PROCESSES for t in range(half))]
            for p in range(PROCESSES)
        }
        results = _barrier_round(pool, plans)
        assert len(results) == 2 * len(keys)
        assert {x["result"] for x in results} == {"ok"}, results
        for j, key in enumerate(keys):
            pair = [x for x in results if x["key"] == key]
            assert sorted(x["field"] for x in pair) == ["data", "description"]
            assert len({x["worker"] for x in pair}) == 2
            before = (f"d-init-{j}", f"x-init-{j}") if r == 0 else (
                f"d{r - 1}-{j}", f"x{r - 1}-{j}")
            assert [tuple(x["read"]) for x in pair] == [before, before]  # same version
            stored = security.get_auth_token(key)
            assert (stored.description, stored.data) == (f"d{r}-{j}", f"x{r}-{j}")


@pytest.mark.slow
def test_concurrent_updates_never_lose_a_write(url: str, processes: Pool) -> None:
    """Racing updates of one field each win or raise ConcurrentUpdate with the last winner
    stored, and racing updates of different fields all win with both values stored."""
    with open_security(url, secret_keys=KEY) as security:
        token = AuthToken("docs:edit", "payload", description="initial", expires="never")
        security.authorize_token(token, user="writer")
        assert token.key is not None
        others = [AuthToken("docs:edit", f"x-init-{j}", description=f"d-init-{j}")
                  for j in range(PROCESSES * THREADS // 2)]
        for other in others:
            security.authorize_token(other, user="writer")
        with workers(processes, url, "updates") as pool:
            last = _same_field_rounds(security, pool, token.key)
            _free_for_all(security, pool, token.key, last)
            _different_fields_rounds(security, pool, [str(t.key) for t in others])
            for worker in pool:
                worker.send(cmd="stop")


# -- 4. authorize -------------------------------------------------------------------------

PER_THREAD = 6
EXPIRY_BASE = datetime(2090, 1, 1, tzinfo=UTC)


def _spec(n: int) -> dict[str, Any]:
    """The fields of the n-th token: users of both types, non-ASCII text, a NUL, odd
    microseconds, no expiry now and then."""
    return {
        "user": n if n % 2 else f"user-{n}-\u00fc",
        "scope": f"job:{n} shared vfs:ikey?{n}",
        "data": None if n % 5 == 0 else f"payload {n} " + "\u00e9" * (n % 7) + "\x00end",
        "description": f"token {n} \u2713",
        "expires": None if n % 6 == 0 else (
            EXPIRY_BASE + timedelta(seconds=n, microseconds=n)).isoformat(),
    }


@pytest.mark.slow
def test_concurrent_authorize_writes_whole_tokens(url: str, processes: Pool) -> None:
    """Tokens authorized at once by processes x threads are stored whole: every field as
    given, and every returned string restores and logs in to its own token."""
    number = {(p, t, i): (p * THREADS + t) * PER_THREAD + i
              for p in range(PROCESSES) for t in range(THREADS) for i in range(PER_THREAD)}
    # The parent has not touched the empty database: the workers, connecting together,
    # also race to create the schema (which must happen once, and refuse nobody).
    with workers(processes, url, "authorize") as pool:
        for worker in pool:
            worker.send(specs=[[_spec(number[worker.index, t, i]) for i in range(PER_THREAD)]
                               for t in range(THREADS)])
        made = {number[w.index, t, i]: (key, string)
                for w in pool for t, i, key, string in w.receive()["made"]}
    assert len(made) == PROCESSES * THREADS * PER_THREAD
    with open_security(url, secret_keys=KEY) as security:
        listed = {t.key: t for t in security.list_auth_tokens()}
        assert set(listed) == {key for key, _ in made.values()}
        for n, (key, string) in made.items():
            want = _spec(n)
            expires = None if want["expires"] is None else datetime.fromisoformat(
                want["expires"])
            for token in (listed[key], security.restore_auth_token(string)):
                assert token.key == key
                assert (type(token.user), token.user) == (type(want["user"]), want["user"])
                assert (token.scope, token.data, token.description) == (
                    want["scope"], want["data"], want["description"])
                assert token.expires == expires
                assert (token.revoked_at, token.parent_key) == (None, None)
            principal = security.login_by_auth_token(string, script=Script(key=n))
            assert (principal.user, principal.token_key, principal.data) == (
                want["user"], key, want["data"])
            assert principal.scopes == (f"job:{n}", "shared", f"vfs:ikey?{n}")


@pytest.mark.slow
def test_delegation_racing_a_revocation_leaves_no_live_orphan(
        url: str, processes: Pool) -> None:
    """Sessions delegating children and grandchildren while their roots are revoked leave
    no live token under a revoked parent, and a refused delegation stores nothing."""
    rounds, per_round = 2, 6
    made: list[list[str]] = []
    late: list[str] = []
    errors: list[str] = []
    problems: list[str] = []
    tallies: list[dict[str, int]] = []
    roots: set[str] = set()
    with open_security(url, secret_keys=KEY) as security:
        # SQLite has one write lock, and 16 writers that never pause starve some of them
        pause = 0.01 if url.startswith("sqlite") else 0.0
        with workers(processes, url, "delegate", pause=pause, batch=5) as pool:
            for r in range(rounds):
                strings = []
                for k in range(per_round):
                    root = AuthToken("a b c", description=f"root {r}.{k}")
                    strings.append(security.authorize_token(root, user="carol"))
                    roots.add(str(root.key))
                assert everyone(pool, cmd="roots", roots=strings) == [{"warm": True}] * PROCESSES
                # every thread delegates under every root; revoke them one by one
                for string in strings:
                    time.sleep(0.02)
                    revoke_until_done(partial(security.revoke_auth_token, string), problems)
                for answer in everyone(pool, cmd="revoked"):
                    for result in answer["results"]:
                        made.extend(result["made"])
                        late.extend(result["late"])
                        errors.extend(result["errors"])
                        tallies.append(result["tally"])
            for worker in pool:
                worker.send(cmd="stop")
        everything = security.list_auth_tokens(include_revoked=True)
        stored = {t.key: t for t in everything}
        assert len(stored) == len(everything)
        # what was stored is exactly what was reported made: a refused delegation left
        # nothing behind (and nothing made was lost)
        assert set(stored) == roots | {key for key, _, _ in made}
        assert len(made) == len({key for key, _, _ in made})
        orphans = [t for t in everything if t.parent_key is not None
                   and stored[t.parent_key].revoked and not t.revoked]
        if orphans:
            problems.append(f"{len(orphans)} of {len(made)} delegated tokens are live under "
                            f"a revoked parent, e.g. {orphans[:3]}")
        if late:  # a delegation attempted after the revocation was announced
            problems.append(f"{len(late)} delegations attempted after the revocation was "
                            f"announced were not refused: {sorted(set(late))}")
        if errors:  # neither done nor refused as revoked
            problems.append(f"{len(errors)} delegations failed otherwise, e.g. {errors[:3]}")
        assert not problems, "\n".join(problems)
        assert security.list_auth_tokens() == []  # every tree died with its root
        for tally in tallies:
            assert set(tally) <= {"0|ok", "0|TokenRevoked", "1|TokenRevoked"}
            assert tally.get("0|ok", 0) >= 2  # the warm-up delegations all worked
        grandchildren = 0
        for key, parent_key, string in made:
            token = security.restore_auth_token(string)
            assert (token.key, token.parent_key) == (key, parent_key)
            assert token.parent_key in stored
            grandchildren += token.parent_key not in roots
        assert grandchildren > 0
