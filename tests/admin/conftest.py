"""Fixtures of the admin tests: a ``Security`` on the fake clock, over memory (``mem``)
or over memory and a real SQLite file in turn (``security``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authtoken import MemoryRepository, Repository, Security, SQLRepository
from authtoken.testing import FakeClock

ADMIN_KEYS = ["admin-test-key"]


@pytest.fixture(params=["memory", "sqlite"])
def security(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
             ) -> Iterator[Security]:
    """A Security over memory and over a real SQLite file, on a fake clock."""
    repository: Repository = (MemoryRepository() if request.param == "memory"
                              else SQLRepository(f"sqlite:///{tmp_path / 'admin.db'}"))
    sec = Security(repository, secret_keys=ADMIN_KEYS, clock=clock)
    yield sec
    sec.close()


@pytest.fixture
def mem(clock: FakeClock) -> Iterator[Security]:
    """A Security over memory, for tests that need no second backend."""
    sec = Security(MemoryRepository(), secret_keys=ADMIN_KEYS, clock=clock)
    yield sec
    sec.close()
