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
``PolicyViolation``                      403     the detail names the rule and its
                                                 limit, also given as ``rule`` and
                                                 ``limit`` members of the problem
``PermissionDenied``                     403
``TokenNotFound``                        404
``TokenRevoked``                         409     before ``LoginError``, which it is
``ActorTokenExpired``                    401     the caller's own token expired during
                                                 the request
``TokenExpired``                         409     likewise: a token acted on (renewed)
                                                 has expired
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
    PolicyViolation,
    RepositoryError,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from .._redact import redact
from .._rules import ActorTokenExpired
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
    answer with.  The title and kind default to the status's.  ``members`` are extension
    members of the problem (RFC 9457), such as a policy's ``rule`` and ``limit``: plain
    JSON values the package chose, never text a caller sent."""

    def __init__(self, status: int, detail: str, *, title: str | None = None,
                 kind: str | None = None, headers: Mapping[str, str] | None = None,
                 members: Mapping[str, str | int | bool | None] | None = None) -> None:
        super().__init__(detail)
        slug, default_title = _TITLES.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.title = title or default_title
        self.kind = kind or slug
        self.headers = dict(headers or {})
        self.members = dict(members or {})

    def response(self) -> Response:
        """The problem as ``application/problem+json``, its detail masked."""
        body: dict[str, object] = {
            **{name: redact(value) if isinstance(value, str) else value
               for name, value in self.members.items()},
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
    ErrorStatus((PolicyViolation,), 403, "policy-violation", "Policy violation"),
    ErrorStatus((PermissionDenied,), 403),
    ErrorStatus((TokenNotFound,), 404, "token-not-found", "Token not found"),
    ErrorStatus((TokenRevoked,), 409, "token-revoked", "Token revoked"),
    # The caller's own token expired during the request: its credentials are no more.
    ErrorStatus((ActorTokenExpired,), 401),
    # A token the request acts on has expired (a renewal of it, above all).  A caller
    # whose own token expired is refused by the authenticator first: a 401.
    ErrorStatus((TokenExpired,), 409, "token-expired", "Token expired"),
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
    if isinstance(exc, PolicyViolation):
        return _policy_problem(exc, row)
    return Problem(row.status, message, kind=row.kind, title=row.title)


def _policy_problem(exc: PolicyViolation, row: ErrorStatus) -> Problem:
    """A ``PolicyViolation`` as a 403 whose detail names the rule and its limit, in
    words and as the members ``rule`` and ``limit``."""
    limit = exc.limit if isinstance(exc.limit, (str, int, bool)) or exc.limit is None \
        else str(exc.limit)
    shown = "true" if limit is True else "false" if limit is False else limit
    detail = f"{exc} (policy rule {exc.rule}, limit {shown})"
    return Problem(row.status, detail, kind=row.kind, title=row.title,
                   members={"rule": exc.rule, "limit": limit})


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
