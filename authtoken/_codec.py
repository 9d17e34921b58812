"""Token strings: how they are made, signed, checksummed and read.

Theory of operation
-------------------
A token string issued now is ``atk_<key>.<secret>.<signature>.<checksum>``:

- ``key``: 16 characters of lowercase base32 (80 random bits) -- the public lookup id;
- ``secret``: 43 characters of unpadded URL-safe base64 (256 random bits); storage
  keeps only its SHA-256 digest;
- ``signature``: itsdangerous' HMAC-SHA256 signature of ``atk_<key>.<secret>`` with the
  newest secret key and the salt ``authtoken.token.v2``, 43 characters;
- ``checksum``: the CRC32 of everything before its dot, as 6 base62 characters
  (``0-9A-Za-z``, most significant first, zero-padded) -- keyless, so a secret scanner
  tells a real token from noise offline: a random string of this shape passes with
  probability 62**-6, below 2**-35.

Strings issued before the checksum are ``atk_<key>.<secret>.<signature>``, signed with
the salt ``authtoken.token.v1``; they still read.  The two formats differ in length
(115 and 108 characters), so a string is read as exactly one of them, and each
format's signature has its own salt: cutting the checksum off a new string leaves a
signature the old format refuses, and a checksum added to an old string leaves one the
new format refuses.  Neither format is a way to forge the other or to get a second
valid string for a token.

The signature lets a forged or mangled string be refused without touching storage; a
string whose checksum fails is refused before any HMAC is computed.  Every part has a
fixed length and alphabet (``_shape`` for the first three) and the signature and the
checksum are compared as *text*, so exactly one string is valid per token: a base64
character that differs only in unused bits (which a decoder would accept) is refused.
Old secret keys still verify; only the first (newest) signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import zlib
from collections.abc import Iterable
from typing import Final

from itsdangerous import Signer

from ._errors import ArgumentTypeError, InvalidArgument, InvalidToken
from ._shape import PREFIX, SIGNATURE_LENGTH, TOKEN_PATTERN
from ._shape import TOKEN_LENGTH as LEGACY_TOKEN_LENGTH

__all__ = [
    "CHECKSUM_ALPHABET",
    "CHECKSUM_LENGTH",
    "CHECKSUM_PATTERN",
    "LEGACY_TOKEN_LENGTH",
    "PREFIX",
    "TOKEN_LENGTH",
    "TokenCodec",
    "checksum",
    "checksum_holds",
    "new_key",
    "secret_digest",
]

#: The checksum's digits, in order of value (base62).
CHECKSUM_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: 62**6 > 2**32: six digits hold any CRC32.
CHECKSUM_LENGTH: Final = 6
#: The checksum part, as a regular expression (after the signature and a dot).
CHECKSUM_PATTERN: Final = rf"[0-9A-Za-z]{{{CHECKSUM_LENGTH}}}"
#: The length of a token string issued now (``LEGACY_TOKEN_LENGTH`` is the earlier one).
TOKEN_LENGTH: Final = LEGACY_TOKEN_LENGTH + 1 + CHECKSUM_LENGTH

# Pinned: changing a salt invalidates every token string already issued in its format.
_SALT_V1: Final = b"authtoken.token.v1"
_SALT_V2: Final = b"authtoken.token.v2"
# Exactly one token string, nothing before or after.
_LEGACY_SHAPE: Final = re.compile(TOKEN_PATTERN.encode("ascii") + rb"\Z")
_SHAPE: Final = re.compile(
    TOKEN_PATTERN.encode("ascii") + rb"\." + CHECKSUM_PATTERN.encode("ascii") + rb"\Z"
)
_DIGITS: Final = CHECKSUM_ALPHABET.encode("ascii")
# Every pair of base62 digits, so that a checksum is three look-ups in base 62² (a
# CRC32 is below 62⁶): a login computes one, and a loop of six divisions cost it 1 µs.
_PAIRS: Final = tuple(bytes((high, low)) for high in _DIGITS for low in _DIGITS)
_PAIR: Final = len(_DIGITS) ** 2

_INVALID: Final = "not a valid authtoken token string"


def new_key() -> str:
    """A fresh token key: 16 characters of lowercase base32."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def secret_digest(secret: bytes) -> bytes:
    """The digest stored in place of a secret (256-bit random input: no KDF needed)."""
    return hashlib.sha256(secret).digest()


