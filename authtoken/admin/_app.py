"""The admin API: an ASGI application (Starlette) over a ``Security``.

Theory of operation
-------------------
Every request but ``GET /openapi.json`` goes through the same steps, each of which can
end it with a problem (``application/problem+json``):

1. **Rate limit.**  A client address that failed authentication more than ``limit``
   times in the last ``window`` seconds gets 429 with ``Retry-After`` -- before its
   credentials are even looked at, so guessing stops paying.  Other addresses are
   unaffected.  The per-address record is bounded (``FailureLimiter``).
2. **Authenticate.**  The application's ``Authenticator`` turns the request into an
   ``Identity`` (in a worker thread: it may block), or the request ends with 401 and
   ``WWW-Authenticate``; the failure is counted for the address and recorded in the
   audit trail.
3. **Read the body** (``POST``/``PATCH`` only): ``application/json`` or 415; at most
   ``max_body`` bytes -- by ``Content-Length`` before reading, and counted while
   reading for chunked bodies -- or 413; a JSON object of known, well-typed fields or
   422.  Strangers' bodies are never read.
4. **Act** through a fresh ``Session`` for the caller (``Identity.session``), in a worker
   thread, so every rule of sessions -- ownership, no escalation through delegation
   -- is the engine's, not re-implemented here.  The package's errors map to statuses:
   ``PermissionDenied`` 403, ``TokenNotFound`` 404, ``TokenRevoked`` and
   ``ConcurrentUpdate`` 409, ``InvalidArgument`` 422, ``RepositoryError`` and
   ``IssuerError`` 503.

A user in a path or query is text; a decimal text also names the integer user, so
``?user=42`` lists the tokens of both ``"42"`` and ``42`` (newest first) and
``/users/42/revoke-all`` revokes both.  A non-admin may only name itself.

No response carries a token string except the one ``POST /tokens`` answer that creates
it; problem details are the engine's messages (which never hold one), and anything
shaped like a token, a secret, a JWT or a URL password is masked in them all the same
(``authtoken._redact.redact``, the package's one rule for that).  Every response says
``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from dateutil.parser import isoparse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import (
    ArgumentTypeError,
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
from .._repository import AuditEvent
from .._scopes import MAX_IDENTIFIERS
from .._security import Security
from .._token import AuthToken, UserKey, check_user
from .._views import event_view, token_view
from ._auth import AuthenticationFailed, Authenticator, Identity, client_address
from ._bindings import written_scope
from ._page import page_routes

__all__ = [
    "DEFAULT_MAX_BODY",
    "FailureLimiter",
    "create_app",
    "openapi_document",
    "user_candidates",
]

log = logging.getLogger("authtoken.admin")

#: The largest request body accepted: a token's data (64 KiB of UTF-8) fits, JSON-escaped.
DEFAULT_MAX_BODY: Final = 512 * 1024
#: How many events ``GET /audit`` returns at most.
MAX_AUDIT_EVENTS: Final = 1000
_PROBLEM_JSON: Final = "application/problem+json"
_DECIMAL = re.compile(r"-?[0-9]{1,19}\Z", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,20}\Z", re.ASCII)
_UPDATE_FIELDS: Final = ("scope", "data", "description", "expires")
_CREATE_FIELDS: Final = (*_UPDATE_FIELDS, "bind_paths", "bind_keys")
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


# -- rate limiting ----------------------------------------------------------------------------
class FailureLimiter:
    """Failed authentications per client address, in a sliding window.

    An address is blocked once it failed more than ``limit`` times (1..100) within
    ``window`` seconds, until enough of those failures are older than the window.  Only
    the latest ``limit + 1`` failures of an address are kept, and at most
    ``max_addresses`` addresses (the least recently failing one is forgotten first), so
    memory stays bounded whatever arrives.  ``clock`` returns monotonic seconds.
    Thread-safe.
    """

    def __init__(self, limit: int = 20, window: float = 60.0, *,
                 max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidArgument("limit must be an integer from 1 to 100")
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not window > 0:
            raise InvalidArgument("window must be a positive number of seconds")
        if isinstance(max_addresses, bool) or not isinstance(max_addresses, int) \
                or max_addresses < 1:
            raise InvalidArgument("max_addresses must be a positive integer")
        self.limit = limit
        self.window = float(window)
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FailureLimiter(limit={self.limit}, window={self.window})"

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or ``None`` if it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if times is None or len(times) <= self.limit:
                return None
            # Blocked until the oldest kept failure leaves the window.
            return max(times[0] + self.window - now, 0.0)

    def failed(self, address: str) -> None:
        """Count one failed authentication of ``address``."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if times is None:
                times = self._failures[address] = deque(maxlen=self.limit + 1)
            else:
                self._failures.move_to_end(address)
            times.append(now)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def reset(self, address: str | None = None) -> None:
        """Forget the failures of ``address`` (of every address if ``None``)."""
        with self._lock:
            if address is None:
                self._failures.clear()
            else:
                self._failures.pop(address, None)


