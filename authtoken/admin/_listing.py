"""What the token page's lists and pickers offer: filters, states, expiry choices, notices.

Pure functions, no request and no engine:

- ``TokenFilter``: the admin view's filters (user, scope, script, state, run) read from
  a query string, and whether a token passes them;
- ``state_of``: a token's state as the lists name it -- ``live``, ``expiring`` (within
  ``EXPIRING_DAYS``), ``expired``, ``revoked``;
- ``expiry_choices``: the create form's expiry picker, offering only what the signed-in
  session and the engine's policy allow;
- ``AuditFilter``: the audit view's filters (user, token, action, outcome, since, until);
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final
from urllib.parse import urlencode

from dateutil.parser import isoparse

from .._escape import strict_unescape
from .._redact import redact
from .._repository import AuditEvent
from .._scopes import bindings_of
from .._shape import is_token_key
from .._token import AuthToken
from ._problems import Problem

__all__ = ["AUDIT_ACTIONS", "EXPIRING_DAYS", "FILTERS", "STATES", "AuditFilter", "TokenFilter",
           "expiry_choices", "readable_binding", "state_of"]

EXPIRING_DAYS: Final = 7
STATES: Final = ("live", "expiring", "expired", "revoked")
#: The admin view's filters, as its query names them.
FILTERS: Final = ("user", "scope", "script", "state", "run")
AUDIT_ACTIONS: Final = ("authorize", "update", "renew", "revoke", "revoke_all", "login",
                        "authenticate", "upstream")
_MAX_FILTER: Final = 300
_CHOICES: Final = (("1h", "1 hour", timedelta(hours=1)), ("1d", "1 day", timedelta(days=1)),
                   ("7d", "7 days", timedelta(days=7)), ("30d", "30 days", timedelta(days=30)),
                   ("90d", "90 days", timedelta(days=90)))


def state_of(token: AuthToken, now: datetime) -> str:
    """``revoked``, ``expired``, ``expiring`` (within ``EXPIRING_DAYS``) or ``live``."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires is not None and now >= token.expires:
        return "expired"
    if token.expires is not None and token.expires - now <= timedelta(days=EXPIRING_DAYS):
        return "expiring"
    return "live"


def readable_binding(binding: str) -> str | None:
    """A script binding as a person reads it -- ``ufs:/jobs/a%20b.py`` as
    ``/jobs/a b.py``, ``vfs:ikey?42`` as ``script 42`` -- or ``None`` when the canonical
    form says it as well."""
    if binding.startswith("vfs:ikey?"):
        return f"script {binding[len('vfs:ikey?'):]}"
    if binding.startswith("ufs:"):
        path = strict_unescape(binding[4:])
        return None if path is None or path == binding[4:] else path
    return None


