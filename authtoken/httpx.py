"""Call a service with a delegation token through httpx: ``DelegationAuth``.

``DelegationAuth(token_string)`` is an ``httpx.Auth``: give it to a ``Client`` or an
``AsyncClient`` (or to one request) and each request carries
``Authorization: Bearer <token>``::

    import os
    import httpx
    from authtoken.httpx import DelegationAuth

    auth = DelegationAuth(os.environ["AUTHTOKEN_TOKEN"])
    with httpx.Client(base_url="https://reports.example.com", auth=auth) as http:
        http.get("/reports")

It sends the token only over ``https://``, or over ``http://`` to this machine
(``127.0.0.1``, ``::1``, ``localhost``): a request to a plain-http URL elsewhere raises
``InvalidArgument`` before anything is sent.  httpx itself drops the header when a
redirect leaves the origin (another host, or https to http).  The string never appears
in the auth's ``repr`` (only the token's key does), and the auth cannot be pickled.

Needs httpx: ``pip install "authtoken[httpx]"``.  ``import authtoken`` never imports
this module.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import NoReturn

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError('authtoken.httpx needs httpx: pip install "authtoken[httpx]"') from exc

from ._outbound import OutboundToken, check_destination

__all__ = ["DelegationAuth"]


class DelegationAuth(httpx.Auth):
    """Sends ``token_string`` as ``Authorization: Bearer <token>`` (sync and async).

    Raises ``TypeError`` for anything but a ``str`` and ``InvalidArgument`` for a string
    that is not shaped as a token string (surrounding whitespace is dropped); neither
    message holds what was given.  Sending a request to a URL that is neither
    ``https://`` nor ``http://`` on a loopback host raises ``InvalidArgument``, and the
    request is not sent.  ``key`` is the token's key, safe to show and log.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, token_string: str) -> None:
        self._token = OutboundToken(token_string, "DelegationAuth")

    @property
    def key(self) -> str:
        """The token's key: public, safe to show and log."""
        return self._token.key

    def __repr__(self) -> str:
        return f"DelegationAuth(key={self.key!r})"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self._token.__reduce_ex__(protocol)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        check_destination(request.url.scheme, request.url.host)
        request.headers["Authorization"] = self._token.header()
        yield request
