"""What every issuer session offers, on Spatium's sessions, against a real authority.

``AuthorizationSession`` and ``KeyAuthorizationSession`` (and their async twins) are
sessions of ``authtoken/issuers/_session.py``: ``get_access_token()``,
``authorization_header()``, ``.auth`` (one retry after a 401), background refresh
(``start()``/``stop()``), ``close()`` and the context manager.  The authority
(``authtoken.testing.SpatiumAuthority``) runs on 127.0.0.1 and nothing in the HTTP layer
is mocked.  Its account API takes the permission token as a Bearer token, so it serves
as the protected resource: ``fail(path, 401)`` makes it refuse a valid token.  Where
time matters the authority and the session share a ``FakeClock``; background refresh
needs real time, so those tests use 2-second tokens and poll with a deadline (each takes
about a second).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authtoken import InvalidArgument, IssuerError, SessionExpired, SessionNotEstablished
from authtoken.issuers.spatium import (
    AsyncAuthorizationSession,
    AsyncKeyAuthorizationSession,
    AuthorizationSession,
    KeyAuthorizationSession,
    SpatiumClient,
)
from authtoken.testing import FakeClock, SpatiumAuthority

USERNAME = "CoolUser"
PASSWORD = "A.1234567-sentinel-password"
REFRESH = "permission/refresh"
ISSUE_BY_KEY = "permission/issue-by-key"
INTENT = "account/email-intent"
INTENT_PATH = "/api/account/email-intent"
BODY = {"email": "new@example.com"}
DEADLINE = 15.0


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key for every authority of the module (generating one takes a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def authority(clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> Iterator[SpatiumAuthority]:
    """A running authority on the test's clock (15-minute permission tokens)."""
    with SpatiumAuthority(clock=clock, private_key=rsa_key) as running:
        running.add_account(USERNAME, PASSWORD)
        yield running


@pytest.fixture
def live(rsa_key: rsa.RSAPrivateKey) -> Iterator[SpatiumAuthority]:
    """A running authority on real time with 2-second permission tokens."""
    with SpatiumAuthority(private_key=rsa_key, permission_lifetime=2) as running:
        running.add_account(USERNAME, PASSWORD)
        yield running


@pytest.fixture(scope="module")
def idle(rsa_key: rsa.RSAPrivateKey) -> Iterator[SpatiumAuthority]:
    """One running authority for the tests of arguments refused before any request (a
    request would show in its ``calls``)."""
    with SpatiumAuthority(private_key=rsa_key) as running:
        yield running


def login(authority: SpatiumAuthority) -> list[str]:
    with SpatiumClient(authority.url) as spatium:
        return [spatium.security_factor_credentials(USERNAME, PASSWORD).token]


def key_session(authority: SpatiumAuthority, clock: FakeClock | None,
                **kwargs: Any) -> KeyAuthorizationSession:
    return KeyAuthorizationSession(authority.url, "backend", ["register"],
                                   authority.merchant_key, clock=clock, **kwargs)


def user_session(authority: SpatiumAuthority, clock: FakeClock | None,
                 **kwargs: Any) -> AuthorizationSession:
    """An established user session that may call the account API."""
    session = AuthorizationSession(authority.url, "device-1", ["register"], clock=clock,
                                   **kwargs)
    session.establish(login(authority))
    return session


def async_key_session(authority: SpatiumAuthority, clock: FakeClock | None,
                      **kwargs: Any) -> AsyncKeyAuthorizationSession:
    return AsyncKeyAuthorizationSession(authority.url, "backend", ["register"],
                                        authority.merchant_key, clock=clock, **kwargs)


SESSIONS: dict[str, Callable[..., AuthorizationSession | KeyAuthorizationSession]] = {
    "user": user_session, "key": key_session}


def intent_url(authority: SpatiumAuthority) -> str:
    return f"{authority.url}/api/account/email-intent"