# -- problems -------------------------------------------------------------------------------
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


class _Problem(Exception):
    """Ends a request with an RFC 9457 problem."""

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
        body = {
            "type": f"urn:authtoken:problem:{self.kind}",
            "title": self.title,
            "status": self.status,
            "detail": redact(self.detail),
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers,
                            media_type=_PROBLEM_JSON)


def _problem_for(exc: Exception) -> _Problem:
    """The problem for an error raised while acting."""
    message = str(exc)
    if isinstance(exc, PermissionDenied):
        return _Problem(403, message)
    if isinstance(exc, TokenNotFound):
        return _Problem(404, message, kind="token-not-found", title="Token not found")
    if isinstance(exc, TokenRevoked):
        return _Problem(409, message, kind="token-revoked", title="Token revoked")
    if isinstance(exc, ConcurrentUpdate):
        return _Problem(409, message, kind="concurrent-update", title="Concurrent update")
    if isinstance(exc, LoginError):  # the caller's own token died during the request
        return _Problem(401, message, headers={"WWW-Authenticate": _challenge(True)})
    if isinstance(exc, InvalidArgument):
        return _Problem(422, message)
    if isinstance(exc, (RepositoryError, IssuerError)):
        log.warning("admin API: %s: %s", type(exc).__name__, redact(message))
        return _Problem(503, "the token store or the identity provider cannot be reached; "
                             "try again shortly", headers={"Retry-After": "5"})
    log.error("admin API: unexpected error", exc_info=exc)
    return _Problem(500, "the request failed unexpectedly")


def _challenge(presented: bool) -> str:
    if presented:
        return 'Bearer realm="authtoken", error="invalid_token"'
    return 'Bearer realm="authtoken"'


