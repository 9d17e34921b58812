"""The fold on SQLite: rows read without the write lock, filed in parts of whole tokens,
each part only if all its rows are still staged, a waiting revocation first.

``docs/recording.md`` says why; these tests hold it to what it promises: the parts file
exactly what one transaction would, folds racing each other (threads, engines) count
every use once, a part whose rows another fold took files nothing (even once the table
emptied and filled again), and a fold steps aside for a revocation that signals it
waits.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import AuthToken, Security, SQLRepository
from authtoken._repository import EventRow, Usage
from authtoken._sql import _urgent
from authtoken._sql._dialect import Dialect
from authtoken._sql._fold import Taken, file_part, parts, read_staged
from authtoken._sql._staging import file_rows

T0 = 1_800_000_000_000_000  # µs


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "tokens.db")


@pytest.fixture
def sql(path: str) -> Iterator[SQLRepository]:
    repo = SQLRepository(f"sqlite:///{path}")
    yield repo
    repo.close()


def authorize(security: Security, n: int) -> list[str]:
    keys = []
    for i in range(n):
        token = AuthToken("s")
        security.authorize_token(token, user=i % 7)
        assert token.key is not None
        keys.append(token.key)
    return keys


def log_in(sql: SQLRepository, keys: list[str], at: int) -> None:
    """One batch: one login event and one use per key."""
    events = [EventRow(at + i, "login", "ok", None, key, 1, None, None, 1)
              for i, key in enumerate(keys)]
    sql.record_usage({key: Usage(1, at + i) for i, key in enumerate(keys)}, events)


def staged(path: str) -> list[tuple[int, int]]:
    """(id, uses) of every staged row."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, uses FROM authtoken_staged ORDER BY id").fetchall()


# -- parts: pure -----------------------------------------------------------------------
_rows = st.lists(
    st.tuples(
        st.sampled_from([None, "login", "authenticate", "revoke"]),
        st.sampled_from([None, "k1", "k2", "k3", "k4", "k5"]),
        st.integers(0, 3),  # uses
        st.integers(0, 200_000_000),  # at
    ),
    max_size=60,
)


def _staged_rows(spec: list[tuple[str | None, str | None, int, int]],
                 ) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for i, (action, key, uses, at) in enumerate(spec, 1):
        if action is None and key is None:
            continue  # a batch writes no row of nothing
        else:
            rows.append((i, at, action, None if action is None else "ok", None, key,
                         "s:1", None, None, None, 1, uses if action in (None, "login") else 0))
    return rows


@settings(max_examples=300, deadline=None)
@given(_rows, st.integers(1, 8))
def test_parts_file_what_one_transaction_would(
    spec: list[tuple[str | None, str | None, int, int]], writes: int,
) -> None:
    rows = _staged_rows(spec)
    cut = list(parts(rows, writes))
    assert sorted(i for part in cut for i in part.ids) == [row[0] for row in rows]
    by_id = {row[0]: row for row in rows}
    seen: dict[object, int] = {}
    for n, part in enumerate(cut):
        keys = {by_id[i][5] for i in part.ids}
        for key in keys:  # a token's rows are all in one part
            assert seen.setdefault(key, n) == n
        if len(keys) > 1:
            assert len(part.usage) + len(part.audit) <= writes
    whole_usage, whole_audit = file_rows(rows)
    assert sorted((u["k"], u["n"], u["last"]) for p in cut for u in p.usage) == sorted(
        (u["k"], u["n"], u["last"]) for u in whole_usage)
    assert Counter(a for p in cut for a in p.audit) == Counter(whole_audit)


def test_no_rows_no_parts() -> None:
    assert list(parts([])) == []