def checksum(body: bytes) -> bytes:
    """The checksum part for ``body`` (``atk_<key>.<secret>.<signature>``): its CRC32 in
    6 base62 digits.  Keyless: anyone can compute it."""
    high, low = divmod(zlib.crc32(body), _PAIR)
    return _PAIRS[high // _PAIR] + _PAIRS[high % _PAIR] + _PAIRS[low]


def checksum_holds(token: str) -> bool:
    """Whether ``token``, a string of the current shape, ends with its own checksum.

    Says nothing of the signature: a string that passes may still be forged.
    """
    if not token.isascii():
        return False
    raw = token.encode("ascii")
    cut = len(raw) - CHECKSUM_LENGTH - 1
    return cut > 0 and raw[cut:cut + 1] == b"." and checksum(raw[:cut]) == raw[cut + 1:]


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _key_bytes(key: object) -> bytes:
    if isinstance(key, str):
        raw = key.encode("utf-8")
    elif isinstance(key, bytes):
        raw = key
    else:
        raise ArgumentTypeError(
            f"a secret key is a str or bytes, not {type(key).__name__}"
        )
    if not raw:
        raise InvalidArgument("a secret key cannot be empty")
    return raw


def normalise_keys(secret_keys: object) -> list[bytes]:
    """``secret_keys`` (one key or a list, newest first) as a non-empty list of bytes."""
    if isinstance(secret_keys, (str, bytes)):
        keys = [_key_bytes(secret_keys)]
    elif isinstance(secret_keys, Iterable):
        keys = [_key_bytes(k) for k in secret_keys]
    else:
        raise ArgumentTypeError(
            "secret_keys must be a key (str or bytes) or a list of keys, newest first"
        )
    if not keys:
        raise InvalidArgument("secret_keys is empty: give at least one key")
    return keys


def _keyed(keys: list[bytes], salt: bytes) -> tuple[hmac.HMAC, ...]:
    """One keyed HMAC state per secret key, derived as itsdangerous derives it.

    Signer re-derives the key on every call, and re-keying HMAC costs as much as the
    MAC itself; a state kept here is copied per use instead.
    """
    signer = Signer(keys, salt=salt, sep=".", key_derivation="hmac",
                    digest_method=hashlib.sha256)
    return tuple(hmac.new(signer.derive_key(k), digestmod=hashlib.sha256) for k in keys)


def _verifies(keyed: tuple[hmac.HMAC, ...], signed: bytes, signature: bytes) -> bool:
    for state in keyed:
        mac = state.copy()
        mac.update(signed)
        if hmac.compare_digest(_b64(mac.digest()), signature):
            return True
    return False


class TokenCodec:
    """Makes and reads token strings for a list of secret keys, newest first."""

    __slots__ = ("_derived", "_legacy")

    def __init__(self, secret_keys: object) -> None:
        keys = normalise_keys(secret_keys)
        self._derived = _keyed(keys, _SALT_V2)
        # The earlier format's keys: they read old strings and derive() keys for other
        # purposes, which must not change when the format does.
        self._legacy = _keyed(keys, _SALT_V1)

    def __repr__(self) -> str:
        return f"TokenCodec(<{len(self._derived)} secret key(s)>)"

    def derive(self, purpose: bytes) -> bytes:
        """A 256-bit key for another ``purpose``, derived from the newest secret key.

        Processes sharing the secret keys derive the same key; it reveals nothing of
        the secret key or of token signatures.
        """
        mac = self._legacy[0].copy()
        mac.update(b"authtoken derived key\x00" + purpose)
        return mac.digest()

    def derive_each(self, purpose: object) -> tuple[bytes, ...]:
        """``derive``'s key for ``purpose`` (a ``str`` is its UTF-8 bytes) from each
        secret key, newest first: what an older key protected stays readable."""
        if isinstance(purpose, str):
            purpose = purpose.encode("utf-8")
        if not isinstance(purpose, bytes):
            raise ArgumentTypeError(f"purpose is a str, not {type(purpose).__name__}")
        keyed = []
        for state in self._legacy:
            mac = state.copy()
            mac.update(b"authtoken derived key\x00" + purpose)
            keyed.append(mac.digest())
        return tuple(keyed)

    def issue(self, key: str) -> tuple[str, bytes]:
        """A new token string for ``key`` (the current format) and its secret's digest."""
        secret = _b64(secrets.token_bytes(32))
        signed = PREFIX.encode() + key.encode() + b"." + secret
        mac = self._derived[0].copy()
        mac.update(signed)
        body = signed + b"." + _b64(mac.digest())
        return (body + b"." + checksum(body)).decode("ascii"), secret_digest(secret)

    def read(self, token: object) -> tuple[str, bytes]:
        """The key and secret digest of a token string whose signature verifies.

        Reads both formats.  Raises ``InvalidToken`` for anything else -- a string whose
        checksum holds but whose signature does not included (``TypeError`` for a
        non-string).  Touches no storage.
        """
        if isinstance(token, str):
            if not token.isascii():
                raise InvalidToken(_INVALID)
            raw = token.encode("ascii")
        elif isinstance(token, bytes):
            raw = token
        else:
            raise TypeError(
                f"a token string is a str or bytes, not {type(token).__name__}"
            )
        if len(raw) == TOKEN_LENGTH:
            m = _SHAPE.match(raw)
            body = raw[: -CHECKSUM_LENGTH - 1]
            if m is None or checksum(body) != raw[-CHECKSUM_LENGTH:]:
                raise InvalidToken(_INVALID)
            keyed = self._derived
        elif len(raw) == LEGACY_TOKEN_LENGTH:
            m = _LEGACY_SHAPE.match(raw)
            if m is None:
                raise InvalidToken(_INVALID)
            body = raw
            keyed = self._legacy
        else:
            raise InvalidToken(_INVALID)
        if _verifies(keyed, body[: -SIGNATURE_LENGTH - 1], m.group(3)):
            return m.group(1).decode("ascii"), secret_digest(m.group(2))
        raise InvalidToken(_INVALID)
