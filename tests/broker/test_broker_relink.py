"""A relink is seen at once by a process that remembers a failed refresh.

Two engines on one real SQLite file stand for two processes: the job's (its broker lives
on) and the owner's, who links the account again.  The job's broker remembers its last
refresh failure and backs off; that memory is about the tokens then stored, so once the
owner has linked again it must try the new tokens at once -- serve them, or mark the link
``needs_relink`` only after the upstream itself refused them.  Real OIDC provider, real
clock (the last test, which needs a backoff to stand still, uses the engine's clock).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_support import KEYS, job_session

from authtoken import IssuerError, Security, Session, SessionExpired, SQLRepository
from authtoken.broker import Broker, OIDCUpstream
from authtoken.testing import FakeClock, OIDCProvider

#: The provider's token lifetime while linking: the link is stale as soon as it is made.
BLINK = 0.05


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    """The provider, issuing access tokens that live ``BLINK`` seconds."""
    with OIDCProvider(lifetime=BLINK) as running:
        yield running


def _broker(path: Path, provider: OIDCProvider, clock: FakeClock | None = None,
            ) -> tuple[Security, Broker]:
    security = Security(SQLRepository(f"sqlite:///{path}"), secret_keys=KEYS, clock=clock)
    return security, Broker(security, {"space": OIDCUpstream(provider.issuer,
                                                             OIDCProvider.PUBLIC_CLIENT)})


@pytest.fixture
def job(tmp_path: Path, provider: OIDCProvider) -> Iterator[tuple[Security, Broker]]:
    """The long-running job's engine and broker, on the real clock."""
    security, broker = _broker(tmp_path / "shared.db", provider)
    with security, broker:
        yield security, broker


@pytest.fixture
def owner(tmp_path: Path, provider: OIDCProvider,
          job: tuple[Security, Broker]) -> Iterator[Broker]:
    """The owner's broker: another engine on the same file (made after the job's, which
    creates the schema)."""
    security, broker = _broker(tmp_path / "shared.db", provider)
    with security, broker:
        yield broker


def _expire(security: Security) -> None:
    """Wait on the real clock until the stored access token has expired."""
    repository = security.repository
    link = repository.get_link("alice", "space")  # type: ignore[attr-defined]
    assert link is not None and link.state == "ok" and link.access_expires is not None
    while security.now().timestamp() * 1_000_000 <= link.access_expires:
        time.sleep(0.01)


def _refused(job: tuple[Security, Broker], owner: Broker,
             provider: OIDCProvider) -> Session:
    """The owner links; the job's refresh is refused (needs_relink); the job's session."""
    security, broker = job
    owner.link_password("alice", "space", "alice", provider.password)
    session, _ = job_session(security, scope="upstream:space")
    _expire(security)
    provider.refuse_refresh = True
    with pytest.raises(SessionExpired):
        broker.access_token(session, "space")
    assert broker.links("alice") == {"space": "needs_relink"}
    assert provider.counts["refresh_token"] == 1
    return session


def _relink(job: tuple[Security, Broker], owner: Broker, provider: OIDCProvider) -> None:
    """The owner links again, by password; then wait until that token has expired, so the
    job cannot serve it from the store and must refresh."""
    owner.link_password("alice", "space", "alice", provider.password)
    assert owner.links("alice") == {"space": "ok"}
    _expire(job[0])


def test_relink_after_a_refusal_serves_at_once(job: tuple[Security, Broker], owner: Broker,
                                               provider: OIDCProvider) -> None:
    """The job's broker, not recreated, refreshes the relinked account at once instead of
    raising its remembered SessionExpired (and marking the healthy link needs_relink)."""
    session = _refused(job, owner, provider)
    provider.refuse_refresh = False
    _relink(job, owner, provider)
    provider.lifetime = 60.0  # what the job's refresh gets is plainly valid
    token = job[1].access_token(session, "space")
    assert provider.check(token) is not None
    assert provider.counts["refresh_token"] == 2  # the relinked tokens were tried
    assert job[1].links("alice") == owner.links("alice") == {"space": "ok"}
    assert job[1].access_token(session, "space") == token  # now from the store
    assert provider.counts["refresh_token"] == 2


def test_relink_is_marked_needs_relink_only_by_the_upstream(
        job: tuple[Security, Broker], owner: Broker, provider: OIDCProvider) -> None:
    """A relinked account whose token expired during the job's backoff is asked for once:
    needs_relink again only because the upstream refused *these* tokens."""
    session = _refused(job, owner, provider)
    provider.refuse_refresh = False
    _relink(job, owner, provider)
    provider.refuse_refresh = True
    with pytest.raises(SessionExpired):
        job[1].access_token(session, "space")
    assert provider.counts["refresh_token"] == 2  # one request for the relinked tokens
    assert job[1].links("alice") == {"space": "needs_relink"}
    # and healed once more, with no stale memory in the way
    provider.refuse_refresh = False
    _relink(job, owner, provider)
    provider.lifetime = 60.0
    assert provider.check(job[1].access_token(session, "space")) is not None
    assert provider.counts["refresh_token"] == 3


def test_relink_during_a_transient_backoff(job: tuple[Security, Broker], owner: Broker,
                                           provider: OIDCProvider) -> None:
    """An unreachable-upstream backoff is about the tokens then stored: after a relink the
    job tries the new ones at once rather than raise the old IssuerError."""
    security, broker = job
    owner.link_password("alice", "space", "alice", provider.password)
    session, _ = job_session(security, scope="upstream:space")
    _expire(security)
    provider.fail_token_requests(1, 503, grant_type="refresh_token")
    with pytest.raises(IssuerError) as failed:
        broker.access_token(session, "space")
    assert not isinstance(failed.value, SessionExpired)
    assert provider.counts["refresh_token"] == 1
    _relink(job, owner, provider)
    provider.lifetime = 60.0
    assert provider.check(broker.access_token(session, "space")) is not None
    assert provider.counts["refresh_token"] == 2
    assert broker.links("alice") == {"space": "ok"}


def test_backoff_stands_while_the_store_is_unchanged(tmp_path: Path,
                                                     provider: OIDCProvider) -> None:
    """Forgetting is only for other stored tokens: with the same ones, a failing upstream
    is not asked again before the backoff ends (the engine's clock stands still here)."""
    clock = FakeClock()
    security, broker = _broker(tmp_path / "own.db", provider, clock)
    with security, broker:
        provider.lifetime = 60.0
        broker.link_password("alice", "space", "alice", provider.password)
        session, _ = job_session(security, scope="upstream:space")
        clock.advance(seconds=61)
        provider.fail_token_requests(5, 503, grant_type="refresh_token")
        for _ in range(3):
            with pytest.raises(IssuerError):
                broker.access_token(session, "space")
        assert provider.counts["refresh_token"] == 1  # one request, then the backoff
        provider.fail_token_requests(0)
        clock.advance(seconds=1)
        assert provider.check(broker.access_token(session, "space")) is not None
        assert provider.counts["refresh_token"] == 2
