"""The I/O shells: carry a flow's requests over httpx and hold the lock.

Everything that decides lives in ``_core``; the sync and async shells differ only in
``send``/``await send`` and ``threading.Lock``/``asyncio.Lock``.  Both map transport
errors to ``TransportFailure`` (thrown into the flow, which decides).

What a shell sends is exactly the checked request: it never follows a redirect, not
even with a given client made with ``follow_redirects=True`` (a 307 would resend a
password to a URL nobody checked; the flow sees the 3xx as a failed answer).  It reads
at most ``MAX_BODY`` bytes of an answer, and gives up on a body still arriving
``timeout`` seconds after the headers, so a broken or hostile issuer can neither fill
the memory nor hold the session's lock forever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, TypeVar

import httpx

from ._args import check_timeout
from ._core import Refresher, Request, Response, TransportFailure

__all__ = ["MAX_BODY", "AsyncCredential", "AsyncDriver", "SyncCredential", "SyncDriver"]

T = TypeVar("T")
#: The most of an answer's body a shell reads, in bytes.
MAX_BODY = 1 << 20


# What httpx (and the resolver under it) raises for a request it could not carry out:
# InvalidURL and UnicodeError (a host the resolver cannot encode) are no HTTPError.
_SEND_ERRORS = (httpx.HTTPError, httpx.InvalidURL, UnicodeError)


def _build(client: httpx.Client | httpx.AsyncClient, request: Request,
           timeout: float) -> httpx.Request:
    kwargs: dict[str, Any] = {"headers": dict(request.headers), "timeout": timeout}
    if request.form is not None:
        kwargs["data"] = dict(request.form)
    elif request.json is not None:
        kwargs["json"] = request.json
    return client.build_request(request.method, request.url, **kwargs)


def _failure(exc: Exception) -> TransportFailure:
    # A request that never connected cannot have been seen by the issuer.
    sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                                httpx.InvalidURL, UnicodeError))
    return TransportFailure(type(exc).__name__, sent=sent)


class _Body:
    """An answer's body as it arrives: at most ``MAX_BODY`` bytes, by a deadline."""

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.data = bytearray()

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; whether to stop reading (enough, or too late)."""
        self.data += chunk
        if len(self.data) >= MAX_BODY:
            return True
        if time.monotonic() > self.deadline:
            raise httpx.ReadTimeout("the answer's body took too long")
        return False


def _response(raw: httpx.Response, body: _Body) -> Response:
    headers = {k.lower(): v for k, v in raw.headers.items()}
    return Response(raw.status_code, headers, bytes(body.data[:MAX_BODY]))


def _read(raw: httpx.Response, chunks: Iterator[bytes], timeout: float) -> Response:
    body = _Body(timeout)
    for chunk in chunks:
        if body.add(chunk):
            break
    return _response(raw, body)


async def _aread(raw: httpx.Response, chunks: AsyncIterator[bytes], timeout: float,
                 ) -> Response:
    body = _Body(timeout)
    async for chunk in chunks:
        if body.add(chunk):
            break
    return _response(raw, body)


def _step(flow: Generator[Request, Response, T], value: Response | TransportFailure,
          ) -> tuple[Request | None, T | None]:
    try:
        if isinstance(value, TransportFailure):
            return flow.throw(value), None
        return flow.send(value), None
    except StopIteration as stop:
        return None, stop.value


class SyncDriver:
    """Runs flows over an ``httpx.Client`` (its own unless one is given)."""

    def __init__(self, client: httpx.Client | None, timeout: float) -> None:
        self.timeout = check_timeout(timeout)
        self._own = client is None
        self.client = client if client is not None else httpx.Client(timeout=self.timeout)

    def send(self, request: Request) -> Response | TransportFailure:
        try:
            raw = self.client.send(_build(self.client, request, self.timeout),
                                   stream=True, follow_redirects=False)
            try:
                return _read(raw, raw.iter_bytes(), self.timeout)
            finally:
                raw.close()
        except _SEND_ERRORS as exc:
            return _failure(exc)

    def run(self, flow: Generator[Request, Response, T]) -> T:
        try:
            request: Request | None = next(flow)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        while True:
            assert request is not None
            try:
                outcome = self.send(request)
            except BaseException:  # interrupted mid-request: the flow must know
                flow.close()
                raise
            request, result = _step(flow, outcome)
            if request is None:
                return result  # type: ignore[return-value]

    def close(self) -> None:
        if self._own:
            self.client.close()


class AsyncDriver:
    """Runs flows over an ``httpx.AsyncClient`` (its own unless one is given)."""

    def __init__(self, client: httpx.AsyncClient | None, timeout: float) -> None:
        self.timeout = check_timeout(timeout)
        self._own = client is None
        self.client = client if client is not None else httpx.AsyncClient(timeout=self.timeout)

    async def send(self, request: Request) -> Response | TransportFailure:
        try:
            raw = await self.client.send(_build(self.client, request, self.timeout),
                                         stream=True, follow_redirects=False)
            try:
                return await _aread(raw, raw.aiter_bytes(), self.timeout)
            finally:
                await raw.aclose()
        except _SEND_ERRORS as exc:
            return _failure(exc)

    async def run(self, flow: Generator[Request, Response, T]) -> T:
        try:
            request: Request | None = next(flow)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        while True:
            assert request is not None
            try:
                outcome = await self.send(request)
            except BaseException:  # cancelled mid-request: the flow must know
                flow.close()
                raise
            request, result = _step(flow, outcome)
            if request is None:
                return result  # type: ignore[return-value]

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()


class SyncCredential:
    """A ``Refresher`` behind a ``threading.Lock``: one refresh at a time."""

    def __init__(self, refresher: Refresher, driver: SyncDriver) -> None:
        self.refresher = refresher
        self.driver = driver
        self._lock = threading.Lock()

    def get(self) -> str:
        token = self.refresher.token()  # fast path: no lock, no I/O
        if token is not None:
            return token
        with self._lock:
            return self.driver.run(self.refresher.ensure())

    def refresh(self) -> str:
        with self._lock:
            return self.driver.run(self.refresher.ensure(force=True))

    def run(self, flow: Generator[Request, Response, T]) -> T:
        """Run a flow that changes the credential (e.g. establish) under the lock."""
        with self._lock:
            return self.driver.run(flow)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A refresh whose caller left: its outcome is in the refresher; silence "never
    # retrieved" for its exception.
    if not task.cancelled():
        task.exception()


class AsyncCredential:
    """A ``Refresher`` behind an ``asyncio.Lock``: one refresh at a time.

    Each flow runs in a task of its own, shielded from its caller: a caller cancelled
    mid-refresh (``asyncio.wait_for``, a request timeout) leaves, and the refresh it
    started still completes and stores its grant -- the refresh token it sent is not
    lost, and the session is not cut short by one impatient caller.
    """

    def __init__(self, refresher: Refresher, driver: AsyncDriver) -> None:
        self.refresher = refresher
        self.driver = driver
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        token = self.refresher.token()
        if token is not None:
            return token
        return await self.run(self.refresher.ensure())

    async def refresh(self) -> str:
        return await self.run(self.refresher.ensure(force=True))

    async def run(self, flow: Generator[Request, Response, T]) -> T:
        task = asyncio.ensure_future(self._locked(flow))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _locked(self, flow: Generator[Request, Response, T]) -> T:
        async with self._lock:
            return await self.driver.run(flow)
