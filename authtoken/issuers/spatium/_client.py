"""Spatium's API, one method per call: ``SpatiumClient`` and ``AsyncSpatiumClient``.

Each method runs one flow of ``SpatiumProtocol`` over the client's HTTP connection
(``_shell``); a transport failure becomes ``IssuerError(status=None)``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from types import TracebackType
from typing import TypeVar

import httpx

from .._args import DEFAULT_TIMEOUT, given_client
from .._core import Request, Response, guarded
from .._shell import AsyncDriver, SyncDriver
from ._protocol import DEFAULT_URL, SpatiumProtocol
from ._results import FactorRequirement, PermissionTokens, SecurityToken, SecurityTokens

__all__ = ["AsyncSpatiumClient", "SpatiumClient"]

T = TypeVar("T")


class SpatiumClient:
    """Spatium's authorization API, one method per call (see ``SpatiumProtocol``).

    Every method raises ``IssuerError``: with the HTTP ``status``, ``request_id`` and
    upstream ``code`` when the service refused, with ``status=None`` when it could not be
    reached.  A client given as ``client`` is not closed by ``close()``.
    """

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 client: httpx.Client | None = None) -> None:
        self.protocol = SpatiumProtocol(base_url)
        self._driver = SyncDriver(given_client(client, httpx.Client), timeout)

    def __repr__(self) -> str:
        return f"SpatiumClient({self.protocol.base_url!r})"

    def _run(self, flow: Generator[Request, Response, T]) -> T:
        return self._driver.run(guarded(flow))

    def security_factor_credentials(self, username: str, password: str) -> SecurityToken:
        """Prove the credentials factor: a security token for ``issue_by_factors``."""
        return self._run(self.protocol.security_factor_credentials(username, password))

    def probe(self, permissions: Iterable[str]) -> FactorRequirement:
        """The security factors needed for ``permissions``."""
        return self._run(self.protocol.probe(permissions))

    def issue_by_key(self, token_id: str, permissions: Iterable[str],
                     merchant_key: str) -> PermissionTokens:
        """A backend's tokens, by merchant key; ``token_id`` should be static per service."""
        return self._run(self.protocol.issue_by_key(token_id, permissions, merchant_key))

    def issue_by_factors(self, token_id: str, permissions: Iterable[str],
                         security_tokens: SecurityTokens) -> PermissionTokens:
        """A user's tokens, by security tokens; ``token_id`` per user or device."""
        return self._run(self.protocol.issue_by_factors(token_id, permissions, security_tokens))

    def refresh(self, refresh_token: str | PermissionTokens) -> PermissionTokens:
        """The next pair; the refresh token given is stale afterwards."""
        return self._run(self.protocol.refresh(refresh_token))

    def create_account_with_credentials(self, permission_token: str, username: str,
                                        password: str) -> str:
        """Register a user with the credentials factor; returns the account id."""
        return self._run(self.protocol.create_account_with_credentials(
            permission_token, username, password))

    def email_intent(self, permission_token: str, email: str) -> str:
        """Send a confirmation code to ``email``; returns the utility token."""
        return self._run(self.protocol.email_intent(permission_token, email))

    def email_confirm(self, utility_token: str, code: str | int) -> str:
        """Confirm the emailed code; returns the new account id."""
        return self._run(self.protocol.email_confirm(utility_token, code))

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> SpatiumClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncSpatiumClient:
    """``SpatiumClient`` with coroutine methods over an ``httpx.AsyncClient``."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 client: httpx.AsyncClient | None = None) -> None:
        self.protocol = SpatiumProtocol(base_url)
        self._driver = AsyncDriver(given_client(client, httpx.AsyncClient), timeout)

    def __repr__(self) -> str:
        return f"AsyncSpatiumClient({self.protocol.base_url!r})"

    async def _run(self, flow: Generator[Request, Response, T]) -> T:
        return await self._driver.run(guarded(flow))

    async def security_factor_credentials(self, username: str, password: str) -> SecurityToken:
        """Prove the credentials factor: a security token for ``issue_by_factors``."""
        return await self._run(self.protocol.security_factor_credentials(username, password))

    async def probe(self, permissions: Iterable[str]) -> FactorRequirement:
        """The security factors needed for ``permissions``."""
        return await self._run(self.protocol.probe(permissions))

    async def issue_by_key(self, token_id: str, permissions: Iterable[str],
                           merchant_key: str) -> PermissionTokens:
        """A backend's tokens, by merchant key; ``token_id`` should be static per service."""
        return await self._run(self.protocol.issue_by_key(token_id, permissions, merchant_key))

    async def issue_by_factors(self, token_id: str, permissions: Iterable[str],
                               security_tokens: SecurityTokens,
                               ) -> PermissionTokens:
        """A user's tokens, by security tokens; ``token_id`` per user or device."""
        return await self._run(
            self.protocol.issue_by_factors(token_id, permissions, security_tokens))

    async def refresh(self, refresh_token: str | PermissionTokens) -> PermissionTokens:
        """The next pair; the refresh token given is stale afterwards."""
        return await self._run(self.protocol.refresh(refresh_token))

    async def create_account_with_credentials(self, permission_token: str, username: str,
                                              password: str) -> str:
        """Register a user with the credentials factor; returns the account id."""
        return await self._run(self.protocol.create_account_with_credentials(
            permission_token, username, password))

    async def email_intent(self, permission_token: str, email: str) -> str:
        """Send a confirmation code to ``email``; returns the utility token."""
        return await self._run(self.protocol.email_intent(permission_token, email))

    async def email_confirm(self, utility_token: str, code: str | int) -> str:
        """Confirm the emailed code; returns the new account id."""
        return await self._run(self.protocol.email_confirm(utility_token, code))

    async def aclose(self) -> None:
        await self._driver.aclose()

    async def close(self) -> None:
        await self._driver.aclose()

    async def __aenter__(self) -> AsyncSpatiumClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
