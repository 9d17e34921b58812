"""What the token page reads from its forms and shows of a token.

Pure functions, no request and no engine: the page (``_page``) reads a form's fields
with ``script_paths``, ``script_keys`` and ``read_max_uses``, keeps what was typed for
a form shown again after a refusal with ``kept`` (masked: a token string pasted into a
field is never sent back), and turns a token into a row of the list with
``token_row``.
A field that does not read is a 422 ``Problem``; what the engine then checks -- a scope,
an expiry, the range of a use limit, a lifetime -- is the engine's to refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from .._expiry import shown_duration
from .._redact import redact
from .._scopes import code_bindings_of
from .._token import AuthToken
from ._checks import shown_pin
from ._problems import Problem

__all__ = ["kept", "read_max_uses", "script_keys", "script_paths", "token_row", "when"]

# Longer than any key that fits an identifier; int() of far longer text is slow.
_KEY: Final = re.compile(r"-?[0-9]{1,600}\Z", re.ASCII)
# Longer than any count the store keeps, so that the engine names the range.
_COUNT: Final = re.compile(r"[+-]?[0-9]{1,40}\Z", re.ASCII)
_LINE_END: Final = re.compile(r"\r\n|\r|\n")


def when(value: datetime | None, never: str = "never") -> str:
    """``value`` as the page shows a time (``2030-01-31 12:00 UTC``), or ``never``."""
    return never if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def script_paths(text: str) -> list[str]:
    """The form's script paths: one a line, blank lines and surrounding spaces ignored.

    Lines end at CR and LF only (a browser sends a textarea's line ends as CRLF):
    ``str.splitlines`` would also cut at U+2028, NEL, the file separators and more,
    turning one odd path into bindings to other scripts.
    """
    lines = (line.strip(" \t") for line in _LINE_END.split(text))
    return [line for line in lines if line]


def script_keys(text: str) -> list[int]:
    """The form's script keys: integers separated by spaces or commas; else a 422."""
    words = [word for word in re.split(r"[\s,]+", text) if word]
    if not all(_KEY.fullmatch(word) for word in words):
        raise Problem(422, "Script keys are integers (such as 42), separated by "
                           "spaces or commas.")
    return [int(word) for word in words]


def read_max_uses(text: str) -> int | None:
    """The form's use limit: ``None`` when empty, else a whole number (a 422 if it is
    none).  Its range is checked by ``AuthToken``, as for every face."""
    text = text.strip()
    if not text:
        return None
    if not _COUNT.fullmatch(text):
        raise Problem(422, "Max uses is a whole number such as 5 (1 for a one-time "
                           "token), or empty for no limit.")
    return int(text)


def kept(form: Mapping[str, str], fields: Iterable[str]) -> dict[str, str]:
    """What was typed into ``fields``, to fill a form shown again after a refusal;
    anything token- or secret-shaped masked."""
    return {name: redact(form.get(name, "")) for name in fields}


def token_row(token: AuthToken, now: datetime) -> dict[str, Any]:
    """What the list shows of ``token`` at ``now``.

    ``scripts`` (its ``vfs:``/``ufs:`` bindings) and ``pins`` (its code bindings, each
    ``short`` and ``full``, see ``_checks.shown_pin``) apart from its other ``scopes``.

    ``max_uses`` and ``uses_left`` (``None`` for no limit); ``renewable_until``
    (``created_at + max_lifetime``, or ``None``) and ``renewable``: whether a renewal
    could move its expiry now -- not revoked, not expired, not at that limit yet.
    """
    scripts = [s for s in token.scopes if s[:4] in ("vfs:", "ufs:")]
    pins = code_bindings_of(token.scopes)
    until: datetime | None = None
    lifetime = token.max_lifetime
    if lifetime is not None and token.created_at is not None:
        until = token.created_at + lifetime
    revoked = token.revoked_at is not None
    expires = token.expires
    renewable = (until is not None and not revoked and expires is not None
                 and now < expires < until)
    limit = token.max_uses
    return {
        "key": token.key,
        "description": token.description,
        "scopes": [s for s in token.scopes if s not in scripts and s not in pins],
        "scripts": scripts,
        "pins": [shown_pin(p) for p in pins],
        "expires": when(token.expires),
        "last_used": when(token.last_used_at, "never used"),
        "uses": token.use_count,
        "max_uses": limit,
        "uses_left": None if limit is None else max(0, limit - token.use_count),
        "max_lifetime": None if lifetime is None else shown_duration(lifetime),
        "renewable_until": None if until is None else when(until),
        "renewable": renewable,
        "run_id": token.run_id,
        "revoked": revoked,
        "parent": token.parent_key,
    }
