"""No escalation through the job fields: what a review of them found, held down.

A session that logged in by a token may change more than the free fields (description,
data) only of a token that stays within its own rights -- scope, expiry, uses and how far
it may ever be renewed -- so it cannot make itself (or a sibling) renewable for years or
give a sibling more uses.  A use-limited token is stored under a digest of its own, so a
process that does not know use limits finds no token to log in with.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from authtoken import (
    AuthToken,
    InvalidArgument,
    PermissionDenied,
    Security,
    Session,
)
from authtoken._codec import TokenCodec
from authtoken.testing import FakeClock

SECRET_KEYS = ["test-key-newest", "test-key-older"]


def session_of(security: Security, string: str) -> Session:
    session = Session(security)
    session.login_by_auth_token(string)
    return session


def test_a_token_session_cannot_make_itself_renewable(security: Security) -> None:
    """Setting a max_lifetime on its own token, then renewing it, would outlive every
    limit its creator set: refused, and nothing changes."""
    own = AuthToken("reports:read", expires="1h")
    string = security.authorize_token(own, user="alice")
    session = session_of(security, string)
    mine = session.get_auth_token(own.key)  # type: ignore[arg-type]
    mine.max_lifetime = "3650d"
    with pytest.raises(PermissionDenied, match="renewable past"):
        session.update_auth_token(mine)
    assert security.get_auth_token(own.key).max_lifetime is None  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="not renewable"):
        session.renew_auth_token(string)


def test_a_token_session_cannot_lengthen_its_own_renewals(security: Security) -> None:
    own = AuthToken("a", expires="1d", max_lifetime="7d")
    string = security.authorize_token(own, user="alice")
    session = session_of(security, string)
    mine = session.get_auth_token(own.key)  # type: ignore[arg-type]
    mine.max_lifetime = "30d"
    with pytest.raises(PermissionDenied):
        session.update_auth_token(mine)
    mine = session.get_auth_token(own.key)  # type: ignore[arg-type]
    mine.max_lifetime = "5d"  # shorter is fine
    session.update_auth_token(mine)
    assert security.get_auth_token(own.key).max_lifetime == timedelta(days=5)  # type: ignore[arg-type]


def test_a_token_session_cannot_widen_a_sibling(security: Security) -> None:
    """A sibling of another scope is out of the session's rights: only its description
    and data may change, not its uses or its renewals."""
    narrow = security.authorize_token(AuthToken("reports:read", expires="1h"), user="alice")
    sibling = AuthToken("admin:all", expires="10m", max_uses=1)
    security.authorize_token(sibling, user="alice")
    session = session_of(security, narrow)
    seen = session.get_auth_token(sibling.key)  # type: ignore[arg-type]
    seen.max_uses = 10**18
    with pytest.raises(PermissionDenied):
        session.update_auth_token(seen)
    seen = session.get_auth_token(sibling.key)  # type: ignore[arg-type]
    seen.max_lifetime = "3650d"
    with pytest.raises(PermissionDenied):
        session.update_auth_token(seen)
    seen = session.get_auth_token(sibling.key)  # type: ignore[arg-type]
    seen.description = "still free"
    session.update_auth_token(seen)
    stored = security.get_auth_token(sibling.key)  # type: ignore[arg-type]
    assert (stored.max_uses, stored.max_lifetime, stored.description) == (1, None, "still free")


def test_a_run_token_cannot_extend_itself(security: Security) -> None:
    standing = security.authorize_token(AuthToken("jobs:run", expires="30d"), user="alice")
    with session_of(security, standing).run_token("run-1") as run:
        job = session_of(security, run.token)
        mine = job.get_auth_token(run.key)
        mine.max_lifetime = "30d"
        with pytest.raises(PermissionDenied):
            job.update_auth_token(mine)
        assert security.get_auth_token(run.key).expires == run.expires


def test_renewing_by_never_is_refused(security: Security) -> None:
    token = AuthToken("a", expires="1d", max_lifetime="7d")
    string = security.authorize_token(token, user="alice")
    for by in ("never", "NEVER"):
        with pytest.raises(InvalidArgument, match="not a renewal"):
            security.renew_auth_token(string, by=by)


def test_a_renewable_token_without_an_expiry_first_lives_its_max_lifetime(
        security: Security, clock: FakeClock) -> None:
    token = AuthToken("a", max_lifetime="7d")
    security.authorize_token(token, user="alice")
    assert token.expires == clock() + timedelta(days=7)
    longer = AuthToken("a", max_lifetime="90d")  # the 30-day default is shorter: kept
    security.authorize_token(longer, user="alice")
    assert longer.expires == clock() + timedelta(days=30)


def test_run_tokens_of_a_use_limited_session_are_limited_as_tightly(
        security: Security) -> None:
    standing = security.authorize_token(AuthToken("jobs:run", max_uses=5), user="alice")
    session = session_of(security, standing)
    with session.run_token("run-1") as run:
        assert security.get_auth_token(run.key).max_uses == 5
    with session.run_token("run-2", max_uses=2) as run:
        assert security.get_auth_token(run.key).max_uses == 2
    with pytest.raises(PermissionDenied):
        session.run_token("run-3", max_uses=6)


def test_a_use_limited_token_is_stored_under_a_digest_of_its_own(
        security: Security) -> None:
    """A process that compares the plain digest of the secret -- one of a release
    without use limits -- finds no match for a use-limited token."""
    codec = TokenCodec(SECRET_KEYS)
    limited = AuthToken("a", max_uses=1)
    limited_string = security.authorize_token(limited, user="alice")
    plain = AuthToken("a")
    plain_string = security.authorize_token(plain, user="alice")
    _, limited_digest = codec.read(limited_string)
    _, plain_digest = codec.read(plain_string)
    assert security.repository.get(plain.key).secret_hash == plain_digest  # type: ignore[arg-type,union-attr]
    stored = security.repository.get(limited.key).secret_hash  # type: ignore[arg-type,union-attr]
    assert stored != limited_digest
    assert stored != hashlib.sha256(limited_string.encode()).digest()
    # ... and the engine itself still logs in with it, restores and revokes it.
    assert security.login_by_auth_token(limited_string).token_key == limited.key
    assert security.restore_auth_token(limited_string).use_count == 1
    security.revoke_auth_token(limited_string)
    assert security.get_auth_token(limited.key).revoked  # type: ignore[arg-type]
