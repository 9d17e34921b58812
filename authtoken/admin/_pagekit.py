"""The token page's plumbing: cookies, who is signed in, forms, CSRF, rendering, errors.

Theory of operation
-------------------
The page lives under ``/ui`` of the admin application.  A browser cannot send an
``Authorization`` header with a link or a form, so the page keeps who signed in in a
cookie -- ``HttpOnly`` (no script reads it), ``Secure`` over HTTPS, scoped to ``/ui``,
a ``__Host-`` cookie at the root of an HTTPS host (see ``PageKit.cookie``).  Two ways
in, two cookies:

- **a credential** (a delegation token, or whatever the application's
  ``Authenticator`` accepts as a bearer credential), pasted into the sign-in form and
  kept ``SameSite=Strict``, signed with a derived key so that only the page's own
  sign-in -- a login -- makes one.  The sign-in is a login; every later page request asks the
  authenticator again -- through its ``resume`` when it has one, which checks the token
  as a login would *without* being one, so that a revoked or expired token stops
  working at once and browsing does not inflate ``use_count``;
- **single sign-on** with the organisation's OpenID provider (``_sso``): the page then
  keeps a session of its own, ``{user, admin}`` signed with a key derived from the
  engine's secret keys (itsdangerous, every key of a rotation accepted), valid for at
  most ``SignedIn.SSO_HOURS`` hours.  It is ``SameSite=Lax``: the provider's redirect
  back is a cross-site navigation, which would drop a strict cookie.

After an action the next page shows a one-line confirmation, carried by a signed
cookie that lives a minute (``flash``): a link cannot make the page claim a revocation
that never happened.

Forms that change something carry a CSRF value: an HMAC of the cookie's value under
another derived key, worthless with any other sign-in.  The sign-in form has no cookie
yet, so it is bound to a *pre-session* instead: the signed-out page gives the browser a
random value in a cookie of its own and puts an HMAC of it in the form -- another site
can neither read a valid value nor make one, and cannot sign a visitor in to the
attacker's account (login CSRF).

Every POST must also be *shown* to come from this page (``same_origin``): an ``Origin``
naming the page's own origin or, without one, ``Sec-Fetch-Site: same-origin``; and no
``Sec-Fetch-Site`` naming another site.  Form bodies must be
``application/x-www-form-urlencoded`` and are size-limited like API bodies.  Pages
carry a strict Content-Security-Policy with a per-response nonce for the one small
script.  A failure is shown with the status the API would answer: a ``Problem``,
through the one table of ``_problems``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .._redact import redact
from .._token import check_user
from ._auth import AuthenticationFailed, Identity
from ._context import AdminContext
from ._problems import Problem, problem_for

__all__ = ["COOKIE", "FLASH_COOKIE", "PENDING_COOKIE", "PRE_SESSION_COOKIE", "SSO_COOKIE",
           "PageKit", "SignedIn"]

COOKIE: Final = "authtoken_ui"
#: The cookie of a page session begun by single sign-on.
SSO_COOKIE: Final = "authtoken_ui_sso"
#: The cookie of a round trip to an OpenID provider (``_page_sso``).
PENDING_COOKIE: Final = "authtoken_ui_oidc"
#: The cookie of a signed-out browser's pre-session, which the sign-in form is bound to.
PRE_SESSION_COOKIE: Final = "authtoken_ui_pre"
_FORM: Final = "application/x-www-form-urlencoded"
_CSRF_PURPOSE: Final = b"admin page csrf"
_SIGN_IN_PURPOSE: Final = b"admin page sign-in csrf"
_SSO_PURPOSE: Final = b"admin page sso session"
_CREDENTIAL_PURPOSE: Final = b"admin page credential cookie"
_FLASH_PURPOSE: Final = b"admin page notice"
#: The cookie of the one-line notice the next page shows after an action.
FLASH_COOKIE: Final = "authtoken_ui_notice"
_FLASH_SECONDS: Final = 60
_PRE_SESSION: Final = re.compile(r"[A-Za-z0-9_-]{43}\Z", re.ASCII)
_EXPIRED_FORM: Final = ("The form expired or did not come from this page; reload the page "
                        "and try again.")
_CROSS_SITE: Final = ("This form was not sent from this page (another site, or a browser "
                      "that does not say where it comes from); it was refused.")
_MAX_FIELDS: Final = 24
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

templates = Environment(
    loader=PackageLoader("authtoken.admin", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Cookie(NamedTuple):
    """A cookie's name, path and ``Secure`` flag, as the page sets and reads it."""

    name: str
    path: str
    secure: bool


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who the page is showing: the ``identity``, the form's ``csrf`` value, and how
    they came: ``"token"`` (a pasted credential; ``token_key`` when it is one of our
    tokens) or ``"sso"``."""

    SSO_HOURS: ClassVar[int] = 8

    identity: Identity
    csrf: str
    via: str

    @property
    def token_key(self) -> str | None:
        principal = self.identity.principal
        return None if principal is None else principal.token_key


def _form_type(content_type: str | None) -> bool:
    return content_type is not None and \
        content_type.split(";")[0].strip().lower() == _FORM


class PageKit:
    """What every route of the page uses, over the admin application's context."""

    def __init__(self, context: AdminContext) -> None:
        self.context = context
        self.security = context.security
        self.csrf_key = context.security.derive_key(_CSRF_PURPOSE)
        self.sign_in_key = context.security.derive_key(_SIGN_IN_PURPOSE)
        # itsdangerous signs with the last key and accepts every one: oldest first.
        # The credential cookie is signed: only the page's own sign-in makes one, so a
        # hand-made cookie cannot browse without a login (nor with a token whose uses
        # ran out since).
        self.credentials = Signer(list(reversed(context.security.derive_keys(
            _CREDENTIAL_PURPOSE))), salt="authtoken page credential", sep="~",
            digest_method=hashlib.sha256)
        self.flashes = URLSafeTimedSerializer(
            list(reversed(context.security.derive_keys(_FLASH_PURPOSE))),
            salt="authtoken page notice", signer_kwargs={"digest_method": hashlib.sha256})
        self.sso_sessions = URLSafeTimedSerializer(
            list(reversed(context.security.derive_keys(_SSO_PURPOSE))),
            salt="authtoken page session", signer_kwargs={"digest_method": hashlib.sha256})

    # -- cookies ----------------------------------------------------------------------
    def base(self, request: Request) -> str:
        return f"{request.scope.get('root_path', '')}/ui"

    def cookie(self, request: Request, name: str) -> Cookie:
        """Where the page keeps cookie ``name`` for ``request``.

        Over HTTPS at the root of its host, a ``__Host-`` cookie: browsers take it only
        from this host, with ``Secure`` and ``Path=/``, so a sibling subdomain cannot
        plant a credential or a pre-session (cookie tossing), and the plain name, which
        it could plant, is never read.  Mounted under a path, ``Path=/`` would hand the
        credential to the whole host, so the plain name scoped to the page is kept.
        """
        https = request.url.scheme == "https"
        if https and not request.scope.get("root_path"):
            return Cookie("__Host-" + name, "/", True)
        return Cookie(name, self.base(request), https)

    def set_cookie(self, request: Request, response: Response, name: str, value: str, *,
                   lax: bool = False, max_age: int | None = None) -> None:
        cookie = self.cookie(request, name)
        response.set_cookie(cookie.name, value, path=cookie.path, httponly=True,
                            samesite="lax" if lax else "strict", secure=cookie.secure,
                            max_age=max_age)

    def delete_cookie(self, request: Request, response: Response, name: str, *,
                      lax: bool = False) -> None:
        cookie = self.cookie(request, name)
        response.delete_cookie(cookie.name, path=cookie.path, secure=cookie.secure,
                               httponly=True, samesite="lax" if lax else "strict")

    def read_cookie(self, request: Request, name: str) -> str:
        return request.cookies.get(self.cookie(request, name).name, "")

    # -- who --------------------------------------------------------------------------
    def sso_cookie_value(self, user: str | int, admin: bool) -> str:
        """A signed page session for ``user`` (signed in by single sign-on)."""
        return str(self.sso_sessions.dumps({"u": user, "a": admin,
                                            "n": secrets.token_urlsafe(16)}))

    def _sso_identity(self, value: str) -> Identity:
        try:
            data = self.sso_sessions.loads(value, max_age=SignedIn.SSO_HOURS * 3600)
            user, admin = data["u"], data["a"]
            check_user(user)
        except (BadSignature, KeyError, TypeError, ValueError):
            raise Problem(401, "Your sign-in has expired; sign in again.") from None
        return Identity(user, admin=admin is True)

    async def signed_in(self, request: Request) -> SignedIn:
        """Who is signed in, checked now; a 401 ``Problem`` (empty detail when nobody
        is) otherwise."""
        self.check_rate(request)
        kept = self.read_cookie(request, COOKIE)
        if kept:
            try:
                credential = self.credentials.unsign(kept).decode()
            except (BadSignature, UnicodeDecodeError):
                raise await self.context.refused(request, AuthenticationFailed(
                    "the sign-in cookie was not made by this page; sign in again")) from None
            identity = await self.context.resumed(request, credential)
            return SignedIn(identity, self._csrf(kept), "token")
        session = self.read_cookie(request, SSO_COOKIE)
        if session:
            return SignedIn(self._sso_identity(session), self._csrf(session), "sso")
        raise Problem(401, "")

    def credential_cookie_value(self, credential: str) -> str:
        """The credential cookie for a sign-in the page just accepted: signed."""
        return self.credentials.sign(credential).decode()

    # -- notices ----------------------------------------------------------------------
    def flash(self, request: Request, response: Response, text: str) -> None:
        """Have the next page show ``text`` (a confirmation): a signed, short-lived
        cookie, so that no link can make the page claim what was not done."""
        self.set_cookie(request, response, FLASH_COOKIE, str(self.flashes.dumps(text)),
                        max_age=_FLASH_SECONDS)

    def take_flash(self, request: Request) -> str | None:
        """The notice an action left for this page, if any (``drop_flash`` ends it)."""
        value = self.read_cookie(request, FLASH_COOKIE)
        try:
            text = self.flashes.loads(value, max_age=_FLASH_SECONDS) if value else None
        except BadSignature:
            return None
        return text if isinstance(text, str) else None

    def drop_flash(self, request: Request, response: Response) -> None:
        if self.read_cookie(request, FLASH_COOKIE):
            self.delete_cookie(request, response, FLASH_COOKIE)

    def _csrf(self, value: str) -> str:
        return hmac.new(self.csrf_key, value.encode(), hashlib.sha256).hexdigest()

    def sign_in_csrf(self, pre_session: str) -> str:
        return hmac.new(self.sign_in_key, pre_session.encode(), hashlib.sha256).hexdigest()

    def pre_session(self, request: Request) -> str | None:
        """The browser's pre-session, if it holds a well-formed one."""
        value = self.read_cookie(request, PRE_SESSION_COOKIE)
        return value if _PRE_SESSION.fullmatch(value) else None

    def check_rate(self, request: Request) -> None:
        wait = self.context.retry_after(request)
        if wait is not None:
            raise Problem(429, "Too many failed sign-ins from this address; try again "
                               "later.", headers={"Retry-After": str(wait)})

    # -- forms ------------------------------------------------------------------------
    @staticmethod
    def same_origin(request: Request) -> bool:
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

    def check_origin(self, request: Request) -> None:
        """403 unless the POST shows it comes from this page.  Every POST calls this
        first: a cross-site post must not get as far as the credential (no failed
        sign-in counted against the visitor's address, no cookie set or cleared)."""
        if not self.same_origin(request):
            raise Problem(403, _CROSS_SITE)

    async def form(self, request: Request, fields: Iterable[str]) -> dict[str, str]:
        """The POSTed form, holding only ``fields`` (each at most once); a ``Problem``
        for a cross-site post, another encoding, a body too large or a field unknown."""
        self.check_origin(request)
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

    async def signed_form(self, request: Request, fields: Iterable[str]
                          ) -> tuple[SignedIn, dict[str, str]]:
        """Who is signed in and their POSTed form, its CSRF value checked."""
        self.check_origin(request)
        who = await self.signed_in(request)
        form = await self.form(request, ("csrf", *fields))
        self.check_csrf(form, who.csrf)
        return who, form

    @staticmethod
    def check_csrf(form: dict[str, str], expected: str) -> None:
        sent = form.get("csrf", "").encode("utf-8", "replace")
        if not hmac.compare_digest(sent, expected.encode()):
            raise Problem(403, _EXPIRED_FORM)

    # -- answers ----------------------------------------------------------------------
    def render(self, request: Request, template: str, status: int = 200,
               headers: dict[str, str] | None = None, **values: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = templates.get_template(template).render(
            base=self.base(request), nonce=nonce, **values)
        response = HTMLResponse(html, status_code=status, headers=headers)
        response.headers["content-security-policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["referrer-policy"] = "same-origin"
        response.headers["x-frame-options"] = "DENY"
        return response

    def sign_in_page(self, request: Request, *, status: int = 200,
                     message: str | None = None,
                     headers: dict[str, str] | None = None) -> HTMLResponse:
        """The sign-in form, bound to the browser's pre-session (started here if the
        browser has none, kept if it has: a second tab shows a form that still works)."""
        pre_session = self.pre_session(request)
        started = pre_session is None
        if pre_session is None:
            pre_session = secrets.token_urlsafe(32)
        response = self.render(request, "signin.html", status=status, headers=headers,
                               message=message, csrf=self.sign_in_csrf(pre_session),
                               sso=self.sso_name)
        if started:
            self.set_cookie(request, response, PRE_SESSION_COOKIE, pre_session)
        return response

    #: The identity provider's name on the sign-in page, when single sign-on is on.
    sso_name: str | None = None

    def error(self, request: Request, problem: Problem) -> Response:
        """``problem`` as a page: the sign-in form for a 401 (clearing a refused
        sign-in's cookies), else the error page; the message masked."""
        if problem.status == 401:
            response = self.sign_in_page(
                request, status=401, message=redact(problem.detail) or None,
                headers={"WWW-Authenticate": 'Bearer realm="authtoken"'})
            if self.read_cookie(request, COOKIE):
                self.delete_cookie(request, response, COOKIE)
            if self.read_cookie(request, SSO_COOKIE):
                self.delete_cookie(request, response, SSO_COOKIE, lax=True)
            return response
        return self.render(request, "error.html", status=problem.status,
                           headers=problem.headers, message=redact(problem.detail))

    def handle(self, action: Callable[[Request], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
        """``action`` as an endpoint whose failures are pages, with the status the
        admin API would answer (the one table of ``_problems``)."""

        async def run(request: Request) -> Response:
            try:
                return await action(request)
            except Problem as problem:
                return self.error(request, problem)
            except Exception as exc:
                return self.error(request, problem_for(exc))

        return run


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