# -- on a file -------------------------------------------------------------------------
def test_folds_racing_in_threads_and_engines_count_every_use_once(path: str,
                                                                  sql: SQLRepository) -> None:
    """Enough tokens for several parts; four folds on two engines, batches meanwhile."""
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 1_200)
    other = SQLRepository(f"sqlite:///{path}")
    for round_ in range(3):
        log_in(sql, keys, T0 + round_ * 10_000)
    errors: list[BaseException] = []

    def fold(repo: SQLRepository) -> None:
        try:
            repo.fold()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fold, args=(repo,)) for repo in (sql, other) * 2]
    for thread in threads:
        thread.start()
    log_in(other, keys, T0 + 50_000)
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    sql.fold()
    other.close()
    assert staged(path) == []
    assert {security.get_auth_token(k).use_count for k in keys} == {4}
    logins = sum(e.count for e in security.audit_events(limit=10_000) if e.action == "login")
    assert logins == 4 * len(keys)
    security.close()


def test_a_bounded_fold_stops_at_its_bound_or_when_nothing_is_left(path: str,
                                                                   sql: SQLRepository) -> None:
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 2)
    sql.fold()
    log_in(sql, keys, T0)
    assert sql.fold(max_rows=3) == 2  # the two logins; nothing else is staged
    log_in(sql, keys, T0 + 1_000_000)
    assert sql.fold(max_rows=1) == 1
    assert sql.fold(max_rows=1) == 1
    assert sql.fold(max_rows=1) == 0
    assert [security.get_auth_token(k).use_count for k in keys] == [2, 2]
    security.close()


def test_a_part_whose_rows_another_fold_took_files_nothing(path: str,
                                                           sql: SQLRepository) -> None:
    """Even once the table emptied and new rows came: ids are never handed out twice,
    so the stale part finds none of its rows and files nothing."""
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 4)
    sql.fold()
    log_in(sql, keys, T0)
    with sql.engine.connect() as conn, conn.begin():
        stale = list(parts(read_staged(conn, 1_000)))
    assert sql.fold() > 0  # another fold files them first
    assert staged(path) == []
    log_in(sql, keys, T0 + 1_000_000)  # new rows, new ids
    assert min(i for i, _ in staged(path)) > max(stale[0].ids)
    counts = [security.get_auth_token(k).use_count for k in keys]
    events = len(security.audit_events(limit=1_000))
    unused = cast(Dialect, None)  # Taken comes before anything is written
    with sql.engine.connect() as conn, pytest.raises(Taken), conn.begin():
        file_part(conn, stale[0], unused)
    assert [security.get_auth_token(k).use_count for k in keys] == counts == [2] * 4
    assert len(security.audit_events(limit=1_000)) == events
    assert len(staged(path)) == 4  # the new rows, untouched
    security.close()


# -- a revocation goes first ----------------------------------------------------------
def test_a_fold_waits_while_a_revocation_signals(path: str) -> None:
    sql = SQLRepository(f"sqlite:///{path}", timeout=60)  # it waits this long at most
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 3)
    log_in(sql, keys, T0)
    done = threading.Event()
    with _urgent.signalling(path):
        assert _urgent.waiting(path)
        worker = threading.Thread(target=lambda: (sql.fold(), done.set()))
        worker.start()
        assert not done.wait(0.5)  # it waits for the revocation, filing nothing
        assert security.get_auth_token(keys[0]).use_count == 1  # (read through staging)
        assert len(staged(path)) >= 3
    worker.join(30)
    assert done.is_set()
    assert not _urgent.waiting(path)
    assert staged(path) == []
    security.close()


def test_a_revocation_waiting_for_the_lock_signals_it(path: str) -> None:
    sql = SQLRepository(f"sqlite:///{path}", timeout=60)  # it polls this long at most
    security = Security(sql, secret_keys="k")
    token = AuthToken("s")
    security.authorize_token(token, user=1)
    assert token.key is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a writer holds the lock
    revoked = threading.Event()
    worker = threading.Thread(
        target=lambda: (security.revoke_auth_token_by_key(str(token.key)), revoked.set()))
    worker.start()
    try:
        for _ in range(2_000):
            if _urgent.waiting(path):
                break
            revoked.wait(0.005)
        assert _urgent.waiting(path)
        assert not revoked.is_set()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    worker.join(30)
    assert revoked.is_set()
    assert not _urgent.waiting(path)
    assert security.get_auth_token(token.key).revoked_at is not None
    mode = stat.S_IMODE(os.stat(path + _urgent.SUFFIX).st_mode)
    assert mode == 0o600
    security.close()


