"""The broker against a real Spatium-compatible authority on 127.0.0.1.

Linking, the fast path (no request), a refresh per expiry with rotation, a refused
refresh (``needs_relink``, ``SessionExpired``) and relinking, scopes, revocation, the
audit trail, what the database file holds, key rotation and moved blobs.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from broker_support import KEYS, PASSWORD, USERNAME, job_session

from authtoken import (
    InvalidArgument,
    IssuerError,
    PermissionDenied,
    Security,
    SessionExpired,
    SessionNotEstablished,
    SQLRepository,
    TokenRevoked,
)
from authtoken.broker import Broker, SpatiumUpstream, link_token_id
from authtoken.issuers.spatium import SpatiumClient
from authtoken.testing import FakeClock, SpatiumAuthority

REFRESH = "permission/refresh"
ISSUE = "permission/issue-by-factors"


def test_link_and_use(broker: Broker, engine: Security, authority: SpatiumAuthority) -> None:
    """A linked account gives the job a valid permission token of the user, with no
    request while it is fresh."""
    broker.link_password("alice", "spatium", USERNAME, PASSWORD)
    assert broker.links("alice") == {"spatium": "ok"}
    assert broker.links("bob") == {}
    session, _ = job_session(engine)
    token = broker.access_token(session, "spatium")
    assert authority.verify_permission_token(token)
    before = len(authority.calls)
    for _ in range(5):
        assert broker.access_token(session, "spatium") == token
    assert len(authority.calls) == before  # the fast path sends nothing


def test_refresh_per_expiry_with_rotation(broker: Broker, engine: Security,
                                          authority: SpatiumAuthority,
                                          clock: FakeClock) -> None:
    """Each expiry costs one refresh; the spent refresh token is refused by the authority."""
    broker.link_password("alice", "spatium", USERNAME, PASSWORD)
    session, _ = job_session(engine)
    first = broker.access_token(session, "spatium")
    for expiry in range(1, 4):
        clock.advance(seconds=850)  # within the 60 s leeway of the 15-minute token
        token = broker.access_token(session, "spatium")
        assert token != first
        assert broker.access_token(session, "spatium") == token
        assert authority.count(REFRESH) == expiry
        first = token
    attempts = authority.refresh_attempts
    assert all(a.accepted for a in attempts)
    assert {a.token_id for a in attempts} == {link_token_id("nightly", "alice")}
    assert len({a.refresh_id for a in attempts}) == len(attempts)  # none presented twice


def test_spent_refresh_tokens_are_refused_by_the_authority(authority: SpatiumAuthority) -> None:
    """The authority the tests use does rotate: a refresh token works once."""
    with SpatiumClient(authority.url) as client:
        factor = client.security_factor_credentials(USERNAME, PASSWORD)
        pair = client.issue_by_factors("t", ["reports:read"], [factor])
        client.refresh(pair.refresh_token)
        with pytest.raises(IssuerError) as info:
            client.refresh(pair.refresh_token)
    assert info.value.status == 401 or info.value.status == 400 or info.value.status == 403


def test_refused_refresh_needs_relink_and_relinking_heals(
        broker: Broker, engine: Security, authority: SpatiumAuthority,
        clock: FakeClock) -> None:
    """A refused refresh marks the link and raises SessionExpired until it is linked again."""
    broker.link_password("alice", "spatium", USERNAME, PASSWORD)
    session, _ = job_session(engine)
    broker.access_token(session, "spatium")
    authority.revoke(link_token_id("nightly", "alice"))
    clock.advance(seconds=900)
    with pytest.raises(SessionExpired):
        broker.access_token(session, "spatium")
    assert broker.links("alice") == {"spatium": "needs_relink"}
    calls = len(authority.calls)
    with pytest.raises(SessionExpired):
        broker.access_token(session, "spatium")
    assert len(authority.calls) == calls  # a dead link sends nothing
    broker.link_password("alice", "spatium", USERNAME, PASSWORD)
    assert broker.links("alice") == {"spatium": "ok"}
    assert authority.verify_permission_token(broker.access_token(session, "spatium"))


def test_link_by_refresh_token(broker: Broker, engine: Security,
                               authority: SpatiumAuthority, clock: FakeClock) -> None:
    """A handed-in refresh token is used at once (and so spent); the link then refreshes."""
    with SpatiumClient(authority.url) as client:
        factor = client.security_factor_credentials(USERNAME, PASSWORD)
        pair = client.issue_by_factors("alice-phone", ["reports:read"], [factor])
    broker.link_refresh_token("alice", "spatium", pair.refresh_token)
    session, _ = job_session(engine)
    assert authority.verify_permission_token(broker.access_token(session, "spatium"))
    clock.advance(seconds=900)
    assert authority.verify_permission_token(broker.access_token(session, "spatium"))
    assert [a.accepted for a in authority.refresh_attempts] == [True, True]
    with pytest.raises(IssuerError):  # the handed-in one is spent
        broker.link_refresh_token("bob", "spatium", pair.refresh_token)
    assert broker.links("bob") == {}


def test_refused_credentials(broker: Broker) -> None:
    """Wrong credentials are an IssuerError that never quotes them; nothing is linked."""
    with pytest.raises(IssuerError) as info:
        broker.link_password("alice", "spatium", USERNAME, "wrong-" + PASSWORD)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert broker.links("alice") == {}
    with pytest.raises(InvalidArgument):
        broker.link_password("alice", "elsewhere", USERNAME, PASSWORD)


def test_who_may_use_a_link(broker: Broker, engine: Security) -> None:
    """The scope upstream:<name>, a live token and an existing link are all needed."""
    session, _ = job_session(engine)
    with pytest.raises(SessionNotEstablished):
        broker.access_token(session, "spatium")
    broker.link_password("alice", "spatium", USERNAME, PASSWORD)
    other, _ = job_session(engine, scope="reports:read")
    with pytest.raises(PermissionDenied) as info:
        broker.access_token(other, "spatium")
    assert info.value.missing_scopes == ("upstream:spatium",)
    with pytest.raises(PermissionDenied):
        broker.auth(other, "spatium")
    bob, _ = job_session(engine, user="bob")
    with pytest.raises(SessionNotEstablished):  # alice's link is alice's
        broker.access_token(bob, "spatium")
    revoked, string = job_session(engine)
    assert broker.access_token(revoked, "spatium")
    engine.revoke_auth_token(string)
    with pytest.raises(TokenRevoked):
        broker.access_token(revoked, "spatium")
    with pytest.raises(TokenRevoked):
        broker.auth(revoked, "spatium")
    assert broker.unlink("alice", "spatium") is True
    assert broker.unlink("alice", "spatium") is False
    with pytest.raises(SessionNotEstablished):
        broker.access_token(session, "spatium")


def test_every_issuance_is_audited(broker: Broker, engine: Security) -> None:
    """Each access token given out is an ``upstream`` event naming the job's token."""
    broker.link_password("alice", "spatium", USERNAME, PASSWORD)
    session, string = job_session(engine)
    for _ in range(3):
        token = broker.access_token(session, "spatium")
    events = [e for e in engine.audit_events(user="alice") if e.action == "upstream"]
    assert sum(e.count for e in events) == 3
    assert {(e.actor, e.token_key, e.outcome) for e in events} == {
        ("upstream:spatium", session.principal.token_key, "ok")}  # type: ignore[union-attr]
    assert all(token not in repr(e) and string not in repr(e) for e in events)


