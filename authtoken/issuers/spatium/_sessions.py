"""Spatium's self-refreshing sessions: a user's (``AuthorizationSession``) and a
backend's (``KeyAuthorizationSession``), sync and async.

Each is a session of ``_session`` -- so it has what every issuer session has:
``get_access_token()`` (the permission token), ``authorization_header()``
(``Authorization: Bearer <permission token>``, as Spatium's APIs take it), ``.auth``,
background refresh, ``close()`` -- over one of two refresh-engine adapters:

- ``_UserAdapter``: the first pair comes from ``establish(security_tokens)``; a dead or
  refused refresh token ends the session (``SessionExpired``) until ``establish`` again;
- ``_KeyAdapter``: issued by merchant key on first use, and again by key whenever the
  refresh token is dead.

Both refresh ``leeway`` before the permission token expires (at half its life when it
lives no longer than that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from datetime import timedelta
from typing import Final

import httpx

from ..._clock import ClockOrSeconds, seconds_clock
from ..._errors import IssuerError, SessionExpired
from .._args import DEFAULT_TIMEOUT, required_text, seconds
from .._core import Flow, Grant, Refresher, Request, Response, guarded
from .._session import AsyncSession, SessionCore, SyncSession
from ._protocol import SpatiumProtocol, permission_names
from ._results import PermissionTokens, SecurityTokens

__all__ = [
    "DEFAULT_LEEWAY",
    "AsyncAuthorizationSession",
    "AsyncKeyAuthorizationSession",
    "AuthorizationSession",
    "KeyAuthorizationSession",
]

log = logging.getLogger("authtoken.issuers.spatium")

#: Refresh a 15-minute permission token one minute before it expires.
DEFAULT_LEEWAY: Final = 60.0


# -- the adapters to the refresh engine ------------------------------------------------
class _Adapter:
    """What both session kinds share: the refresh call and the grant it makes."""

    def __init__(self, protocol: SpatiumProtocol, token_id: str, permissions: list[str],
                 leeway: float, now: Callable[[], float]) -> None:
        self.protocol = protocol
        self.token_id = token_id
        self.permissions = permissions
        self.leeway = leeway
        self.now = now

    def grant(self, tokens: PermissionTokens) -> Grant:
        expires_at = tokens.permission_expires_at.timestamp()
        # Refresh ``leeway`` early -- unless the token lives no longer than the leeway:
        # then at half its life, so that a short token is not refreshed on every call.
        remaining = max(0.0, expires_at - self.now())
        lead = self.leeway if self.leeway < remaining else remaining / 2
        return Grant(
            access_token=tokens.permission_token,
            expires_at=expires_at,
            refresh_at=expires_at - lead,
            refresh_token=tokens.refresh_token,
            refresh_expires_at=tokens.refresh_expires_at.timestamp(),
        )

    def refresh_grant(self, grant: Grant) -> Flow:
        assert grant.refresh_token is not None  # the engine checks refreshable() first
        tokens = yield from self.protocol.refresh(grant.refresh_token)
        log.debug("Spatium permission token refreshed (token id %s, expires %s)",
                  self.token_id, tokens.permission_expires_at.isoformat())
        return self.grant(tokens)


class _UserAdapter(_Adapter):
    """``AuthorizationSession``: established by security tokens, dead with its refresh token."""

    def __init__(self, protocol: SpatiumProtocol, token_id: str, permissions: list[str],
                 leeway: float, now: Callable[[], float]) -> None:
        super().__init__(protocol, token_id, permissions, leeway, now)
        self.expired: SessionExpired | None = None

    def first_grant(self) -> Flow | None:
        if self.expired is not None:
            raise SessionExpired(str(self.expired), status=self.expired.status,
                                 request_id=self.expired.request_id, code=self.expired.code)
        return None

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        if error.status is None and grant.refresh_token is None and grant.usable(self.now()):
            # The refresh token went out in a request that failed after sending: it may
            # have been used, so it is never sent again; the permission token still
            # serves until it expires.
            return _unchanged(grant)
        if error.status is not None:
            message = (f"the Spatium session has expired: the refresh token was refused "
                       f"(HTTP {error.status}); establish the session again")
        else:
            message = "the Spatium session has expired: establish the session again"
        self.expired = SessionExpired(message, status=error.status,
                                      request_id=error.request_id, code=error.code)
        log.info("Spatium session expired (token id %s)", self.token_id)
        raise SessionExpired(message, status=error.status, request_id=error.request_id,
                             code=error.code) from error

    def establish(self, refresher: Refresher, security_tokens: SecurityTokens,
                  ) -> Generator[Request, Response, None]:
        tokens = yield from guarded(self.protocol.issue_by_factors(
            self.token_id, self.permissions, security_tokens))
        refresher.succeeded(self.grant(tokens))
        self.expired = None
        log.debug("Spatium session established (token id %s, expires %s)",
                  self.token_id, tokens.permission_expires_at.isoformat())


class _KeyAdapter(_Adapter):
    """``KeyAuthorizationSession``: issued by merchant key, again whenever needed."""

    def __init__(self, protocol: SpatiumProtocol, token_id: str, permissions: list[str],
                 leeway: float, now: Callable[[], float], merchant_key: str) -> None:
        super().__init__(protocol, token_id, permissions, leeway, now)
        self.merchant_key = merchant_key

    def __repr__(self) -> str:
        return "_KeyAdapter(merchant_key=[secure])"

    def issue(self) -> Flow:
        tokens = yield from self.protocol.issue_by_key(
            self.token_id, self.permissions, self.merchant_key)
        log.debug("Spatium permission token issued by key (token id %s, expires %s)",
                  self.token_id, tokens.permission_expires_at.isoformat())
        return self.grant(tokens)

    def first_grant(self) -> Flow | None:
        return self.issue()

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        log.info("Spatium refresh token dead (token id %s): issuing again by key",
                 self.token_id)
        return self.issue()


def _unchanged(grant: Grant) -> Flow:
    return grant
    yield  # a generator that sends nothing


# ``_adapter``'s default: a user's session.  (``None`` is a missing merchant key, refused.)
_NO_KEY: Final = object()


def _adapter(url: str, token_id: str, permissions: Iterable[str],
             leeway: float | timedelta, clock: ClockOrSeconds | None,
             merchant_key: object = _NO_KEY) -> tuple[_UserAdapter | _KeyAdapter,
                                                      Callable[[], float]]:
    """A session's adapter and clock from its arguments, each checked."""
    protocol = SpatiumProtocol(url)
    token_id = required_text(token_id, "token_id")
    names = permission_names(permissions)
    lead = seconds(leeway, "leeway")
    now = seconds_clock(clock)
    if merchant_key is _NO_KEY:
        return _UserAdapter(protocol, token_id, names, lead, now), now
    key = required_text(merchant_key, "merchant_key")
    return _KeyAdapter(protocol, token_id, names, lead, now, merchant_key=key), now


