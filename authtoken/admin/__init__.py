"""The admin API: manage delegation tokens over HTTP.

``create_app(security, *, authenticate)`` is an ASGI application (Starlette) to serve
on its own or mount in a larger one; ``authenticate`` decides who calls::

    from authtoken import open_security
    from authtoken.admin import DelegationTokenAuth, create_app

    security = open_security()
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    # uvicorn module:app --host 127.0.0.1

Ready authenticators: ``DelegationTokenAuth`` (``Authorization: Bearer atk_…``; what the
caller creates derives from that token), ``JWTAuth`` (an OIDC access token checked by
``authtoken.issuers.oidc.JWTVerifier``) and ``SpatiumAuth`` (a Spatium permission
token).  ``OIDCSignIn`` lets people sign in to the token page (``/ui``) with the
organisation's OpenID provider.  Your own is any callable ``request -> Identity`` raising
``AuthenticationFailed`` for bad credentials (see ``Authenticator``).

Needs the ``admin`` extra: ``pip install "authtoken[admin]"``.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError('authtoken.admin needs Starlette: pip install "authtoken[admin]"') from exc

from ._api import user_candidates as user_candidates
from ._app import create_app as create_app
from ._auth import AuthenticationFailed as AuthenticationFailed
from ._auth import Authenticator as Authenticator
from ._auth import DelegationTokenAuth as DelegationTokenAuth
from ._auth import Identity as Identity
from ._auth import JWTAuth as JWTAuth
from ._auth import SpatiumAuth as SpatiumAuth
from ._auth import bearer_token as bearer_token
from ._limiter import FailureLimiter as FailureLimiter
from ._openapi import openapi_document as openapi_document
from ._page_sso import OIDCSignIn as OIDCSignIn

__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "DelegationTokenAuth",
    "FailureLimiter",
    "Identity",
    "JWTAuth",
    "OIDCSignIn",
    "SpatiumAuth",
    "bearer_token",
    "create_app",
    "openapi_document",
    "user_candidates",
]