def test_a_fold_waits_for_revocations_its_timeout_at_most_in_all(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal that never ends (a stuck process) delays a fold, never stalls it: the
    fold's parts share one budget of waiting, its timeout."""
    sql = SQLRepository(f"sqlite:///{path}", timeout=0.5)
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 1_200)  # several parts: one budget for them all
    sql.fold()
    log_in(sql, keys, T0)
    budgets: list[float] = []
    real = _urgent.let_pass

    def let_pass(database: str, until: float) -> None:
        budgets.append(until - time.monotonic())
        real(database, until)

    monkeypatch.setattr(_urgent, "let_pass", let_pass)
    with _urgent.signalling(path):
        assert sql.fold() == 1_200
    assert staged(path) == []
    assert len(budgets) == 1  # the first part waited the whole budget; the rest, nothing
    assert 0.4 < budgets[0] <= 0.5
    security.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_does_not_keep_a_revocation_signal_up(path: str) -> None:
    go_on, hold = os.pipe()  # the parent tells the child to end
    ready, running = os.pipe()  # the child tells the parent it runs
    with _urgent.signalling(path), warnings.catch_warnings():
        assert _urgent.waiting(path)  # the signal is up as the child is forked
        # Python 3.12+ warns of a fork in a process with threads (other tests' pools).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
        if pid == 0:  # the child (the fork hooks have run): holds on until told
            os.write(running, b"r")
            os.read(go_on, 1)
            os._exit(0)
    try:
        assert os.read(ready, 1) == b"r"
        assert not _urgent.waiting(path)  # the parent let go; the child's copy is closed
    finally:
        os.write(hold, b"x")
        os.waitpid(pid, 0)
        for fd in (go_on, hold, ready, running):
            os.close(fd)


def test_a_symlinked_database_signals_the_same_lock_file(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    real.touch()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    with _urgent.signalling(str(link)):
        assert _urgent.waiting(str(real))
    assert os.path.exists(str(real) + _urgent.SUFFIX)


def test_a_revocation_never_blocks_on_the_lock_file(path: str) -> None:
    """Someone holding the lock file exclusively (say, stuck in a fold's look) costs a
    revocation its signal, never a wait."""
    with _urgent.signalling(path):
        pass  # makes the file
    holder = os.open(path + _urgent.SUFFIX, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (_urgent.signalling(path).__enter__(),
                                              done.set()))
    try:
        worker.start()
        assert done.wait(30)
    finally:
        os.close(holder)
        worker.join(30)


def test_a_lock_file_of_another_owner_is_not_used(path: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    lock_file = path + _urgent.SUFFIX
    with open(lock_file, "w"):
        pass
    os.chown(lock_file, 4242, -1)
    with _urgent.signalling(path):
        assert not _urgent.waiting(path)  # no signal through another user's file
    holder = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_SH)  # another user's "signal"
        assert not _urgent.waiting(path)  # is not listened to either
    finally:
        os.close(holder)


def test_no_lock_file_no_signal_and_no_error(tmp_path: Path) -> None:
    """A lock file that cannot be made (here: its folder is gone) signals nothing."""
    path = str(tmp_path / "gone" / "tokens.db")
    with _urgent.signalling(path):
        assert not _urgent.waiting(path)
    _urgent.let_pass(path, time.monotonic() + 1.0)
    assert not os.path.exists(path + _urgent.SUFFIX)


def test_a_fold_makes_no_lock_file(path: str, sql: SQLRepository) -> None:
    security = Security(sql, secret_keys="k")
    log_in(sql, authorize(security, 2), T0)
    sql.fold()
    assert not os.path.exists(path + _urgent.SUFFIX)  # only a waiting revocation makes it
    security.close()


def test_a_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    path = str(tmp_path / "tokens.db")
    target = tmp_path / "elsewhere"
    os.symlink(target, path + _urgent.SUFFIX)
    with _urgent.signalling(path):
        assert not _urgent.waiting(path)
    assert not target.exists()
