"""Where the command line reads a token string: ``--token-file``, standard input, or
``AUTHTOKEN_TOKEN``, in that order.

Theory of operation
-------------------
``--token-file F`` wins: when it is given, neither standard input nor the environment
is looked at, so standard input stays free for the command ``authtoken exec`` runs.  The
file is read by the library's one reader of token files (``authtoken._tokenfile``), the
way ssh reads a private key: refused (``InvalidArgument``, exit 1, a message naming the
file and what to do, never its content) unless it is a private regular file of the
user's or root's (systemd's credential for ``User=`` included), at most
:data:`MAX_TOKEN_FILE` bytes of ASCII.

The content is stripped of surrounding whitespace (a trailing newline is normal).
Without ``--token-file``, standard input is read to its end (at most :data:`MAX_STDIN`)
unless it is a terminal, and ``AUTHTOKEN_TOKEN`` is used when it held nothing but
whitespace.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final, NamedTuple

from .._errors import InvalidToken
from .._tokenfile import MAX_TOKEN_FILE
from .._tokenfile import read_token_file as _read_file

__all__ = [
    "MAX_STDIN",
    "MAX_TOKEN_FILE",
    "TOKEN_ENV",
    "TokenInput",
    "read_token",
    "read_token_file",
    "token_input",
]

#: At most this much of standard input is read when looking for a token string.
MAX_STDIN: Final = 64 * 1024
TOKEN_ENV: Final = "AUTHTOKEN_TOKEN"  # noqa: S105 - a variable name, not a secret


class TokenInput(NamedTuple):
    """A token string read for a command, and whether standard input was consumed to
    read it (``authtoken exec`` then gives its command ``/dev/null`` instead)."""

    text: str
    read_stdin: bool


def read_token_file(path: str) -> str:
    """The token string held in the file ``path``, stripped of surrounding whitespace;
    ``InvalidArgument`` (``--token-file 'PATH' ...``) when the file is refused."""
    return _read_file(path, label="--token-file")


def _stdin_text(stream: Any) -> tuple[str, bool]:
    """What ``stream`` holds (at most ``MAX_STDIN``; ``""`` for a terminal), and whether
    it was read."""
    if stream is None:
        return "", False
    isatty = getattr(stream, "isatty", None)
    try:
        if callable(isatty) and isatty():
            return "", False
        source = getattr(stream, "buffer", None)
        if source is None or not callable(getattr(source, "read", None)):
            source = stream
        raw = source.read(MAX_STDIN + 1)
    except (OSError, ValueError):  # closed, unreadable or captured: nothing to read
        return "", False
    if raw is None:
        return "", True
    if len(raw) > MAX_STDIN and raw.strip():
        raise InvalidToken(
            "standard input holds more than 64 KiB; a token string is at most 256 characters"
        )
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "replace"), True
    return str(raw), True


def token_input(token_file: str | None = None) -> TokenInput:
    """The token string: from ``token_file`` when given (see :func:`read_token_file`),
    else from standard input, else from ``AUTHTOKEN_TOKEN``.

    Surrounding whitespace is stripped.  Standard input is used unless it is a terminal
    or holds only whitespace.  Raises ``InvalidToken`` when neither holds anything.
    """
    if token_file is not None:
        return TokenInput(read_token_file(token_file), read_stdin=False)
    text, read_stdin = _stdin_text(sys.stdin)
    text = text.strip()
    if not text:
        text = os.environ.get(TOKEN_ENV, "").strip()
    if not text:
        raise InvalidToken(
            f"no token string: pipe it on standard input, set {TOKEN_ENV} or give "
            "--token-file F"
        )
    return TokenInput(text, read_stdin)


def read_token(token_file: str | None = None) -> str:
    """The token string, as :func:`token_input` finds it."""
    return token_input(token_file).text