class _SecurityHeaders:
    """Adds ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("cache-control", "no-store")
                headers.setdefault("x-content-type-options", "nosniff")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- reading requests -------------------------------------------------------------------------
def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media, *params = (p.strip() for p in content_type.split(";"))
    if media.lower() != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
                "utf-8", "utf8"):
            return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a field appears twice")
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scope(value: object) -> bool:
    if isinstance(value, str) or _is_int(value):
        return True
    return isinstance(value, list) and all(isinstance(v, str) or _is_int(v) for v in value)


_FIELD_TYPES: Final[Mapping[str, tuple[Callable[[object], bool], str]]] = {
    "scope": (_check_scope, "a string, a script key (integer) or a list of them"),
    "data": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "expires": (lambda v: v is None or isinstance(v, str),
                "a string such as '30d', '12h', '2027-01-31T00:00:00Z' or 'never', or null"),
    # A token holds at most MAX_IDENTIFIERS identifiers: a longer list is refused by
    # name here, before thousands of paths are escaped only to be refused as a scope.
    "bind_paths": (lambda v: isinstance(v, list) and len(v) <= MAX_IDENTIFIERS
                   and all(isinstance(p, str) for p in v),
                   f"a list of at most {MAX_IDENTIFIERS} script paths (strings, as the "
                   "script runner sees them)"),
    "bind_keys": (lambda v: isinstance(v, list) and len(v) <= MAX_IDENTIFIERS
                  and all(_is_int(k) for k in v),
                  f"a list of at most {MAX_IDENTIFIERS} script keys (integers)"),
}


def _validated(value: object, allowed: Iterable[str]) -> dict[str, Any]:
    """``value`` if it is an object of known, well-typed fields; else a 422 problem."""
    if not isinstance(value, dict):
        raise _Problem(422, "the body must be a JSON object")
    allowed = tuple(allowed)
    if any(name not in allowed for name in value):
        # The unknown names are not echoed: they could be anything, a secret included.
        raise _Problem(422, "the body holds an unknown field; the fields are: "
                            + ", ".join(allowed))
    for name, item in value.items():
        check, wanted = _FIELD_TYPES[name]
        if not check(item):
            raise _Problem(422, f"{name} must be {wanted}")
    return value


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _Problem(422, f"give the query parameter {name!r} once")
    return values[0] if values else None


def _flag(request: Request, name: str) -> bool:
    text = _single(request, name)
    if text is None:
        return False
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _Problem(422, f"{name} must be true or false")


def _same_user(a: UserKey, b: UserKey) -> bool:
    return type(a) is type(b) and a == b


def user_candidates(text: str) -> list[UserKey]:
    """The users a path or query ``text`` names: the string, and the integer when the
    text is decimal.  Raises ``InvalidArgument`` when it names no valid user."""
    candidates: list[UserKey] = []
    try:
        candidates.append(check_user(text))
    except InvalidArgument:
        pass
    if _DECIMAL.fullmatch(text):
        try:
            candidates.append(check_user(int(text)))
        except InvalidArgument:
            pass
    if not candidates:
        raise InvalidArgument("not a valid user: 1 to 256 characters, no control characters")
    return candidates


@dataclass(frozen=True, slots=True)
class _Call:
    """One authenticated request, handed to a route's worker."""

    request: Request
    identity: Identity
    body: dict[str, Any]


_Worker = Callable[["_AdminAPI", _Call], Response]
# A route's operations: method -> (worker, the body fields it takes or None for no body).
_Operations = Mapping[str, tuple[_Worker, "tuple[str, ...] | None"]]


