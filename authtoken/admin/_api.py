"""The admin API's JSON routes: ``/tokens``, ``/tokens/{key}``, ``/tokens/{key}/renew``,
``/tokens/{key}/check`` (why a login would be refused), revoke-all, ``/audit``.

Theory of operation
-------------------
Every request goes through the same steps, each of which can end it with a
``Problem`` (``application/problem+json``, see ``_problems``):

1. **Rate limit.**  A client address that failed authentication more than ``limit``
   times in the last ``window`` seconds gets 429 with ``Retry-After`` -- before its
   credentials are even looked at, so guessing stops paying.  Other addresses are
   unaffected.  The per-address record is bounded (``FailureLimiter``).
2. **Authenticate.**  The application's ``Authenticator`` turns the request into an
   ``Identity`` (``AdminContext.authenticated``, in a worker thread: it may block), or
   the request ends with 401 and ``WWW-Authenticate``; the failure is counted for the
   address and recorded in the audit trail.
3. **Read the body** (``POST``/``PATCH`` only): ``application/json`` or 415; at most
   ``max_body`` bytes -- by ``Content-Length`` before reading, and counted while
   reading for chunked bodies -- or 413; a JSON object of known, well-typed fields or
   422.  Strangers' bodies are never read.  A renewal's body is optional: an empty
   one, of any type or none, is taken as ``{}``.
4. **Act** through a fresh ``Session`` for the caller (``Identity.session``), in a worker
   thread, so every rule of sessions -- ownership, no escalation through delegation,
   the audit trail -- is the engine's, not re-implemented here.  An error maps to its
   status through the one table of ``_problems``, which the token page uses too.

A user in a path or query is text; a decimal text also names the integer user, so
``?user=42`` lists the tokens of both ``"42"`` and ``42`` (newest first) and
``/users/42/revoke-all`` revokes both (``user_candidates``).  A non-admin may only name
itself.

No response carries a token string except the one ``POST /tokens`` answer that creates
it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from dateutil.parser import isoparse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import ConcurrentUpdate, InvalidArgument
from .._jobs import check_run_id
from .._repository import AuditEvent
from .._scopes import MAX_IDENTIFIERS
from .._token import AuthToken, UserKey, check_user, same_user
from .._views import event_view, token_view
from ._auth import Identity
from ._bindings import written_scope
from ._checks import check_key, script_from
from ._context import AdminContext
from ._problems import Problem, problem_for

__all__ = ["MAX_AUDIT_EVENTS", "api_routes", "user_candidates"]

#: How many events ``GET /audit`` returns at most.
MAX_AUDIT_EVENTS: Final = 1000
_DECIMAL = re.compile(r"-?[0-9]{1,19}\Z", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,20}\Z", re.ASCII)
_UPDATE_FIELDS: Final = ("scope", "data", "description", "expires", "max_uses",
                         "max_lifetime")
_CREATE_FIELDS: Final = (*_UPDATE_FIELDS, "bind_paths", "bind_keys")
_RENEW_FIELDS: Final = ("by",)
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


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
    # Whole numbers only: JSON's 5.0 and true are not counts.  The range is the
    # engine's to check (422 as an InvalidArgument).
    "max_uses": (lambda v: v is None or _is_int(v),
                 "a whole number from 1 up, or null for no limit"),
    "max_lifetime": (lambda v: v is None or isinstance(v, str),
                     "a duration such as '90d', or null for a token that cannot be renewed"),
    "by": (lambda v: v is None or isinstance(v, str),
           "a duration such as '7d', or null for the token's first lifetime"),
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
        raise Problem(422, "the body must be a JSON object")
    allowed = tuple(allowed)
    if any(name not in allowed for name in value):
        # The unknown names are not echoed: they could be anything, a secret included.
        raise Problem(422, "the body holds an unknown field; the fields are: "
                           + ", ".join(allowed))
    for name, item in value.items():
        check, wanted = _FIELD_TYPES[name]
        if not check(item):
            raise Problem(422, f"{name} must be {wanted}")
    return value


async def _json_body(request: Request, allowed: Iterable[str], max_body: int, *,
                     optional: bool = False) -> dict[str, Any]:
    """The request's body: a JSON object of the ``allowed`` fields, or a 400, 413, 415
    or 422 problem.  An ``optional`` body may be empty (``{}``), whatever its type."""
    if not _is_json(request.headers.get("content-type")) and not optional:
        raise Problem(415, "send the body as application/json (UTF-8)")
    length = request.headers.get("content-length")
    if length is not None:
        if not _DIGITS.fullmatch(length.strip()):
            raise Problem(400, "the Content-Length header is not a number")
        if int(length) > max_body:
            raise Problem(413, f"the body is larger than {max_body} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise Problem(413, f"the body is larger than {max_body} bytes")
        chunks.append(chunk)
    if optional and size == 0:
        return {}
    if not _is_json(request.headers.get("content-type")):
        raise Problem(415, "send the body as application/json (UTF-8)")
    try:
        value = json.loads(b"".join(chunks).decode("utf-8"),
                           object_pairs_hook=_no_duplicates,
                           parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Problem(422, "the body is not valid JSON (UTF-8, no duplicate fields)") \
            from None
    return _validated(value, allowed)


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise Problem(422, f"give the query parameter {name!r} once")
    return values[0] if values else None


def _flag(request: Request, name: str) -> bool:
    text = _single(request, name)
    if text is None:
        return False
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise Problem(422, f"{name} must be true or false")


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


def _named_users(text: str, identity: Identity) -> list[UserKey]:
    """The users a path or query ``text`` names, as ``identity`` means it.

    An admin means every user the text can name (``"42"`` and ``42``); anyone else
    means itself when the text can name it, and otherwise the first user the text names
    -- which the engine then refuses.  Whether the caller may act for a user is never
    decided here: the caller's ``Session`` decides it.
    """
    candidates = user_candidates(text)
    if identity.admin:
        return candidates
    return [u for u in candidates if same_user(u, identity.user)] or candidates[:1]


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        since = isoparse(text)
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return since.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise Problem(422, "since must be an ISO 8601 time such as "
                           "'2027-01-31T00:00:00Z'") from None


def _run_id(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return check_run_id(text)
    except InvalidArgument:
        # check_run_id's message is safe, but says nothing of a query: say it here.
        raise Problem(422, "run_id must be a run's id: 1 to 200 characters, no control "
                           "characters") from None


def _limit(text: str | None) -> int:
    if text is None:
        return MAX_AUDIT_EVENTS
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_AUDIT_EVENTS:
        raise Problem(422, f"limit must be an integer from 1 to {MAX_AUDIT_EVENTS}")
    return int(text)


# -- the routes -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Call:
    """One authenticated request, handed to a route's worker."""

    request: Request
    identity: Identity
    body: dict[str, Any]


