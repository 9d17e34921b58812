"""OpenID Connect and OAuth2 issuers (password, client credentials and the browser's
authorization code), and a JWT verifier.

::

    from authtoken.issuers.oidc import OIDCPasswordSession

    with OIDCPasswordSession.from_space(space_url, "alice", password) as session:
        httpx.get(f"{space_url}/api/lessons/1", auth=session.auth)

Theory of operation
-------------------
A session keeps one OAuth2 access token fresh.  What to send and what an answer means
lives in small *flows* (``_flows``: the space's OIDC pointer, the authority's discovery
document, the token endpoint's grants); the two grants are refresh-engine adapters
(``_grants``); the sessions (``_sessions``) stand on the session base every issuer
shares (``authtoken.issuers._session``), over the sans-IO engine that decides *when*:

- ``OIDCPasswordSession``: the password grant, refreshed with the refresh token at
  ``expires_in * 0.9`` after issue; when the issuer refuses the refresh token (or it has
  expired), the password grant again.
- ``ClientCredentialsSession``: the client credentials grant, fetched again at
  ``expires_in * 0.9`` (there is no refresh token).  ``header="bsauth"`` sends the token
  as ``bsauth: <token>`` instead of ``Authorization: <type> <token>``.

A transient failure (connection refused, timeout, HTTP 5xx or 429) while the current
access token is still valid is not raised: callers keep getting that token and the next
attempt waits a growing backoff.  ``start()`` runs the refreshes in the background (a
daemon thread, or an asyncio task), a little before they are due, so callers never wait.

``AuthorizationCodeClient`` (``_authcode``) runs the browser sign-in: the
authorization-code flow with PKCE, ``begin`` (the URL to send the browser to) and
``finish`` (the callback's parameters: the state, the code, the verified ID token).

``JWTVerifier`` (``authtoken.issuers.jwt``, re-exported here) checks JWT access tokens
on the API side.

Passwords, client secrets and tokens never appear in a message, ``repr`` or log line.
Needs the ``issuers`` extra: ``pip install "authtoken[issuers]"``.
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401 - the adapters' dependencies: say which extra installs them
    import jwt  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'authtoken.issuers.oidc needs httpx and PyJWT: pip install "authtoken[issuers]"'
    ) from exc

from ..._clock import Clock as Clock
from .._answers import MAX_TOKEN_LENGTH as MAX_TOKEN_LENGTH
from .._args import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from .._session import BACKGROUND_LEAD as BACKGROUND_LEAD
from .._session import BACKGROUND_MIN_NAP as BACKGROUND_MIN_NAP
from .._session import BACKGROUND_NAP as BACKGROUND_NAP
from ..jwt import AsyncJWTVerifier as AsyncJWTVerifier
from ..jwt import JWTVerifier as JWTVerifier
from ..jwt import jwks_flow as jwks_flow
from ._authcode import AuthorizationCodeClient as AuthorizationCodeClient
from ._authcode import AuthorizationRequest as AuthorizationRequest
from ._authcode import CodeGrant as CodeGrant
from ._flows import DEFAULT_EXPIRES_IN as DEFAULT_EXPIRES_IN
from ._flows import REFRESH_FRACTION as REFRESH_FRACTION
from ._flows import Discovery as Discovery
from ._flows import discovery_flow as discovery_flow
from ._flows import parse_grant as parse_grant
from ._flows import space_flow as space_flow
from ._flows import token_flow as token_flow
from ._sessions import AsyncClientCredentialsSession as AsyncClientCredentialsSession
from ._sessions import AsyncOIDCPasswordSession as AsyncOIDCPasswordSession
from ._sessions import ClientCredentialsSession as ClientCredentialsSession
from ._sessions import OIDCPasswordSession as OIDCPasswordSession

__all__ = [
    "AsyncClientCredentialsSession",
    "AsyncJWTVerifier",
    "AsyncOIDCPasswordSession",
    "AuthorizationCodeClient",
    "AuthorizationRequest",
    "ClientCredentialsSession",
    "CodeGrant",
    "JWTVerifier",
    "OIDCPasswordSession",
]
