"""The token management page: server-rendered HTML, the admin application's second face.

Theory of operation
-------------------
The page lives under ``/ui`` of the admin application.  A browser cannot send an
``Authorization`` header with a link or a form, so the sign-in form takes the credential
once (a delegation token, or whatever the application's ``Authenticator`` accepts as a
bearer credential) and keeps it in a cookie -- ``HttpOnly`` (no script reads it),
``SameSite=Strict``, ``Secure`` over HTTPS, scoped to ``/ui``.  Every page request hands
it to the same ``Authenticator`` as ``Authorization: Bearer …``, so a revoked or expired
credential stops working at once, and the same rate limit and audit trail apply.

Forms that change something carry a CSRF token: an HMAC of the credential under a key
derived from the engine's secret key (so every process of a deployment agrees, and a
token is worthless with any other credential).  The sign-in form has no credential yet,
so it is bound to a *pre-session* instead: the signed-out page gives the browser a random
value in a cookie of its own (``HttpOnly``, ``SameSite=Strict``) and puts an HMAC of it,
under another derived key, in the form -- so another site can neither read a valid value
nor make one, and cannot sign a visitor in to the attacker's account (login CSRF).
Signing in ends the pre-session.  Over HTTPS at the root of its host both cookies are
``__Host-`` cookies, which a sibling subdomain cannot plant (cookie tossing); see
``_Page._cookie``.

Every POST must also be *shown* to come from this page: an ``Origin`` naming the page's
own origin or, without one, ``Sec-Fetch-Site: same-origin``; and no ``Sec-Fetch-Site``
naming another site.  ``Origin: null`` (sandboxed frames, no-referrer pages) and a request
that says neither is refused.  Form bodies must be
``application/x-www-form-urlencoded`` and are size-limited like API bodies.

A new token's string is shown once, on the answer to the form that created it, with a
copy button; it is never put in a URL, a cookie or a redirect.  A form the engine
refuses for what was typed into it (403, 409, 422 -- a scope too wide, a policy, an
unreadable expiry) comes back as the token page with the reason and the fields as they
were typed, masked (``_forms.kept``); a refusal of the form itself (its CSRF value, its
origin, its encoding) is an error page.  A renewable token's row has a Renew form;
after a renewal the page says so (``?renewed=<key>``, shown only for a token listed).

Each token's row shows the verdict a login would get now (``Session.explain_login``):
by the script the token is bound to, rebuilt from its bindings (``_checks``), or by no
script for a token bound to none -- "ok", or the reason and what to change.  A token
pinned to code shows each digest shortened (``sha256:1a2b3c4d…``), the full value in
its title and a ``<details>``; the create form pins a token with its "pin to code"
field (SHA-256 hex digests, checked before the engine sees them).

The answer that shows a new token's string also lists the warnings about the scope as
written (``authtoken.scope_warnings``: a comma, a binding in capitals, a path with a
space); scripts are best bound through the form's own path and key fields, which escape
for the user.  Pages carry a strict Content-Security-Policy with a per-response nonce
for the one small script.

The page shares the API's ``AdminContext`` (authenticator, rate limit, body limit), acts
through the caller's ``Session`` as the API does, and shows a failure with the status
the API would answer: a ``Problem``, through the one table of ``_problems``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .._redact import redact
from .._token import AuthToken
from ._auth import MAX_CREDENTIAL_LENGTH, Identity, client_address
from ._bindings import written_scope
from ._checks import bound_script, read_digests, verdict
from ._context import AdminContext
from ._forms import kept, read_max_uses, script_keys, script_paths, token_row
from ._problems import Problem, problem_for

__all__ = ["page_routes"]

COOKIE: Final = "authtoken_ui"
#: The cookie of a signed-out browser's pre-session, which the sign-in form is bound to.
PRE_SESSION_COOKIE: Final = "authtoken_ui_pre"
_FORM: Final = "application/x-www-form-urlencoded"
_CSRF_PURPOSE: Final = b"admin page csrf"
_SIGN_IN_PURPOSE: Final = b"admin page sign-in csrf"
_PRE_SESSION: Final = re.compile(r"[A-Za-z0-9_-]{43}\Z", re.ASCII)
_EXPIRED_FORM: Final = ("The form expired or did not come from this page; reload the page "
                        "and try again.")
_CROSS_SITE: Final = ("This form was not sent from this page (another site, or a browser "
                      "that does not say where it comes from); it was refused.")
_MAX_FIELDS: Final = 16
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_CREATE_FIELDS: Final = ("scope", "bind_paths", "bind_keys", "pin_digests", "description",
                         "expires", "max_uses", "max_lifetime", "data")
# Refusals of what was typed: the form comes back filled in, with the reason.
_REFILLED: Final = frozenset({403, 409, 422})

_templates = Environment(
    loader=PackageLoader("authtoken.admin", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class _Cookie(NamedTuple):
    """A cookie's name, path and ``Secure`` flag, as the page sets and reads it."""

    name: str
    path: str
    secure: bool


