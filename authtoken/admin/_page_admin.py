"""The token page's wider views: every user's tokens (admins) and the audit trail.

- ``GET /ui/all`` -- an admin's view of every user's tokens, filtered by user, scope,
  script, state (live / expiring within 7 days / expired / revoked) and run
  (``_listing.TokenFilter``); at most ``SHOWN`` rows, newest first.  A user filter
  offers "revoke all of this user's tokens" (``/ui/revoke-all?user=…``), behind a
  confirmation page that says when the name means two users (``"42"`` and ``42``).
- ``GET /ui/audit`` -- the audit trail as the signed-in session may read it (its own
  user's events; an admin's, anyone's), filtered by user, token, action, outcome and
  time (``_listing.AuditFilter``).  A refused login says why and, asked of the engine
  now (``Session.explain_login`` by the script of the attempt), what to change.

Both read through the caller's ``Session``, so the engine decides what may be seen.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._errors import AuthTokenError
from .._redact import redact
from .._repository import AuditEvent
from .._session import Session
from ._api import user_candidates
from ._checks import verdict
from ._forms import when
from ._listing import AUDIT_ACTIONS, STATES, AuditFilter, TokenFilter
from ._page import row_for
from ._pagekit import PageKit, SignedIn
from ._problems import Problem

__all__ = ["AdminPages"]

#: The most rows a list shows; the filters narrow it down.
SHOWN: Final = 200
#: The most events an audit page reads: the newest, which its action, outcome and
#: until filters then search (the engine's largest read).
_READ: Final = 10_000
#: The most refused logins of one audit page explained by asking the engine.
_EXPLAINED: Final = 50
_ADVICE: Final = {
    "InvalidToken": "The string is not one of this service's tokens (mistyped, cut, or "
                    "forged): give the job the token string it was created with.",
    "TokenRevoked": "The token was revoked: create a new one for the job.",
    "TokenExpired": "The token expired: renew it if it is renewable, or create a new one.",
    "ScriptNotAuthorized": "The script that logged in is not one the token is bound to: "
                           "bind the token to it, or use that script's own token.",
    "TokenExhausted": "The token's uses ran out: create a new one, with more uses.",
    "AuthenticationFailed": "A caller of the admin API sent no or bad credentials.",
}


def _user_field(text: str) -> str:
    """The user a revoke-all names (a query or form field, so any name -- one with a
    ``/`` too -- travels whole); a 422 when none."""
    if not text:
        raise Problem(422, "Name the user whose tokens to revoke.")
    return text


def _script_text(event: AuditEvent) -> str:
    script = event.script
    if script is None:
        return ""
    parts = [f"key {script.key}" if script.key is not None else "",
             script.path or "", "pinned code" if script.digest else ""]
    return ", ".join(p for p in parts if p)


class AdminPages:
    """The routes of the admin's view and of the audit trail."""

    def __init__(self, kit: PageKit) -> None:
        self.kit = kit
        self.security = kit.security

    async def _admin(self, request: Request) -> SignedIn:
        who = await self.kit.signed_in(request)
        if not who.identity.admin:
            raise Problem(403, "Only an admin sees every user's tokens; your own are on "
                               "the token page.")
        return who

    # -- every user's tokens ----------------------------------------------------------
    async def all_tokens(self, request: Request) -> Response:
        who = await self._admin(request)
        wanted = TokenFilter.read(request.query_params)

        def rows() -> tuple[list[dict[str, Any]], int]:
            now = self.security.now()
            # An admin session with no user lists everyone's; a user filter lists one.
            session = Session(self.security, admin=True)
            session.principal = who.identity.principal
            if wanted.user:
                tokens = []
                for user in user_candidates(wanted.user):
                    tokens += session.list_auth_tokens(
                        user=user, include_revoked=wanted.revoked_needed)
            else:
                tokens = session.list_auth_tokens(include_revoked=wanted.revoked_needed)
            matched = [t for t in tokens if wanted.matches(t, now)]
            return [row_for(t, now, who) for t in matched[:SHOWN]], len(matched)

        shown, total = await run_in_threadpool(rows)
        response = self.kit.render(
            request, "all.html", who=who, identity=who.identity, csrf=who.csrf, tokens=shown,
            total=total, shown_max=SHOWN, filters=wanted.shown(), states=STATES,
            notice=self.kit.take_flash(request),
            back=urlencode({"back": "all?" + wanted.query()}))
        self.kit.drop_flash(request, response)
        return response

    async def confirm_revoke_all(self, request: Request) -> Response:
        who = await self._admin(request)
        user = _user_field(request.query_params.get("user", ""))
        users = user_candidates(user)
        return self.kit.render(request, "revoke_all.html", who=who, user=user,
                               csrf=who.csrf, both=len(users) > 1)

    async def revoke_all(self, request: Request) -> Response:
        who, form = await self.kit.signed_form(request, ("user",))
        if not who.identity.admin:
            raise Problem(403, "Only an admin revokes another user's tokens.")
        user = _user_field(form.get("user", ""))

        def revoke() -> int:
            session = who.identity.session(self.security)
            return sum(session.revoke_user_tokens(u) for u in user_candidates(user))

        count = await run_in_threadpool(revoke)
        response = RedirectResponse(
            f"{self.kit.base(request)}/all?{urlencode({'user': user})}", status_code=303)
        self.kit.flash(request, response, f"{count} token{'' if count == 1 else 's'} of "
                                          f"{redact(user)} revoked.")
        return response

    # -- the audit trail --------------------------------------------------------------
    async def audit(self, request: Request) -> Response:
        who = await self.kit.signed_in(request)
        wanted = AuditFilter.read(request.query_params)

        def rows() -> list[dict[str, Any]]:
            session = who.identity.session(self.security)
            users = user_candidates(wanted.user) if wanted.user else [None]
            events: list[AuditEvent] = []
            for user in users:
                events += session.audit_events(user=user, token_key=wanted.token or None,
                                               since=wanted.since, limit=_READ)
            events.sort(key=lambda e: e.at, reverse=True)
            matched = [e for e in events if wanted.matches(e)][:SHOWN]
            explained = 0
            shown = []
            for event in matched:
                row: dict[str, Any] = {"at": when(event.at), "actor": event.actor or "",
                       "action": event.action, "outcome": event.outcome,
                       "token": event.token_key or "", "user": event.user,
                       "script": _script_text(event), "reason": event.reason or "",
                       "count": event.count, "run": event.run_id or "",
                       "advice": _ADVICE.get(event.reason or "", ""), "now": None}
                if event.outcome == "refused" and event.action == "login" \
                        and event.token_key and explained < _EXPLAINED:
                    explained += 1
                    try:
                        check = session.explain_login(event.token_key, script=event.script)
                        row["now"] = verdict(check, event.script)
                    except AuthTokenError:
                        pass  # gone, or not the caller's to ask about
                shown.append(row)
            return shown

        events = await run_in_threadpool(rows)
        return self.kit.render(request, "audit.html", who=who, identity=who.identity,
                               events=events, filters=wanted.shown(), actions=AUDIT_ACTIONS,
                               shown_max=SHOWN, csrf=who.csrf)

    def routes(self) -> list[Route]:
        kit = self.kit
        return [
            Route("/ui/all", kit.handle(self.all_tokens), methods=["GET"]),
            Route("/ui/revoke-all", kit.handle(self.confirm_revoke_all), methods=["GET"]),
            Route("/ui/revoke-all", kit.handle(self.revoke_all), methods=["POST"]),
            Route("/ui/audit", kit.handle(self.audit), methods=["GET"]),
        ]
