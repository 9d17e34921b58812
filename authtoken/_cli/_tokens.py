"""How the command line shows tokens: ``show``'s fields and ``list``'s table.

The limits of tokens for jobs are shown only where a token has them, so that the table
of tokens without any reads as it always did: ``max_uses`` with the uses left,
``max_lifetime`` with the time the token is renewable until (``created_at`` plus it; a
parent's expiry or the policy may stop renewals sooner), and the ``run_id`` of a run
token.  A ``list`` column for each appears only when a listed token needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final, NamedTuple

from .._expiry import shown_duration
from .._token import AuthToken
from ._output import cut, out, safe, short_time, table, time_text, user_text
from ._pinning import short_scope

__all__ = ["renewable_until", "show_token", "token_table", "uses_left"]


def uses_left(token: AuthToken) -> int | None:
    """How many logins ``token`` has left (``None``: no limit)."""
    if token.max_uses is None:
        return None
    return max(0, token.max_uses - token.use_count)


def renewable_until(token: AuthToken) -> datetime | None:
    """The latest expiry renewals may give ``token`` by its own ``max_lifetime``
    (``None``: not renewable)."""
    if token.max_lifetime is None or token.created_at is None:
        return None
    return token.created_at + token.max_lifetime


def _limit_rows(token: AuthToken) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    left = uses_left(token)
    if left is not None:
        rows.append(("max_uses", f"{token.max_uses} ({left} left)"))
    until = renewable_until(token)
    if until is not None and token.max_lifetime is not None:
        rows.append(("max_lifetime", f"{shown_duration(token.max_lifetime)} "
                                     f"(renewable until {time_text(until)})"))
    if token.run_id is not None:
        rows.append(("run_id", safe(token.run_id)))
    return rows


def show_token(token: AuthToken) -> None:
    """``token``'s fields, one a line, as ``show`` and ``update`` print them."""
    rows = [
        ("key", token.key or "-"),
        ("user", user_text(token.user)),
        ("scope", safe(short_scope(token.scope))),
        ("description", safe(token.description) or "-"),
        ("data", "-" if token.data is None else safe(token.data)),
        ("expires", time_text(token.expires, none="never")),
        ("created_at", time_text(token.created_at)),
        ("updated_at", time_text(token.updated_at)),
        ("revoked_at", time_text(token.revoked_at)),
        ("last_used_at", time_text(token.last_used_at)),
        ("use_count", str(token.use_count)),
        ("parent_key", token.parent_key or "-"),
        *_limit_rows(token),
    ]
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        out(f"{name + ':':<{width}} {value}")


def _status(token: AuthToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return f"revoked {short_time(token.revoked_at)}"
    expires = token.expires
    if expires is not None and now >= expires:
        return "expired"
    if uses_left(token) == 0:
        return "used up"
    if token.last_used_at is not None:
        return f"used {token.use_count}x, last {short_time(token.last_used_at)}"
    return "unused"


def _uses_cell(token: AuthToken) -> str:
    left = uses_left(token)
    return "-" if left is None else f"{left} of {token.max_uses} left"


def _renewable_cell(token: AuthToken) -> str:
    until = renewable_until(token)
    return "-" if until is None else short_time(until)


def _run_cell(token: AuthToken) -> str:
    return "-" if token.run_id is None else cut(safe(token.run_id), 32)


class _Column(NamedTuple):
    """A column of the table that only some tokens need."""

    header: str
    needed: Callable[[AuthToken], bool]
    cell: Callable[[AuthToken], str]


_LIMIT_COLUMNS: Final = (
    _Column("USES", lambda t: t.max_uses is not None, _uses_cell),
    _Column("RENEWABLE UNTIL", lambda t: t.max_lifetime is not None, _renewable_cell),
    _Column("RUN", lambda t: t.run_id is not None, _run_cell),
)


def token_table(tokens: Sequence[AuthToken], now: datetime) -> None:
    """``tokens`` as ``list`` prints them: a table, header first, one token a row."""
    columns = [c for c in _LIMIT_COLUMNS if any(c.needed(t) for t in tokens)]
    header = ("KEY", "USER", "SCOPE", "DESCRIPTION", "EXPIRES",
              *(c.header for c in columns), "STATUS")
    table([header] + [
        (
            t.key or "-",
            cut(user_text(t.user), 24),
            cut(safe(short_scope(t.scope)), 40),
            cut(safe(t.description), 32) or "-",
            "never" if t.expires is None else short_time(t.expires),
            *(c.cell(t) for c in columns),
            _status(t, now),
        )
        for t in tokens
    ])
