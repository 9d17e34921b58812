"""Masking secrets out of text before anyone can see it.

One home for the rule "no token string, no secret, no database password in anything we
show": error messages and exception attributes (``_errors``), the ``repr`` of models and
sessions, the command line's output, problem details of the admin API, and every URL we
print.  Callers never write their own pattern; they call :func:`redact`.

What is masked:

- anything shaped like one of our token strings, in any case: ``atk_`` and all the
  token characters after it (so a token glued into a scope, ``"vfs:" + token``, a
  truncated one and an upper-cased one all go), and the body of a token whose prefix was
  cut off (``<key>.<secret>``);
- a lone 43-character URL-safe base64 run with upper case, lower case and a digit: the
  secret or signature part on its own;
- a JSON Web Token (``eyJ…`` with at least one dot);
- the password of a URL: the user part's (``scheme://user:password@host``) and a
  ``password=`` query or keyword parameter (libpq reads both).

The patterns run on any text; a text with nothing to mask comes back unchanged, and a
masked text is masked again to itself.
"""

from __future__ import annotations

import re
from typing import Final

from ._shape import BODY_PATTERN, PART_CHARS, PREFIX, SECRET_LENGTH

__all__ = ["MASK", "redact"]

#: What a masked secret is replaced with.
MASK: Final = "[redacted]"

_P = PART_CHARS  # URL-safe base64: a secret's, a signature's, a JWT segment's characters
_N = SECRET_LENGTH - 1
_PATTERNS: Final = re.compile(
    # a token string, whole or cut, in any case
    rf"(?i:{PREFIX})(?!\[redacted\])[.{_P}]*"
    # a token body without its prefix: <16 base32>.<43 base64url>
    rf"|{BODY_PATTERN}"
    # a JSON Web Token
    rf"|eyJ[{_P}]*\.[{_P}.]*"
    # a lone secret or signature part: 43 URL-safe base64 characters, mixed
    rf"|(?<![{_P}])(?=[{_P}]{{0,{_N}}}[A-Z])(?=[{_P}]{{0,{_N}}}[a-z])"
    rf"(?=[{_P}]{{0,{_N}}}[0-9])[{_P}]{{{SECRET_LENGTH}}}(?![{_P}])"
)
# scheme://user:password@host -- the password is whatever lies between ':' and the
# last '@' of the authority (a password may itself hold '@' or '/'; libpq allows both
# once percent-encoded, and people forget to encode).
_URL_PASSWORD: Final = re.compile(r"(://[^:/@\s?#]*:)[^\s]*@(?=[^@\s]*(?:[/?#\s]|\Z))")
# ?password=… / &password=… / a libpq keyword string's password=…
_PASSWORD_PARAMETER: Final = re.compile(
    r"((?:^|[?&;\s])(?i:password)\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s#;']*)"
)


def _mask_token(match: re.Match[str]) -> str:
    text = match.group(0)
    if text[:len(PREFIX)].lower() == PREFIX:
        return text[:len(PREFIX)] + MASK
    return MASK


def redact(text: str) -> str:
    """``text`` with every token string, secret-shaped run and URL password masked."""
    if not text:
        return text
    text = _PATTERNS.sub(_mask_token, text)
    if "=" in text:
        text = _PASSWORD_PARAMETER.sub(lambda m: m.group(1) + "***", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1***@", text)
    return text
