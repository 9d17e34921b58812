"""The admin application, assembled: ``create_app``.

One Starlette application serves both faces over one ``AdminContext`` (``_context``):
the JSON API (``_api``, and ``_oauth``'s RFC 7662 ``/introspect`` and RFC 7009
``/revoke``, all described by ``_openapi`` at ``GET /openapi.json``) and the HTML
token page under ``/ui`` (``_page``).  Both end a failed request with a
``Problem`` and map an engine error to its status through the one table of
``_problems``.  This module only wires them together and adds what every answer
carries: ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``, and
problems for the router's own 404 and 405.

Modules below this one never import it: ``_auth``, ``_limiter`` and ``_bindings`` at
the bottom, then ``_problems`` and ``_context``, then the faces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import ArgumentTypeError, InvalidArgument
from .._security import Security
from ._api import api_routes
from ._auth import Authenticator
from ._context import AdminContext
from ._limiter import FailureLimiter
from ._oauth import oauth_routes
from ._openapi import openapi_document
from ._page import TokenPages
from ._page_admin import AdminPages
from ._page_sso import OIDCSignIn, SSOPages, link_states
from ._pagekit import PageKit
from ._problems import Problem
from ._upstreams import upstream_routes

if TYPE_CHECKING:
    from ..broker import Broker

__all__ = ["DEFAULT_MAX_BODY", "create_app"]

#: The largest request body accepted: a token's data (64 KiB of UTF-8) fits, JSON-escaped.
DEFAULT_MAX_BODY: Final = 512 * 1024


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


async def _not_routed(request: Request, exc: Exception) -> Response:
    """404 / 405 from the router, as problems."""
    assert isinstance(exc, HTTPException)
    detail = {404: "no such route; see /openapi.json",
              405: "the route does not take this method"}.get(exc.status_code, exc.detail)
    return Problem(exc.status_code, detail, headers=exc.headers).response()


def _openapi(upstreams: bool) -> Any:
    async def document(request: Request) -> Response:
        return JSONResponse(openapi_document(request.scope.get("root_path", ""),
                                             upstreams=upstreams))

    return document


def _checked_broker(broker: object) -> Broker:
    from ..broker import Broker  # only when one is given: the admin extra lacks its deps

    if not isinstance(broker, Broker):
        raise ArgumentTypeError(f"broker must be an authtoken.broker.Broker, not "
                                f"{type(broker).__name__}")
    return broker


def _page_routes(context: AdminContext, broker: Broker | None,
                 sign_in: OIDCSignIn | None) -> list[Route]:
    """The token page's routes: one's tokens, the admin's views, sign-on and links."""
    kit = PageKit(context)
    if sign_in is not None:
        kit.sso_name = sign_in.name
    links = None if broker is None else (lambda user: link_states(broker, user))
    return [*TokenPages(kit, links).routes(), *AdminPages(kit).routes(),
            *SSOPages(kit, sign_in, broker).routes()]


def create_app(security: Security, *, authenticate: Authenticator,
               max_body: int = DEFAULT_MAX_BODY,
               limiter: FailureLimiter | None = None,
               broker: Broker | None = None,
               sign_in: OIDCSignIn | None = None) -> Starlette:
    """The admin API over ``security`` as an ASGI application.

    ``authenticate`` decides who calls (``DelegationTokenAuth``, ``JWTAuth``,
    ``SpatiumAuth`` or your own ``Authenticator``).  ``max_body`` caps request bodies
    (413 beyond); ``limiter`` counts failed authentications per client address (the
    default blocks an address for the rest of a minute after 20 failures).  The
    application needs no lifespan events; mount it anywhere (``Mount("/admin", app)``).
    Behind a reverse proxy, let the server set the client address from the proxy's
    headers (``uvicorn --proxy-headers``), or every client shares the proxy's limit.
    With a ``broker`` (``authtoken.broker.Broker`` over the same ``security``) it also
    serves the state of users' linked upstream accounts: ``GET /upstreams`` and
    ``DELETE /upstreams/{name}`` (``_upstreams``), and the token page lists them, with
    a button linking an OIDC upstream from the browser.  With ``sign_in``
    (``OIDCSignIn``) people sign in to the token page with the organisation's OpenID
    provider; token sign-in stays, for machines and break-glass.
    Raises ``TypeError`` or ``InvalidArgument`` for a bad argument.
    """
    if not isinstance(security, Security):
        raise ArgumentTypeError(f"expected a Security, not {type(security).__name__}")
    if not callable(authenticate):
        raise ArgumentTypeError("authenticate must be callable: request -> Identity")
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
        raise InvalidArgument("max_body must be a positive number of bytes")
    if limiter is not None and not isinstance(limiter, FailureLimiter):
        raise ArgumentTypeError(f"limiter must be a FailureLimiter, not {type(limiter).__name__}")
    checked = None if broker is None else _checked_broker(broker)
    if sign_in is not None and not isinstance(sign_in, OIDCSignIn):
        raise ArgumentTypeError(f"sign_in must be an OIDCSignIn, not {type(sign_in).__name__}")
    context = AdminContext(security, authenticate, limiter or FailureLimiter(), max_body)
    routes = api_routes(context)
    if checked is not None:
        routes += upstream_routes(context, checked)
    routes += oauth_routes(context)
    routes.append(Route("/openapi.json", _openapi(checked is not None), methods=["GET"]))
    routes += _page_routes(context, checked, sign_in)
    return Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={HTTPException: _not_routed},
    )