def api_statuses(authority: SpatiumAuthority) -> list[int]:
    """What the protected resource answered, in order."""
    return [call.status for call in authority.calls if call.path == INTENT_PATH]


def wait_until(condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` until it holds or the deadline passes; whether it held."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def async_wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def background_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"authtoken-{name}" and t.is_alive()]


def background_tasks(name: str) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"authtoken-{name}"]


# -- get_access_token and authorization_header --------------------------------------------
@pytest.mark.parametrize("kind", SESSIONS)
def test_get_access_token_refreshes_when_due_and_not_before(
        authority: SpatiumAuthority, clock: FakeClock, kind: str) -> None:
    """The token is served without a request until ``leeway`` before expiry, then
    refreshed once; it is the permission token."""
    with SESSIONS[kind](authority, clock) as session:
        first = session.get_access_token()
        assert first == session.get_permission_token()
        assert authority.verify_permission_token(first)["permissions"] == ["register"]
        before = len(authority.calls)
        clock.advance(minutes=13, seconds=59)  # 61 s left: not yet within the 60 s leeway
        assert session.get_access_token() == first
        assert len(authority.calls) == before and authority.count(REFRESH) == 0
        clock.advance(seconds=2)
        second = session.get_access_token()
        assert second != first and authority.count(REFRESH) == 1
        assert session.get_access_token() == second
        assert authority.count(REFRESH) == 1
        assert session.expires_at == clock() + timedelta(minutes=15)


@pytest.mark.parametrize("kind", SESSIONS)
def test_authorization_header_presents_the_current_token(
        authority: SpatiumAuthority, clock: FakeClock, kind: str) -> None:
    """``authorization_header()`` is ``Authorization: Bearer <permission token>``, which
    the API accepts, and carries the refreshed token once a refresh was due."""
    with SESSIONS[kind](authority, clock) as session:
        assert session.header == "Authorization"
        header = session.authorization_header()
        assert header == {"Authorization": f"Bearer {session.get_access_token()}"}
        assert httpx.post(intent_url(authority), json=BODY, headers=header).status_code == 200
        clock.advance(minutes=14, seconds=30)
        fresh = session.authorization_header()
        assert fresh != header and authority.count(REFRESH) == 1
        assert fresh == {"Authorization": f"Bearer {session.get_access_token()}"}
        assert httpx.post(intent_url(authority), json=BODY, headers=fresh).status_code == 200


def test_before_establish_every_face_raises_and_sends_nothing(
        authority: SpatiumAuthority) -> None:
    """A user's session before ``establish``: ``SessionNotEstablished`` from the token,
    the header and ``.auth`` alike, and no request anywhere."""
    with AuthorizationSession(authority.url, "device-1", ["register"]) as session, \
            httpx.Client(auth=session.auth) as api:
        with pytest.raises(SessionNotEstablished):
            session.get_access_token()
        with pytest.raises(SessionNotEstablished):
            session.authorization_header()
        with pytest.raises(SessionNotEstablished):
            api.post(intent_url(authority), json=BODY)
        assert session.expires_at is None
    assert authority.calls == []


# -- .auth: one retry after a 401 -----------------------------------------------------------
@pytest.mark.parametrize("kind", SESSIONS)
def test_auth_retries_once_with_a_fresh_token_after_a_401(
        authority: SpatiumAuthority, clock: FakeClock, kind: str) -> None:
    """A 401 on a still-valid token: exactly one refresh and one retry, which succeeds."""
    with SESSIONS[kind](authority, clock) as session, \
            httpx.Client(auth=session.auth) as api:
        first = session.get_access_token()
        clock.advance(seconds=1)  # tokens of the same second and claims are identical
        authority.fail(INTENT, 401)
        response = api.post(intent_url(authority), json=BODY)
        assert response.status_code == 200
        assert response.request.headers["Authorization"] != f"Bearer {first}"
        assert response.request.headers["Authorization"] == \
            f"Bearer {session.get_access_token()}"
        assert [r.status_code for r in response.history] == [401]
    assert api_statuses(authority) == [401, 200]
    assert authority.count(REFRESH) == 1


def test_auth_returns_a_second_401_as_it_is(authority: SpatiumAuthority,
                                            clock: FakeClock) -> None:
    """When the retry is refused too, that 401 is the answer: the request went out twice
    and the token was refreshed once."""
    with key_session(authority, clock) as session, httpx.Client(auth=session.auth) as api:
        session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, 401, times=5)
        response = api.post(intent_url(authority), json=BODY)
    assert response.status_code == 401
    assert api_statuses(authority) == [401, 401]
    assert authority.count(REFRESH) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 429, 500, 503])
def test_auth_does_not_retry_other_refusals(authority: SpatiumAuthority, clock: FakeClock,
                                            status: int) -> None:
    """Only a 401 is retried: any other refusal is returned at once, token untouched."""
    with key_session(authority, clock) as session, httpx.Client(auth=session.auth) as api:
        first = session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, status)
        response = api.post(intent_url(authority), json=BODY)
        assert response.status_code == status
        assert session.get_access_token() == first
    assert api_statuses(authority) == [status]
    assert authority.count(REFRESH) == 0


def test_auth_does_not_resend_the_token_it_was_refused_with(
        authority: SpatiumAuthority, clock: FakeClock) -> None:
    """If the refresh after a 401 brings back the very token refused (Spatium mints the
    same token within one second), the 401 is returned rather than sent again."""
    with key_session(authority, clock) as session, httpx.Client(auth=session.auth) as api:
        session.get_access_token()
        authority.fail(INTENT, 401)
        response = api.post(intent_url(authority), json=BODY)
    assert response.status_code == 401
    assert api_statuses(authority) == [401]
    assert authority.count(REFRESH) == 1


def test_threads_refused_the_same_token_share_one_refresh(authority: SpatiumAuthority,
                                                          clock: FakeClock) -> None:
    """Eight requests refused with the same token at once: one refresh, eight retries."""
    callers = 8
    barrier = threading.Barrier(callers, timeout=DEADLINE)

    def together(request: httpx.Request) -> None:
        barrier.wait()  # every first try is answered before any retry is sent

    with key_session(authority, clock) as session, \
            httpx.Client(auth=session.auth, event_hooks={"request": [together]}) as api:
        session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, 401, times=callers)
        results: list[int] = []

        def call() -> None:
            results.append(api.post(intent_url(authority), json=BODY).status_code)

        threads = [threading.Thread(target=call) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [200] * callers
    assert api_statuses(authority) == [401] * callers + [200] * callers
    assert authority.count(REFRESH) == 1


RAW_BODY = json.dumps(BODY).encode()
# The authority reads a body by its Content-Length (not chunked): give it, so that it
# reads the whole body before it answers and closes the connection.
STREAM_HEADERS = {"Content-Type": "application/json", "Content-Length": str(len(RAW_BODY))}


def generated_body() -> Iterator[bytes]:
    yield RAW_BODY


@pytest.mark.parametrize("body", ["generator", "file"])
def test_auth_does_not_resend_a_streamed_body(authority: SpatiumAuthority, clock: FakeClock,
                                              tmp_path: Path, body: str) -> None:
    """A body sent as a stream (a generator, a file) cannot be sent again as it was: after
    a 401 the answer is returned as it is, and the refused token is retired, so that the
    caller's next request carries a fresh one."""
    upload = tmp_path / "body.json"
    upload.write_bytes(RAW_BODY)
    with key_session(authority, clock) as session, httpx.Client(auth=session.auth) as api, \
            upload.open("rb") as file:
        first = session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, 401)
        content = generated_body() if body == "generator" else file
        response = api.post(intent_url(authority), content=content, headers=STREAM_HEADERS)
        assert response.status_code == 401
        assert api_statuses(authority) == [401]
        assert session.get_access_token() != first
        assert api.post(intent_url(authority), json=BODY).status_code == 200
    assert api_statuses(authority) == [401, 200]
    assert authority.count(REFRESH) == 1


@pytest.mark.asyncio
async def test_sync_session_auth_works_in_an_async_client(authority: SpatiumAuthority,
                                                          clock: FakeClock) -> None:
    """The sync session's ``.auth`` drives an ``httpx.AsyncClient`` too, retry included."""
    with key_session(authority, clock) as session:
        session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, 401)
        async with httpx.AsyncClient(auth=session.auth) as api:
            response = await api.post(intent_url(authority), json=BODY)
    assert response.status_code == 200
    assert api_statuses(authority) == [401, 200]


# -- background refresh -------------------------------------------------------------------
def test_background_refresh_keeps_a_key_session_fresh_without_callers(
        live: SpatiumAuthority) -> None:
    """``start()`` issues and then refreshes ahead of expiry with no caller asking;
    ``stop()`` ends the thread; both are idempotent."""
    with key_session(live, None) as session, httpx.Client(auth=session.auth) as api:
        session.start()
        session.start()
        assert len(background_threads("KeyAuthorizationSession")) == 1
        assert wait_until(lambda: live.count(REFRESH) >= 2)
        assert live.count(ISSUE_BY_KEY) == 1
        assert api.post(intent_url(live), json=BODY).status_code == 200
        session.stop()
        session.stop()
        assert background_threads("KeyAuthorizationSession") == []
    assert all(attempt.accepted for attempt in live.refresh_attempts)
    assert 401 not in api_statuses(live)


def test_background_refresh_of_a_user_session_waits_for_establish(
        live: SpatiumAuthority) -> None:
    """Before ``establish`` the background refresher sends nothing; ``establish`` wakes it
    and it refreshes from then on; ``close()`` stops it."""
    session = AuthorizationSession(live.url, "device-1", ["register"])
    with session:
        session.start()
        security_tokens = login(live)
        assert [call.path for call in live.calls] == ["/api/security-factor/credentials"]
        session.establish(security_tokens)
        assert wait_until(lambda: live.count(REFRESH) >= 2)
        assert live.count("permission/issue-by-factors") == 1
    assert background_threads("AuthorizationSession") == []
    with pytest.raises(RuntimeError, match="closed"):
        session.start()


def test_background_failures_are_logged_and_retried(live: SpatiumAuthority,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A failed background round is logged and tried again after the backoff."""
    live.fail(ISSUE_BY_KEY, 503, times=2)
    with caplog.at_level(logging.WARNING, logger="authtoken"), key_session(live, None) as session:
        session.start()
        assert wait_until(lambda: session.expires_at is not None)
    assert live.count(ISSUE_BY_KEY) == 3
    assert "background refresh failed" in caplog.text


@pytest.mark.asyncio
async def test_async_background_refresh_keeps_the_session_fresh(
        live: SpatiumAuthority) -> None:
    """The async session's ``start()`` runs a task that refreshes on its own; ``stop()``
    ends it; both are idempotent."""
    async with async_key_session(live, None) as session:
        await session.start()
        await session.start()
        assert len(background_tasks("AsyncKeyAuthorizationSession")) == 1
        assert await async_wait_until(lambda: live.count(REFRESH) >= 2)
        assert live.count(ISSUE_BY_KEY) == 1
        await session.stop()
        await session.stop()
        assert background_tasks("AsyncKeyAuthorizationSession") == []
        await session.start()
    assert background_tasks("AsyncKeyAuthorizationSession") == []
    assert all(attempt.accepted for attempt in live.refresh_attempts)


# -- close and the context manager ----------------------------------------------------------
def test_close_refuses_every_later_call(authority: SpatiumAuthority,
                                        clock: FakeClock) -> None:
    """After ``close()`` each method raises a ``RuntimeError`` that says the session is
    closed, and sends nothing; ``close()`` again is harmless."""
    session = user_session(authority, clock)
    session.close()
    before = len(authority.calls)
    calls: list[Callable[[], object]] = [
        session.get_access_token, session.get_permission_token, session.authorization_header,
        session.refresh, session.start, lambda: session.establish(login(authority))]
    for call in calls:
        with pytest.raises(RuntimeError, match="AuthorizationSession is closed"):
            call()
    with httpx.Client(auth=session.auth) as api, pytest.raises(RuntimeError, match="closed"):
        api.post(intent_url(authority), json=BODY)
    session.close()
    session.stop()
    assert len(authority.calls) == before + 1  # the login above, nothing of the session's
    assert api_statuses(authority) == []


def test_context_manager_closes_the_session_and_leaves_a_given_client_open(
        authority: SpatiumAuthority, clock: FakeClock) -> None:
    """``with`` returns the session and closes it on the way out; an ``httpx.Client``
    passed as ``client=`` is the caller's and stays open."""
    with httpx.Client() as given:
        session = key_session(authority, clock, client=given)
        with session as entered:
            assert entered is session
            assert session.get_access_token()
        with pytest.raises(RuntimeError, match="closed"):
            session.get_access_token()
        assert not given.is_closed
        assert given.post(f"{authority.url}/api/permission/probe",
                          json={"permissions": ["register"]}).status_code == 200


def test_close_stops_the_background_refresh(authority: SpatiumAuthority,
                                            clock: FakeClock) -> None:
    """Closing a session that refreshes in the background ends its thread."""
    session = key_session(authority, clock)
    session.start()
    assert wait_until(lambda: session.expires_at is not None)
    session.close()
    assert background_threads("KeyAuthorizationSession") == []


# -- the async twins ------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_async_token_and_header(authority: SpatiumAuthority, clock: FakeClock) -> None:
    """The async session's token and header: refreshed when due, not before."""
    async with AsyncAuthorizationSession(authority.url, "device-1", ["register"],
                                         clock=clock) as session:
        with pytest.raises(SessionNotEstablished):
            await session.authorization_header()
        await session.establish(login(authority))
        first = await session.get_access_token()
        assert await session.authorization_header() == {"Authorization": f"Bearer {first}"}
        clock.advance(minutes=13, seconds=59)
        assert await session.get_access_token() == first
        assert authority.count(REFRESH) == 0
        clock.advance(seconds=2)
        header = await session.authorization_header()
        assert header == {"Authorization": f"Bearer {await session.get_permission_token()}"}
        assert header != {"Authorization": f"Bearer {first}"}
        assert authority.count(REFRESH) == 1


@pytest.mark.asyncio
async def test_async_auth_retries_once_after_a_401(authority: SpatiumAuthority,
                                                   clock: FakeClock) -> None:
    """The async session's ``.auth`` refreshes and retries once after a 401, returns a
    second 401 as it is, and does not retry a 403."""
    async with async_key_session(authority, clock) as session, \
            httpx.AsyncClient(auth=session.auth) as api:
        await session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, 401)
        assert (await api.post(intent_url(authority), json=BODY)).status_code == 200
        assert (api_statuses(authority), authority.count(REFRESH)) == ([401, 200], 1)
        clock.advance(seconds=1)
        authority.fail(INTENT, 401, times=2)
        assert (await api.post(intent_url(authority), json=BODY)).status_code == 401
        assert (api_statuses(authority)[2:], authority.count(REFRESH)) == ([401, 401], 2)
        authority.fail(INTENT, 403)
        assert (await api.post(intent_url(authority), json=BODY)).status_code == 403
        assert (api_statuses(authority)[4:], authority.count(REFRESH)) == ([403], 2)


@pytest.mark.asyncio
async def test_async_callers_refused_the_same_token_share_one_refresh(
        authority: SpatiumAuthority, clock: FakeClock) -> None:
    """Eight gathered requests refused with the same token: one refresh, eight retries."""
    callers = 8
    arrived = 0
    gate = asyncio.Event()

    async def together(request: httpx.Request) -> None:
        nonlocal arrived, gate
        arrived += 1
        if arrived == callers:  # every first try (then every retry) is in: let them go
            arrived, gate, opened = 0, asyncio.Event(), gate
            opened.set()
        else:
            await asyncio.wait_for(gate.wait(), DEADLINE)

    async with async_key_session(authority, clock) as session, \
            httpx.AsyncClient(auth=session.auth, event_hooks={"request": [together]}) as api:
        await session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, 401, times=callers)
        responses = await asyncio.gather(
            *(api.post(intent_url(authority), json=BODY) for _ in range(callers)))
    assert [r.status_code for r in responses] == [200] * callers
    assert api_statuses(authority) == [401] * callers + [200] * callers
    assert authority.count(REFRESH) == 1


@pytest.mark.asyncio
async def test_async_auth_does_not_resend_a_streamed_body(authority: SpatiumAuthority,
                                                          clock: FakeClock) -> None:
    """An async generator body is not sent twice: the 401 is the answer."""
    async def body() -> AsyncIterator[bytes]:
        yield RAW_BODY

    async with async_key_session(authority, clock) as session, \
            httpx.AsyncClient(auth=session.auth) as api:
        first = await session.get_access_token()
        clock.advance(seconds=1)
        authority.fail(INTENT, 401)
        response = await api.post(intent_url(authority), content=body(),
                                  headers=STREAM_HEADERS)
        assert response.status_code == 401
        assert await session.get_access_token() != first
    assert api_statuses(authority) == [401]
    assert authority.count(REFRESH) == 1


def test_async_session_auth_refuses_a_sync_client(authority: SpatiumAuthority) -> None:
    """An async session's ``.auth`` in an ``httpx.Client`` says what to use instead."""
    session = async_key_session(authority, None)
    with httpx.Client(auth=session.auth) as api, \
            pytest.raises(RuntimeError, match="AsyncClient"):
        api.post(intent_url(authority), json=BODY)
    asyncio.run(session.close())
    assert authority.calls == []


@pytest.mark.asyncio
async def test_async_close_refuses_every_later_call(authority: SpatiumAuthority,
                                                    clock: FakeClock) -> None:
    """``async with`` returns the session and closes it; later calls raise
    ``RuntimeError``; ``close()`` and ``aclose()`` again are harmless; a given client
    stays open."""
    async with httpx.AsyncClient() as given:
        session = AsyncAuthorizationSession(authority.url, "device-1", ["register"],
                                            clock=clock, client=given)
        async with session as entered:
            assert entered is session
            await session.establish(login(authority))
            assert await session.get_access_token()
        before = len(authority.calls)
        security_tokens = login(authority)
        calls: list[Callable[[], Any]] = [
            session.get_access_token, session.get_permission_token,
            session.authorization_header, session.refresh, session.start,
            lambda: session.establish(security_tokens)]
        for call in calls:
            with pytest.raises(RuntimeError, match="AsyncAuthorizationSession is closed"):
                await call()
        async with httpx.AsyncClient(auth=session.auth) as api:
            with pytest.raises(RuntimeError, match="closed"):
                await api.post(intent_url(authority), json=BODY)
        await session.close()
        await session.aclose()
        assert len(authority.calls) == before + 1  # the login above
        assert not given.is_closed


# -- bad input ------------------------------------------------------------------------------
def constructors(authority: SpatiumAuthority) -> dict[str, Callable[..., Any]]:
    url, key = authority.url, authority.merchant_key
    return {
        "AuthorizationSession":
            lambda **kw: AuthorizationSession(url, "device-1", ["read"], **kw),
        "KeyAuthorizationSession":
            lambda **kw: KeyAuthorizationSession(url, "backend", ["read"], key, **kw),
        "AsyncAuthorizationSession":
            lambda **kw: AsyncAuthorizationSession(url, "device-1", ["read"], **kw),
        "AsyncKeyAuthorizationSession":
            lambda **kw: AsyncKeyAuthorizationSession(url, "backend", ["read"], key, **kw),
    }


@pytest.mark.parametrize("kind", ["AuthorizationSession", "KeyAuthorizationSession",
                                  "AsyncAuthorizationSession", "AsyncKeyAuthorizationSession"])
@pytest.mark.parametrize(("arguments", "error", "words"), [
    ({"leeway": -1}, InvalidArgument, "leeway"),
    ({"leeway": timedelta(seconds=-5)}, InvalidArgument, "leeway"),
    ({"leeway": math.nan}, InvalidArgument, "leeway"),
    ({"leeway": math.inf}, InvalidArgument, "leeway"),
    ({"leeway": "60"}, TypeError, "leeway"),
    ({"leeway": None}, TypeError, "leeway"),
    ({"leeway": True}, TypeError, "leeway"),
    ({"timeout": 0}, InvalidArgument, "timeout"),
    ({"timeout": -1.5}, InvalidArgument, "timeout"),
    ({"timeout": math.nan}, InvalidArgument, "timeout"),
    ({"timeout": "10"}, TypeError, "timeout"),
    ({"clock": "now"}, TypeError, "clock"),
    ({"client": object()}, TypeError, "client"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(
        idle: SpatiumAuthority, kind: str, arguments: dict[str, Any],
        error: type[Exception], words: str) -> None:
    """A bad ``leeway``, ``timeout``, ``clock`` or ``client``: a clear error that names
    the argument, raised by the constructor."""
    with pytest.raises(error, match=words):
        constructors(idle)[kind](**arguments)
    assert idle.calls == []


def test_a_client_of_the_other_kind_is_refused(idle: SpatiumAuthority) -> None:
    """A sync session takes an ``httpx.Client``, an async one an ``httpx.AsyncClient``."""
    make = constructors(idle)
    with httpx.Client() as sync_client:
        with pytest.raises(TypeError, match="AsyncClient"):
            make["AsyncKeyAuthorizationSession"](client=sync_client)
    asynchronous = httpx.AsyncClient()
    with pytest.raises(TypeError, match=r"httpx\.Client "):
        make["KeyAuthorizationSession"](client=asynchronous)
    asyncio.run(asynchronous.aclose())


@pytest.mark.parametrize(("call", "error"), [
    (lambda url: AuthorizationSession(url, None, ["read"]), TypeError),
    (lambda url: AuthorizationSession(url, "", ["read"]), InvalidArgument),
    (lambda url: AuthorizationSession(url, "device-1", "  "), InvalidArgument),
    (lambda url: AuthorizationSession(url, "device-1", [1]), TypeError),
    (lambda url: AuthorizationSession(url, "device-1", 42), TypeError),
    (lambda url: KeyAuthorizationSession(url, "backend", ["read"], None), TypeError),
    (lambda url: KeyAuthorizationSession(url, "backend", ["read"], ""), InvalidArgument),
    (lambda url: KeyAuthorizationSession(42, "backend", ["read"], "key"), TypeError),
    (lambda url: KeyAuthorizationSession("ftp://x.example", "b", ["read"], "k"),
     InvalidArgument),
])
def test_bad_names_and_permissions_are_refused(idle: SpatiumAuthority, call: Any,
                                               error: type[Exception]) -> None:
    """A wrong type is a ``TypeError``, a wrong value ``InvalidArgument``."""
    with pytest.raises(error):
        call(idle.url)
    assert idle.calls == []


def test_establish_refuses_bad_security_tokens_without_sending(
        idle: SpatiumAuthority) -> None:
    """``establish`` with no token, or with no list of tokens at all, sends nothing."""
    with AuthorizationSession(idle.url, "device-1", ["read"]) as session:
        with pytest.raises(InvalidArgument):
            session.establish([])
        with pytest.raises(TypeError):
            session.establish(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            session.establish([None])  # type: ignore[list-item]
    assert idle.calls == []


# -- no secret anywhere ---------------------------------------------------------------------
def strings(value: object) -> Iterator[str]:
    """Every string in a decoded JSON answer."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_no_secret_in_reprs_errors_or_logs(authority: SpatiumAuthority, clock: FakeClock,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """No permission token, refresh token, security token, password or merchant key
    appears in a session's or its auth's ``repr``, in any exception the session surface
    raises (with its cause), or in a log line."""
    caplog.set_level(logging.DEBUG)
    answered: list[str] = []
    texts: list[str] = []

    def keep_answer(response: httpx.Response) -> None:
        response.read()
        answered.extend(strings(json.loads(response.content)))

    def record(*objects: object) -> None:
        for obj in objects:
            texts.extend((repr(obj), str(obj)))
            while isinstance(obj, BaseException):
                texts.extend([repr(obj), str(obj), *map(str, obj.args)])
                obj = obj.__cause__ or obj.__context__

    def expect(error: type[BaseException], call: Callable[[], object]) -> None:
        with pytest.raises(error) as caught:
            call()
        record(caught.value)

    security_tokens = login(authority)
    with httpx.Client(event_hooks={"response": [keep_answer]}) as spy:
        user = AuthorizationSession(authority.url, "device-1", ["register"], clock=clock,
                                    client=spy)
        record(user, user.auth)
        with user, httpx.Client(auth=user.auth) as api:
            expect(SessionNotEstablished, user.authorization_header)
            user.establish(security_tokens)
            assert user.authorization_header()
            record(user, user.auth)
            clock.advance(seconds=1)
            authority.fail(INTENT, 401, times=2)
            assert api.post(intent_url(authority), json=BODY).status_code == 401
            clock.advance(minutes=14, seconds=30)
            assert user.authorization_header()
            record(user)
            authority.revoke("device-1")
            clock.advance(minutes=15)
            expect(SessionExpired, user.get_access_token)
            expect(SessionExpired, user.authorization_header)
            expect(SessionExpired, lambda: api.post(intent_url(authority), json=BODY))
            record(user)
        expect(RuntimeError, user.get_access_token)
        wrong = KeyAuthorizationSession(authority.url, "backend", ["register"],
                                        authority.merchant_key + "x", client=spy)
        with wrong, httpx.Client(auth=wrong.auth) as api:
            expect(IssuerError, wrong.authorization_header)
            expect(IssuerError, lambda: api.post(intent_url(authority), json=BODY))
            record(wrong, wrong.auth)
    for misplaced in ({"leeway": PASSWORD}, {"timeout": authority.merchant_key},
                      {"clock": PASSWORD}):
        expect(TypeError, lambda kw=misplaced: KeyAuthorizationSession(
            authority.url, "backend", ["register"], authority.merchant_key, **kw))
    for url in (f"https://u:{authority.merchant_key}@spatium.example",
                f"ftp://{PASSWORD}"):
        expect(InvalidArgument, lambda url=url: KeyAuthorizationSession(
            url, "backend", ["register"], authority.merchant_key))
    texts.extend(r.getMessage() for r in caplog.records)
    assert any("Spatium" in r.getMessage() for r in caplog.records)
    secrets = [PASSWORD, authority.merchant_key, *security_tokens,
               *(s for s in answered if s.count(".") == 2)]
    assert len(secrets) > 6  # permission and refresh tokens were seen in the answers
    # A JWT's header is public and shared; its signature part is what must not leak.
    needles = [s.rsplit(".", 1)[-1] for s in secrets]
    for text in texts:
        for needle in needles:
            assert needle not in text
