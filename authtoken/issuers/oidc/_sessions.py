"""The OIDC sessions: the password grant's and the client credentials grant's, sync and
async, each a session of ``_session`` over its grant (``_grants``).

What they share with every issuer session (``get_access_token``, ``authorization_header``,
``.auth``, background refresh, ``close``) lives in ``_session``; what is theirs is the
grant, the header, ``refresh()`` returning the new token, the discovery state of the
password sessions and their ``repr``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx

from ..._clock import ClockOrSeconds, seconds_clock
from .._args import DEFAULT_TIMEOUT
from .._core import guarded
from .._session import AsyncSession, SessionCore, SyncSession
from ._grants import (
    ClientCredentialsGrant,
    PasswordGrant,
    client_credentials_grant,
    header_name,
    password_grant,
)

__all__ = [
    "AsyncClientCredentialsSession",
    "AsyncOIDCPasswordSession",
    "ClientCredentialsSession",
    "OIDCPasswordSession",
]


class _OIDCSession(SessionCore):
    """What every OIDC session tells about itself."""

    _grant: PasswordGrant | ClientCredentialsGrant

    def _describe(self) -> str:
        grant = self._refresher.grant
        state = ("no token" if grant is None
                 else "fresh" if self._now() < grant.refresh_at else "due")
        return (f"{type(self).__name__}({self._grant.where()}, "
                f"client_id={self._grant.client_id!r}, {state})")


class _SyncOIDCSession(_OIDCSession, SyncSession):
    def refresh(self) -> str:
        """Refresh now, whatever the clock says; the new access token.

        Raises ``IssuerError`` when that failed, even while the current token still
        serves (and at once, without a request, during the backoff after a failure).
        """
        return self._refresh_now()


class _AsyncOIDCSession(_OIDCSession, AsyncSession):
    async def refresh(self) -> str:
        """Refresh now, whatever the clock says; the new access token (see the sync
        session's ``refresh``)."""
        return await self._refresh_now()


class _PasswordInfo(_OIDCSession):
    """What the sync and async password sessions tell about their issuer."""

    @property
    def _password(self) -> PasswordGrant:
        assert isinstance(self._grant, PasswordGrant)
        return self._grant

    @property
    def authority(self) -> str | None:
        """The issuer's URL (``None`` until a space's pointer has been read)."""
        return self._password.authority

    @property
    def client_id(self) -> str | None:
        """The client id (``None`` until a space's pointer has been read)."""
        return self._password.client_id

    @property
    def token_endpoint(self) -> str | None:
        """The token endpoint, once discovered."""
        discovery = self._password.discovery
        return discovery.token_endpoint if discovery is not None else None

    @property
    def jwks_uri(self) -> str | None:
        """The issuer's JWKS (for ``JWTVerifier``), once discovered."""
        discovery = self._password.discovery
        return discovery.jwks_uri if discovery is not None else None


class OIDCPasswordSession(_PasswordInfo, _SyncOIDCSession):
    """An OpenID Connect session by the password grant.

    ``authority`` is the issuer's URL (a Keycloak realm: ``https://id.example/realms/x``);
    the token endpoint comes from its ``/.well-known/openid-configuration`` on first use.
    The access token is refreshed with the refresh token at ``expires_in * 0.9`` after
    issue; if the refresh token is refused or expired, the password grant runs again.
    ``from_space`` reads the authority and client id from a space's
    ``/api/.well-known/oidc``.  ``clock`` (aware datetimes, or seconds) is for tests.
    """

    def __init__(self, authority: str, client_id: str, username: str, password: str, *,
                 client_secret: str | None = None, scope: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        now = seconds_clock(clock)
        self._grant = password_grant(
            space_url=None, authority=authority, client_id=client_id, username=username,
            password=password, client_secret=client_secret, scope=scope, now=now)
        super().__init__(self._grant, now, client=client, timeout=timeout)

    @classmethod
    def from_space(cls, space_url: str, username: str, password: str, *,
                   client_secret: str | None = None, scope: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                   clock: ClockOrSeconds | None = None) -> OIDCPasswordSession:
        """A session for a space: reads ``{space_url}/api/.well-known/oidc`` and the
        authority's discovery document now (``IssuerError`` if they fail)."""
        now = seconds_clock(clock)
        session = cls.__new__(cls)
        session._grant = password_grant(
            space_url=space_url, authority=None, client_id=None, username=username,
            password=password, client_secret=client_secret, scope=scope, now=now)
        SyncSession.__init__(session, session._grant, now, client=client, timeout=timeout)
        try:
            session.discover()
        except BaseException:
            session.close()
            raise
        return session

    def discover(self) -> None:
        """Read the discovery documents now rather than on first use; ``IssuerError``."""
        self._check_open()
        self._credential.run(guarded(self._password.discover()))


class AsyncOIDCPasswordSession(_PasswordInfo, _AsyncOIDCSession):
    """``OIDCPasswordSession`` for asyncio: the same methods, as coroutines.

    ``from_space`` returns the session at once and reads the discovery documents on
    first use; ``await AsyncOIDCPasswordSession.from_space(...)`` reads them now.
    """

    def __init__(self, authority: str, client_id: str, username: str, password: str, *,
                 client_secret: str | None = None, scope: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        now = seconds_clock(clock)
        self._grant = password_grant(
            space_url=None, authority=authority, client_id=client_id, username=username,
            password=password, client_secret=client_secret, scope=scope, now=now)
        super().__init__(self._grant, now, client=client, timeout=timeout)

    @classmethod
    def from_space(cls, space_url: str, username: str, password: str, *,
                   client_secret: str | None = None, scope: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                   clock: ClockOrSeconds | None = None) -> AsyncOIDCPasswordSession:
        """A session for a space (``{space_url}/api/.well-known/oidc``), discovered lazily."""
        now = seconds_clock(clock)
        session = cls.__new__(cls)
        session._grant = password_grant(
            space_url=space_url, authority=None, client_id=None, username=username,
            password=password, client_secret=client_secret, scope=scope, now=now)
        AsyncSession.__init__(session, session._grant, now, client=client, timeout=timeout)
        return session

    async def discover(self) -> AsyncOIDCPasswordSession:
        """Read the discovery documents now rather than on first use; ``IssuerError``."""
        self._check_open()
        await self._credential.run(guarded(self._password.discover()))
        return self

    def __await__(self) -> Generator[Any, None, AsyncOIDCPasswordSession]:
        return self.discover().__await__()


class _ClientCredentialsInfo(_OIDCSession):
    @property
    def token_url(self) -> str:
        """The token endpoint the client credentials go to."""
        assert isinstance(self._grant, ClientCredentialsGrant)
        return self._grant.token_url


class ClientCredentialsSession(_ClientCredentialsInfo, _SyncOIDCSession):
    """A service's own token by the client credentials grant.

    Fetched from ``token_url`` on first use and again at ``expires_in * 0.9``.  The
    credentials go in the form body (``client_secret_post``).  ``header="bsauth"`` sends
    ``bsauth: <token>``; the default sends ``Authorization: <token_type> <token>``.
    """

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scope: str | None = None, header: str = "Authorization",
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        now = seconds_clock(clock)
        self._grant = client_credentials_grant(token_url, client_id, client_secret, scope, now)
        super().__init__(self._grant, now, client=client, timeout=timeout,
                         header=header_name(header))


class AsyncClientCredentialsSession(_ClientCredentialsInfo, _AsyncOIDCSession):
    """``ClientCredentialsSession`` for asyncio: the same methods, as coroutines."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scope: str | None = None, header: str = "Authorization",
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        now = seconds_clock(clock)
        self._grant = client_credentials_grant(token_url, client_id, client_secret, scope, now)
        super().__init__(self._grant, now, client=client, timeout=timeout,
                         header=header_name(header))
