"""Spatium's authorization service: the API client and self-refreshing sessions.

The wire format: every call is a ``POST {base}/api/...`` with a JSON
body and a fresh UUID in the ``request-id`` header; every answer is ``{"requestId": ...,
"data": {...}}``.  A *permission token* (RS256 JWT, about 15 minutes) is the access
token; a *permission refresh token* (about 2 hours) gets the next pair and is then stale.

- ``SpatiumClient`` / ``AsyncSpatiumClient`` (``_client``): one method per API call,
  typed results (``_results``).
- ``AuthorizationSession`` (``_sessions``): a user's session.  ``establish(security_tokens)``
  gets the first pair; ``get_permission_token()`` returns a valid token, refreshing it
  ``leeway`` before it expires; when the refresh token is dead or refused it raises
  ``SessionExpired`` until ``establish`` is called again.
- ``KeyAuthorizationSession``: a backend's session, issued by merchant key on first use
  and issued again by key whenever the refresh token is dead.

Every session also has what every issuer session has (``authtoken.issuers._session``):
``get_access_token()`` (the permission token), ``authorization_header()``
(``{"Authorization": "Bearer <permission token>"}``), an ``httpx.Auth`` at ``.auth`` that
retries once after a 401, background refresh (``start()``/``stop()``), ``close()`` and
the context manager.

Every request is built and every response parsed once, in ``SpatiumProtocol``
(``_protocol``, sans-IO flows); when to refresh is decided by the shared engine
(``_core.Refresher``); the sync and async classes only carry the bytes (``_shell``).
Needs the ``issuers`` extra: ``pip install "authtoken[issuers]"``.

Failures raise ``IssuerError`` with ``.status`` (``None`` when the issuer could not be
reached), ``.request_id`` and ``.code``; no message or ``repr`` holds a token, password or
merchant key.  While a refresh fails transiently (5xx, 429, no connection) the sessions
keep serving the still-valid permission token and retry after a bounded backoff.
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401 - the adapters' one dependency: say which extra installs it
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name not in ("httpx", "httpcore", "anyio", "h11"):
        raise
    raise ImportError(
        'authtoken.issuers.spatium needs httpx: pip install "authtoken[issuers]"'
    ) from exc

from ..._errors import IssuerError as IssuerError
from ..._errors import SessionExpired as SessionExpired
from ..._errors import SessionNotEstablished as SessionNotEstablished
from .._args import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._client import AsyncSpatiumClient as AsyncSpatiumClient
from ._client import SpatiumClient as SpatiumClient
from ._protocol import DEFAULT_URL as DEFAULT_URL
from ._protocol import SpatiumProtocol as SpatiumProtocol
from ._results import FactorRequirement as FactorRequirement
from ._results import PermissionTokens as PermissionTokens
from ._results import SecurityToken as SecurityToken
from ._results import SecurityTokens as SecurityTokens
from ._sessions import DEFAULT_LEEWAY as DEFAULT_LEEWAY
from ._sessions import AsyncAuthorizationSession as AsyncAuthorizationSession
from ._sessions import AsyncKeyAuthorizationSession as AsyncKeyAuthorizationSession
from ._sessions import AuthorizationSession as AuthorizationSession
from ._sessions import KeyAuthorizationSession as KeyAuthorizationSession

__all__ = [
    "AsyncAuthorizationSession",
    "AsyncKeyAuthorizationSession",
    "AsyncSpatiumClient",
    "AuthorizationSession",
    "FactorRequirement",
    "IssuerError",
    "KeyAuthorizationSession",
    "PermissionTokens",
    "SecurityToken",
    "SessionExpired",
    "SessionNotEstablished",
    "SpatiumClient",
    "SpatiumProtocol",
]
