"""The fold on SQLite: rows read without the write lock, filed in parts of whole tokens,
each part only if all its rows are still staged, a waiting revocation first.

``docs/recording.md`` says why; these tests hold it to what it promises: the parts file
exactly what one transaction would, folds racing each other (threads, engines) count
every use once, a part whose rows another fold took files nothing, the table never hands
a row id out twice, and a fold steps aside for a revocation that signals it waits.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import AuthToken, Security, SQLRepository
from authtoken._repository import EventRow, Usage
from authtoken._sql import _urgent
from authtoken._sql._dialect import Dialect
from authtoken._sql._fold import SPENT, Taken, file_part, parts, read_staged
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
    """(id, uses) of every staged row, spent ones included."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, uses FROM authtoken_staged ORDER BY id").fetchall()


# -- parts: pure -----------------------------------------------------------------------
_rows = st.lists(
    st.tuples(
        st.sampled_from([None, "login", "authenticate", "revoke"]),
        st.sampled_from([None, "k1", "k2", "k3", "k4", "k5"]),
        st.integers(0, 3),  # uses
        st.integers(0, 200_000_000),  # at
        st.booleans(),  # spent
    ),
    max_size=60,
)


def _staged_rows(spec: list[tuple[str | None, str | None, int, int, bool]],
                 ) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for i, (action, key, uses, at, spent) in enumerate(spec, 1):
        if spent:
            rows.append((i, at, None, None, None, None, None, None, None, None, 0, SPENT))
        elif action is None and key is None:
            continue  # a batch writes no row of nothing
        else:
            rows.append((i, at, action, None if action is None else "ok", None, key,
                         "s:1", None, None, None, 1, uses if action in (None, "login") else 0))
    return rows


@settings(max_examples=300, deadline=None)
@given(_rows, st.integers(1, 8))
def test_parts_file_what_one_transaction_would(
    spec: list[tuple[str | None, str | None, int, int, bool]], writes: int,
) -> None:
    rows = _staged_rows(spec)
    cut = list(parts(rows, writes))
    ids = [i for part in cut for i in part.ids]
    spent = [i for part in cut for i in part.spent]
    assert sorted(ids + spent) == [row[0] for row in rows]  # each row once
    assert sorted(spent) == [row[0] for row in rows if row[11] == SPENT]
    by_id = {row[0]: row for row in rows}
    seen: dict[object, int] = {}
    for n, part in enumerate(cut):
        keys = {by_id[i][5] for i in part.ids}
        for key in keys:  # a token's rows are all in one part
            assert seen.setdefault(key, n) == n
        if len(keys) > 1:
            assert len(part.usage) + len(part.audit) <= writes
    whole_usage, whole_audit = file_rows([row for row in rows if row[11] != SPENT])
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
    assert errors == []
    sql.fold()
    other.close()
    assert [uses for _, uses in staged(path)] == [SPENT]  # all filed; the newest id kept
    assert {security.get_auth_token(k).use_count for k in keys} == {4}
    logins = sum(e.count for e in security.audit_events(limit=10_000) if e.action == "login")
    assert logins == 4 * len(keys)
    security.close()


def test_the_newest_row_is_spent_not_deleted_so_no_id_comes_back(path: str,
                                                                 sql: SQLRepository) -> None:
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 3)
    log_in(sql, keys, T0)
    sql.fold()
    ((top, uses),) = staged(path)
    assert uses == SPENT
    before = [security.get_auth_token(k) for k in keys]
    assert [t.use_count for t in before] == [1, 1, 1]
    log_in(sql, keys[:1], T0 + 1_000_000)
    assert min(i for i, _ in staged(path) if i != top) > top  # a new id, above it
    assert security.get_auth_token(keys[0]).use_count == 2  # the spent row counts nothing
    assert security.get_auth_token(keys[1]).use_count == 1
    logins = [e for e in security.audit_events(token_key=keys[0], limit=1_000)
              if e.action == "login"]
    assert sum(e.count for e in logins) == 2  # the filed one and the staged one
    assert sql.fold() == 1  # the login; the spent row is dropped, the new one spent
    assert [u for _, u in staged(path)] == [SPENT]
    assert security.get_auth_token(keys[0]).use_count == 2
    security.close()


def test_a_part_whose_rows_another_fold_took_files_nothing(path: str,
                                                           sql: SQLRepository) -> None:
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 4)
    log_in(sql, keys, T0)
    with sql.engine.connect() as conn, conn.begin():
        stale = list(parts(read_staged(conn, 1_000)))
    assert sql.fold() > 0  # another fold files them first
    counts = [security.get_auth_token(k).use_count for k in keys]
    events = len(security.audit_events(limit=1_000))
    unused = cast(Dialect, None)  # Taken comes before anything is written
    with sql.engine.connect() as conn, pytest.raises(Taken), conn.begin():
        file_part(conn, stale[0], unused)
    assert [security.get_auth_token(k).use_count for k in keys] == counts
    assert len(security.audit_events(limit=1_000)) == events
    security.close()


# -- a revocation goes first ----------------------------------------------------------
def test_a_fold_waits_while_a_revocation_signals(path: str, sql: SQLRepository) -> None:
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
        assert len([u for _, u in staged(path) if u >= 0]) >= 3
    worker.join(30)
    assert done.is_set()
    assert not _urgent.waiting(path)
    assert [u for _, u in staged(path)] == [SPENT]
    security.close()


def test_a_revocation_waiting_for_the_lock_signals_it(path: str, sql: SQLRepository) -> None:
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


def test_no_lock_file_no_signal_and_no_error(tmp_path: Path) -> None:
    """A lock file that cannot be made (here: its folder is gone) signals nothing."""
    path = str(tmp_path / "gone" / "tokens.db")
    with _urgent.signalling(path):
        assert not _urgent.waiting(path)
    _urgent.let_pass(path, 1.0)
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


def test_staged_rows_spent_are_never_read_as_usage_or_events(path: str,
                                                             sql: SQLRepository) -> None:
    security = Security(sql, secret_keys="k")
    keys = authorize(security, 2)
    log_in(sql, keys, T0)
    sql.fold()
    with sql.engine.connect() as conn:
        spent = conn.execute(sa.text(
            "SELECT token_key, action, uses FROM authtoken_staged")).all()
    assert spent == [(None, None, SPENT)]
    assert [t.use_count for t in security.list_auth_tokens(user=0)] == [1]
    assert sum(t.use_count for u in range(7) for t in security.list_auth_tokens(user=u)) == 2
    security.close()