def _text(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if len(value) > _MAX_FILTER:
        raise Problem(422, f"The filter {name!r} is longer than {_MAX_FILTER} characters.")
    return value


@dataclass(frozen=True, slots=True)
class TokenFilter:
    """The admin view's filters; empty strings filter nothing."""

    user: str = ""
    scope: str = ""
    script: str = ""
    state: str = ""
    run: str = ""

    @classmethod
    def read(cls, params: Mapping[str, str]) -> TokenFilter:
        """From a query string; a 422 ``Problem`` for an unknown state or a long value."""
        state = _text(params, "state")
        if state and state not in STATES:
            raise Problem(422, f"The state filter is one of {', '.join(STATES)}.")
        return cls(_text(params, "user"), _text(params, "scope"), _text(params, "script"),
                   state, _text(params, "run"))

    def shown(self) -> dict[str, str]:
        """The filters as the form shows them again (masked)."""
        # The user as typed, whole: it names whom "revoke all" revokes (a long ``sub``
        # may look token-shaped, and must not turn into "[redacted]").
        return {name: getattr(self, name) if name == "user" else redact(getattr(self, name))
                for name in FILTERS}

    def query(self) -> str:
        """The filters set, as a query string (to come back to this view)."""
        return urlencode({name: getattr(self, name) for name in FILTERS
                          if getattr(self, name)})

    @property
    def revoked_needed(self) -> bool:
        return self.state in ("", "revoked")

    def matches(self, token: AuthToken, now: datetime) -> bool:
        """Whether ``token`` passes: ``scope`` one of its scopes; ``script`` found in a
        binding, as written or as a person reads it; ``run`` its run id."""
        if self.state and state_of(token, now) != self.state:
            return False
        if self.scope and self.scope not in token.scopes:
            return False
        if self.run and token.run_id != self.run:
            return False
        if self.script:
            bindings = bindings_of(token.scopes)
            readable = [readable_binding(b) or b for b in bindings]
            if not any(self.script in b for b in (*bindings, *readable)):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The audit view's filters: ``user``, ``token`` (a key), ``action``, ``outcome``
    (``ok``/``refused``), ``since``/``until`` (ISO 8601 dates or times, UTC)."""

    user: str = ""
    token: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def read(cls, params: Mapping[str, str]) -> AuditFilter:
        token = _text(params, "token")
        if token and not is_token_key(token):
            raise Problem(422, "The token filter is a token key: 16 characters of a-z "
                               "and 2-7, as the token list shows them.")
        action = _text(params, "action")
        if action and action not in AUDIT_ACTIONS:
            raise Problem(422, f"The action filter is one of {', '.join(AUDIT_ACTIONS)}.")
        outcome = _text(params, "outcome")
        if outcome and outcome not in ("ok", "refused"):
            raise Problem(422, "The outcome filter is ok or refused.")
        return cls(_text(params, "user"), token, action, outcome,
                   _moment(params, "since"), _moment(params, "until"))

    def shown(self) -> dict[str, str]:
        return {"user": redact(self.user), "token": self.token, "action": self.action,
                "outcome": self.outcome,
                "since": "" if self.since is None else self.since.strftime("%Y-%m-%dT%H:%M"),
                "until": "" if self.until is None else self.until.strftime("%Y-%m-%dT%H:%M")}

    def matches(self, event: AuditEvent) -> bool:
        return ((not self.action or event.action == self.action)
                and (not self.outcome or event.outcome == self.outcome)
                and (self.until is None or event.at < self.until))


def _moment(params: Mapping[str, str], name: str) -> datetime | None:
    text = _text(params, name)
    if not text:
        return None
    try:
        moment = isoparse(text)
        # In UTC, as the trail keeps time: an offset past the calendar's ends overflows.
        return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None \
            else moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise Problem(422, f"The {name!r} filter is a date or time such as 2027-01-31 or "
                           "2027-01-31T12:00 (UTC).") from None


def expiry_choices(now: datetime, limit: datetime | None, *, never_allowed: bool
                   ) -> dict[str, Any]:
    """The create form's expiry picker at ``now``, for a token that may live no later
    than ``limit`` (the signed-in token's expiry, the policy's longest lifetime; ``None``:
    no limit) and may never expire only when ``never_allowed``.

    ``{"options": [{"value", "label"}], "default": value, "dates": bool, "date_min",
    "date_max": "YYYY-MM-DD" or "", "limit": text or ""}``: the fixed durations that end
    by ``limit``, ``never`` when allowed, and ``date`` (a calendar day from ``date_min``
    to ``date_max``) when a day fits; with a limit that no fixed choice fits, the
    engine's default, which is as long as the limit allows.  The default is 30 days, or
    the longest choice that fits.
    """
    options = [{"value": value, "label": label} for value, label, span in _CHOICES
               if limit is None or now + span <= limit]
    if never_allowed and limit is None:
        options.append({"value": "never", "label": "never"})
    # A date is 00:00 UTC of that day: the first one to offer is tomorrow's, and only
    # when it falls by the limit.
    first_day = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                 microsecond=0)
    dates = limit is None or first_day <= limit
    if limit is not None and not options:  # nothing fixed fits: as long as allowed
        options.append({"value": "", "label": f"until {limit.strftime('%Y-%m-%d %H:%M')} "
                                              "UTC (the longest allowed)"})
    values = [o["value"] for o in options]
    default = "30d" if "30d" in values else (values[-1] if values else "date")
    if dates:
        options.append({"value": "date", "label": "on a date…"})
    return {"options": options, "default": default, "dates": dates,
            "date_min": first_day.strftime("%Y-%m-%d"),
            "date_max": "" if limit is None else limit.strftime("%Y-%m-%d"),
            "limit": "" if limit is None else limit.strftime("%Y-%m-%d %H:%M UTC")}
