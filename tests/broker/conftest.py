"""Fixtures of the broker's tests: an engine on a real SQLite file (or memory), a
Spatium-compatible authority on the engine's clock, and a job's session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_support import KEYS, PASSWORD, USERNAME
from cryptography.hazmat.primitives.asymmetric import rsa

from authtoken import MemoryRepository, Security, SQLRepository
from authtoken.broker import Broker, SpatiumUpstream
from authtoken.testing import FakeClock, SpatiumAuthority


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key for every authority (making one takes a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def authority(clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> Iterator[SpatiumAuthority]:
    """A Spatium authority on the test's clock with one account (15-minute tokens)."""
    with SpatiumAuthority(clock=clock, private_key=rsa_key) as running:
        running.add_account(USERNAME, PASSWORD)
        yield running


@pytest.fixture(params=["sqlite", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path,
           clock: FakeClock) -> Iterator[Security]:
    """An engine on a real SQLite file, or in memory."""
    repo = (SQLRepository(f"sqlite:///{tmp_path / 'broker.db'}") if request.param == "sqlite"
            else MemoryRepository())
    with Security(repo, secret_keys=KEYS, clock=clock) as security:
        yield security


@pytest.fixture
def broker(engine: Security, authority: SpatiumAuthority) -> Iterator[Broker]:
    """A broker with one Spatium upstream, ``spatium``."""
    with Broker(engine, {"spatium": SpatiumUpstream(authority.url, "nightly",
                                                     ["reports:read"])}) as running:
        yield running
