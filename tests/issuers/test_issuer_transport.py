"""What the issuer shells put on the wire and take off it, against real servers on 127.0.0.1.

A credential goes only to the URL that was checked (never on to where a redirect
points), and an answer is read only so far and so long: a broken or hostile issuer
cannot fill the memory or hold a session's lock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from support.served import raw_served, served

from authtoken import IssuerError
from authtoken.issuers._core import Request, TransportFailure
from authtoken.issuers._shell import AsyncDriver, SyncDriver
from authtoken.issuers.oidc import (
    AsyncClientCredentialsSession,
    AsyncOIDCPasswordSession,
    ClientCredentialsSession,
    OIDCPasswordSession,
)
from authtoken.issuers.spatium import (
    AsyncKeyAuthorizationSession,
    KeyAuthorizationSession,
    SpatiumClient,
)

SECRET = "cs-SENTINEL-5e1d"


class Sink:
    """An ASGI app that counts what reaches it and would hand out a token."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body",
                    "body": b'{"access_token": "stolen", "expires_in": 300}'})


def redirect_to(target: str, status: int = 307) -> Any:
    """An ASGI app that redirects every request to ``target``."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"location", target.encode())]})
        await send({"type": "http.response.body", "body": b""})
    return app


SYNC_CALLS: dict[str, Callable[[str, httpx.Client], object]] = {
    "client credentials": lambda url, client: ClientCredentialsSession(
        url + "/token", "svc", SECRET, client=client).get_access_token(),
    "password (discovery)": lambda url, client: OIDCPasswordSession(
        url, "app", "alice", SECRET, client=client).get_access_token(),
    "spatium client": lambda url, client: SpatiumClient(url, client=client).issue_by_key(
        "job", ["read"], SECRET),
    "spatium key session": lambda url, client: KeyAuthorizationSession(
        url, "job", ["read"], SECRET, client=client).get_permission_token(),
}


@pytest.mark.parametrize("status", [302, 307, 308])
@pytest.mark.parametrize("call", sorted(SYNC_CALLS))
def test_a_redirect_is_not_followed_even_by_a_client_that_follows(call: str,
                                                                  status: int) -> None:
    """A 30x from the issuer is a failed answer, not a new destination for the secret --
    even through a client made with follow_redirects=True."""
    sink = Sink()
    with served(sink) as sink_url, served(redirect_to(sink_url + "/x", status)) as url, \
            httpx.Client(follow_redirects=True) as client:
        with pytest.raises(IssuerError) as info:
            SYNC_CALLS[call](url, client)
    assert sink.requests == 0
    assert info.value.status == status
    assert SECRET not in str(info.value)


ASYNC_CALLS: dict[str, Callable[[str, httpx.AsyncClient], Awaitable[object]]] = {
    "client credentials": lambda url, client: AsyncClientCredentialsSession(
        url + "/token", "svc", SECRET, client=client).get_access_token(),
    "password (discovery)": lambda url, client: AsyncOIDCPasswordSession(
        url, "app", "alice", SECRET, client=client).get_access_token(),
    "spatium key session": lambda url, client: AsyncKeyAuthorizationSession(
        url, "job", ["read"], SECRET, client=client).get_permission_token(),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("call", sorted(ASYNC_CALLS))
async def test_async_a_redirect_is_not_followed_either(call: str) -> None:
    """The async shell follows no redirect either."""
    sink = Sink()
    with served(sink) as sink_url, served(redirect_to(sink_url + "/x")) as url:
        async with httpx.AsyncClient(follow_redirects=True) as client:
            with pytest.raises(IssuerError) as info:
                await ASYNC_CALLS[call](url, client)
    assert sink.requests == 0
    assert info.value.status == 307


class Flood:
    """A raw answer: a 200 announcing ``size`` bytes, written until the client hangs up
    (or every ``pause`` seconds one byte); ``sent`` counts what went out."""

    def __init__(self, size: int, *, pause: float = 0.0) -> None:
        self.size = size
        self.pause = pause
        self.sent = 0

    def __call__(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % self.size)
        chunk = b" " * (1 if self.pause else 1 << 16)
        while self.sent < self.size:
            try:
                conn.sendall(chunk)
            except OSError:
                return
            self.sent += len(chunk)
            if self.pause:
                time.sleep(self.pause)


HUGE = 256 << 20


def test_a_huge_answer_is_not_read_whole() -> None:
    """A 256 MB answer is cut off after a bounded prefix (an IssuerError, not a 256 MB
    read into memory)."""
    flood = Flood(HUGE)
    with raw_served(flood) as url, ClientCredentialsSession(url + "/token", "svc",
                                                           SECRET) as session:
        with pytest.raises(IssuerError):
            session.get_access_token()
    assert flood.sent < HUGE // 4


@pytest.mark.asyncio
async def test_async_a_huge_answer_is_not_read_whole() -> None:
    """The async shell stops reading too."""
    flood = Flood(HUGE)
    with raw_served(flood) as url:
        async with AsyncClientCredentialsSession(url + "/token", "svc", SECRET) as session:
            with pytest.raises(IssuerError):
                await session.get_access_token()
    assert flood.sent < HUGE // 4


def test_an_answer_trickling_in_gives_up_after_the_timeout() -> None:
    """A body that arrives a byte at a time (each well within the read timeout) is given
    up ``timeout`` after the headers: the lock is not held for the 100 s it would take."""
    flood = Flood(1000, pause=0.1)
    outcome: list[BaseException] = []

    def call(session: ClientCredentialsSession) -> None:
        try:
            session.get_access_token()
        except BaseException as exc:  # reported below
            outcome.append(exc)

    with raw_served(flood) as url, ClientCredentialsSession(
            url + "/token", "svc", SECRET, timeout=0.5) as session:
        thread = threading.Thread(target=call, args=(session,), daemon=True)
        thread.start()
        thread.join(30)
        finished = not thread.is_alive()
    assert finished
    assert len(outcome) == 1 and isinstance(outcome[0], IssuerError)
    assert outcome[0].status is None


@pytest.mark.asyncio
async def test_async_an_answer_trickling_in_gives_up_after_the_timeout() -> None:
    """The async shell gives up on a trickling body too."""
    flood = Flood(1000, pause=0.1)
    with raw_served(flood) as url:
        async with AsyncClientCredentialsSession(url + "/token", "svc", SECRET,
                                                 timeout=0.5) as session:
            with pytest.raises(IssuerError) as info:
                await asyncio.wait_for(session.get_access_token(), 30)
    assert info.value.status is None


UNSENDABLE = ["https://a..b/t", "https://" + "a" * 64 + ".example/t", "https://999.1.1.1/t",
              "https://xn--a.example/t"]


@pytest.mark.parametrize("url", UNSENDABLE)
def test_a_url_the_client_cannot_send_to_is_a_transport_failure(url: str) -> None:
    """Whatever httpx or the resolver raise for a URL they cannot use (InvalidURL,
    UnicodeError) reaches the flow as a failure that sent nothing, like a refused
    connection -- never as an exception of its own."""
    driver = SyncDriver(None, 2.0)
    try:
        outcome = driver.send(Request("POST", url, json={"secret": SECRET}))
    finally:
        driver.close()
    assert isinstance(outcome, TransportFailure) and not outcome.sent


@pytest.mark.asyncio
@pytest.mark.parametrize("url", UNSENDABLE)
async def test_async_a_url_the_client_cannot_send_to_is_a_transport_failure(url: str) -> None:
    """The async shell maps the same errors the same way."""
    driver = AsyncDriver(None, 2.0)
    try:
        outcome = await driver.send(Request("POST", url, json={"secret": SECRET}))
    finally:
        await driver.aclose()
    assert isinstance(outcome, TransportFailure) and not outcome.sent
