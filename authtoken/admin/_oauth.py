"""Token introspection (RFC 7662) and revocation (RFC 7009): ``POST /introspect`` and
``POST /revoke``, for services that check our tokens without Python.

Theory of operation
-------------------
A service written in Go or Java that receives ``Authorization: Bearer atk_…`` cannot
call ``Security.login_by_auth_token``; it asks the admin application instead, as it
would ask any OAuth 2.0 authorization server.  Both routes take the steps of every JSON
route (``_api``), with a form for a body:

1. **Rate limit**, then **authenticate** the caller with the application's
   ``Authenticator`` (429 / 401 with ``WWW-Authenticate``, counted and audited by
   ``AdminContext``).  The service calls with a credential of its own; the token it asks
   about travels in the body, never in a header or the query string.
2. **Read the form** (``read_form``): ``application/x-www-form-urlencoded`` in UTF-8
   or 415, at most ``max_body`` bytes or 413, a known field given twice is a 422.
   Fields the route does not know are ignored (RFC 6749 §3.1), as is
   ``token_type_hint``: there is one kind of token here.  The query string is never
   read: a token there has already landed in an access log.
3. **Act**, in a worker thread.

``/introspect`` *is a login* by the script the form names (``script_key``,
``script_path``, ``script_digest``; blank fields name nothing): counted, audited and
spending a use of a token with ``max_uses``, so that a service that introspects every
request holds the token to its limits exactly as a Python service would.  Every refusal
of the login -- and a missing, empty or over-long ``token`` -- is ``{"active": false}``
and nothing more (RFC 7662 §2.2), so the answer says nothing about why.  A store that
cannot be reached is *not* a refusal: it is a 503 problem, so that no service mistakes
an outage for a revocation (nor, caching, a revocation for an outage).

``/revoke`` revokes the token and, as every revocation does, those derived from it,
through a ``Session`` for the caller: a non-admin revokes only its own user's tokens
(403 and nothing changes otherwise), and the engine puts it on the audit trail.  A
string that is no token of ours, or is unknown, is a 200 all the same (RFC 7009 §2.2):
the client cannot do anything better about it.

Every answer carries ``Cache-Control: no-store`` and ``Pragma: no-cache`` (RFC 7662
§2.2 asks for them); none carries the token asked about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import InvalidToken, LoginError, TokenNotFound
from .._scopes import Script
from .._token import Principal
from ._auth import Identity
from ._checks import script_from
from ._context import AdminContext
from ._problems import Problem, problem_for

__all__ = [
    "FORM",
    "INTROSPECT_FIELDS",
    "MAX_TOKEN_FIELD",
    "REVOKE_FIELDS",
    "introspection",
    "oauth_routes",
    "read_form",
]

FORM: Final = "application/x-www-form-urlencoded"
#: The form fields ``/introspect`` reads; any other field is ignored.
INTROSPECT_FIELDS: Final = ("token", "token_type_hint", "script_key", "script_path",
                            "script_digest")
#: The form fields ``/revoke`` reads; any other field is ignored.
REVOKE_FIELDS: Final = ("token", "token_type_hint")
#: A ``token`` longer than this is no token of ours: inactive without a look.
MAX_TOKEN_FIELD: Final = 4096
_MAX_FIELDS: Final = 256
_DIGITS: Final = re.compile(r"[0-9]{1,20}\Z", re.ASCII)
# Longer than any key that fits an identifier; int() of far longer text is slow.
_SCRIPT_KEY: Final = re.compile(r"-?[0-9]{1,600}\Z", re.ASCII)
_NO_CACHE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_INACTIVE: Final = {"active": False}


def _is_form(content_type: str | None) -> bool:
    """Whether ``content_type`` is a URL-encoded form in UTF-8 (no charset: UTF-8)."""
    if content_type is None:
        return False
    media, *params = (p.strip() for p in content_type.split(";"))
    if media.lower() != FORM:
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
                "utf-8", "utf8"):
            return False
    return True


async def read_form(request: Request, fields: Iterable[str], max_body: int
                    ) -> dict[str, str]:
    """The request's form: the values of ``fields`` it holds, others ignored.

    A problem for a body that is not ``application/x-www-form-urlencoded`` in UTF-8
    (415), a ``Content-Length`` that is no number (400), a body over ``max_body`` bytes
    -- by its ``Content-Length`` before reading, and counted while reading (413) -- and
    a form that does not decode or gives one of ``fields`` twice (422).  No detail
    echoes what was sent.
    """
    if not _is_form(request.headers.get("content-type")):
        raise Problem(415, f"send the form as {FORM} (UTF-8), as RFC 7662 and RFC 7009 "
                           "ask: token=<the token>")
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
    try:
        pairs = parse_qsl(b"".join(chunks).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=_MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Problem(422, f"the form could not be read: percent-encoded UTF-8, at most "
                           f"{_MAX_FIELDS} fields") from None
    known = frozenset(fields)
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            continue  # RFC 6749 §3.1: unknown parameters are ignored (and never echoed)
        if name in form:
            raise Problem(422, f"the form gives the field {name!r} twice; give it once")
        form[name] = value
    return form


def _script(form: Mapping[str, str]) -> Script | None:
    """The script an introspection names; a blank field names nothing.  A 422 problem
    for a field that does not read (never echoing it)."""
    key, path, digest = (form.get(name) or None
                         for name in ("script_key", "script_path", "script_digest"))
    if key is not None and not _SCRIPT_KEY.fullmatch(key):
        raise Problem(422, "script_key must be an integer, such as 42")
    return script_from(key, path, digest)


def _seconds(moment: datetime) -> int:
    """``moment`` as whole seconds since the epoch (RFC 7519 NumericDate), rounded down."""
    return int(moment.timestamp())


def introspection(principal: Principal, created_at: datetime | None) -> dict[str, Any]:
    """The RFC 7662 answer for a login that passed: ``principal`` and the token's
    ``created_at`` (its ``iat``).  ``exp`` is left out for a token that never expires."""
    answer: dict[str, Any] = {
        "active": True,
        "sub": str(principal.user),
        "scope": " ".join(principal.scopes),
    }
    if principal.expires is not None:
        answer["exp"] = _seconds(principal.expires)
    if created_at is not None:
        answer["iat"] = _seconds(created_at)
    answer |= {
        "token_type": "atk",
        "authtoken_key": principal.token_key,
        "run_id": principal.run_id,
        "chain": list(principal.chain),
    }
    return answer


def _no_cache(response: Response) -> Response:
    """``response`` with ``Cache-Control: no-store`` and ``Pragma: no-cache``."""
    response.headers.update(_NO_CACHE)
    return response


class _OAuthRoutes:
    """``/introspect`` and ``/revoke`` over one ``AdminContext``."""

    def __init__(self, context: AdminContext) -> None:
        self.context = context
        self.security = context.security

    async def _caller(self, request: Request) -> Identity:
        wait = self.context.retry_after(request)
        if wait is not None:
            raise Problem(429, "too many failed authentications from this address; "
                               "try again later", headers={"Retry-After": str(wait)})
        return await self.context.authenticated(request)

    async def introspect(self, request: Request) -> Response:
        try:
            await self._caller(request)
            form = await read_form(request, INTROSPECT_FIELDS, self.context.max_body)
            script = _script(form)
            answer = await run_in_threadpool(self._introspect, form.get("token", ""),
                                             script)
        except Problem as problem:
            return _no_cache(problem.response())
        except Exception as exc:  # a store that cannot be reached above all: a 503
            return _no_cache(problem_for(exc).response())
        return _no_cache(JSONResponse(answer))

    def _introspect(self, token: str, script: Script | None) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_FIELD:
            return dict(_INACTIVE)
        try:
            principal = self.security.login_by_auth_token(token, script=script)
        except LoginError:
            return dict(_INACTIVE)
        try:
            created_at = self.security.get_auth_token(principal.token_key).created_at
        except TokenNotFound:  # pruned between the two reads: it is no more
            return dict(_INACTIVE)
        return introspection(principal, created_at)

    async def revoke(self, request: Request) -> Response:
        try:
            identity = await self._caller(request)
            form = await read_form(request, REVOKE_FIELDS, self.context.max_body)
            if "token" not in form:
                raise Problem(422, "the form needs the field 'token': the token to revoke")
            await run_in_threadpool(self._revoke, identity, form["token"])
        except Problem as problem:
            return _no_cache(problem.response())
        except Exception as exc:  # 403 for another user's token, 503 for an outage
            return _no_cache(problem_for(exc).response())
        return _no_cache(Response(status_code=200))

    def _revoke(self, identity: Identity, token: str) -> None:
        if not token or len(token) > MAX_TOKEN_FIELD:
            return
        try:
            identity.session(self.security).revoke_auth_token(token)
        except InvalidToken:
            pass  # unknown or no token of ours: RFC 7009 §2.2 answers 200 all the same


def oauth_routes(context: AdminContext) -> list[Route]:
    """``POST /introspect`` and ``POST /revoke`` over ``context``."""
    routes = _OAuthRoutes(context)
    return [Route("/introspect", routes.introspect, methods=["POST"], name="introspect"),
            Route("/revoke", routes.revoke, methods=["POST"], name="revoke")]
