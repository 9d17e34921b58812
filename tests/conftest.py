"""Shared fixtures: a fake clock, and a Security over each repository backend.

The ``postgresql`` backend runs on a throwaway cluster (``tests/support/pgcluster.py``) started
once per test session.  Without PostgreSQL's server binaries those tests skip with the
reason -- except in CI (``CI=true``), where a skip would hide a gap, so they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.pgcluster import Cluster, find_bindir

from authtoken import MemoryRepository, Repository, Security
from authtoken.testing import FakeClock

SECRET_KEYS = ["test-key-newest", "test-key-older"]
BACKENDS = ["memory", "sqlite", "postgresql"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL server for the whole test session, removed afterwards."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable('psycopg is not installed: pip install -e ".[test]"')
    bindir = find_bindir()
    if bindir is None:
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt install postgresql")
    assert bindir is not None
    cluster = Cluster(bindir)
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of an empty PostgreSQL database."""
    pg_cluster.reset()
    return pg_cluster.url


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the real per-user database, key file and env."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    for name in ("AUTHTOKEN_DATABASE_URL", "AUTHTOKEN_SECRET_KEYS", "AUTHTOKEN_TOKEN",
                 "AUTHTOKEN_MAX_LIFETIME", "AUTHTOKEN_REQUIRE_EXPIRY",
                 "AUTHTOKEN_MAX_TOKENS_PER_USER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_repository(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                    ) -> Repository:
    from authtoken import SQLRepository

    if backend == "memory":
        return MemoryRepository()
    if backend == "sqlite":
        return SQLRepository(f"sqlite:///{tmp_path / 'tokens.db'}")
    if backend == "postgresql":
        return SQLRepository(request.getfixturevalue("pg_url"))
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    repo = make_repository(request.param, tmp_path, request)
    yield repo
    repo.close()


@pytest.fixture
def security(repository: Repository, clock: FakeClock) -> Iterator[Security]:
    sec = Security(repository, secret_keys=SECRET_KEYS, clock=clock)
    yield sec
    sec.close()