# -- the sessions ----------------------------------------------------------------------
class _SpatiumSession(SessionCore):
    """What every Spatium session tells about itself, and its rule after a refresh."""

    _adapter: _UserAdapter | _KeyAdapter

    @property
    def url(self) -> str:
        return self._adapter.protocol.base_url

    @property
    def token_id(self) -> str:
        return self._adapter.token_id

    @property
    def permissions(self) -> tuple[str, ...]:
        return tuple(self._adapter.permissions)

    @property
    def leeway(self) -> float:
        return self._adapter.leeway

    def _state(self) -> str:
        if isinstance(self._adapter, _UserAdapter) and self._adapter.expired is not None:
            return "expired"
        return "active" if self._refresher.grant is not None else "new"

    def _describe(self) -> str:
        expires = self.expires_at
        shown = f", expires_at={expires.isoformat()!r}" if expires is not None else ""
        return (f"{type(self).__name__}(url={self.url!r}, "
                f"token_id={self.token_id!r}, permissions={list(self.permissions)!r}, "
                f"state={self._state()!r}{shown})")

    def __repr__(self) -> str:
        return self._describe()

    def _check_refreshed(self) -> None:
        grant = self._refresher.grant
        if isinstance(self._adapter, _UserAdapter) and grant is not None \
                and grant.refresh_token is None:
            raise SessionExpired("the refresh token was lost in an interrupted request: the "
                                 "permission token serves until it expires; establish again")


