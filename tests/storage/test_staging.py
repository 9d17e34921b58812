"""The SQL repository's staging table and its fold: nothing read changes, nothing is lost.

A batch appends to ``authtoken_staged``; the fold files staged rows into the tokens and
the trail.  Reads add what is staged, so every read is the same before and after a fold;
the trail's login events of one kind become one event with their count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import AuthToken, Script, Security, SQLRepository
from authtoken._repository import EventRow, Usage
from authtoken._sql._staging import (
    FOLD_CHUNK,
    SUMMARY_MICROS,
    event_rows,
    file_rows,
    staged_rows,
)
from authtoken.testing import FakeClock

KEYS = ["k1", "k2"]


@pytest.fixture(params=["sqlite", "postgresql"])
def sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLRepository]:
    url = (f"sqlite:///{tmp_path / 'tokens.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    repo = SQLRepository(url)
    yield repo
    repo.close()


def staged_count(repo: SQLRepository) -> int:
    """Rows still to file (on SQLite a fold leaves the newest row spent: see _fold)."""
    query = "SELECT COUNT(*) FROM authtoken_staged WHERE uses >= 0"
    with repo.engine.connect() as conn:
        return int(conn.execute(sa.text(query)).scalar_one())


def trail(security: Security, **filters: object) -> list[tuple[object, ...]]:
    """The trail as (action, outcome, token_key, script, reason) with counts summed."""
    totals: dict[tuple[object, ...], int] = {}
    for e in security.audit_events(limit=10_000, **filters):  # type: ignore[arg-type]
        kind = (e.action, e.outcome, e.token_key, e.script, e.reason)
        totals[kind] = totals.get(kind, 0) + e.count
    return sorted(totals.items(), key=repr)


def test_reads_are_the_same_before_and_after_the_fold(sql: SQLRepository,
                                                      clock: FakeClock) -> None:
    """Usage, lists and the trail read alike from staged and from filed rows."""
    security = Security(sql, secret_keys="k", clock=clock)
    strings = [security.authorize_token(AuthToken(f"s{i} vfs:ikey?{i}"), user=i % 2)
               for i in range(5)]
    for round_ in range(3):
        for i, string in enumerate(strings[: 3 + round_ % 2]):
            clock.advance(timedelta(seconds=1))
            security.login_by_auth_token(string, script=Script(key=i))
    with pytest.raises(Exception, match="bound to other scripts"):
        security.login_by_auth_token(strings[0], script=Script(key=99))
    security.flush()
    assert staged_count(sql) > 0
    before_tokens = [(t.key, t.use_count, t.last_used_at)
                     for t in security.list_auth_tokens(include_revoked=True)]
    before_one = security.restore_auth_token(strings[0])
    before_trail = trail(security)
    before_user = trail(security, user=1)
    assert sql.fold() > 0
    assert staged_count(sql) == 0
    assert [(t.key, t.use_count, t.last_used_at)
            for t in security.list_auth_tokens(include_revoked=True)] == before_tokens
    after_one = security.restore_auth_token(strings[0])
    assert (after_one.use_count, after_one.last_used_at) == (
        before_one.use_count, before_one.last_used_at)
    assert before_one.use_count == 3
    assert trail(security) == before_trail
    assert trail(security, user=1) == before_user
    # one login event per kind: the three logins of strings[0] are one event, count 3
    ok = [e for e in security.audit_events(token_key=before_one.key)
          if e.action == "login" and e.outcome == "ok"]
    assert [e.count for e in ok] == [3]
    security.close()


def test_a_second_engine_reads_what_the_first_staged(sql: SQLRepository,
                                                     tmp_path: Path) -> None:
    """Usage written by one Security is exact for another as soon as it is flushed."""
    first = Security(sql, secret_keys="k")
    string = first.authorize_token(AuthToken("a"), user=1)
    for _ in range(7):
        first.login_by_auth_token(string)
    first.flush()
    other = SQLRepository(sql.engine.url.render_as_string(hide_password=False))
    try:
        second = Security(other, secret_keys="k")
        assert second.restore_auth_token(string).use_count == 7
        events = second.audit_events(token_key=second.restore_auth_token(string).key)
        assert sum(e.count for e in events if e.action == "login") == 7
    finally:
        other.close()
        first.close()


def test_a_retried_batch_is_staged_once(sql: SQLRepository) -> None:
    """The batch id still guards the append: a batch written twice counts once."""
    security = Security(sql, secret_keys="k")
    string = security.authorize_token(AuthToken("a"), user=1)
    key = security.restore_auth_token(string).key
    assert key is not None
    from authtoken._repository import BatchId

    batch = BatchId("w" * 16, 1)
    sql.record_usage({key: Usage(2, 10**15)}, (), batch)
    sql.record_usage({key: Usage(2, 10**15)}, (), batch)
    assert security.get_auth_token(key).use_count == 2
    sql.fold()
    assert security.get_auth_token(key).use_count == 2
    security.close()


def test_concurrent_folds_file_each_row_once(sql: SQLRepository) -> None:
    """Folds racing each other and new batches: every use counted exactly once."""
    security = Security(sql, secret_keys="k")
    keys = []
    for i in range(20):
        token = AuthToken(f"s{i}")
        security.authorize_token(token, user=1)
        keys.append(token.key)
    for round_ in range(3):
        sql.record_usage({k: Usage(1 + round_, 10**15 + round_) for k in keys})
    errors: list[BaseException] = []

    def fold() -> None:
        try:
            sql.fold()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fold) for _ in range(4)]
    for thread in threads:
        thread.start()
    sql.record_usage({k: Usage(10, 10**15 + 9) for k in keys})
    for thread in threads:
        thread.join(60)
    assert errors == []
    sql.fold()
    assert staged_count(sql) == 0
    assert {security.get_auth_token(k).use_count for k in keys} == {1 + 2 + 3 + 10}
    security.close()


def test_a_fold_files_in_chunks(sql: SQLRepository) -> None:
    """More staged rows than one chunk: all filed, over several transactions."""
    security = Security(sql, secret_keys="k")
    token = AuthToken("a")
    security.authorize_token(token, user=1)
    assert token.key is not None
    # One minute apart: a batch stages the login events of one kind in one minute as one
    # row, so these are as many rows.
    events = [EventRow(10**15 + i * SUMMARY_MICROS, "login", "ok", None, token.key, 1,
                       Script(key=i % 50), None, 1) for i in range(FOLD_CHUNK + 5)]
    sql.record_usage({token.key: Usage(len(events), events[-1].at)}, events)
    staged = staged_count(sql)  # the logins and the authorize event
    assert staged == FOLD_CHUNK + 6
    assert sql.fold(max_rows=FOLD_CHUNK) == FOLD_CHUNK  # stops at the bound
    assert sql.fold() == 6
    assert security.get_auth_token(token.key).use_count == FOLD_CHUNK + 5
    with sql.engine.connect() as conn:  # more events than one trail read returns
        filed = conn.exec_driver_sql(
            "SELECT SUM(\"count\") FROM authtoken_audit WHERE action = 'login'").scalar()
    assert filed == FOLD_CHUNK + 5
    security.close()


# -- the pure parts ------------------------------------------------------------------------
def test_usage_rides_on_login_events() -> None:
    """A successful login event carries its uses; only what no event covers gets a row."""
    events = [EventRow(5, "login", "ok", None, "k1", 1, None, None, 3),
              EventRow(6, "login", "refused", None, "k1", 1, None, "TokenExpired", 2),
              EventRow(7, "update", "ok", "user:1", "k2", 1, None, None, 1)]
    rows = staged_rows({"k1": Usage(3, 5), "k2": Usage(4, 9)}, events)
    assert [row[-1] for row in rows] == [3, 0, 0, 4]  # k2's logins: a usage-only row
    assert rows[-1][:3] == (9, None, None)


_KEYS = st.sampled_from(["k1", "k2", "k3"])
_EVENTS = st.lists(st.builds(
    EventRow, at=st.integers(0, 5 * SUMMARY_MICROS),
    action=st.sampled_from(["login", "login", "authenticate", "upstream", "revoke"]),
    outcome=st.sampled_from(["ok", "refused"]), actor=st.sampled_from([None, "user:1"]),
    token_key=st.one_of(st.none(), _KEYS), user=st.sampled_from([None, 1]),
    script=st.sampled_from([None, Script(key=1), Script(path="/a")]),
    reason=st.sampled_from([None, "TokenExpired"]), times=st.integers(1, 30)), max_size=60)


# One kind of successful login, and usage that may fall short of its events (a
# repository's own caller may hand over such a batch): where sums could go wrong.
_ONE_KIND = st.lists(st.builds(
    EventRow, at=st.integers(0, 2 * SUMMARY_MICROS), action=st.just("login"),
    outcome=st.just("ok"), actor=st.none(), token_key=st.just("k1"), user=st.just(1),
    script=st.none(), reason=st.none(), times=st.integers(1, 3)), max_size=12)
_USAGE = st.dictionaries(_KEYS, st.builds(Usage, st.integers(1, 200),
                                          st.integers(0, 5 * SUMMARY_MICROS)))
_SHORT_USAGE = st.dictionaries(st.just("k1"), st.builds(
    Usage, st.integers(1, 3), st.integers(0, 2 * SUMMARY_MICROS)))


@settings(max_examples=300, deadline=None)
@given(batch=st.one_of(st.tuples(_EVENTS, _USAGE), st.tuples(_ONE_KIND, _SHORT_USAGE)))
def test_summing_at_staging_files_what_one_row_per_event_files(
        batch: tuple[list[EventRow], dict[str, Usage]]) -> None:
    """A batch stages the login events of one kind in one minute as one row: the fold
    files from those rows exactly what it files from one row per event -- the same
    usage per token (``last_used_at`` never later than the last counted use), the same
    events with the same counts -- and never more rows."""
    events, usage = batch
    summed, each = staged_rows(usage, events), event_rows(usage, events)
    assert len(summed) <= len(each)
    assert sum(row[-1] for row in summed) == sum(row[-1] for row in each)
    usage_a, audit_a = file_rows([(i, *row) for i, row in enumerate(summed)])
    usage_b, audit_b = file_rows([(i, *row) for i, row in enumerate(each)])
    assert usage_a == usage_b
    assert sorted(audit_a, key=repr) == sorted(audit_b, key=repr)


def test_a_batch_stages_one_row_per_kind_and_minute() -> None:
    """Ten logins of one token in one minute: one staged row carrying all ten."""
    events = [EventRow(10**15 + i, "login", "ok", None, "k1", 1, None, None, 1)
              for i in range(10)]
    rows = staged_rows({"k1": Usage(10, 10**15 + 9)}, events)
    assert len(rows) == 1 and rows[0][0] == 10**15 + 9
    assert (rows[0][-2], rows[0][-1]) == (10, 10)  # count, uses


def test_a_usage_row_keeps_the_latest_login() -> None:
    """Events that end earlier than the usage (events dropped) still advance last_used."""
    rows = staged_rows({"k1": Usage(1, 9)},
                       [EventRow(5, "login", "ok", None, "k1", 1, None, None, 1)])
    assert [(row[0], row[1], row[-1]) for row in rows] == [(5, "login", 1), (9, None, 0)]


def test_filing_sums_login_events_per_kind_and_keeps_changes() -> None:
    """Logins of one kind become one event; changes stay one by one; usage per token."""
    staged = staged_rows(
        {"k1": Usage(2, 8)},
        [EventRow(5, "login", "ok", None, "k1", 1, None, None, 1),
         EventRow(6, "revoke", "ok", "user:1", "k2", 1, None, None, 1),
         EventRow(7, "revoke", "ok", "user:1", "k2", 1, None, None, 1),
         EventRow(8, "login", "ok", None, "k1", 1, None, None, 1)],
    )
    usage, audit = file_rows([(i, *row) for i, row in enumerate(staged)])
    assert usage == [{"k": "k1", "n": 2, "last": 8}]
    assert [(row[0], row[1], row[-1]) for row in audit] == [
        (6, "revoke", 1), (7, "revoke", 1), (8, "login", 2)]


@pytest.mark.parametrize("filters", [
    {}, {"user": 1}, {"token_key": "k" * 16}, {"user": 1, "since": 1},
    {"token_key": "k" * 16, "since": 1},
])
def test_reading_the_trail_never_sorts_it(tmp_path: Path, filters: dict[str, object]) -> None:
    """Every filter of a trail read walks an index in the order of the answer, so the
    newest ``limit`` events cost ``limit`` steps however long the trail is (SQLite's
    plan would say "USE TEMP B-TREE FOR ORDER BY" if it had to sort)."""
    from datetime import datetime, timezone

    repo = SQLRepository(f"sqlite:///{tmp_path / 'tokens.db'}")
    statements: list[tuple[str, object]] = []

    def spy(conn: object, cursor: object, statement: str, parameters: object,
            context: object, executemany: bool) -> None:
        if "FROM authtoken_audit" in statement:
            statements.append((statement, parameters))

    sa.event.listen(repo.engine, "before_cursor_execute", spy)
    try:
        if "since" in filters:
            filters = {**filters, "since": datetime(2026, 1, 1, tzinfo=timezone.utc)}
        repo.events(limit=10, **{"user": None, "token_key": None, "since": None,
                                 **filters})  # type: ignore[arg-type]
        assert len(statements) == 1
        statement, parameters = statements[0]
        with repo.engine.connect() as conn:
            plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", parameters))  # type: ignore[arg-type]
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    finally:
        repo.close()


def test_login_events_are_summed_per_minute_only() -> None:
    """Two logins of one kind a minute apart stay two events: a summary never hides
    when the attempts were by more than a minute."""
    minute = 60_000_000
    staged = staged_rows({"k1": Usage(3, 10 * minute + 5)}, [
        EventRow(10 * minute - 1, "login", "ok", None, "k1", 1, None, None, 1),
        EventRow(10 * minute + 1, "login", "ok", None, "k1", 1, None, None, 1),
        EventRow(10 * minute + 5, "login", "ok", None, "k1", 1, None, None, 1)])
    _usage, audit = file_rows([(i, *row) for i, row in enumerate(staged)])
    assert [(row[0], row[-1]) for row in audit] == [(10 * minute - 1, 1),
                                                    (10 * minute + 5, 2)]


def test_reads_see_a_fold_whole_or_not_at_all(sql: SQLRepository) -> None:
    """A fold committing while a trail read or a list runs is never seen half-done:
    no event counted twice (staged and filed), no staged use missed."""
    security = Security(sql, secret_keys="k")
    token = AuthToken("a")
    security.authorize_token(token, user=1)
    assert token.key is not None
    stop = threading.Event()
    errors: list[BaseException] = []

    def fold_forever() -> None:
        try:
            while not stop.is_set():
                sql.fold()
        except BaseException as exc:  # reported below
            errors.append(exc)

    folder = threading.Thread(target=fold_forever)
    folder.start()
    written = 0
    try:
        for i in range(150):
            sql.record_usage({token.key: Usage(1, 10**15 + i)},
                             [EventRow(10**15 + i, "login", "ok", None, token.key, 1, None,
                                       None, 1)])
            written += 1
            events = sql.events(user=None, token_key=token.key, since=None, limit=10_000)
            assert sum(e.count for e in events if e.action == "login") == written
            listed = sql.list(1, True)
            assert [t.use_count for t in listed] == [written]
    finally:
        stop.set()
        folder.join(60)
    assert errors == []
    security.close()
