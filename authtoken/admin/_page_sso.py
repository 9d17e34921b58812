"""The token page's two browser round trips to an OpenID provider: sign-in and linking.

Both are the OAuth 2.0 authorization-code flow with PKCE
(``authtoken.issuers.oidc.AuthorizationCodeClient``): the page sends the browser to the
provider with a fresh ``state``, ``nonce`` and code challenge, keeps what it needs to
finish in a short-lived signed cookie (``SameSite=Lax``, since the way back is a
cross-site navigation, which would drop a strict cookie; ``HttpOnly``; ten minutes), and
on the way back checks the state, exchanges the code with the verifier and verifies
the ID token.  A callback with no such cookie, another state, or an error from the
provider is refused, counted against the client address like a failed sign-in, and
nothing is kept.

- **Sign in** (``OIDCSignIn``, ``create_app(..., sign_in=...)``): ``GET /ui/sso`` and
  ``GET /ui/sso/callback``.  The user is a claim of the ID token (``sub`` by default);
  admins are those whose ``admin_claim`` holds ``admin_value`` (a group, a role), as for
  ``JWTAuth``.  The page then keeps its own signed session (``_pagekit``) for at most
  eight hours; the signed-in user manages their own tokens with no token of their own.
- **Link an upstream account** (``create_app(..., broker=...)``, an ``OIDCUpstream``):
  ``POST /ui/upstreams/{name}/link`` (a form: no other site can start one), the
  provider's way back ``GET /ui/upstreams/callback`` -- a cross-site navigation, which
  carries no strict cookie, so it only steps on, by a same-site navigation, to
  ``GET /ui/upstreams/finish`` -- where the broker's ``finish_link`` runs only for the
  user signed in *now*, in the very sign-in that started it (the round trip's cookie
  holds its CSRF value).  A sign-in by a token links or unlinks ``name`` only when the
  token holds ``upstream:<name>`` (the scope that uses the link) or is an admin's; a
  failed link leaves the page session alone.  ``POST /ui/upstreams/{name}/unlink``.
"""

from __future__ import annotations

import hmac
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._errors import ArgumentTypeError, AuthTokenError, InvalidArgument, IssuerError
from .._token import same_user
from ._auth import AuthenticationFailed, client_address, identity_from_claims
from ._pagekit import COOKIE, PENDING_COOKIE, SSO_COOKIE, PageKit, SignedIn
from ._problems import Problem, problem_for

if TYPE_CHECKING:
    from ..broker import Broker
    from ..issuers.oidc import AuthorizationCodeClient

__all__ = ["OIDCSignIn", "SSOPages", "link_states"]

_PENDING_SECONDS: Final = 600
_PENDING_PURPOSE: Final = b"admin page oidc round trip"
_STARTED_AGAIN: Final = ("The sign-in took too long, or was started in another browser or "
                         "tab: start it again.")


@dataclass(frozen=True)
class OIDCSignIn:
    """Sign in to the token page with an OpenID provider (authorization code + PKCE).

    ``authority``: the provider's issuer URL (https, loopback aside); ``client_id`` (and
    ``client_secret`` for a confidential client) as registered there, with the redirect
    URI ``<page>/sso/callback`` -- e.g. ``https://tokens.example.com/ui/sso/callback``.
    ``user_claim``: the ID token claim that names the user; ``admin_claim`` /
    ``admin_value``: who is an admin (``groups`` holding ``authtoken-admins``, say; see
    ``JWTAuth``); ``name``: what the sign-in button says.
    """

    authority: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    user_claim: str = "sub"
    admin_claim: str | None = None
    admin_value: Any = None
    scope: str = "openid profile"
    name: str = "your organisation's sign-in"

    def __post_init__(self) -> None:
        for what in ("authority", "client_id", "user_claim", "scope", "name"):
            value = getattr(self, what)
            if not isinstance(value, str) or not value.strip():
                raise ArgumentTypeError(f"OIDCSignIn's {what} must be a non-empty str")
        if self.client_secret is not None and not isinstance(self.client_secret, str):
            raise ArgumentTypeError("OIDCSignIn's client_secret must be a str or None")
        if self.admin_claim is not None and (not isinstance(self.admin_claim, str)
                                             or not self.admin_claim):
            raise ArgumentTypeError("OIDCSignIn's admin_claim must be a non-empty str or None")
        if "openid" not in self.scope.split():
            raise InvalidArgument("OIDCSignIn's scope must include 'openid': the page "
                                  "signs in by the ID token")

    def client(self) -> AuthorizationCodeClient:
        """The code-flow client for this provider (needs httpx: the ``oidc`` extra)."""
        from ..issuers.oidc import AuthorizationCodeClient

        return AuthorizationCodeClient(self.authority, self.client_id,
                                       client_secret=self.client_secret, scope=self.scope)