# -- the application ------------------------------------------------------------------------
class _AdminAPI:
    """The routes' state and behaviour; ``create_app`` wires it into Starlette."""

    def __init__(self, security: Security, authenticate: Authenticator,
                 limiter: FailureLimiter, max_body: int) -> None:
        self.security = security
        self.authenticate = authenticate
        self.limiter = limiter
        self.max_body = max_body

    # -- authentication, shared with the page --------------------------------------------
    def retry_after(self, request: Request) -> int | None:
        """Whole seconds this client must wait before authenticating again, or ``None``."""
        wait = self.limiter.retry_after(client_address(request))
        return None if wait is None else max(1, math.ceil(wait))

    async def authenticated(self, request: Request, presented: Request | None = None
                            ) -> Identity:
        """The authenticator's ``Identity`` for ``presented`` (default ``request``).

        A refusal (``AuthenticationFailed`` or ``LoginError``) is counted against the
        client address of ``request``, put on the audit trail, and raised again.
        """
        try:
            identity = await run_in_threadpool(self.authenticate, presented or request)
        except (AuthenticationFailed, LoginError) as exc:
            address = client_address(request)
            self.limiter.failed(address)
            await run_in_threadpool(self._record_failure, address, exc)
            raise
        if not isinstance(identity, Identity):
            raise TypeError(f"the authenticator returned {type(identity).__name__}, "
                            "not an Identity")
        return identity

    # -- the steps every request takes --------------------------------------------------
    async def _identify(self, request: Request) -> Identity:
        wait = self.retry_after(request)
        if wait is not None:
            raise _Problem(429, "too many failed authentications from this address; "
                                "try again later", headers={"Retry-After": str(wait)})
        try:
            return await self.authenticated(request)
        except (AuthenticationFailed, LoginError) as exc:
            presented = exc.presented if isinstance(exc, AuthenticationFailed) else True
            challenge = (exc.challenge if isinstance(exc, AuthenticationFailed) else None) \
                or _challenge(presented)
            raise _Problem(401, str(exc), headers={"WWW-Authenticate": challenge}) from None

    def _record_failure(self, address: str, exc: Exception) -> None:
        try:
            self.security._record_authentication_failure(actor=f"address:{address}",
                                                        reason=type(exc).__name__)
        except RepositoryError as error:  # the 401 stands; the store is down
            log.warning("admin API: could not record a failed authentication: %s", error)

    async def _body(self, request: Request, allowed: Iterable[str]) -> dict[str, Any]:
        if not _is_json(request.headers.get("content-type")):
            raise _Problem(415, "send the body as application/json (UTF-8)")
        length = request.headers.get("content-length")
        if length is not None:
            if not _DIGITS.fullmatch(length.strip()):
                raise _Problem(400, "the Content-Length header is not a number")
            if int(length) > self.max_body:
                raise _Problem(413, f"the body is larger than {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise _Problem(413, f"the body is larger than {self.max_body} bytes")
            chunks.append(chunk)
        try:
            value = json.loads(b"".join(chunks).decode("utf-8"),
                               object_pairs_hook=_no_duplicates,
                               parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _Problem(422, "the body is not valid JSON (UTF-8, no duplicate fields)") \
                from None
        return _validated(value, allowed)

    def endpoint(self, operations: _Operations) -> Callable[[Request], Awaitable[Response]]:
        """One route's endpoint, dispatching on the method (``HEAD`` as ``GET``)."""

        async def run(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            worker, fields = operations[method]
            try:
                identity = await self._identify(request)
                data = {} if fields is None else await self._body(request, fields)
                return await run_in_threadpool(worker, self, _Call(request, identity, data))
            except _Problem as problem:
                return problem.response()
            except Exception as exc:  # every other error becomes a problem too
                return _problem_for(exc).response()

        return run

    # -- helpers ------------------------------------------------------------------------
    def _users(self, text: str, identity: Identity, what: str) -> list[UserKey]:
        """The users ``text`` names that ``identity`` may act for; ``PermissionDenied``
        when a non-admin names anyone else."""
        candidates = user_candidates(text)
        if identity.admin:
            return candidates
        own = [u for u in candidates if _same_user(u, identity.user)]
        if not own:
            raise PermissionDenied(f"only an admin can {what} another user's tokens")
        return own

    @staticmethod
    def _check_owner(identity: Identity, owner: UserKey | None) -> None:
        """Reading a token: an admin reads any, others only their own user's."""
        if not identity.admin and (owner is None or not _same_user(owner, identity.user)):
            raise PermissionDenied("the token belongs to another user")

    # -- routes -------------------------------------------------------------------------
    def list_tokens(self, call: _Call) -> Response:
        include_revoked = _flag(call.request, "include_revoked")
        text = _single(call.request, "user")
        session = call.identity.session(self.security)
        if text is None:
            tokens = session.list_auth_tokens(include_revoked=include_revoked)
        else:
            tokens = []
            for user in self._users(text, call.identity, "list"):
                tokens += session.list_auth_tokens(user=user, include_revoked=include_revoked)
            # Each list is newest first; a stable sort keeps that order within ties.
            tokens.sort(key=lambda t: t.created_at or datetime.min.replace(tzinfo=timezone.utc),
                        reverse=True)
        return JSONResponse({"tokens": [token_view(t) for t in tokens]})

    def create_token(self, call: _Call) -> Response:
        body = call.body
        if "scope" not in body:
            raise _Problem(422, "scope is required")
        options: dict[str, Any] = {"description": body.get("description", "")}
        if "expires" in body:
            options["expires"] = body["expires"]
        written = written_scope(body["scope"], body.get("bind_paths", ()),
                                body.get("bind_keys", ()))
        token = AuthToken(written.scope, body.get("data"), **options)
        string = call.identity.session(self.security).authorize_token(token)
        view = token_view(token)
        view["token"] = string
        if written.warnings:
            # Only when there is something to say: the usual answer stays the view
            # plus the token, as clients written against it expect.
            view["warnings"] = list(written.warnings)
        location = str(call.request.url_for("token", key=str(token.key)))
        return JSONResponse(view, status_code=201, headers={"Location": location})

    def show_token(self, call: _Call) -> Response:
        token = self.security.get_auth_token(call.request.path_params["key"])
        self._check_owner(call.identity, token.user)
        return JSONResponse(token_view(token))

    def update_token(self, call: _Call) -> Response:
        key = call.request.path_params["key"]
        session = call.identity.session(self.security)
        for attempt in range(3):
            token = self.security.get_auth_token(key)
            for name, value in call.body.items():
                setattr(token, name, value)  # checked as AuthToken checks them: 422
            try:
                session.update_auth_token(token)  # ownership and delegation limits: 403
            except ConcurrentUpdate:
                if attempt == 2:
                    raise
                continue  # someone changed the same field meanwhile: apply ours on top
            break
        return JSONResponse(token_view(token))

    def revoke_token(self, call: _Call) -> Response:
        call.identity.session(self.security).revoke_auth_token_by_key(
            call.request.path_params["key"]
        )
        return Response(status_code=204)

    def revoke_all(self, call: _Call) -> Response:
        text = call.request.path_params["user"]
        try:
            users = self._users(text, call.identity, "revoke")
        except PermissionDenied as exc:  # refused before the engine saw it: record it here
            self.security._record_event("revoke_all", exc, actor=_actor(call.identity),
                                       user=user_candidates(text)[0])
            raise
        actor = _actor(call.identity)
        revoked = sum(self.security._revoke_user(user, actor=actor) for user in users)
        return JSONResponse({"revoked": revoked})

    def audit(self, call: _Call) -> Response:
        text, token_key = _single(call.request, "user"), _single(call.request, "token")
        since_text, limit_text = _single(call.request, "since"), _single(call.request, "limit")
        since: datetime | None = None
        if since_text is not None:
            try:
                since = isoparse(since_text)
                if since.tzinfo is None:
                    since = since.replace(tzinfo=timezone.utc)
                since = since.astimezone(timezone.utc)
            except (ValueError, OverflowError):
                raise _Problem(422, "since must be an ISO 8601 time such as "
                                    "'2027-01-31T00:00:00Z'") from None
        limit = MAX_AUDIT_EVENTS
        if limit_text is not None:
            if not _DIGITS.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_AUDIT_EVENTS:
                raise _Problem(422, f"limit must be an integer from 1 to {MAX_AUDIT_EVENTS}")
            limit = int(limit_text)
        users: list[UserKey | None]
        if text is not None:
            users = list(self._users(text, call.identity, "read the audit trail of"))
        elif call.identity.admin:
            users = [None]
        else:  # a non-admin sees only events about its own user's tokens
            users = [call.identity.user]
        events: list[AuditEvent] = []
        for user in users:
            events += self.security.audit_events(user=user, token_key=token_key, since=since,
                                                 limit=limit)
        events.sort(key=lambda e: e.at, reverse=True)
        return JSONResponse({"events": [event_view(e) for e in events[:limit]]})


def _actor(identity: Identity) -> str:
    """The caller as the audit trail names it (as a ``Session`` would)."""
    if identity.principal is not None:
        return f"token:{identity.principal.token_key}"
    return f"user:{identity.user}" + (" (admin)" if identity.admin else "")


async def _not_routed(request: Request, exc: Exception) -> Response:
    """404 / 405 from the router, as problems."""
    assert isinstance(exc, HTTPException)
    detail = {404: "no such route; see /openapi.json",
              405: "the route does not take this method"}.get(exc.status_code, exc.detail)
    return _Problem(exc.status_code, detail, headers=exc.headers).response()


def create_app(security: Security, *, authenticate: Authenticator,
               max_body: int = DEFAULT_MAX_BODY,
               limiter: FailureLimiter | None = None) -> Starlette:
    """The admin API over ``security`` as an ASGI application.

    ``authenticate`` decides who calls (``DelegationTokenAuth``, ``JWTAuth``,
    ``SpatiumAuth`` or your own ``Authenticator``).  ``max_body`` caps request bodies
    (413 beyond); ``limiter`` counts failed authentications per client address (the
    default blocks an address for the rest of a minute after 20 failures).  The
    application needs no lifespan events; mount it anywhere (``Mount("/admin", app)``).
    Behind a reverse proxy, let the server set the client address from the proxy's
    headers (``uvicorn --proxy-headers``), or every client shares the proxy's limit.
    """
    if not isinstance(security, Security):
        raise ArgumentTypeError(f"expected a Security, not {type(security).__name__}")
    if not callable(authenticate):
        raise ArgumentTypeError("authenticate must be callable: request -> Identity")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
        raise InvalidArgument("max_body must be a positive number of bytes")
    if limiter is not None and not isinstance(limiter, FailureLimiter):
        raise ArgumentTypeError(f"limiter must be a FailureLimiter, not {type(limiter).__name__}")
    api = _AdminAPI(security, authenticate, limiter or FailureLimiter(), max_body)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(request.scope.get("root_path", "")))

    api_routes: dict[str, tuple[str | None, _Operations]] = {
        "/tokens": (None, {"GET": (_AdminAPI.list_tokens, None),
                           "POST": (_AdminAPI.create_token, _CREATE_FIELDS)}),
        "/tokens/{key}": ("token", {"GET": (_AdminAPI.show_token, None),
                                    "PATCH": (_AdminAPI.update_token, _UPDATE_FIELDS),
                                    "DELETE": (_AdminAPI.revoke_token, None)}),
        "/users/{user:path}/revoke-all": (None, {"POST": (_AdminAPI.revoke_all, None)}),
        "/audit": (None, {"GET": (_AdminAPI.audit, None)}),
    }
    routes = [Route(path, api.endpoint(operations), methods=list(operations), name=name)
              for path, (name, operations) in api_routes.items()]
    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    routes += page_routes(api, redact)
    return Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={HTTPException: _not_routed},
    )


# -- the OpenAPI document -------------------------------------------------------------------
def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str, *headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {_PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    if headers:
        response["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return response


def _json(description: str, schema: str, **extra: Any) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema)}}, **extra}


