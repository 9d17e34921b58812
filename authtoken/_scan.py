"""Finding token strings in any text: what a secret scanner does, done offline.

Theory of operation
-------------------
A token string issued now ends with a keyless checksum (``_codec``), so a string of the
right shape whose checksum holds is, but for a chance below 2**-35, a real token string:
no secret key and no storage are needed to tell it from noise.

:data:`TOKEN_PATTERN` is the shape, published for other scanners (``docs/leaks.md``
gives it with a gitleaks rule).  It is a run of fixed-length character classes after a
literal ``atk_``, with no nested or open-ended repetition, so no regular-expression engine
backtracks on it more than a token's length; Go's RE2 (gitleaks) reads it unchanged.

:func:`find_tokens` searches for the pattern from each place a token could start and
keeps the matches whose checksum holds.  A match whose checksum fails is no token, but a
real one may start inside it (a secret may hold ``atk_``), so the search resumes one
character after the failed match's start, not after its end; each position is tried once
and each try reads at most a token's length, so the whole search is linear in the text.

What surrounds a token is not looked at: ``x=atk_…`` and a token glued to more
characters of its own alphabet are still found, since the checksum, not a boundary,
tells a token from noise, and a leaked token with something stuck to it is still a
leaked token.  Strings issued before the checksum existed have none and are never
found; ``_redact`` still masks them wherever they appear.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from ._codec import CHECKSUM_PATTERN, checksum_holds
from ._shape import (
    KEY_CHARS,
    KEY_LENGTH,
    PART_CHARS,
    PREFIX,
    SECRET_LENGTH,
    SIGNATURE_LENGTH,
)

__all__ = ["TOKEN_PATTERN", "FoundToken", "find_tokens"]

#: The shape of a token string issued now: ``atk_<key>.<secret>.<signature>.<checksum>``.
#: Unanchored and without groups, for any scanner; a match is a token only if its
#: checksum holds as well (:func:`find_tokens`).
TOKEN_PATTERN: Final = (
    rf"{PREFIX}[{KEY_CHARS}]{{{KEY_LENGTH}}}\.[{PART_CHARS}]{{{SECRET_LENGTH}}}"
    rf"\.[{PART_CHARS}]{{{SIGNATURE_LENGTH}}}\.{CHECKSUM_PATTERN}"
)

_FINDER: Final = re.compile(TOKEN_PATTERN)


class FoundToken(NamedTuple):
    """A token string found in a text: its key and where it lies (``text[start:end]``).

    Holds no part of the string but its public key, so its ``repr`` shows no secret.
    """

    key: str
    start: int
    end: int


def find_tokens(text: str) -> list[FoundToken]:
    """The token strings in ``text`` whose checksum holds, in order of position.

    Checks no signature and reads no storage: a string found may be forged or may belong
    to another installation (``authtoken scan --check`` asks the store).  Tokens found
    never overlap.  Raises ``TypeError`` when ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"find_tokens reads a str, not {type(text).__name__}")
    found: list[FoundToken] = []
    pos = 0
    search = _FINDER.search
    while (m := search(text, pos)) is not None:
        if checksum_holds(m.group()):
            start = m.start() + len(PREFIX)
            found.append(FoundToken(text[start:start + KEY_LENGTH], m.start(), m.end()))
            pos = m.end()
        else:
            pos = m.start() + 1
    return found
