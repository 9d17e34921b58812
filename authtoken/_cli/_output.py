"""What the command line writes, and how: one home for its stderr forms and its redaction.

Everything written to standard error passes through :func:`authtoken._redact.redact`,
so no token string, secret-shaped run or database password reaches a terminal or a log
by way of an error message, and through :func:`safe`, so no argument quoted in a message
sends the terminal an escape sequence.  With ``--json`` (:data:`JSON_ERRORS` set by ``main``),
errors and warnings are JSON objects, one a line: ``{"error": CLASS, "message": TEXT}``
and ``{"warning": TEXT}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Final

from .._redact import redact
from .._token import UserKey

__all__ = [
    "JSON_ERRORS",
    "PROG",
    "cut",
    "fail",
    "json_text",
    "note",
    "one_line",
    "out",
    "print_json",
    "safe",
    "short_time",
    "table",
    "time_text",
    "user_text",
    "warn",
]

PROG: Final = "authtoken"

#: Whether errors and warnings go to standard error as JSON lines (``--json``).
JSON_ERRORS: ContextVar[bool] = ContextVar("authtoken_cli_json_errors", default=False)


def one_line(text: str) -> str:
    """``text`` with its lines joined by single spaces."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def out(text: str = "") -> None:
    """One line on standard output (the command's result; never redacted: it may be
    the token string ``authorize`` prints once)."""
    _write(sys.stdout, text)


def table(rows: Sequence[Sequence[str]]) -> None:
    """``rows`` (the header first) as columns on standard output, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def json_text(value: object) -> str:
    """``value`` as the indented JSON every ``--json`` output is written in."""
    return json.dumps(value, indent=2)


def print_json(value: object) -> None:
    """``value`` as indented JSON on standard output."""
    out(json_text(value))


def note(text: str) -> None:
    """A line for people on standard error, redacted, its control characters escaped
    (progress, not an error)."""
    _write(sys.stderr, safe(redact(text)))


def fail(kind: str, message: str, *, text: str | None = None) -> None:
    """Report an error on standard error, one line, redacted, control characters escaped
    (a usage error may quote an argument, and a terminal obeys escape sequences).

    ``kind`` is the error's class name (``"UsageError"`` for a bad command line).  As
    text the line is ``text``, or ``"kind: message"`` without one; with ``--json`` it is
    ``{"error": kind, "message": message}``.
    """
    message = redact(one_line(message))
    if JSON_ERRORS.get():
        _write(sys.stderr, json.dumps({"error": kind, "message": message}))
    else:
        _write(sys.stderr, safe(redact(one_line(text)) if text is not None
                                else f"{kind}: {message}"))


def warn(message: str) -> None:
    """A warning on standard error: ``authtoken: warning: ...`` or ``{"warning": ...}``."""
    message = redact(one_line(message))
    if JSON_ERRORS.get():
        _write(sys.stderr, json.dumps({"warning": message}))
    else:
        _write(sys.stderr, safe(f"{PROG}: warning: {message}"))


def safe(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (no terminal tricks)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def user_text(user: UserKey | None) -> str:
    """A user as shown to people: strings that could pass for something else are quoted."""
    if user is None:
        return "-"
    if isinstance(user, int):
        return str(user)
    if (user.isascii() and user.isdigit()) or not user.isprintable() or " " in user \
            or '"' in user or not user:
        return json.dumps(user)
    return user


def time_text(value: datetime | None, none: str = "-") -> str:
    """An ISO 8601 UTC time, or ``none``."""
    if value is None:
        return none
    return value.astimezone(timezone.utc).isoformat()


def short_time(value: datetime, *, seconds: bool = False) -> str:
    """A UTC time for a table column: to the minute, or to the second."""
    shape = "%Y-%m-%d %H:%M:%SZ" if seconds else "%Y-%m-%d %H:%MZ"
    return value.astimezone(timezone.utc).strftime(shape)


def cut(text: str, width: int) -> str:
    """``text``, shortened to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"
