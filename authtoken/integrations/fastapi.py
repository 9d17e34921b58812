"""FastAPI: ``TokenAuth``, a dependency that logs in the request's bearer token.

``pip install "authtoken[fastapi]"``; see docs/integrations/fastapi.md.

``TokenAuth`` is a FastAPI security scheme (a ``fastapi.security.base.SecurityBase``),
so the OpenAPI document shows it as an HTTP bearer scheme and ``/docs`` offers its
"Authorize" button.  Use it with ``Depends(auth)`` for any valid token, or with
``Security(auth, scopes=[...])`` to require scopes; either gives the ``Principal``.

The login reads storage, so it runs in Starlette's worker-thread pool and never blocks
the event loop.  A request logs in once per ``TokenAuth``, however many of its
dependencies name it: FastAPI calls a dependency once per distinct set of scopes (a
router's ``Security(auth, scopes=[...])`` and a route's own are two calls), so the
outcome of the first call -- the ``Principal`` or the refusal -- is kept on
``request.state`` and every later call only checks its own scopes against it.  One
request therefore spends one use of a ``max_uses`` token and writes one audit event.
Refusals follow RFC 6750 (the shared rules live in ``_bearer``):

- no ``Authorization`` header, or one of another scheme (``Basic`` ...): 401,
  ``WWW-Authenticate: Bearer`` (no error code: no bearer credential was sent);
- a malformed or repeated header, a token under another scheme, a token in the query
  string: 401 with ``error="invalid_request"``;
- a token the engine refuses (forged, unknown, expired, revoked, used up, not for this
  ``script``): 401 with ``error="invalid_token"``;
- a scope missing: 403 with ``error="insufficient_scope", scope="..."``;
- storage unreachable: 503.

The response never holds the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from fastapi import HTTPException, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.concurrency import run_in_threadpool

from .._errors import ArgumentTypeError
from .._redact import redact
from .._scopes import Script
from .._security import Security
from .._token import Principal
from ._bearer import (
    RETRY_AFTER,
    BearerRefused,
    bearer_credential,
    challenge,
    login,
    missing_scopes,
)

__all__ = ["TokenAuth"]

#: What the OpenAPI document says of the scheme unless told otherwise.
DESCRIPTION: Final = "An authtoken delegation token: 'Authorization: Bearer atk_...'."
# The attribute of ``request.state`` that holds the request's logins, by ``TokenAuth``.
_LOGINS: Final = "authtoken_logins"


class TokenAuth(SecurityBase):
    """A dependency giving the ``Principal`` of the request's ``Bearer`` token.

    ``security`` is the engine to log in with; ``script`` the script this service logs
    in as (``None``: none, so a token bound to scripts is refused).  ``scheme_name`` and
    ``description`` are what the OpenAPI document shows.  Raises ``TypeError`` for a
    ``security`` that is not a ``Security`` or a ``script`` that is not a ``Script``.

    Calling it raises ``HTTPException`` (401, 403 or 503, with ``WWW-Authenticate``) as
    the module docstring says; nothing is left changed by a refusal but the audit trail.
    """

    model: HTTPBearerModel

    def __init__(self, security: Security, *, script: Script | None = None,
                 scheme_name: str | None = None, description: str | None = DESCRIPTION,
                 ) -> None:
        if not isinstance(security, Security):
            raise ArgumentTypeError(f"expected a Security, not {type(security).__name__}")
        if script is not None and not isinstance(script, Script):
            raise ArgumentTypeError(f"script must be a Script, not {type(script).__name__}")
        self.security = security
        self.script = script
        self.model = HTTPBearerModel(bearerFormat="authtoken", description=description)
        self.scheme_name = scheme_name or "TokenAuth"

    def __repr__(self) -> str:
        return f"TokenAuth(script={self.script!r}, scheme_name={self.scheme_name!r})"

    async def __call__(self, request: Request, security_scopes: SecurityScopes) -> Principal:
        outcome = await self._login(request)
        if isinstance(outcome, BearerRefused):
            raise _refused(outcome) from None
        lacking = missing_scopes(outcome, security_scopes.scopes)
        if lacking:
            raise _insufficient(lacking)
        return outcome

    async def _login(self, request: Request) -> Principal | BearerRefused:
        """This request's login through this ``TokenAuth``: made on the first call and
        kept on ``request.state`` (per request, keyed by this instance) for the others,
        which FastAPI makes one after another while it solves the dependencies."""
        logins: dict[TokenAuth, Principal | BearerRefused] | None = getattr(
            request.state, _LOGINS, None)
        if logins is None:
            logins = {}
            setattr(request.state, _LOGINS, logins)
        if self not in logins:
            try:
                credential = bearer_credential(request.headers.getlist("authorization"),
                                               request.url.query)
                logins[self] = await run_in_threadpool(
                    login, self.security, credential, self.script)
            except BearerRefused as refusal:
                logins[self] = refusal
        return logins[self]


def _refused(refusal: BearerRefused) -> HTTPException:
    """The answer to a refused credential: its status, message and challenge."""
    headers = {"WWW-Authenticate": refusal.challenge}
    if refusal.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
    return HTTPException(status_code=refusal.status, detail=refusal.description,
                         headers=headers)


def _insufficient(lacking: Sequence[str]) -> HTTPException:
    """The 403 for a token that lacks scopes; the scopes needed are named."""
    return HTTPException(
        status_code=403,
        detail=redact("the token lacks the scope(s) " + ", ".join(ascii(s) for s in lacking)),
        headers={"WWW-Authenticate": challenge(
            "insufficient_scope", "the token lacks a required scope", scopes=lacking)},
    )
