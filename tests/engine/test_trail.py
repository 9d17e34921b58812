"""Keeping the audit trail in check: prune_audit on every backend, memory:// bounded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import (
    AuthToken,
    InvalidArgument,
    MemoryRepository,
    Repository,
    Security,
)
from authtoken._repository import EventRow, Usage
from authtoken.testing import FakeClock


def test_prune_drops_only_the_older_events(security: Security, clock: FakeClock) -> None:
    """Events before ``before`` go, later ones stay, buffered ones are written first;
    usage counts are untouched."""
    old = security.authorize_token(AuthToken("a", expires=None), user=1)
    security.login_by_auth_token(old)
    clock.advance(timedelta(days=100))
    cut = clock()
    clock.advance(timedelta(seconds=1))
    security.authorize_token(AuthToken("b"), user=1)
    security.login_by_auth_token(old)  # still buffered when the prune starts
    before = security.audit_events()
    assert len([e for e in before if e.at < cut]) == 2
    assert security.prune_audit(before=cut) == 2
    after = security.audit_events()
    assert [e for e in after if e.at < cut] == []
    assert [(e.action, e.count) for e in after] == [
        (e.action, e.count) for e in before if e.at >= cut]
    assert security.restore_auth_token(old).use_count == 2
    assert security.prune_audit(before=cut) == 0  # nothing left to drop


@pytest.mark.parametrize("before", [None, "90d", 1234, datetime(2026, 1, 1).date()])
def test_prune_takes_a_datetime(security: Security, before: object) -> None:
    with pytest.raises(TypeError, match="before is a datetime"):
        security.prune_audit(before=before)  # type: ignore[arg-type]


def test_prune_refuses_a_time_in_the_future(security: Security, clock: FakeClock) -> None:
    """A 'before' later than now would drop events not yet old: refused, nothing lost."""
    security.authorize_token(AuthToken("a"), user=1)
    with pytest.raises(InvalidArgument, match="in the future"):
        security.prune_audit(before=clock() + timedelta(seconds=1))
    assert len(security.audit_events()) == 1
    assert security.prune_audit(before=clock()) == 0  # now itself is allowed


def test_a_repository_that_cannot_prune_says_so(clock: FakeClock) -> None:
    """A repository of one's own without prune_events is refused clearly."""

    class Plain:  # the Repository protocol and nothing else
        def __init__(self) -> None:
            self.inner = MemoryRepository()

        def __getattr__(self, name: str) -> object:
            if name == "prune_events":
                raise AttributeError(name)
            return getattr(self.inner, name)

    repo = Plain()
    for name in ("insert", "get", "login_row", "update", "revoke", "revoke_user", "list",
                 "record_usage", "events", "close"):
        setattr(repo, name, getattr(repo.inner, name))
    assert isinstance(repo, Repository)
    security = Security(repo, secret_keys="k", clock=clock)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="cannot prune its audit trail"):
        security.prune_audit(before=clock())


def test_memory_keeps_the_newest_events_only() -> None:
    """memory:// holds at most max_events events: a long run stays bounded."""
    repo = MemoryRepository(max_events=5)
    repo.record_usage({}, [EventRow(i, "login", "ok", None, "k", 1, None, None, 1)
                           for i in range(12)])
    events = repo.events(user=None, token_key=None, since=None, limit=100)
    assert [e.at for e in events] == [
        datetime.fromtimestamp(i / 1e6, timezone.utc) for i in (11, 10, 9, 8, 7)]
    repo.record_usage({"k": Usage(3, 20)})  # usage is never dropped (no such token here)
    assert repo.prune_events(10) == 3
    assert len(repo.events(user=None, token_key=None, since=None, limit=100)) == 2


_BATCHES = st.lists(st.lists(st.builds(
    EventRow, at=st.integers(0, 40), action=st.sampled_from(["login", "revoke"]),
    outcome=st.just("ok"), actor=st.none(), token_key=st.sampled_from(["k1", "k2", None]),
    user=st.sampled_from([1, "1", None]), script=st.none(), reason=st.none(),
    times=st.integers(1, 3)), max_size=8), max_size=6)


@settings(max_examples=300, deadline=None)
@given(batches=_BATCHES, cap=st.integers(1, 30), limit=st.integers(1, 12),
       user=st.sampled_from([None, 1, "1"]), key=st.sampled_from([None, "k1"]),
       since=st.one_of(st.none(), st.integers(0, 40)),
       prune=st.one_of(st.none(), st.tuples(st.integers(0, 5), st.integers(0, 40))))
def test_memory_reads_the_newest_events_in_order(
        batches: list[list[EventRow]], cap: int, limit: int, user: object,
        key: str | None, since: int | None, prune: tuple[int, int] | None) -> None:
    """memory:// keeps the newest ``cap`` events by time and reads the newest ``limit``
    that pass the filters, newest first and, among equal times, the later recorded
    first: as filtering and sorting everything it was given would (a prune after some
    batch dropping those before its time)."""
    repo = MemoryRepository(max_events=cap)
    held: list[tuple[int, int, EventRow]] = []  # the model: (at, order recorded, event)
    recorded = 0
    for number, batch in enumerate(batches):
        repo.record_usage({}, batch)
        for event in batch:
            held.append((event.at, recorded, event))
            recorded += 1
        held = sorted(held, key=lambda t: (t[0], t[1]))[-cap:]
        if prune is not None and prune[0] == number:
            assert repo.prune_events(prune[1]) == sum(1 for t in held if t[0] < prune[1])
            held = [t for t in held if t[0] >= prune[1]]
    expected = [e for _at, _n, e in sorted(held, key=lambda t: (t[0], t[1]), reverse=True)
                if (user is None or (e.user == user and type(e.user) is type(user)))
                and (key is None or e.token_key == key)
                and (since is None or e.at >= since)][:limit]
    got = repo.events(user=user, token_key=key,  # type: ignore[arg-type]
                      since=None if since is None
                      else datetime.fromtimestamp(since / 1e6, timezone.utc), limit=limit)
    assert [(e.at, e.action, e.token_key, e.user, e.count) for e in got] == [
        (datetime.fromtimestamp(e.at / 1e6, timezone.utc), e.action, e.token_key, e.user,
         e.times) for e in expected]


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_memory_max_events_is_a_positive_int(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="max_events"):
        MemoryRepository(max_events=bad)  # type: ignore[arg-type]
