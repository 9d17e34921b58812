"""The shape of a token string and of a token key, defined once.

A token string is ``atk_<key>.<secret>.<signature>`` (``_codec`` says how one is made,
signed and read).  Three places need to recognise one: the codec that reads strings
(exactly), the redaction that masks them in any text (loosely: any case, cut, glued
into something else) and the command line that refuses them as arguments.  Each builds
its pattern from the pieces here, so a change of length or alphabet is made once.

This module imports nothing of the package: ``_errors`` masks its messages with
``_redact``, which builds on these pieces, so they must sit below everything.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BODY_PATTERN",
    "KEY_ALPHABET",
    "KEY_CHARS",
    "KEY_LENGTH",
    "PART_CHARS",
    "PREFIX",
    "SECRET_LENGTH",
    "SIGNATURE_LENGTH",
    "TOKEN_LENGTH",
    "TOKEN_PATTERN",
    "is_token_key",
]

PREFIX: Final = "atk_"
#: A key: 16 characters of lowercase base32 (80 random bits), the public lookup id.
KEY_LENGTH: Final = 16
KEY_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
#: The secret and the signature: unpadded URL-safe base64 of 32 bytes.
SECRET_LENGTH: Final = 43
SIGNATURE_LENGTH: Final = 43
TOKEN_LENGTH: Final = len(PREFIX) + KEY_LENGTH + 1 + SECRET_LENGTH + 1 + SIGNATURE_LENGTH

# Regular-expression pieces (character-class bodies and patterns).
#: The key's characters, as a character-class body.
KEY_CHARS: Final = "a-z2-7"
#: URL-safe base64 -- the secret's and the signature's characters -- as a class body.
PART_CHARS: Final = r"A-Za-z0-9_\-"
#: A whole token string; groups: key, secret, signature.  Anchor it as needed.
TOKEN_PATTERN: Final = (
    rf"{PREFIX}([{KEY_CHARS}]{{{KEY_LENGTH}}})\.([{PART_CHARS}]{{{SECRET_LENGTH}}})"
    rf"\.([{PART_CHARS}]{{{SIGNATURE_LENGTH}}})"
)
#: A token's body without its prefix, ``<key>.<secret>``, the key in any case, not
#: glued to a preceding base64 character: what is left of a string whose ``atk_`` was
#: cut off.
BODY_PATTERN: Final = (
    rf"(?<![{PART_CHARS}])[A-Z{KEY_CHARS}]{{{KEY_LENGTH}}}\.[{PART_CHARS}]{{{SECRET_LENGTH}}}"
)

_KEY_SET: Final = frozenset(KEY_ALPHABET)


def is_token_key(key: str) -> bool:
    """Whether ``key`` has the shape of a token key (16 characters of a-z and 2-7)."""
    return len(key) == KEY_LENGTH and set(key) <= _KEY_SET
