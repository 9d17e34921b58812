"""A usage batch whose write landed but whose answer was lost is not counted twice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from authtoken import (
    AuthToken,
    MemoryRepository,
    RepositoryError,
    Security,
    SQLRepository,
)
from authtoken._repository import EventRow, Usage
from authtoken.testing import FakeClock


class _LosesAnswers:
    """Writes each batch, then -- ``lose`` times -- fails as if its answer was lost."""

    lose = 0
    attempts = 0

    def record_usage(self, usage: Mapping[str, Usage], events: Sequence[EventRow] = (),
                     **batch: Any) -> None:
        self.attempts += 1
        super().record_usage(usage, events, **batch)  # type: ignore[misc]
        if self.lose:
            self.lose -= 1
            raise RepositoryError("the outcome of the write is unknown (test)")


class MemoryLosingAnswers(_LosesAnswers, MemoryRepository):
    pass


class SQLiteLosingAnswers(_LosesAnswers, SQLRepository):
    pass


@pytest.fixture(params=["memory", "sqlite"])
def lossy(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        return MemoryLosingAnswers()
    return SQLiteLosingAnswers(f"sqlite:///{tmp_path / 'tokens.db'}")


def test_a_batch_whose_answer_was_lost_is_written_once(lossy: Any, clock: FakeClock) -> None:
    """The buffer keeps the failed batch whole and retries it under the same id."""
    security = Security(lossy, secret_keys="k", clock=clock)
    string = security.authorize_token(AuthToken("a"), user=1)
    for _ in range(3):
        security.login_by_auth_token(string)
    lossy.lose = 2
    for _ in range(2):  # written both times, answered neither time
        with pytest.raises(RepositoryError, match="unknown"):
            security.flush()
    security.login_by_auth_token(string)  # a newer login waits behind the kept batch
    security.flush()
    assert lossy.attempts >= 4  # the kept batch again, then the newer one
    with Security(lossy, secret_keys="k", clock=clock) as other:
        assert other.restore_auth_token(string).use_count == 4
        events = other.audit_events()  # summary events count their attempts
        assert sum(e.count for e in events if e.action == "login") == 4
    security.close()


class WrittenBeforeBatchIds(MemoryRepository):
    """A repository of someone's own, written when ``record_usage`` took no batch id."""

    def record_usage(self, usage: Mapping[str, Usage],  # type: ignore[override]
                     events: Sequence[EventRow] = ()) -> None:
        super().record_usage(usage, events)


def test_a_repository_without_batch_ids_still_gets_its_usage(clock: FakeClock) -> None:
    """Its batches are written as before, without an id, rather than jam the buffer."""
    repository = WrittenBeforeBatchIds()
    with Security(repository, secret_keys="k", clock=clock) as security:
        string = security.authorize_token(AuthToken("a"), user=1)
        security.login_by_auth_token(string)
        security.flush()
    record = repository.get(string[4:20])
    assert record is not None and record.use_count == 1