def _responses(ok: Mapping[str, Any], *errors: str) -> dict[str, Any]:
    """``ok`` plus references to the shared problem responses: 401, 429, 503 always."""
    shared = ("401", *errors, "429", "503")
    return {**ok, **{code: {"$ref": f"#/components/responses/{code}"} for code in shared},
            "default": {"$ref": "#/components/responses/default"}}


_NULLABLE_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_USER: Final = {"type": ["string", "integer"],
                "description": "A user: an integer or a string (1 to 256 characters)."}
_USER_TEXT: Final = {"type": "string", "minLength": 1, "maxLength": 256,
                     "pattern": r"^[^\u0000-\u001f\u007f-\u009f]+$"}
_KEY_PARAM: Final = {"name": "key", "in": "path", "required": True,
                     "description": "The token's key (16 characters of a-z and 2-7).",
                     "schema": {"type": "string"}}


def _fields(required: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "scope": {
                "description": "Identifiers separated by whitespace, an integer script "
                               "key (vfs:ikey?K), or a list of identifiers and keys.",
                "oneOf": [
                    {"type": "string"},
                    {"type": "integer"},
                    {"type": "array", "items": {"type": ["string", "integer"]}},
                ],
            },
            "data": {"type": ["string", "null"],
                     "description": "A payload for the token's users, at most 65,536 bytes "
                                    "of UTF-8."},
            "description": {"type": "string", "maxLength": 1024},
            "expires": {"type": ["string", "null"],
                        "description": "An ISO 8601 time, a duration such as '90m', "
                                       "'12h', '30d' or '2w' (from now), 'never', or null "
                                       "(never).  Omitted on creation: 30 days, and never "
                                       "later than the caller's own token."},
        },
    }
    if required:
        schema["required"] = ["scope"]
        schema["properties"] |= {
            "bind_paths": {
                "type": "array", "items": {"type": "string", "minLength": 1},
                "maxItems": MAX_IDENTIFIERS,
                "description": "Scripts the token is for, by plain path as the script "
                               "runner sees it ('/jobs/my job.py'): each becomes a ufs: "
                               "binding, escaped for you, added to the scope."},
            "bind_keys": {
                "type": "array", "items": {"type": "integer"},
                "maxItems": MAX_IDENTIFIERS,
                "description": "Scripts the token is for, by integer key: each becomes "
                               "vfs:ikey?K, added to the scope."},
        }
    return schema


