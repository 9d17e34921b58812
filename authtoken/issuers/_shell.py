"""The I/O shells: carry a flow's requests over httpx and hold the lock.

Everything that decides lives in ``_core``; the sync and async shells differ only in
``send``/``await send`` and ``threading.Lock``/``asyncio.Lock``.  Both map transport
errors to ``TransportFailure`` (thrown into the flow, which decides) and read every
response whole.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import Any, TypeVar

import httpx

from .._errors import ArgumentTypeError, InvalidArgument
from ._core import Refresher, Request, Response, TransportFailure

__all__ = ["AsyncCredential", "AsyncDriver", "SyncCredential", "SyncDriver", "check_timeout"]

T = TypeVar("T")
MAX_BODY = 1 << 20


def check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError("timeout is a number of seconds")
    if not 0 < timeout <= 300:
        raise InvalidArgument("timeout must be more than 0 and at most 300 seconds")
    return float(timeout)


def _kwargs(request: Request, timeout: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"headers": dict(request.headers), "timeout": timeout}
    if request.form is not None:
        kwargs["data"] = dict(request.form)
    elif request.json is not None:
        kwargs["json"] = request.json
    return kwargs


def _failure(exc: httpx.HTTPError) -> TransportFailure:
    # A request that never connected cannot have been seen by the issuer.
    sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    return TransportFailure(type(exc).__name__, sent=sent)


def _response(raw: httpx.Response) -> Response:
    headers = {k.lower(): v for k, v in raw.headers.items()}
    return Response(raw.status_code, headers, raw.content[:MAX_BODY])


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
            raw = self.client.request(request.method, request.url,
                                      **_kwargs(request, self.timeout))
        except httpx.HTTPError as exc:
            return _failure(exc)
        return _response(raw)

    def run(self, flow: Generator[Request, Response, T]) -> T:
        try:
            request: Request | None = next(flow)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        while True:
            assert request is not None
            request, result = _step(flow, self.send(request))
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
            raw = await self.client.request(request.method, request.url,
                                            **_kwargs(request, self.timeout))
        except httpx.HTTPError as exc:
            return _failure(exc)
        return _response(raw)

    async def run(self, flow: Generator[Request, Response, T]) -> T:
        try:
            request: Request | None = next(flow)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        while True:
            assert request is not None
            request, result = _step(flow, await self.send(request))
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


class AsyncCredential:
    """A ``Refresher`` behind an ``asyncio.Lock``: one refresh at a time."""

    def __init__(self, refresher: Refresher, driver: AsyncDriver) -> None:
        self.refresher = refresher
        self.driver = driver
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        token = self.refresher.token()
        if token is not None:
            return token
        async with self._lock:
            return await self.driver.run(self.refresher.ensure())

    async def refresh(self) -> str:
        async with self._lock:
            return await self.driver.run(self.refresher.ensure(force=True))

    async def run(self, flow: Generator[Request, Response, T]) -> T:
        async with self._lock:
            return await self.driver.run(flow)
