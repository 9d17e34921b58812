"""``BrokerAuth``: an ``httpx.Auth`` that presents a link's access token."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Generator

import httpx

__all__ = ["BrokerAuth"]


class BrokerAuth(httpx.Auth):
    """Sends ``Authorization: Bearer <access token>`` (the broker's, asked per request,
    so a revocation or a refusal is seen at once); after a 401, asks again and, when
    the token changed and the body can be sent twice, retries once."""

    def __init__(self, token: Callable[[], str], name: str) -> None:
        self._token = token
        self._name = name

    def __repr__(self) -> str:
        return f"<BrokerAuth for upstream {self._name!r}>"

    def auth_flow(self, request: httpx.Request,
                  ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401 or not isinstance(request.stream, httpx.ByteStream):
            return
        fresh = self._token()
        if hmac.compare_digest(fresh, token):
            return
        request.headers["Authorization"] = f"Bearer {fresh}"
        yield request
