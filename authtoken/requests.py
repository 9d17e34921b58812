"""Call a service with a delegation token through requests: ``DelegationAuth``.

``DelegationAuth(token_string)`` is a ``requests.auth.AuthBase``: give it to a request
or a ``Session`` (``session.auth = ...``) and each request carries
``Authorization: Bearer <token>``::

    import os
    import requests
    from authtoken.requests import DelegationAuth

    auth = DelegationAuth(os.environ["AUTHTOKEN_TOKEN"])
    requests.get("https://reports.example.com/reports", auth=auth, timeout=10)

It sends the token only over ``https://``, or over ``http://`` to this machine
(``127.0.0.1``, ``::1``, ``localhost``): a request to a plain-http URL elsewhere raises
``InvalidArgument`` before anything is sent.  requests itself drops the header when a
redirect goes to another host or from https to http.  The string never appears in the
auth's ``repr`` (only the token's key does), and the auth cannot be pickled.

Needs requests: ``pip install "authtoken[requests]"``.  ``import authtoken`` never
imports this module.
"""

from __future__ import annotations

from typing import NoReturn
from urllib.parse import urlsplit

try:
    from requests import PreparedRequest
    from requests.auth import AuthBase
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'authtoken.requests needs requests: pip install "authtoken[requests]"') from exc

from ._errors import InvalidArgument
from ._outbound import OutboundToken, check_destination

__all__ = ["DelegationAuth"]


class DelegationAuth(AuthBase):
    """Sends ``token_string`` as ``Authorization: Bearer <token>``.

    Raises ``TypeError`` for anything but a ``str`` and ``InvalidArgument`` for a string
    that is not shaped as a token string (surrounding whitespace is dropped); neither
    message holds what was given.  Sending a request to a URL that is neither
    ``https://`` nor ``http://`` on a loopback host raises ``InvalidArgument``, and the
    request is not sent.  ``key`` is the token's key, safe to show and log.
    """

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

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        try:
            parts = urlsplit(request.url or "")
            host = parts.hostname or ""
        except ValueError:
            raise InvalidArgument("refusing to send a delegation token to a URL that "
                                  "does not parse") from None
        check_destination(parts.scheme, host)
        request.headers["Authorization"] = self._token.header()
        return request
