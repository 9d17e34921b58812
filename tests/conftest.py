"""Shared fixtures: a fake clock, and a Security over each repository backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authtoken import MemoryRepository, Repository, Security
from authtoken.testing import FakeClock

SECRET_KEYS = ["test-key-newest", "test-key-older"]
BACKENDS = ["memory", "sqlite"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the real per-user database, key file and env."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    for name in ("AUTHTOKEN_DATABASE_URL", "AUTHTOKEN_SECRET_KEYS", "AUTHTOKEN_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_repository(backend: str, tmp_path: Path) -> Repository:
    if backend == "memory":
        return MemoryRepository()
    if backend == "sqlite":
        from authtoken import SQLRepository

        return SQLRepository(f"sqlite:///{tmp_path / 'tokens.db'}")
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    repo = make_repository(request.param, tmp_path)
    yield repo
    repo.close()


@pytest.fixture
def security(repository: Repository, clock: FakeClock) -> Iterator[Security]:
    sec = Security(repository, secret_keys=SECRET_KEYS, clock=clock)
    yield sec
    sec.close()
