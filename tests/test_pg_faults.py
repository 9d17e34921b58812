"""PostgreSQL going away and coming back: fail fast, lose nothing, recover alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pgcluster import PASSWORD, Cluster, find_bindir

from authtoken import (
    AuthToken,
    InvalidToken,
    RepositoryError,
    Security,
    SQLRepository,
    TokenRevoked,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(pg_cluster: Cluster) -> Iterator[Cluster]:
    """A server of this module's own, since these tests stop and start it."""
    bindir = find_bindir()
    assert bindir is not None  # pg_cluster already skipped or failed otherwise
    own = Cluster(bindir)
    yield own
    own.destroy()


@pytest.fixture
def security(cluster: Cluster) -> Iterator[Security]:
    cluster.reset()
    sec = Security(SQLRepository(cluster.url, timeout=2), secret_keys="k")
    yield sec
    try:
        sec.close()
    except RepositoryError:
        pass


def test_down_then_back(cluster: Cluster, security: Security) -> None:
    """While the server is down calls fail fast; once back, the same Security works."""
    string = security.authorize_token(AuthToken("a"), user=1)
    security.login_by_auth_token(string)
    forged = string[:-2] + ("AA" if not string.endswith("AA") else "BB")
    cluster.stop()
    try:
        for call in (lambda: security.login_by_auth_token(string),
                     lambda: security.authorize_token(AuthToken("b"), user=1),
                     lambda: security.revoke_auth_token_by_key(string[4:20]),
                     security.list_auth_tokens,
                     security.flush):
            started = time.monotonic()
            with pytest.raises(RepositoryError) as info:
                call()
            assert time.monotonic() - started < 10  # the contract's bound, not a speed test
            assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
        with pytest.raises(InvalidToken):  # a forged string needs no storage
            security.login_by_auth_token(forged)
    finally:
        cluster.start()
    # the first call after the server is back succeeds, on every path
    assert security.login_by_auth_token(string).user == 1
    assert len(security.list_auth_tokens()) == 1
    security.authorize_token(AuthToken("b"), user=1)
    security.flush()
    token = security.restore_auth_token(string)
    assert token.use_count == 2  # before and after; the refused one in between not counted


def test_usage_waits_for_the_server(cluster: Cluster, security: Security) -> None:
    """Logins counted while the server cannot take them are written when it is back."""
    string = security.authorize_token(AuthToken("a"), user=1)
    for _ in range(5):
        security.login_by_auth_token(string)
    cluster.stop()
    try:
        with pytest.raises(RepositoryError):
            security.flush()
        with pytest.raises(RepositoryError):
            security.close()
    finally:
        cluster.start()
    security.flush()
    assert security.restore_auth_token(string).use_count == 5


def test_revocation_survives_a_crash(cluster: Cluster, security: Security) -> None:
    """A committed revocation is still there after the server is killed and restarted."""
    strings = [security.authorize_token(AuthToken("a"), user=1) for _ in range(3)]
    security.revoke_auth_token(strings[1])
    cluster.stop("immediate")  # no shutdown checkpoint: recovery replays the WAL
    cluster.start()
    security.login_by_auth_token(strings[0])
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(strings[1])
    with Security(SQLRepository(cluster.url), secret_keys="k") as fresh:
        with pytest.raises(TokenRevoked):
            fresh.login_by_auth_token(strings[1])
        fresh.login_by_auth_token(strings[2])


def test_unreachable_from_the_start(cluster: Cluster) -> None:
    """A Security opened while the server is down fails fast and recovers when it is up."""
    cluster.reset()
    cluster.stop()
    try:
        security = Security(SQLRepository(cluster.url, timeout=2), secret_keys="k")
        with pytest.raises(RepositoryError, match=r"Connection refused|connect"):
            security.list_auth_tokens()
    finally:
        cluster.start()
    string = security.authorize_token(AuthToken("a"), user=1)
    assert security.login_by_auth_token(string).user == 1
    security.close()