def test_threads_share_one_refresh(broker: Broker, engine: Security,
                                   authority: SpatiumAuthority, clock: FakeClock) -> None:
    """32 threads asking at once across an expiry cause one refresh, and all are served."""
    broker.link_password("alice", "spatium", USERNAME, PASSWORD)
    session, _ = job_session(engine)
    broker.access_token(session, "spatium")
    clock.advance(seconds=900)
    start = threading.Barrier(32)
    got: list[str] = []

    def ask() -> None:
        start.wait()
        got.append(broker.access_token(session, "spatium"))

    threads = [threading.Thread(target=ask) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 32 and len(set(got)) == 1
    assert authority.count(REFRESH) == 1


def test_the_file_holds_no_token_and_keys_rotate(tmp_path: Path, clock: FakeClock,
                                                 authority: SpatiumAuthority) -> None:
    """The SQLite file holds neither token in clear; after a key rotation links still
    open; a blob copied to another user's row does not open."""
    path = tmp_path / "broker.db"
    upstreams = {"spatium": SpatiumUpstream(authority.url, "nightly", ["reports:read"])}
    old_keys = KEYS[1:]
    with Security(SQLRepository(f"sqlite:///{path}"), secret_keys=old_keys,
                  clock=clock) as security, Broker(security, upstreams) as broker:
        broker.link_password("alice", "spatium", USERNAME, PASSWORD)
        broker.link_password("bob", "spatium", USERNAME, PASSWORD)
        session, _ = job_session(security)
        access = broker.access_token(session, "spatium")
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("broker.db-*"))
    assert access.encode() not in raw and access.split(".")[2].encode() not in raw
    assert b"eyJ" not in raw  # no JWT at all: neither refresh nor permission token
    assert PASSWORD.encode() not in raw
    with Security(SQLRepository(f"sqlite:///{path}"), secret_keys=KEYS,
                  clock=clock) as security, Broker(security, upstreams) as broker:
        session, _ = job_session(security)
        assert broker.access_token(session, "spatium") == access  # opened by the old key
        clock.advance(seconds=900)
        fresh = broker.access_token(session, "spatium")  # sealed by the new key
        assert fresh != access
        security.flush()
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("broker.db-*"))
    assert fresh.encode() not in raw
    with sqlite3.connect(path) as db:
        db.execute("UPDATE authtoken_upstream_link SET access_token = (SELECT access_token "
                   "FROM authtoken_upstream_link WHERE user_ref = 's:alice') "
                   "WHERE user_ref = 's:bob'")
    with Security(SQLRepository(f"sqlite:///{path}"), secret_keys=KEYS,
                  clock=clock) as security, Broker(security, upstreams) as broker:
        bob, _ = job_session(security, user="bob")
        with pytest.raises(SessionExpired) as info:
            broker.access_token(bob, "spatium")
        assert fresh not in str(info.value)
