"""Starlette: ``TokenAuthBackend`` for ``AuthenticationMiddleware``.

``pip install "authtoken[starlette]"``; see docs/integrations/starlette.md.

With the middleware installed, a request that carries ``Authorization: Bearer atk_…``
has ``request.user`` a :class:`TokenUser` (``.principal``, ``.is_authenticated``,
``.display_name``) and ``request.auth.scopes`` the token's scopes, so Starlette's own
``@requires("reports:read")`` guards an endpoint.  A request with no bearer credential
-- no ``Authorization`` header, or one of another scheme, such as the ``Basic`` a
basic-auth proxy forwards -- stays anonymous (Starlette's ``UnauthenticatedUser``), so
public endpoints work beside guarded ones.  Everything else -- a malformed or repeated
header, a token under another scheme, a token in the query string, a token the engine
refuses, storage unreachable -- raises a
:class:`TokenAuthenticationError`; give the middleware ``on_error=bearer_challenge`` to
answer it with 401 (503) and RFC 6750's ``WWW-Authenticate`` instead of Starlette's
default plain 400.  The login reads storage in a worker thread.
"""

from __future__ import annotations

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from .._errors import ArgumentTypeError
from .._scopes import Script
from .._security import Security
from .._token import Principal
from ._bearer import RETRY_AFTER, BearerRefused, bearer_credential, login

__all__ = ["TokenAuthBackend", "TokenAuthenticationError", "TokenUser", "bearer_challenge"]


class TokenUser(BaseUser):
    """The user of a request that logged in by a token: ``principal`` is its login."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def __repr__(self) -> str:
        return f"TokenUser({self.principal!r})"

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        """The principal's user, as a string."""
        return str(self.principal.user)

    @property
    def identity(self) -> str:
        """The key of the token that logged in (safe to log)."""
        return self.principal.token_key


class TokenAuthenticationError(AuthenticationError):
    """A bearer credential was refused: ``status`` (401 or 503), the RFC 6750 ``error``
    code, ``description`` and the ``challenge`` to send; ``reason`` the engine's error
    class name.  The message never holds the credential."""

    def __init__(self, refusal: BearerRefused) -> None:
        super().__init__(refusal.description)
        self.status = refusal.status
        self.error = refusal.error
        self.description = refusal.description
        self.challenge = refusal.challenge
        self.reason = refusal.reason


class TokenAuthBackend(AuthenticationBackend):
    """Logs in the request's bearer token through ``security`` as ``script``.

    ``script=None`` logs in as no script, so a token bound to scripts is refused.  Raises
    ``TypeError`` for a ``security`` that is not a ``Security`` or a ``script`` that is
    not a ``Script``.  ``authenticate`` returns ``None`` (anonymous) for a request with
    no ``Authorization`` header or one of another scheme, and raises
    ``TokenAuthenticationError`` for a refused one.
    """

    def __init__(self, security: Security, *, script: Script | None = None) -> None:
        if not isinstance(security, Security):
            raise ArgumentTypeError(f"expected a Security, not {type(security).__name__}")
        if script is not None and not isinstance(script, Script):
            raise ArgumentTypeError(f"script must be a Script, not {type(script).__name__}")
        self.security = security
        self.script = script

    def __repr__(self) -> str:
        return f"TokenAuthBackend(script={self.script!r})"

    async def authenticate(self, conn: HTTPConnection,
                           ) -> tuple[AuthCredentials, TokenUser] | None:
        try:
            credential = bearer_credential(conn.headers.getlist("authorization"),
                                           conn.url.query)
            principal = await run_in_threadpool(login, self.security, credential, self.script)
        except BearerRefused as refusal:
            if refusal.missing:
                return None
            raise TokenAuthenticationError(refusal) from None
        return AuthCredentials(list(principal.scopes)), TokenUser(principal)


def bearer_challenge(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """An ``on_error`` for ``AuthenticationMiddleware``: the refusal as JSON
    ``{"detail": ...}`` with its status and ``WWW-Authenticate`` (RFC 6750).

    Another backend's ``AuthenticationError`` gets a plain 401 Bearer challenge.
    """
    if not isinstance(exc, TokenAuthenticationError):
        return JSONResponse({"detail": "authentication failed"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    headers = {"WWW-Authenticate": exc.challenge}
    if exc.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
    return JSONResponse({"detail": exc.description}, status_code=exc.status, headers=headers)
