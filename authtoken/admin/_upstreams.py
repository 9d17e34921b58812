"""The admin API's upstream routes, served when ``create_app`` is given a broker.

- ``GET /upstreams[?user=U]`` -> ``{"links": {"space": "ok", ...}}``: the state of
  each upstream account the user linked (``authtoken.broker``), ``ok`` or
  ``needs_relink``.  Never a token: the broker keeps them sealed and this module never
  asks for one.
- ``DELETE /upstreams/{name}[?user=U]`` -> 204: forget the link and its tokens
  (``Broker.unlink``); idempotent, so a link that is not there is a 204 too.

Both act for the caller's own user unless ``user`` names another, which needs an
admin (403 otherwise) -- as ``GET /tokens`` and revoke-all decide it.  A decimal
``user`` also names the integer user, as everywhere in the API: an admin's
``?user=42`` lists the links of ``"42"`` and ``42`` together (a name both hold shows
``needs_relink`` if either does) and a ``DELETE`` forgets both.

The steps of every request (rate limit, authentication, problems) are ``_api``'s; this
module adds only what the two routes do.  An unlink is written to the log of
``authtoken.admin`` (the link's name, the caller's kind, not the user) but is not an
audit event: the audit trail has no action for it yet.  ``authtoken.broker`` is imported
only for type checking, so the ``admin`` extra alone still serves the token routes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import PermissionDenied
from .._repository import LINK_STATES
from .._token import UserKey, same_user
from ._api import _Call, _named_users, _Operation, _Routes, _single, _Worker
from ._auth import Identity
from ._context import AdminContext

if TYPE_CHECKING:
    from ..broker import Broker

__all__ = ["upstream_openapi", "upstream_routes"]

log = logging.getLogger("authtoken.admin")

_NAME_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _users(request: Request, identity: Identity, refusal: str) -> list[UserKey]:
    """Whose links the request means: the caller's own, or those ``?user=`` names --
    another user's only for an admin (``PermissionDenied`` saying ``refusal``)."""
    text = _single(request, "user")
    if text is None:
        return [identity.user]
    users = _named_users(text, identity)
    if not identity.admin and not any(same_user(u, identity.user) for u in users):
        raise PermissionDenied(refusal)
    return users


class _Upstreams:
    """What the two routes do, over one broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def list_links(self, call: _Call) -> Response:
        links: dict[str, str] = {}
        for user in _users(call.request, call.identity,
                           "only an admin can see another user's upstream links"):
            for name, state in self.broker.links(user).items():
                if links.get(name) != "needs_relink":  # two users of one decimal text:
                    links[name] = state                  # the worse state shows
        return JSONResponse({"links": dict(sorted(links.items()))})

    def unlink(self, call: _Call) -> Response:
        name = call.request.path_params["name"]
        removed = False
        for user in _users(call.request, call.identity,
                           "only an admin can unlink another user's upstream account"):
            removed |= self.broker.unlink(user, name)  # checks the name: 422
        if removed:
            log.info("admin: upstream link %r removed by %s", name,
                     "an admin" if call.identity.admin else "its owner")
        return Response(status_code=204)


def _worker(method: Callable[[_Call], Response]) -> _Worker:
    return lambda _routes, call: method(call)


def upstream_routes(context: AdminContext, broker: Broker) -> list[Route]:
    """The upstream routes over ``context`` and ``broker``, to add to the application."""
    routes, upstreams = _Routes(context), _Upstreams(broker)
    table = {
        "/upstreams": {"GET": _Operation(_worker(upstreams.list_links))},
        "/upstreams/{name}": {"DELETE": _Operation(_worker(upstreams.unlink))},
    }
    return [Route(path, routes.endpoint(operations), methods=list(operations))
            for path, operations in table.items()]


def upstream_openapi(responses: Callable[..., dict[str, Any]], user: dict[str, Any],
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI paths and schemas of the upstream routes; ``responses`` adds the
    shared problem responses, ``user`` is the schema of a user in a query."""
    query_user = {"name": "user", "in": "query", "required": False, "schema": user,
                  "description": "Whose links (default: the caller's); another user's "
                                 "needs an admin."}
    paths = {
        "/upstreams": {"get": {
            "operationId": "listUpstreamLinks",
            "summary": "The state of a user's linked upstream accounts",
            "description": "Each link's name and state: ok, or needs_relink when the "
                           "upstream refused a refresh and the owner must link the "
                           "account again.  Never a token.",
            "parameters": [query_user],
            "responses": responses({"200": {
                "description": "The links.",
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/UpstreamLinks"}}}}}, "403", "422"),
        }},
        "/upstreams/{name}": {"delete": {
            "operationId": "unlinkUpstream",
            "summary": "Forget a linked upstream account and its tokens (idempotent)",
            "description": "Jobs of the user can no longer reach the upstream through "
                           "this link until its owner links the account again.",
            "parameters": [
                {"name": "name", "in": "path", "required": True,
                 "description": "The link's name (also the scope upstream:<name>).",
                 "schema": {"type": "string", "pattern": _NAME_PATTERN}},
                query_user,
            ],
            "responses": responses({"204": {"description": "Forgotten, or there was "
                                                           "no such link."}},
                                   "403", "422"),
        }},
    }
    schemas = {"UpstreamLinks": {
        "type": "object", "required": ["links"],
        "properties": {"links": {
            "type": "object", "description": "Link name -> state.",
            "additionalProperties": {"enum": list(LINK_STATES)}}}}}
    return paths, schemas
