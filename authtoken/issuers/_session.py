"""What every issuer session has, written once: the session base of Spatium and OIDC alike.

Theory of operation
-------------------
A session keeps one credential fresh.  *When* to refresh and *what* a failure means is
decided by a ``Refresher`` (``_core``, sans-IO); *carrying* the requests and holding the
lock is a credential shell (``_shell``).  An issuer module (``spatium``, ``oidc``) gives
the refresher its adapter -- how to get, refresh and replace a grant -- and subclasses
``SyncSession`` or ``AsyncSession``, which add the surface every session shares:

- ``get_access_token()`` and ``authorization_header()``: the token, and the header that
  presents it (``Authorization: <token_type> <token>``, or the token alone in another
  header, such as Brainysoft's ``bsauth``);
- ``.auth``, an ``httpx.Auth`` that sends that header and, after a 401, retires the
  token, gets a fresh one and retries the request once (not a request whose body was a
  stream: that cannot be sent again).  The policy is written once, as a generator of
  steps (``_auth_steps``); a sync and an async driver only fetch tokens;
- a forced refresh (``_refresh_now``) that each issuer's ``refresh()`` runs;
- optional background refresh (``start()``/``stop()``): a daemon thread or an asyncio
  task that refreshes a little before each refresh is due, so that callers never wait;
- ``close()`` and the context manager: stop the background refresh, close the HTTP
  client the session made (never one the caller handed in).

The sync and async classes differ only in ``await`` and in how they wait (a thread and a
``threading.Event``, a task and an ``asyncio.Event``): every decision is in the shared
base ``SessionCore``.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, TypeVar

import httpx

from .._errors import SessionExpired, SessionNotEstablished
from ._args import given_client
from ._core import Adapter, Grant, Refresher, Request, Response
from ._shell import AsyncCredential, AsyncDriver, SyncCredential, SyncDriver

__all__ = [
    "BACKGROUND_LEAD",
    "BACKGROUND_MIN_NAP",
    "BACKGROUND_NAP",
    "AsyncSession",
    "SessionCore",
    "SyncSession",
]

log = logging.getLogger("authtoken.issuers")

#: The background refresher runs this long (at most) before a refresh is due...
BACKGROUND_LEAD: Final = 5.0
#: ...and sleeps at most this long at a time (it looks at the clock again on waking)...
BACKGROUND_NAP: Final = 60.0
#: ...and at least this long, so that a clock that stands still never makes it spin.
BACKGROUND_MIN_NAP: Final = 0.05

_S = TypeVar("_S", bound="SyncSession")
_A = TypeVar("_A", bound="AsyncSession")

# A session that cannot get a grant by itself (a Spatium user's, before ``establish`` or
# once its refresh token is dead) has nothing to refresh in the background: it waits
# for ``establish`` to wake it, or for a nap to pass.
_WAITING: Final = (SessionNotEstablished, SessionExpired)


def _wake_at(grant: Grant) -> float:
    """When the background refresher should act: a little before the refresh is due."""
    return grant.refresh_at - min(BACKGROUND_LEAD, 0.5 * (grant.expires_at - grant.refresh_at))


@dataclass(frozen=True, slots=True)
class _Fetch:
    """A step of the auth flow: get the session's token -- after a 401, a fresh one
    (``rejected`` is the token the API refused)."""

    rejected: str | None = field(default=None, repr=False)


def _replayable(request: httpx.Request) -> bool:
    """Whether the request's body can be sent again as it was: held in memory (bytes, a
    form, JSON), not a stream (a generator, a file) that the first attempt used up."""
    return isinstance(request.stream, httpx.ByteStream)


def _auth_steps(request: httpx.Request, header_for: Callable[[str], dict[str, str]],
                ) -> Generator[_Fetch | httpx.Request, Any, None]:
    """The ``.auth`` policy: send the session's header; after a 401, retire the refused
    token and retry once with a fresh one -- unless the session has no fresher token, or
    the body was a stream that cannot be sent again (then the 401 is the answer)."""
    token: str = yield _Fetch()
    request.headers.update(header_for(token))
    response: httpx.Response = yield request
    if response.status_code != 401:
        return
    fresh: str = yield _Fetch(rejected=token)
    if hmac.compare_digest(fresh, token) or not _replayable(request):
        return
    request.headers.update(header_for(fresh))
    yield request


class _Run:
    """One run of a background refresher: stopped for good, or woken to look again."""

    def __init__(self, signal: threading.Event | asyncio.Event) -> None:
        self.signal = signal
        self.stopped = False


class SessionCore:
    """The state and decisions every session shares, sync and async alike (no I/O).

    Subclasses call ``__init__`` with their adapter and clock and give ``_describe``
    (the session's ``repr`` without brackets; no secret in it).
    """

    _run: _Run | None

    def __init__(self, adapter: Adapter, now: Callable[[], float], *,
                 header: str = "Authorization") -> None:
        self._now = now
        self._refresher = Refresher(adapter, now)
        self._header = header
        self._closed = False
        self._run = None

    # -- what a caller may read ------------------------------------------------------------
    @property
    def header(self) -> str:
        """The name of the header the token is sent in."""
        return self._header

    @property
    def expires_at(self) -> datetime | None:
        """When the current access token expires (aware UTC), ``None`` before the first."""
        grant = self._refresher.grant
        if grant is None:
            return None
        return datetime.fromtimestamp(grant.expires_at, tz=timezone.utc)

    def _describe(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self._describe()}>"

    # -- shared decisions ------------------------------------------------------------------
    def _header_for(self, token: str) -> dict[str, str]:
        if self._header.lower() != "authorization":
            return {self._header: token}
        grant = self._refresher.grant
        token_type = grant.token_type if grant is not None else "Bearer"
        return {self._header: f"{token_type} {token}"}

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def _renew_flow(self, rejected: str) -> Generator[Request, Response, str]:
        """After a 401: retire the rejected token (once, however many callers saw it)."""
        grant = self._refresher.grant
        if grant is not None and hmac.compare_digest(grant.access_token, rejected):
            self._refresher.expire_access_token()
        return (yield from self._refresher.ensure())

    def _refresh_flow(self) -> Generator[Request, Response, str]:
        """Refresh now; ``IssuerError`` when that failed, even if the old token serves."""
        token = yield from self._refresher.ensure(force=True)
        error = self._refresher.last_error
        if error is not None:
            raise copy.copy(error).with_traceback(None)
        self._check_refreshed()
        return token

    def _check_refreshed(self) -> None:
        """After a forced refresh that raised nothing: raise if the session cannot go on
        as it is (a subclass's rule; none by default)."""

    # -- the background refresher's decisions ----------------------------------------------
    def _background_flow(self) -> Generator[Request, Response, None] | None:
        """The flow of one background round, or ``None`` when no refresh is due yet."""
        seen = self._refresher.grant
        if seen is not None and self._now() < _wake_at(seen):
            return None
        return self._background_refresh(seen)

    def _background_refresh(self, seen: Grant | None) -> Generator[Request, Response, None]:
        if self._refresher.grant is not seen:
            return  # a caller refreshed meanwhile
        yield from self._refresher.ensure(force=True)

    def _background_delay(self) -> float:
        """How long to sleep after a round: until the next refresh is due, or until the
        engine's backoff after a failure is over (at least a moment, at most a nap)."""
        grant = self._refresher.grant
        now = self._now()
        wake = _wake_at(grant) if grant is not None else now
        wait = max(wake, self._refresher.retry_at) - now
        return min(max(wait, BACKGROUND_MIN_NAP), BACKGROUND_NAP)

    def _background_refreshed(self) -> float:
        """How long to sleep after a round that refreshed.

        A token due again at once, just after a refresh, means this host's clock is
        ahead of the issuer's by more than a token's life: refreshing again at once
        would only send the refresh token over and over.  Then the refresher naps
        (``BACKGROUND_NAP``) and says why; callers still refresh when they need to.
        """
        delay = self._background_delay()
        if delay > BACKGROUND_MIN_NAP or self._refresher.retry_at > self._now():
            return delay
        log.warning("background refresh of %s: the new token is due at once; is this "
                    "host's clock ahead of the issuer's? napping %.0f s",
                    type(self).__name__, BACKGROUND_NAP)
        return BACKGROUND_NAP

    def _background_failed(self, exc: Exception) -> float:
        """Log a failed round; how long to sleep before the next."""
        if isinstance(exc, _WAITING):
            log.info("background refresh of %s waits: %s", type(self).__name__, exc)
            return BACKGROUND_NAP
        log.warning("background refresh failed: %s: %s", type(exc).__name__, exc)
        return self._background_delay()

    def _wake_background(self) -> None:
        """Make the background refresher look again now (after ``establish``)."""
        run = self._run
        if run is not None:
            run.signal.set()


class SyncSession(SessionCore):
    """A session over ``httpx.Client``, safe to share between threads."""

    def __init__(self, adapter: Adapter, now: Callable[[], float], *, client: object,
                 timeout: float, header: str = "Authorization") -> None:
        super().__init__(adapter, now, header=header)
        self._credential = SyncCredential(
            self._refresher, SyncDriver(given_client(client, httpx.Client), timeout))
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.auth: httpx.Auth = _SessionAuth(self)

    def get_access_token(self) -> str:
        """A valid access token, fetched or refreshed when due (one request at a time).

        Raises ``IssuerError`` when the issuer refuses or cannot be reached and no valid
        token is at hand; the session stays usable and tries again on the next call.
        ``RuntimeError`` once the session is closed.
        """
        self._check_open()
        return self._credential.get()

    def authorization_header(self) -> dict[str, str]:
        """The header that presents the token, e.g. ``{"Authorization": "Bearer <t>"}``,
        to merge into a request's headers; raises like ``get_access_token``."""
        return self._header_for(self.get_access_token())

    def _auth_token(self, rejected: str | None) -> str:
        """The token for ``.auth``: the current one, or after the API refused ``rejected``
        with a 401, a fresh one (one refresh however many callers saw it refused)."""
        if rejected is None:
            return self.get_access_token()
        self._check_open()
        return self._credential.run(self._renew_flow(rejected))

    def _refresh_now(self) -> str:
        self._check_open()
        return self._credential.run(self._refresh_flow())

    def start(self) -> None:
        """Refresh in a daemon thread, a little before each refresh is due; idempotent."""
        self._check_open()
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return
            self._run = run = _Run(threading.Event())
            self._thread = threading.Thread(
                target=self._background, args=(run,),
                name=f"authtoken-{type(self).__name__}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the background refresh (waits for a refresh in progress); idempotent."""
        with self._guard:
            thread, self._thread = self._thread, None
            run, self._run = self._run, None
            if run is not None:
                run.stopped = True
                run.signal.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _background(self, run: _Run) -> None:
        signal = run.signal
        assert isinstance(signal, threading.Event)
        delay = 0.0
        while True:
            signal.wait(delay)
            signal.clear()
            if run.stopped:
                return
            flow = self._background_flow()
            if flow is None:
                delay = self._background_delay()
                continue
            try:
                self._credential.run(flow)
            except Exception as exc:  # keep refreshing; the callers see the error
                delay = self._background_failed(exc)
            else:
                delay = self._background_refreshed()

    def close(self) -> None:
        """Stop the background refresh and close the HTTP client (if the session made it);
        idempotent.  The session refuses every later call (``RuntimeError``)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        self._credential.driver.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncSession(SessionCore):
    """A session over ``httpx.AsyncClient``: the methods of ``SyncSession`` as coroutines
    (one ``asyncio.Lock`` per session)."""

    def __init__(self, adapter: Adapter, now: Callable[[], float], *, client: object,
                 timeout: float, header: str = "Authorization") -> None:
        super().__init__(adapter, now, header=header)
        self._credential = AsyncCredential(
            self._refresher, AsyncDriver(given_client(client, httpx.AsyncClient), timeout))
        self._task: asyncio.Task[None] | None = None
        self.auth: httpx.Auth = _SessionAuth(self)

    async def get_access_token(self) -> str:
        """A valid access token, fetched or refreshed when due (one request at a time).

        Raises ``IssuerError`` when the issuer refuses or cannot be reached and no valid
        token is at hand; the session stays usable and tries again on the next call.
        ``RuntimeError`` once the session is closed.
        """
        self._check_open()
        return await self._credential.get()

    async def authorization_header(self) -> dict[str, str]:
        """The header that presents the token, e.g. ``{"Authorization": "Bearer <t>"}``,
        to merge into a request's headers; raises like ``get_access_token``."""
        return self._header_for(await self.get_access_token())

    async def _auth_token(self, rejected: str | None) -> str:
        """See ``SyncSession._auth_token``."""
        if rejected is None:
            return await self.get_access_token()
        self._check_open()
        return await self._credential.run(self._renew_flow(rejected))

    async def _refresh_now(self) -> str:
        self._check_open()
        return await self._credential.run(self._refresh_flow())

    async def start(self) -> None:
        """Refresh in an asyncio task, a little before each refresh is due; idempotent."""
        self._check_open()
        if self._task is not None and not self._task.done():
            return
        self._run = run = _Run(asyncio.Event())
        self._task = asyncio.get_running_loop().create_task(
            self._background(run), name=f"authtoken-{type(self).__name__}")

    async def stop(self) -> None:
        """Stop the background refresh (waits for a refresh in progress); idempotent."""
        task, self._task = self._task, None
        run, self._run = self._run, None
        if run is not None:
            run.stopped = True
            run.signal.set()
        if task is not None and task is not asyncio.current_task():
            await task

    async def _background(self, run: _Run) -> None:
        signal = run.signal
        assert isinstance(signal, asyncio.Event)
        delay = 0.0
        while True:
            try:
                await asyncio.wait_for(signal.wait(), delay)
            except asyncio.TimeoutError:
                pass
            signal.clear()
            if run.stopped:
                return
            flow = self._background_flow()
            if flow is None:
                delay = self._background_delay()
                continue
            try:
                await self._credential.run(flow)
            except Exception as exc:  # keep refreshing; the callers see the error
                delay = self._background_failed(exc)
            else:
                delay = self._background_refreshed()

    async def close(self) -> None:
        """Stop the background refresh and close the HTTP client (if the session made it);
        idempotent.  The session refuses every later call (``RuntimeError``)."""
        if self._closed:
            return
        await self.stop()
        self._closed = True
        await self._credential.driver.aclose()

    async def aclose(self) -> None:
        """The same as ``close()``."""
        await self.close()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _SessionAuth(httpx.Auth):
    """A session's ``.auth``: adds its header; after a 401, retries once with a fresh
    token (``_auth_steps``).  A sync session works in an ``httpx.AsyncClient`` too, but
    blocks the event loop while it refreshes; an async one needs an ``AsyncClient``."""

    def __init__(self, session: SyncSession | AsyncSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"<auth of {self._session._describe()}>"

    def sync_auth_flow(self, request: httpx.Request,
                       ) -> Generator[httpx.Request, httpx.Response, None]:
        session = self._session
        if isinstance(session, AsyncSession):
            raise RuntimeError(
                f"{type(session).__name__}.auth needs an httpx.AsyncClient; "
                "use the sync session with httpx.Client")
        steps = _auth_steps(request, session._header_for)
        answer: Any = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration:
                return
            if isinstance(step, _Fetch):
                answer = session._auth_token(step.rejected)
            else:
                answer = yield step

    async def async_auth_flow(self, request: httpx.Request,
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        session = self._session
        steps = _auth_steps(request, session._header_for)
        answer: Any = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration:
                return
            if not isinstance(step, _Fetch):
                answer = yield step
            elif isinstance(session, AsyncSession):
                answer = await session._auth_token(step.rejected)
            else:
                answer = session._auth_token(step.rejected)