def openapi_document(root_path: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API; ``root_path`` is where it is mounted."""
    token_routes = {
        "get": {
            "operationId": "listTokens",
            "summary": "List tokens, newest first",
            "description": "The caller's tokens; an admin may name any user.  A decimal "
                           "user also matches the integer user.",
            "parameters": [
                {"name": "user", "in": "query", "required": False, "schema": _USER_TEXT,
                 "description": "Whose tokens (default: the caller's)."},
                {"name": "include_revoked", "in": "query", "required": False,
                 "schema": {"type": "boolean", "default": False}},
            ],
            "responses": _responses({"200": _json("The tokens.", "TokenList")},
                                    "403", "422"),
        },
        "post": {
            "operationId": "createToken",
            "summary": "Authorize a new token for the caller",
            "description": "The answer carries the token string, this once only, and "
                           "warnings about a scope that is probably not what its writer "
                           "meant (a comma, a binding in capitals, a path with a space).  "
                           "A caller authenticated by a delegation token creates a child "
                           "of it, no wider than it.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("CreateToken")}}},
            "responses": _responses(
                {"201": _json("The token, with its string.", "NewToken", headers={
                    "Location": {"description": "The token's URL.",
                                 "schema": {"type": "string"}}}, links={
                    name: {"operationId": operation,
                           "parameters": {"key": "$response.body#/key"}}
                    for name, operation in (("ShowToken", "showToken"),
                                            ("UpdateToken", "updateToken"),
                                            ("RevokeToken", "revokeToken"))})},
                "400", "403", "409", "413", "415", "422"),
        },
    }
    one_token = {
        "parameters": [_KEY_PARAM],
        "get": {
            "operationId": "showToken",
            "summary": "Show one token",
            "responses": _responses({"200": _json("The token.", "TokenView")},
                                    "403", "404"),
        },
        "patch": {
            "operationId": "updateToken",
            "summary": "Change a token's scope, data, description or expiry",
            "description": "Only the fields given change.  A caller authenticated by a "
                           "delegation token cannot make scope or expiry wider than its "
                           "own.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("UpdateToken")}}},
            "responses": _responses({"200": _json("The updated token.", "TokenView")},
                                    "400", "403", "404", "409", "413", "415", "422"),
        },
        "delete": {
            "operationId": "revokeToken",
            "summary": "Revoke a token and every token derived from it (idempotent)",
            "description": "Revoking is not deleting: the token stays readable, with "
                           "revoked_at set, and can no longer log in or be changed.",
            "responses": _responses({"204": {"description": "Revoked."}},
                                    "403", "404", "409"),
        },
    }
    revoke_all = {
        "post": {
            "operationId": "revokeAll",
            "summary": "Revoke every token of a user",
            "description": "And, transitively, the tokens derived from them.  A decimal "
                           "user also revokes the integer user's tokens.",
            "parameters": [{"name": "user", "in": "path", "required": True,
                            "schema": _USER_TEXT}],
            "responses": _responses({"200": _json("How many were revoked.", "Revoked")},
                                    "403", "422"),
        },
    }
    audit = {
        "get": {
            "operationId": "readAudit",
            "summary": "Read the audit trail, newest first",
            "description": "A non-admin sees only events about its own user's tokens.",
            "parameters": [
                {"name": "user", "in": "query", "required": False, "schema": _USER_TEXT},
                {"name": "token", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "A token key."},
                {"name": "since", "in": "query", "required": False,
                 "schema": {"type": "string", "format": "date-time"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_EVENTS}},
            ],
            "responses": _responses({"200": _json("The events.", "AuditList")},
                                    "403", "422"),
        },
    }
    openapi = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI document.",
                                  "content": {"application/json": {
                                      "schema": {"type": "object"}}}}},
        },
    }
    token_view = {
        "type": "object",
        "required": ["key", "user", "scope", "scopes", "description", "data", "expires",
                     "created_at", "updated_at", "revoked_at", "last_used_at", "use_count",
                     "parent_key"],
        "properties": {
            "key": {"type": "string"},
            "user": _USER,
            "scope": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
            "data": {"type": ["string", "null"]},
            "expires": {**_NULLABLE_TIME, "description": "null: never expires."},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "revoked_at": _NULLABLE_TIME,
            "last_used_at": _NULLABLE_TIME,
            "use_count": {"type": "integer", "minimum": 0},
            "parent_key": {"type": ["string", "null"]},
        },
    }
    problem_codes = {
        "400": "The request is malformed (a Content-Length that is not a number).",
        "401": "No or bad credentials.",
        "403": "The caller may not do that (another user's token, or wider than its own "
               "token).",
        "404": "No token with that key.",
        "409": "The token is revoked, or was changed concurrently.",
        "413": "The body is too large.",
        "415": "The body is not application/json.",
        "422": "The body or a parameter is invalid.",
        "429": "Too many failed authentications from this address.",
        "503": "The token store or the identity provider cannot be reached.",
        "default": "Any other error.",
    }
    responses: dict[str, Any] = {code: _problem(text) for code, text in problem_codes.items()}
    responses["401"] = _problem(problem_codes["401"], "WWW-Authenticate")
    responses["429"] = _problem(problem_codes["429"], "Retry-After")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authtoken admin API",
            "version": "1",
            "description": "Manage delegation tokens: list, authorize, show, update, "
                           "revoke, revoke all of a user's, and read the audit trail.  "
                           "Errors are RFC 9457 problems (application/problem+json) and "
                           "never carry a token string.",
        },
        "servers": [{"url": root_path or "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/tokens": token_routes,
            "/tokens/{key}": one_token,
            "/users/{user}/revoke-all": revoke_all,
            "/audit": audit,
            "/openapi.json": openapi,
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "What the application's authenticator accepts: "
                                          "an atk_ delegation token, an OIDC access token "
                                          "or a Spatium permission token."},
            },
            "headers": {
                "WWW-Authenticate": {"description": "The Bearer challenge.",
                                     "schema": {"type": "string"}},
                "Retry-After": {"description": "Seconds to wait.",
                                "schema": {"type": "integer", "minimum": 1}},
            },
            "responses": responses,
            "schemas": {
                "TokenView": token_view,
                "NewToken": {"allOf": [_ref("TokenView"), {
                    "type": "object", "required": ["token"],
                    "properties": {
                        "token": {
                            "type": "string", "pattern": "^atk_",
                            "description": "The token string: shown this once, never "
                                           "again.",
                        },
                        "warnings": {
                            "type": "array", "items": {"type": "string"},
                            "description": "What the scope, as written, does that its "
                                           "writer probably did not mean; present only "
                                           "when there is something to say.  The token "
                                           "was made as written.",
                        },
                    },
                }]},
                "TokenList": {"type": "object", "required": ["tokens"], "properties": {
                    "tokens": {"type": "array", "items": _ref("TokenView")}}},
                "CreateToken": _fields(required=True),
                "UpdateToken": _fields(required=False),
                "Revoked": {"type": "object", "required": ["revoked"], "properties": {
                    "revoked": {"type": "integer", "minimum": 0}}},
                "Script": {"type": "object", "required": ["key", "path"], "properties": {
                    "key": {"type": ["integer", "null"]},
                    "path": {"type": ["string", "null"]}}},
                "AuditEvent": {
                    "type": "object",
                    "required": ["at", "actor", "action", "token_key", "script", "outcome",
                                 "reason"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "actor": {"type": ["string", "null"]},
                        "action": {"enum": ["authorize", "update", "revoke", "revoke_all",
                                            "login", "authenticate"]},
                        "token_key": {"type": ["string", "null"]},
                        "script": {"oneOf": [_ref("Script"), {"type": "null"}]},
                        "outcome": {"enum": ["ok", "refused"]},
                        "reason": {"type": ["string", "null"]},
                        "count": {"type": "integer", "minimum": 2, "description":
                                  "only on a summary event: how many like login "
                                  "attempts of one batch it stands for"},
                    },
                },
                "AuditList": {"type": "object", "required": ["events"], "properties": {
                    "events": {"type": "array", "items": _ref("AuditEvent")}}},
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string", "format": "uri-reference"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    }
