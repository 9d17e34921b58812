"""How an admin request fails: ``Problem`` and the one error→status table.

Both faces of the admin application -- the JSON API (``_api``) and the HTML token page
(``_page``) -- end a failed request with a ``Problem``: the API answers it as
``application/problem+json`` (RFC 9457, ``Problem.response``), the page renders it as
an error page (or, for a 401, as the sign-in form).  A problem a face finds itself (a
body too large, a form without its CSRF value) is raised as a ``Problem``; an error the
engine or the authenticator raises is turned into one by :func:`problem_for`, through
``ERROR_STATUSES``, so that an error has the same status on both faces:

=======================================  ======  =========================================
error                                    status  notes
=======================================  ======  =========================================
``PermissionDenied``                     403
``TokenNotFound``                        404
``TokenRevoked``                         409     before ``LoginError``, which it is
``ConcurrentUpdate``                     409     before ``InvalidArgument``, which it is
``AuthenticationFailed``, ``LoginError`` 401     with ``WWW-Authenticate``; every refusal
                                                 of the authenticator is a 401, a
                                                 ``TokenRevoked`` included
``InvalidArgument``                      422
``RepositoryError``, ``IssuerError``     503     ``Retry-After``; the detail says only
                                                 that storage or the identity provider
                                                 cannot be reached (logged in full)
anything else                            500     logged with its traceback
=======================================  ======  =========================================

A problem's detail never carries a secret: the package's messages hold none, and
``redact`` masks anything token-, secret-, JWT- or password-shaped all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final, NamedTuple

from starlette.responses import JSONResponse, Response

from .._errors import (
    ConcurrentUpdate,
    InvalidArgument,
    IssuerError,
    LoginError,
    PermissionDenied,
    RepositoryError,
    TokenNotFound,
    TokenRevoked,
)
from .._redact import redact
from ._auth import AuthenticationFailed

__all__ = [
    "ERROR_STATUSES",
    "PROBLEM_JSON",
    "UNAVAILABLE",
    "ErrorStatus",
    "Problem",
    "challenge",
    "problem_for",
    "unauthorized",
]

log = logging.getLogger("authtoken.admin")

PROBLEM_JSON: Final = "application/problem+json"
#: The detail of every 503: which backend failed, and how, is for the log only.
UNAVAILABLE: Final = ("the token store or the identity provider cannot be reached; "
                      "try again shortly")

_TITLES: Final[Mapping[int, tuple[str, str]]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("permission-denied", "Permission denied"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-request", "Invalid request"),
    429: ("too-many-failures", "Too many failed authentications"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class Problem(Exception):
    """Ends an admin request: an HTTP ``status``, a ``detail`` for the caller, and the
    ``title``, ``kind`` (the last part of the problem's ``type``) and ``headers`` to
    answer with.  The title and kind default to the status's."""

    def __init__(self, status: int, detail: str, *, title: str | None = None,
                 kind: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        slug, default_title = _TITLES.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.title = title or default_title
        self.kind = kind or slug
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The problem as ``application/problem+json``, its detail masked."""
        body = {
            "type": f"urn:authtoken:problem:{self.kind}",
            "title": self.title,
            "status": self.status,
            "detail": redact(self.detail),
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers,
                            media_type=PROBLEM_JSON)


class ErrorStatus(NamedTuple):
    """One row of the table: the errors it covers, their status, and the problem's
    ``kind`` and ``title`` when they are more precise than the status's."""

    errors: tuple[type[Exception], ...]
    status: int
    kind: str | None = None
    title: str | None = None


#: The one error→status table of the admin faces; the first row that matches wins.
ERROR_STATUSES: Final[tuple[ErrorStatus, ...]] = (
    ErrorStatus((PermissionDenied,), 403),
    ErrorStatus((TokenNotFound,), 404, "token-not-found", "Token not found"),
    ErrorStatus((TokenRevoked,), 409, "token-revoked", "Token revoked"),
    ErrorStatus((ConcurrentUpdate,), 409, "concurrent-update", "Concurrent update"),
    # The caller's credentials were refused -- by the authenticator, or because its own
    # token died during the request.
    ErrorStatus((AuthenticationFailed, LoginError), 401),
    ErrorStatus((InvalidArgument,), 422),
    ErrorStatus((RepositoryError, IssuerError), 503),
)


def challenge(presented: bool) -> str:
    """The ``WWW-Authenticate`` value of a 401: ``presented`` tells whether the caller
    sent credentials at all (they were then invalid)."""
    if presented:
        return 'Bearer realm="authtoken", error="invalid_token"'
    return 'Bearer realm="authtoken"'


def problem_for(exc: Exception) -> Problem:
    """The problem for an error raised while serving a request (see the module notes)."""
    row = next((row for row in ERROR_STATUSES if isinstance(exc, row.errors)), None)
    if row is None:
        log.error("admin: unexpected error", exc_info=exc)
        return Problem(500, "the request failed unexpectedly")
    message = str(exc)
    if row.status == 503:
        log.warning("admin: %s: %s", type(exc).__name__, redact(message))
        return Problem(503, UNAVAILABLE, headers={"Retry-After": "5"})
    if row.status == 401:
        return unauthorized(exc)
    return Problem(row.status, message, kind=row.kind, title=row.title)


def unauthorized(exc: Exception) -> Problem:
    """The 401 for refused credentials, with its ``WWW-Authenticate`` challenge.

    Whatever the authenticator raised -- ``AuthenticationFailed`` or any ``LoginError``,
    a revoked or expired token included -- the caller has no credentials that count, so
    ``AdminContext.authenticated`` answers every refusal with this, never with the
    table's status for the error (``TokenRevoked`` is a 409 only while acting).
    """
    if isinstance(exc, AuthenticationFailed):
        header = exc.challenge or challenge(exc.presented)
    else:
        header = challenge(True)
    return Problem(401, str(exc), headers={"WWW-Authenticate": header})