class SSOPages:
    """The routes of single sign-on and of linking upstream accounts."""

    def __init__(self, kit: PageKit, sign_in: OIDCSignIn | None,
                 broker: Broker | None) -> None:
        self.kit = kit
        self.sign_in = sign_in
        self.client = None if sign_in is None else sign_in.client()
        if self.client is not None:
            # Its connections to the provider end with the application (which has no
            # lifespan to close them in).
            weakref.finalize(self, self.client.close)
        self.broker = broker
        self.pending = URLSafeTimedSerializer(
            list(reversed(kit.security.derive_keys(_PENDING_PURPOSE))),
            salt="authtoken page oidc")

    def _url(self, request: Request, tail: str) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{self.kit.base(request)}{tail}"

    def _away(self, request: Request, url: str, pending: dict[str, Any], *,
              from_form: bool = False) -> Response:
        """To the provider at ``url``, keeping ``pending`` for the way back.  From a
        form, by a page that navigates on: the page's ``form-action 'self'`` forbids a
        form's redirect to another origin."""
        if from_form:
            response: Response = self.kit.render(
                request, "continue.html", target=url, link="Continue to the provider",
                message="Taking you to the provider to link your account…")
        else:
            response = RedirectResponse(url, status_code=303)
        self.kit.set_cookie(request, response, PENDING_COOKIE,
                            str(self.pending.dumps(pending)),
                            lax=True, max_age=_PENDING_SECONDS)
        return response

    def _back(self, request: Request, kind: str) -> dict[str, Any]:
        """The round trip's kept values, if this browser started one of ``kind``."""
        value = self.kit.read_cookie(request, PENDING_COOKIE)
        try:
            kept = self.pending.loads(value, max_age=_PENDING_SECONDS) if value else None
        except BadSignature:
            kept = None
        if not isinstance(kept, dict) or kept.get("k") != kind:
            # Not counted as a failed sign-in: any site can send a browser here, and
            # the state in a signed cookie is nothing to guess.
            raise Problem(400, _STARTED_AGAIN)
        return kept

    def _refused(self, request: Request, exc: Exception, *, count: bool = True) -> Problem:
        """A failed round trip as a page's ``Problem``, counted as a failed sign-in
        (unless not ``count``)."""
        if count:
            self.kit.context.limiter.failed(client_address(request))
        if isinstance(exc, InvalidArgument):
            return Problem(400, f"{exc} {_STARTED_AGAIN}")
        if isinstance(exc, IssuerError) and _provider_trouble(exc):
            return problem_for(exc)  # a 503: try again shortly
        if isinstance(exc, (IssuerError, AuthenticationFailed)):
            return Problem(401, f"The identity provider did not sign you in: {exc}")
        return problem_for(exc)

    # -- single sign-on ---------------------------------------------------------------
    async def start(self, request: Request) -> Response:
        if self.client is None:
            raise Problem(404, "Single sign-on is not configured here.")
        self.kit.check_rate(request)
        client = self.client
        begun = await run_in_threadpool(client.begin, self._url(request, "/sso/callback"))
        return self._away(request, begun.url, {"k": "sso", "r": begun.to_json()})

    async def callback(self, request: Request) -> Response:
        if self.client is None or self.sign_in is None:
            raise Problem(404, "Single sign-on is not configured here.")
        self.kit.check_rate(request)
        kept = self._back(request, "sso")
        config, client = self.sign_in, self.client
        from ..issuers.oidc import AuthorizationRequest

        def finish() -> Any:
            grant = client.finish(AuthorizationRequest.from_json(kept["r"]),
                                  dict(request.query_params))
            return identity_from_claims(grant.claims, config.user_claim,
                                        config.admin_claim, config.admin_value,
                                        what="the ID token")

        try:
            identity = await run_in_threadpool(finish)
        except AuthTokenError as exc:
            raise self._refused(request, exc) from None
        response = RedirectResponse(f"{self.kit.base(request)}/", status_code=303)
        self.kit.set_cookie(request, response, SSO_COOKIE,
                            self.kit.sso_cookie_value(identity.user, identity.admin),
                            lax=True, max_age=SignedIn.SSO_HOURS * 3600)
        self.kit.delete_cookie(request, response, PENDING_COOKIE, lax=True)
        self.kit.delete_cookie(request, response, COOKIE)
        return response

    # -- linking upstream accounts ----------------------------------------------------
    def _broker(self) -> Broker:
        if self.broker is None:
            raise Problem(404, "No upstream accounts can be linked here.")
        return self.broker

    @staticmethod
    def _may_link(who: SignedIn, name: str) -> None:
        """A sign-in by a token links or unlinks ``name`` only when the token holds the
        scope a job needs to use the link (``upstream:<name>``), or is an admin's: a
        narrow token must not swap the account the user's jobs act as."""
        principal = who.identity.principal
        if principal is not None and not who.identity.admin \
                and not principal.has_scope(f"upstream:{name}"):
            raise Problem(403, f"Linking {name} needs a sign-in whose token holds the scope "
                               f"upstream:{name}, or single sign-on.")

    async def link(self, request: Request) -> Response:
        """Start linking: a form (CSRF-checked), so no other site can start one."""
        broker = self._broker()
        who, _ = await self.kit.signed_form(request, ())
        name = request.path_params["name"]
        self._may_link(who, name)
        user = who.identity.user
        begun = await run_in_threadpool(broker.begin_link, user, name,
                                        self._url(request, "/upstreams/callback"))
        return self._away(request, begun.url, {"k": "link", "r": begun.to_json(), "u": user,
                                               "n": name, "s": who.csrf}, from_form=True)

    async def link_callback(self, request: Request) -> Response:
        """The provider's way back, a cross-site navigation that carries no strict
        cookie: only a step on to ``link_finish``, a same-site navigation that does."""
        self._broker()
        target = f"{self.kit.base(request)}/upstreams/finish"
        if request.url.query:
            target += f"?{request.url.query}"
        return self.kit.render(request, "continue.html", target=target,
                               message="Back from the provider: finishing the link…",
                               link="Finish linking")

    async def link_finish(self, request: Request) -> Response:
        """Link the account the provider answered for, to the user signed in *now*, in
        the sign-in that started the link: the round trip's cookie names both."""
        broker = self._broker()
        who = await self.kit.signed_in(request)
        kept = self._back(request, "link")
        if not hmac.compare_digest(str(kept.get("s", "")), who.csrf) \
                or not same_user(kept.get("u"), who.identity.user):
            raise Problem(403, "This link was started by another sign-in: start it again "
                               "from your token page.")
        from ..issuers.oidc import AuthorizationRequest

        def finish() -> None:
            broker.finish_link(kept["u"], kept["n"],
                               AuthorizationRequest.from_json(kept["r"]),
                               dict(request.query_params))

        try:
            await run_in_threadpool(finish)
        except AuthTokenError as exc:
            problem = self._refused(request, exc, count=False)
            # Not a failed sign-in: the page session stays; the link is as it was.
            raise Problem(503 if problem.status == 503 else 400,
                          f"The account was not linked: {exc}",
                          headers=problem.headers) from None
        response = RedirectResponse(f"{self.kit.base(request)}/", status_code=303)
        self.kit.delete_cookie(request, response, PENDING_COOKIE, lax=True)
        self.kit.flash(request, response, f"Your {kept['n']} account is linked.")
        return response

    async def unlink(self, request: Request) -> Response:
        broker = self._broker()
        who, _ = await self.kit.signed_form(request, ())
        name = request.path_params["name"]
        self._may_link(who, name)
        await run_in_threadpool(broker.unlink, who.identity.user, name)
        response = RedirectResponse(f"{self.kit.base(request)}/", status_code=303)
        self.kit.flash(request, response, f"Your {name} account is unlinked.")
        return response

    def routes(self) -> list[Route]:
        kit = self.kit
        return [
            Route("/ui/sso", kit.handle(self.start), methods=["GET"]),
            Route("/ui/sso/callback", kit.handle(self.callback), methods=["GET"]),
            Route("/ui/upstreams/callback", kit.handle(self.link_callback), methods=["GET"]),
            Route("/ui/upstreams/finish", kit.handle(self.link_finish), methods=["GET"]),
            Route("/ui/upstreams/{name}/link", kit.handle(self.link), methods=["POST"]),
            Route("/ui/upstreams/{name}/unlink", kit.handle(self.unlink), methods=["POST"]),
        ]


def _provider_trouble(exc: IssuerError) -> bool:
    """Whether ``exc`` says the provider could not answer now (not reached, or a 5xx),
    rather than that it refused: its refusal (``error=access_denied``, a refused code,
    an ID token that does not check out) is a failed sign-in."""
    cause = exc.__cause__
    reached = not isinstance(cause, OSError) and not (
        cause is not None and type(cause).__module__.split(".")[0] in ("httpx", "httpcore"))
    return not reached or (exc.status is not None and exc.status >= 500)


def link_states(broker: Broker | None, user: Any) -> list[dict[str, Any]]:
    """The signed-in user's upstream accounts as the token page lists them: each
    upstream's name, its link state (``ok``, ``needs_relink`` or ``none``) and whether
    a browser can link it (an OIDC upstream)."""
    if broker is None:
        return []
    from ..broker import OIDCUpstream

    states = broker.links(user)
    return [{"name": name, "state": states.get(name, "none"),
             "browser": isinstance(upstream, OIDCUpstream)}
            for name, upstream in sorted(broker.upstreams.items())]