_Worker = Callable[["_Routes", _Call], Response]


@dataclass(frozen=True, slots=True)
class _Operation:
    """What one method of a route does: its ``worker``, the body ``fields`` it takes
    (``None``: no body is read) and whether the body may be left out (``optional``)."""

    worker: _Worker
    fields: tuple[str, ...] | None = None
    optional: bool = False


_Operations = Mapping[str, _Operation]


class _Routes:
    """The JSON routes' behaviour over one ``AdminContext``."""

    def __init__(self, context: AdminContext) -> None:
        self.context = context
        self.security = context.security

    async def _identify(self, request: Request) -> Identity:
        wait = self.context.retry_after(request)
        if wait is not None:
            raise Problem(429, "too many failed authentications from this address; "
                               "try again later", headers={"Retry-After": str(wait)})
        return await self.context.authenticated(request)

    def endpoint(self, operations: _Operations) -> Callable[[Request], Awaitable[Response]]:
        """One route's endpoint, dispatching on the method (``HEAD`` as ``GET``)."""

        async def run(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            operation = operations[method]
            try:
                identity = await self._identify(request)
                data = {} if operation.fields is None else await _json_body(
                    request, operation.fields, self.context.max_body,
                    optional=operation.optional)
                return await run_in_threadpool(operation.worker, self,
                                               _Call(request, identity, data))
            except Problem as problem:
                return problem.response()
            except Exception as exc:  # every other error becomes a problem too
                return problem_for(exc).response()

        return run

    # -- routes -------------------------------------------------------------------------
    def list_tokens(self, call: _Call) -> Response:
        include_revoked = _flag(call.request, "include_revoked")
        text = _single(call.request, "user")
        run_id = _run_id(_single(call.request, "run_id"))
        session = call.identity.session(self.security)
        if text is None:
            tokens = session.list_auth_tokens(include_revoked=include_revoked, run_id=run_id)
        else:
            tokens = []
            for user in _named_users(text, call.identity):
                tokens += session.list_auth_tokens(user=user, include_revoked=include_revoked,
                                                   run_id=run_id)
            # Each list is newest first; a stable sort keeps that order within ties.
            tokens.sort(key=lambda t: t.created_at or datetime.min.replace(tzinfo=timezone.utc),
                        reverse=True)
        return JSONResponse({"tokens": [token_view(t) for t in tokens]})

    def create_token(self, call: _Call) -> Response:
        body = call.body
        if "scope" not in body:
            raise Problem(422, "scope is required")
        options: dict[str, Any] = {"description": body.get("description", ""),
                                   "max_uses": body.get("max_uses"),
                                   "max_lifetime": body.get("max_lifetime")}
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
        session = call.identity.session(self.security)
        return JSONResponse(token_view(session.get_auth_token(call.request.path_params["key"])))

    def update_token(self, call: _Call) -> Response:
        key = call.request.path_params["key"]
        session = call.identity.session(self.security)
        for attempt in range(3):
            # Read as the engine stores it, not through the session: whether the caller
            # may change the token is for update_auth_token to decide -- and to put on
            # the audit trail when it refuses, as a refused read would not be.
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

    def renew_token(self, call: _Call) -> Response:
        key = call.request.path_params["key"]
        session = call.identity.session(self.security)
        # Through the session: a caller renews its own user's tokens only, and a caller
        # authenticated by a token only that token and those derived from it.
        session.renew_auth_token_by_key(key, by=call.body.get("by"))
        return JSONResponse(token_view(session.get_auth_token(key)))

    def revoke_token(self, call: _Call) -> Response:
        call.identity.session(self.security).revoke_auth_token_by_key(
            call.request.path_params["key"]
        )
        return Response(status_code=204)

    def check_token(self, call: _Call) -> Response:
        """What a login with the token by the script the query names would get now,
        secret aside; through the session, so another user's token is a 403."""
        key = check_key(call.request.path_params["key"])
        script = script_from(_single(call.request, "script_key"),
                             _single(call.request, "script_path"),
                             _single(call.request, "script_digest"))
        check = call.identity.session(self.security).explain_login(key, script=script)
        return JSONResponse({"ok": check.ok, "reason": check.reason,
                             "message": check.message})

    def revoke_all(self, call: _Call) -> Response:
        session = call.identity.session(self.security)
        users = _named_users(call.request.path_params["user"], call.identity)
        return JSONResponse({"revoked": sum(session.revoke_user_tokens(u) for u in users)})

    def audit(self, call: _Call) -> Response:
        text, token_key = _single(call.request, "user"), _single(call.request, "token")
        since = _since(_single(call.request, "since"))
        limit = _limit(_single(call.request, "limit"))
        session = call.identity.session(self.security)
        # The engine decides who may read whose events: a non-admin, only its own.
        users: list[UserKey | None] = (
            [None] if text is None else list(_named_users(text, call.identity))
        )
        events: list[AuditEvent] = []
        for user in users:
            events += session.audit_events(user=user, token_key=token_key, since=since,
                                           limit=limit)
        events.sort(key=lambda e: e.at, reverse=True)
        return JSONResponse({"events": [event_view(e) for e in events[:limit]]})


def api_routes(context: AdminContext) -> list[Route]:
    """The JSON routes over ``context``, to add to the admin application."""
    routes = _Routes(context)
    table: dict[str, tuple[str | None, _Operations]] = {
        "/tokens": (None, {"GET": _Operation(_Routes.list_tokens),
                           "POST": _Operation(_Routes.create_token, _CREATE_FIELDS)}),
        "/tokens/{key}": ("token", {"GET": _Operation(_Routes.show_token),
                                    "PATCH": _Operation(_Routes.update_token, _UPDATE_FIELDS),
                                    "DELETE": _Operation(_Routes.revoke_token)}),
        "/tokens/{key}/renew": (None, {"POST": _Operation(_Routes.renew_token, _RENEW_FIELDS,
                                                          optional=True)}),
        "/tokens/{key}/check": (None, {"GET": _Operation(_Routes.check_token)}),
        "/users/{user:path}/revoke-all": (None, {"POST": _Operation(_Routes.revoke_all)}),
        "/audit": (None, {"GET": _Operation(_Routes.audit)}),
    }
    return [Route(path, routes.endpoint(operations), methods=list(operations), name=name)
            for path, (name, operations) in table.items()]