def _form_type(content_type: str | None) -> bool:
    return content_type is not None and \
        content_type.split(";")[0].strip().lower() == _FORM


class _Page:
    """The page's routes over the admin application's ``AdminContext``."""

    def __init__(self, context: AdminContext) -> None:
        self.context = context
        self.security = context.security
        self.csrf_key = context.security.derive_key(_CSRF_PURPOSE)
        self.sign_in_key = context.security.derive_key(_SIGN_IN_PURPOSE)

    # -- plumbing ---------------------------------------------------------------------
    def _base(self, request: Request) -> str:
        return f"{request.scope.get('root_path', '')}/ui"

    def _cookie(self, request: Request, name: str) -> _Cookie:
        """Where the page keeps cookie ``name`` for ``request``.

        Over HTTPS at the root of its host, a ``__Host-`` cookie: browsers take it only
        from this host, with ``Secure`` and ``Path=/``, so a sibling subdomain cannot
        plant a credential or a pre-session (cookie tossing), and the plain name, which
        it could plant, is never read.  Mounted under a path, ``Path=/`` would hand the
        credential to the whole host, so the plain name scoped to the page is kept.
        """
        https = request.url.scheme == "https"
        if https and not request.scope.get("root_path"):
            return _Cookie("__Host-" + name, "/", True)
        return _Cookie(name, self._base(request), https)

    def _set_cookie(self, request: Request, response: Response, name: str,
                    value: str) -> None:
        cookie = self._cookie(request, name)
        response.set_cookie(cookie.name, value, path=cookie.path, httponly=True,
                            samesite="strict", secure=cookie.secure)

    def _delete_cookie(self, request: Request, response: Response, name: str) -> None:
        cookie = self._cookie(request, name)
        response.delete_cookie(cookie.name, path=cookie.path, secure=cookie.secure,
                               httponly=True, samesite="strict")

    def _read_cookie(self, request: Request, name: str) -> str:
        return request.cookies.get(self._cookie(request, name).name, "")

    def _render(self, request: Request, template: str, status: int = 200,
                headers: dict[str, str] | None = None, **values: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = _templates.get_template(template).render(
            base=self._base(request), nonce=nonce, **values)
        response = HTMLResponse(html, status_code=status, headers=headers)
        response.headers["content-security-policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["referrer-policy"] = "same-origin"
        response.headers["x-frame-options"] = "DENY"
        return response

    def _csrf(self, credential: str) -> str:
        return hmac.new(self.csrf_key, credential.encode(), hashlib.sha256).hexdigest()

    def _sign_in_csrf(self, pre_session: str) -> str:
        return hmac.new(self.sign_in_key, pre_session.encode(), hashlib.sha256).hexdigest()

    def _sign_in_page(self, request: Request, *, status: int = 200,
                      message: str | None = None,
                      headers: dict[str, str] | None = None) -> HTMLResponse:
        """The sign-in form, bound to the browser's pre-session (started here if the
        browser has none, kept if it has: a second tab shows a form that still works)."""
        pre_session = self._read_cookie(request, PRE_SESSION_COOKIE)
        started = not _PRE_SESSION.fullmatch(pre_session)
        if started:
            pre_session = secrets.token_urlsafe(32)
        response = self._render(request, "signin.html", status=status, headers=headers,
                                message=message, csrf=self._sign_in_csrf(pre_session))
        if started:
            self._set_cookie(request, response, PRE_SESSION_COOKIE, pre_session)
        return response

    def _check_rate(self, request: Request) -> None:
        wait = self.context.retry_after(request)
        if wait is not None:
            raise Problem(429, "Too many failed sign-ins from this address; try again "
                               "later.", headers={"Retry-After": str(wait)})

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """True only when the browser shows the request comes from this page's origin.

        ``Origin`` must name it (``null`` never does) or, when absent,
        ``Sec-Fetch-Site`` must say ``same-origin``; a ``Sec-Fetch-Site`` naming another
        site refuses whatever ``Origin`` says.  A request with neither header is refused:
        an old browser or a plain-HTTP intranet host sends no fetch metadata, and a
        sandboxed frame or a no-referrer page sends ``Origin: null``.
        """
        origin = request.headers.get("origin")
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        if origin is not None:
            own = _origin(f"{request.url.scheme}://{request.url.netloc}")
            return own is not None and _origin(origin) == own
        return site == "same-origin"

    async def _identify(self, request: Request, credential: str) -> Identity:
        """Who ``credential`` is, through the application's authenticator; a refusal is
        a 401 ``Problem`` (``AdminContext.authenticated``), shown as the sign-in form
        with the reason."""
        headers = [(k, v) for k, v in request.scope["headers"]
                   if k not in (b"authorization", b"cookie")]
        headers.append((b"authorization", b"Bearer " + credential.encode()))
        return await self.context.authenticated(
            request, Request({**request.scope, "headers": headers}))

    async def _signed_in(self, request: Request) -> tuple[Identity, str]:
        self._check_rate(request)
        credential = self._read_cookie(request, COOKIE)
        if not credential:
            raise Problem(401, "")
        return await self._identify(request, credential), credential

    def _check_origin(self, request: Request) -> None:
        """403 unless the POST shows it comes from this page.  Every POST calls this
        first: a cross-site post must not get as far as the credential (no failed
        sign-in counted against the visitor's address, no cookie set or cleared)."""
        if not self._same_origin(request):
            raise Problem(403, _CROSS_SITE)

    async def _form(self, request: Request, fields: Iterable[str]) -> dict[str, str]:
        self._check_origin(request)
        if not _form_type(request.headers.get("content-type")):
            raise Problem(415, "Send the form as application/x-www-form-urlencoded.")
        size, chunks = 0, []
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.context.max_body:
                raise Problem(413, f"The form is larger than {self.context.max_body} bytes.")
            chunks.append(chunk)
        try:
            pairs = parse_qsl(b"".join(chunks).decode("utf-8"), keep_blank_values=True,
                              strict_parsing=False, max_num_fields=_MAX_FIELDS,
                              errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise Problem(422, "The form could not be read.") from None
        allowed = set(fields)
        form: dict[str, str] = {}
        for name, value in pairs:
            # The name is not echoed: it could be anything, a pasted token included.
            if name not in allowed:
                raise Problem(422, "The form holds a field this page does not know.")
            if name in form:
                raise Problem(422, f"The form holds the field {name!r} twice.")
            form[name] = value
        return form

    @staticmethod
    def _check_csrf(form: dict[str, str], expected: str) -> None:
        sent = form.get("csrf", "").encode("utf-8", "replace")
        if not hmac.compare_digest(sent, expected.encode()):
            raise Problem(403, _EXPIRED_FORM)

    def _error(self, request: Request, problem: Problem) -> Response:
        """``problem`` as a page: the sign-in form for a 401 (clearing a refused
        credential's cookie), else the error page; the message masked."""
        if problem.status == 401:
            response = self._sign_in_page(
                request, status=401, message=redact(problem.detail) or None,
                headers={"WWW-Authenticate": 'Bearer realm="authtoken"'})
            if self._read_cookie(request, COOKIE):
                self._delete_cookie(request, response, COOKIE)
            return response
        return self._render(request, "error.html", status=problem.status,
                            headers=problem.headers, message=redact(problem.detail))

    def handle(self, action: Callable[[Request], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
        """``action`` as an endpoint whose failures are pages, with the status the
        admin API would answer (the one table of ``_problems``)."""

        async def run(request: Request) -> Response:
            try:
                return await action(request)
            except Problem as problem:
                return self._error(request, problem)
            except Exception as exc:
                return self._error(request, problem_for(exc))

        return run

    # -- the routes -------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        try:
            identity, credential = await self._signed_in(request)
        except Problem as error:
            if error.status == 401 and not error.detail:
                return self._sign_in_page(request)
            raise
        return await self._tokens_page(request, identity, credential,
                                       renewed=request.query_params.get("renewed"))

    async def _tokens_page(self, request: Request, identity: Identity, credential: str, *,
                           status: int = 200, message: str | None = None,
                           renewed: str | None = None,
                           typed: Mapping[str, str] | None = None,
                           renew: Mapping[str, str] | None = None) -> HTMLResponse:
        """The token list and the create form: with ``message`` (a refusal) and the
        create form's ``typed`` values or the ``renew`` form's (its ``key`` and
        ``by``), or with a note that the listed token ``renewed`` was renewed."""
        include_revoked = request.query_params.get("revoked") == "1"

        def rows() -> list[dict[str, Any]]:
            now = self.security.now()
            session = identity.session(self.security)
            listed = session.list_auth_tokens(include_revoked=include_revoked)
            shown = []
            for token in listed:
                row = token_row(token, now)
                # What a login would get now: by its bound script, or by none.
                script = bound_script(token.scopes)
                row["verdict"] = verdict(
                    session.explain_login(str(token.key), script=script), script)
                shown.append(row)
            return shown

        tokens = await run_in_threadpool(rows)
        notice = next((t for t in tokens if renewed and t["key"] == renewed
                       and not t["revoked"]), None)
        return self._render(
            request, "tokens.html", status=status, identity=identity,
            csrf=self._csrf(credential), tokens=tokens, include_revoked=include_revoked,
            message=None if message is None else redact(message), renewed=notice,
            typed=typed or {}, renew=renew or {},
        )

    async def _refused(self, request: Request, identity: Identity, credential: str,
                       exc: Exception, *, typed: Mapping[str, str] | None = None,
                       renew: Mapping[str, str] | None = None) -> HTMLResponse:
        """The token page again after ``exc`` refused a form, with the reason and what
        was ``typed``; an error that is no refusal of the typed values is raised as its
        ``Problem``, for ``handle`` to show."""
        problem = exc if isinstance(exc, Problem) else problem_for(exc)
        if problem.status not in _REFILLED:
            raise problem from None
        return await self._tokens_page(request, identity, credential,
                                       status=problem.status, message=problem.detail,
                                       typed=typed, renew=renew)

    async def sign_in(self, request: Request) -> Response:
        self._check_origin(request)
        self._check_rate(request)
        form = await self._form(request, ("csrf", "credential"))
        pre_session = self._read_cookie(request, PRE_SESSION_COOKIE)
        if not _PRE_SESSION.fullmatch(pre_session):
            raise Problem(403, _EXPIRED_FORM)
        self._check_csrf(form, self._sign_in_csrf(pre_session))
        credential = form.get("credential", "").strip()
        if not credential:
            raise Problem(401, "Paste a token to sign in.")
        if len(credential) > MAX_CREDENTIAL_LENGTH or not credential.isascii() \
                or not credential.isprintable():
            self.context.limiter.failed(client_address(request))
            raise Problem(401, "That is not a token.")
        await self._identify(request, credential)
        response = RedirectResponse(f"{self._base(request)}/", status_code=303)
        self._set_cookie(request, response, COOKIE, credential)
        self._delete_cookie(request, response, PRE_SESSION_COOKIE)
        return response

    async def sign_out(self, request: Request) -> Response:
        self._check_origin(request)
        response = RedirectResponse(f"{self._base(request)}/", status_code=303)
        self._delete_cookie(request, response, COOKIE)
        return response

    async def create(self, request: Request) -> Response:
        self._check_origin(request)
        identity, credential = await self._signed_in(request)
        form = await self._form(request, ("csrf", *_CREATE_FIELDS))
        self._check_csrf(form, self._csrf(credential))
        try:
            token, string, warnings = await run_in_threadpool(self._authorize, identity, form)
        except Exception as exc:
            return await self._refused(request, identity, credential, exc,
                                       typed=kept(form, _CREATE_FIELDS))
        row = token_row(token, self.security.now())
        return self._render(request, "created.html", token=row, string=string,
                            warnings=warnings)

    def _authorize(self, identity: Identity, form: Mapping[str, str]
                   ) -> tuple[AuthToken, str, tuple[str, ...]]:
        """Authorize the token the create form describes, as ``identity``."""
        scope = form.get("scope", "").strip()
        paths = script_paths(form.get("bind_paths", ""))
        keys = script_keys(form.get("bind_keys", ""))
        digests = read_digests(form.get("pin_digests", ""))
        if not scope and not paths and not keys and not digests:
            raise Problem(422, "A token needs at least one scope, script or code digest.")
        options: dict[str, Any] = {
            "description": form.get("description", ""),
            "max_uses": read_max_uses(form.get("max_uses", "")),
            "max_lifetime": form.get("max_lifetime", "").strip() or None,
        }
        expires = form.get("expires", "").strip()
        if expires:
            options["expires"] = expires
        written = written_scope(scope, paths, keys, digests)
        token = AuthToken(written.scope, form.get("data") or None, **options)
        string = identity.session(self.security).authorize_token(token)
        return token, string, written.warnings

    async def confirm_revoke(self, request: Request) -> Response:
        identity, credential = await self._signed_in(request)
        key = request.path_params["key"]

        token = await run_in_threadpool(identity.session(self.security).get_auth_token, key)
        row = token_row(token, self.security.now())
        return self._render(request, "confirm.html", token=row, csrf=self._csrf(credential))

    async def revoke(self, request: Request) -> Response:
        self._check_origin(request)
        identity, credential = await self._signed_in(request)
        form = await self._form(request, ("csrf",))
        self._check_csrf(form, self._csrf(credential))
        key = request.path_params["key"]
        await run_in_threadpool(
            lambda: identity.session(self.security).revoke_auth_token_by_key(key))
        return RedirectResponse(f"{self._base(request)}/", status_code=303)

    async def renew(self, request: Request) -> Response:
        """Renew a token (``by``: a duration, empty for its first lifetime) through the
        caller's session, then show the list with a note saying so."""
        self._check_origin(request)
        identity, credential = await self._signed_in(request)
        form = await self._form(request, ("csrf", "by"))
        self._check_csrf(form, self._csrf(credential))
        key = request.path_params["key"]
        by = form.get("by", "").strip() or None
        try:
            await run_in_threadpool(
                lambda: identity.session(self.security).renew_auth_token_by_key(key, by=by))
        except Exception as exc:
            return await self._refused(request, identity, credential, exc,
                                       renew={"key": key, **kept(form, ("by",))})
        return RedirectResponse(f"{self._base(request)}/?{urlencode({'renewed': key})}",
                                status_code=303)


def _origin(text: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin (``https://host[:port]``), compared as
    browsers compare them: scheme and host in any case, a default port written or not
    (a proxy may send ``Host: example.com:443``; a browser never puts ``:443`` in
    ``Origin``).  ``None`` for anything else -- ``null``, a path, a user part, a bad
    port, another scheme -- which then matches nothing."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or not parts.hostname or parts.path or parts.query \
            or parts.fragment or "@" in parts.netloc:
        return None
    return parts.scheme, parts.hostname, default if port is None else port


def page_routes(context: AdminContext) -> list[Route]:
    """The page's routes over ``context``, to add to the admin application."""
    page = _Page(context)

    async def to_page(request: Request) -> Response:
        return RedirectResponse(f"{page._base(request)}/", status_code=307)

    return [
        Route("/ui", to_page, methods=["GET"]),
        Route("/ui/", page.handle(page.index), methods=["GET"]),
        Route("/ui/sign-in", page.handle(page.sign_in), methods=["POST"]),
        Route("/ui/sign-out", page.handle(page.sign_out), methods=["POST"]),
        Route("/ui/tokens", page.handle(page.create), methods=["POST"]),
        Route("/ui/tokens/{key}/revoke", page.handle(page.confirm_revoke), methods=["GET"]),
        Route("/ui/tokens/{key}/revoke", page.handle(page.revoke), methods=["POST"]),
        Route("/ui/tokens/{key}/renew", page.handle(page.renew), methods=["POST"]),
    ]