class _SyncSpatiumSession(_SpatiumSession, SyncSession):
    def get_permission_token(self) -> str:
        """A valid permission token, refreshed when within ``leeway`` of expiry (the same
        as ``get_access_token``).

        Raises ``SessionNotEstablished`` (a user's session before ``establish``),
        ``SessionExpired`` (its refresh token is dead), or ``IssuerError`` when a refresh
        failed and the current token has expired (a transient failure before that is
        retried later, and the still-valid token is returned).
        """
        return self.get_access_token()

    def refresh(self) -> None:
        """Refresh now.  Raises like ``get_permission_token``, and ``IssuerError`` when
        the refresh failed even though the current token still serves."""
        self._refresh_now()


class _AsyncSpatiumSession(_SpatiumSession, AsyncSession):
    async def get_permission_token(self) -> str:
        """See ``AuthorizationSession.get_permission_token``."""
        return await self.get_access_token()

    async def refresh(self) -> None:
        """See ``AuthorizationSession.refresh``."""
        await self._refresh_now()


class AuthorizationSession(_SyncSpatiumSession):
    """A user's Spatium session: ``establish`` once, then
    ``get_permission_token`` whenever a token is needed.

    ``token_id`` names the session at the service (stable per user or device);
    ``leeway`` (seconds or a ``timedelta``) is how long before expiry a token is
    refreshed.  Concurrent callers share one refresh.  Before ``establish``:
    ``SessionNotEstablished``; once the refresh token is dead or refused:
    ``SessionExpired`` until ``establish`` succeeds again.  ``clock`` (aware datetimes or
    seconds) is for tests.
    """

    def __init__(self, url: str, token_id: str, permissions: Iterable[str], *,
                 leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        self._adapter, now = _adapter(url, token_id, permissions, leeway, clock)
        super().__init__(self._adapter, now, client=client, timeout=timeout)

    def establish(self, security_tokens: SecurityTokens) -> None:
        """Get a new pair by security tokens, replacing any previous session.

        Raises ``IssuerError`` if the service refuses or cannot be reached; the previous
        session, if any, is then left as it was.
        """
        self._check_open()
        assert isinstance(self._adapter, _UserAdapter)
        self._credential.run(self._adapter.establish(self._refresher, security_tokens))
        self._wake_background()


class KeyAuthorizationSession(_SyncSpatiumSession):
    """A backend's Spatium session by merchant key: no ``establish``.

    The first ``get_permission_token`` issues a pair by key; refreshes use the refresh
    token, and when that is dead or refused the pair is issued by key again.  Raises
    ``IssuerError`` when the key is refused, or when the service cannot be reached and
    the current token has expired.
    """

    def __init__(self, url: str, token_id: str, permissions: Iterable[str],
                 merchant_key: str, *, leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        self._adapter, now = _adapter(url, token_id, permissions, leeway, clock,
                                      merchant_key=merchant_key)
        super().__init__(self._adapter, now, client=client, timeout=timeout)


class AsyncAuthorizationSession(_AsyncSpatiumSession):
    """``AuthorizationSession`` with coroutine methods (one ``asyncio.Lock`` per session)."""

    def __init__(self, url: str, token_id: str, permissions: Iterable[str], *,
                 leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        self._adapter, now = _adapter(url, token_id, permissions, leeway, clock)
        super().__init__(self._adapter, now, client=client, timeout=timeout)

    async def establish(self, security_tokens: SecurityTokens) -> None:
        """See ``AuthorizationSession.establish``."""
        self._check_open()
        assert isinstance(self._adapter, _UserAdapter)
        await self._credential.run(self._adapter.establish(self._refresher, security_tokens))
        self._wake_background()


class AsyncKeyAuthorizationSession(_AsyncSpatiumSession):
    """``KeyAuthorizationSession`` with coroutine methods."""

    def __init__(self, url: str, token_id: str, permissions: Iterable[str],
                 merchant_key: str, *, leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        self._adapter, now = _adapter(url, token_id, permissions, leeway, clock,
                                      merchant_key=merchant_key)
        super().__init__(self._adapter, now, client=client, timeout=timeout)
