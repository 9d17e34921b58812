"""The token page: a person's own tokens -- list, create, edit, renew, revoke.

Server-rendered HTML under ``/ui`` of the admin application, built on ``_pagekit``
(cookies, who is signed in, forms, CSRF, errors).  The admin's view of every user's
tokens and the audit trail are ``_page_admin``; single sign-on and linking upstream
accounts are ``_page_sso``.

A new token's string is shown once, on the answer to the form that created it, with a
copy button; it is never put in a URL, a cookie or a redirect.  A form the engine
refuses for what was typed into it (403, 409, 422 -- a scope too wide, a policy, an
unreadable expiry) comes back with the reason and the fields as they were typed, masked
(``_forms.kept``); a refusal of the form itself (its CSRF value, its origin, its
encoding) is an error page.  Every action ends on the list with a one-line confirmation
(``PageKit.flash``).

The create form's expiry picker offers only what the signed-in session may give (a
token's child lives no longer than the token) and the policy allows
(``_listing.expiry_choices``); scripts are bound through the form's path and key fields,
which escape for the user, and pinned to code by digest; the answer lists the warnings
about the scope as written (``authtoken.scope_warnings``).  The edit form changes a
description, the data, and the scope only to a narrower one.  Each row shows the
verdict a login would get now (``Session.explain_login``) by the script the token is
bound to (``_checks``), and the token the page is signed in with is marked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .._errors import InvalidArgument
from .._redact import redact
from .._scopes import bindings_of, code_bindings_of, parse_scope
from .._token import AuthToken, UserKey
from ._auth import MAX_CREDENTIAL_LENGTH, client_address
from ._bindings import written_scope
from ._checks import bound_script, read_digests, verdict
from ._forms import kept, read_max_uses, script_keys, script_paths, token_row, when
from ._listing import FILTERS, expiry_choices, readable_binding, state_of
from ._pagekit import COOKIE, PENDING_COOKIE, PRE_SESSION_COOKIE, SSO_COOKIE, PageKit, SignedIn
from ._problems import Problem, problem_for

__all__ = ["TokenPages", "back_to", "row_for"]

_CREATE_FIELDS: Final = ("scope", "bind_paths", "bind_keys", "pin_digests", "description",
                         "expires", "expires_date", "max_uses", "max_lifetime", "data")
_EDIT_FIELDS: Final = ("scope", "description", "data")
# Refusals of what was typed: the form comes back filled in, with the reason.
_REFILLED: Final = frozenset({403, 409, 422})


def back_to(back: str) -> dict[str, str] | None:
    """The admin view's filters a ``back`` value (``all?user=bob&state=live``) names, or
    ``None`` when it names no return to that view; anything but the filters is dropped,
    so it can lead nowhere else."""
    if back != "all" and not back.startswith("all?"):
        return None
    pairs = parse_qsl(back[4:], keep_blank_values=False)
    return {k: v for k, v in pairs if k in FILTERS}


def row_for(token: AuthToken, now: datetime, who: SignedIn) -> dict[str, Any]:
    """``token_row`` with what the page adds: its state, readable bindings, whether it
    is the token the page is signed in with."""
    row = token_row(token, now)
    row["user"] = token.user
    row["state"] = state_of(token, now)
    row["readable"] = {s: readable_binding(s) for s in row["scripts"]}
    row["current"] = token.key == who.token_key
    return row


class TokenPages:
    """The routes of one's own tokens."""

    def __init__(self, kit: PageKit,
                 links: Callable[[UserKey], list[dict[str, Any]]] | None = None) -> None:
        self.kit = kit
        self.security = kit.security
        self.links = links

    # -- the list ---------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        try:
            who = await self.kit.signed_in(request)
        except Problem as error:
            if error.status == 401 and not error.detail:
                return self.kit.sign_in_page(request)
            raise
        return await self.tokens_page(request, who)

    def _limit(self, who: SignedIn, now: datetime) -> tuple[datetime | None, bool]:
        """How long a token made now may live: the signed-in token's expiry and the
        policy's longest lifetime, and whether it may never expire."""
        limits: list[datetime] = []
        never = True
        principal = who.identity.principal
        if principal is not None and principal.expires is not None:
            limits.append(principal.expires)
            never = False
        policy = self.security.policy
        if policy is not None:
            if policy.max_lifetime is not None:
                limits.append(now + policy.max_lifetime)
                never = False
            never = never and not policy.require_expiry
        return (min(limits) if limits else None), never

    async def tokens_page(self, request: Request, who: SignedIn, *, status: int = 200,
                          message: str | None = None,
                          typed: Mapping[str, str] | None = None,
                          renew: Mapping[str, str] | None = None) -> HTMLResponse:
        """The list and the create form: with ``message`` (a refusal) and the create
        form's ``typed`` values or the ``renew`` form's (its ``key`` and ``by``)."""
        include_revoked = request.query_params.get("revoked") == "1"

        def rows() -> list[dict[str, Any]]:
            now = self.security.now()
            session = who.identity.session(self.security)
            shown = []
            for token in session.list_auth_tokens(include_revoked=include_revoked):
                row = row_for(token, now, who)
                script = bound_script(token.scopes)
                row["verdict"] = verdict(
                    session.explain_login(str(token.key), script=script), script)
                shown.append(row)
            return shown

        tokens = await run_in_threadpool(rows)
        links = [] if self.links is None else \
            await run_in_threadpool(self.links, who.identity.user)
        now = self.security.now()
        limit, never = self._limit(who, now)
        done = self.kit.take_flash(request)
        response = self.kit.render(
            request, "tokens.html", status=status, who=who, identity=who.identity,
            csrf=who.csrf, tokens=tokens, include_revoked=include_revoked,
            message=None if message is None else redact(message), notice=done,
            typed=typed or {}, renew=renew or {}, links=links,
            expiry=expiry_choices(now, limit, never_allowed=never))
        self.kit.drop_flash(request, response)
        return response

    async def _refused(self, request: Request, who: SignedIn, exc: Exception, *,
                       typed: Mapping[str, str] | None = None,
                       renew: Mapping[str, str] | None = None) -> HTMLResponse:
        """The list again after ``exc`` refused a form, with the reason and what was
        ``typed``; an error that is no refusal of the typed values is raised as its
        ``Problem``, for ``handle`` to show."""
        problem = exc if isinstance(exc, Problem) else problem_for(exc)
        if problem.status not in _REFILLED:
            raise problem from None
        return await self.tokens_page(request, who, status=problem.status,
                                      message=problem.detail, typed=typed, renew=renew)

    def _done(self, request: Request, text: str, back: str = "") -> Response:
        """To the list, which then says ``text``: the admin's view with its filters when
        ``back`` names it (``back_to``), else one's own list."""
        filters = back_to(back)
        place = "/" if filters is None else f"/all?{urlencode(filters)}"
        response = RedirectResponse(f"{self.kit.base(request)}{place}", status_code=303)
        self.kit.flash(request, response, text)
        return response

    # -- signing in and out -----------------------------------------------------------
    async def sign_in(self, request: Request) -> Response:
        self.kit.check_origin(request)
        self.kit.check_rate(request)
        form = await self.kit.form(request, ("csrf", "credential"))
        pre_session = self.kit.pre_session(request)
        if pre_session is None:
            raise Problem(403, "The form expired or did not come from this page; reload "
                               "the page and try again.")
        self.kit.check_csrf(form, self.kit.sign_in_csrf(pre_session))
        credential = form.get("credential", "").strip()
        if not credential:
            raise Problem(401, "Paste a token to sign in.")
        if len(credential) > MAX_CREDENTIAL_LENGTH or not credential.isascii() \
                or not credential.isprintable():
            self.kit.context.limiter.failed(client_address(request))
            raise Problem(401, "That is not a token.")
        headers = [(k, v) for k, v in request.scope["headers"]
                   if k not in (b"authorization", b"cookie")]
        headers.append((b"authorization", b"Bearer " + credential.encode()))
        await self.kit.context.authenticated(
            request, Request({**request.scope, "headers": headers}))
        response = RedirectResponse(f"{self.kit.base(request)}/", status_code=303)
        self.kit.set_cookie(request, response, COOKIE,
                            self.kit.credential_cookie_value(credential))
        self.kit.delete_cookie(request, response, PRE_SESSION_COOKIE)
        self.kit.delete_cookie(request, response, SSO_COOKIE, lax=True)
        self.kit.delete_cookie(request, response, PENDING_COOKIE, lax=True)
        return response

    async def sign_out(self, request: Request) -> Response:
        self.kit.check_origin(request)
        response = RedirectResponse(f"{self.kit.base(request)}/", status_code=303)
        self.kit.delete_cookie(request, response, COOKIE)
        self.kit.delete_cookie(request, response, SSO_COOKIE, lax=True)
        self.kit.delete_cookie(request, response, PENDING_COOKIE, lax=True)
        return response

    # -- create -----------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        who, form = await self.kit.signed_form(request, _CREATE_FIELDS)
        try:
            token, string, warnings = await run_in_threadpool(self._authorize, who, form)
        except Exception as exc:
            return await self._refused(request, who, exc, typed=kept(form, _CREATE_FIELDS))
        row = row_for(token, self.security.now(), who)
        return self.kit.render(request, "created.html", token=row, string=string,
                               warnings=warnings, who=who)

    def _authorize(self, who: SignedIn, form: Mapping[str, str]
                   ) -> tuple[AuthToken, str, tuple[str, ...]]:
        """Authorize the token the create form describes, as ``who``."""
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
        if expires == "date":
            expires = form.get("expires_date", "").strip()
            if not expires:
                raise Problem(422, "Pick the day the token expires, or another expiry.")
        if expires:
            options["expires"] = expires
        written = written_scope(scope, paths, keys, digests)
        token = AuthToken(written.scope, form.get("data") or None, **options)
        string = who.identity.session(self.security).authorize_token(token)
        return token, string, written.warnings

    # -- edit -------------------------------------------------------------------------
    async def edit_form(self, request: Request) -> Response:
        who = await self.kit.signed_in(request)
        key = request.path_params["key"]
        token = await run_in_threadpool(who.identity.session(self.security).get_auth_token,
                                        key)
        return self._edit_page(request, who, token)

    def _edit_page(self, request: Request, who: SignedIn, token: AuthToken, *,
                   status: int = 200, message: str | None = None,
                   typed: Mapping[str, str] | None = None) -> HTMLResponse:
        row = row_for(token, self.security.now(), who)
        values = typed or {"scope": token.scope, "description": token.description,
                           "data": token.data or ""}
        return self.kit.render(request, "edit.html", status=status, token=row,
                               typed=values, csrf=who.csrf, who=who,
                               message=None if message is None else redact(message))

    async def edit(self, request: Request) -> Response:
        who, form = await self.kit.signed_form(request, _EDIT_FIELDS)
        key = request.path_params["key"]
        session = who.identity.session(self.security)
        token = await run_in_threadpool(session.get_auth_token, key)
        try:
            await run_in_threadpool(self._update, who, token, form)
        except Exception as exc:
            problem = exc if isinstance(exc, Problem) else problem_for(exc)
            if problem.status not in _REFILLED:
                raise problem from None
            return self._edit_page(request, who, token, status=problem.status,
                                   message=problem.detail, typed=kept(form, _EDIT_FIELDS))
        return self._done(request, f"Token {key} updated.")

    def _update(self, who: SignedIn, token: AuthToken, form: Mapping[str, str]) -> None:
        """Change ``token``'s description, data and -- only narrower -- scope."""
        scope = form.get("scope", "").strip()
        try:
            wanted = set(parse_scope(scope)) if scope else set()
        except InvalidArgument as exc:
            raise Problem(422, f"The scope does not read: {exc}") from None
        if not wanted:
            raise Problem(422, "A token keeps at least one scope; revoke it instead.")
        for kind, held in (("script binding", bindings_of(token.scopes)),
                           ("code pin", code_bindings_of(token.scopes))):
            # One binding fewer of several narrows the token; none at all would let
            # any script (any code) log in with it.
            if held and not wanted.intersection(held):
                raise Problem(422, f"A token keeps at least one of its {kind}s: without "
                                   "one it would be wider, not narrower. Create a new "
                                   "token instead.")
        added = wanted - set(token.scopes)
        if added:
            raise Problem(422, "The page only narrows a token's scope ("
                               f"{len(added)} scope(s) are not in it now); create a new "
                               "token for more.")
        if wanted != set(token.scopes):
            token.scopes = [s for s in token.scopes if s in wanted]
        token.description = form.get("description", "")
        token.data = form.get("data") or None
        who.identity.session(self.security).update_auth_token(token)

    # -- revoke and renew ---------------------------------------------------------------
    async def confirm_revoke(self, request: Request) -> Response:
        who = await self.kit.signed_in(request)
        key = request.path_params["key"]
        token = await run_in_threadpool(who.identity.session(self.security).get_auth_token,
                                        key)
        filters = back_to(request.query_params.get("back", ""))
        back = "" if filters is None else "all?" + urlencode(filters)
        return self.kit.render(request, "confirm.html", token=row_for(
            token, self.security.now(), who), csrf=who.csrf, back=back, who=who)

    async def revoke(self, request: Request) -> Response:
        who, form = await self.kit.signed_form(request, ("back",))
        key = request.path_params["key"]
        await run_in_threadpool(
            lambda: who.identity.session(self.security).revoke_auth_token_by_key(key))
        if key == who.token_key:  # the page's own token: signed out with it
            response = RedirectResponse(f"{self.kit.base(request)}/", status_code=303)
            self.kit.delete_cookie(request, response, COOKIE)
            return response
        return self._done(request, f"Token {key} revoked: every login with it fails from "
                                   "now on.", form.get("back", ""))

    async def renew(self, request: Request) -> Response:
        """Renew a token (``by``: a duration, empty for its first lifetime) through the
        caller's session, then show the list with a note saying so."""
        who, form = await self.kit.signed_form(request, ("by",))
        key = request.path_params["key"]
        by = form.get("by", "").strip() or None
        try:
            expires = await run_in_threadpool(
                lambda: who.identity.session(self.security).renew_auth_token_by_key(key,
                                                                                    by=by))
        except Exception as exc:
            return await self._refused(request, who, exc,
                                       renew={"key": key, **kept(form, ("by",))})
        return self._done(request, f"Token {key} renewed: it now expires {when(expires)}.")

    def routes(self) -> list[Route]:
        kit = self.kit

        async def to_page(request: Request) -> Response:
            return RedirectResponse(f"{kit.base(request)}/", status_code=307)

        return [
            Route("/ui", to_page, methods=["GET"]),
            Route("/ui/", kit.handle(self.index), methods=["GET"]),
            Route("/ui/sign-in", kit.handle(self.sign_in), methods=["POST"]),
            Route("/ui/sign-out", kit.handle(self.sign_out), methods=["POST"]),
            Route("/ui/tokens", kit.handle(self.create), methods=["POST"]),
            Route("/ui/tokens/{key}/edit", kit.handle(self.edit_form), methods=["GET"]),
            Route("/ui/tokens/{key}/edit", kit.handle(self.edit), methods=["POST"]),
            Route("/ui/tokens/{key}/revoke", kit.handle(self.confirm_revoke),
                  methods=["GET"]),
            Route("/ui/tokens/{key}/revoke", kit.handle(self.revoke), methods=["POST"]),
            Route("/ui/tokens/{key}/renew", kit.handle(self.renew), methods=["POST"]),
        ]

