"""Token strings: how they are made, signed and read.

Theory of operation
-------------------
A token string is ``atk_<key>.<secret>.<signature>``:

- ``key``: 16 characters of lowercase base32 (80 random bits) -- the public lookup id;
- ``secret``: 43 characters of unpadded URL-safe base64 (256 random bits); storage
  keeps only its SHA-256 digest;
- ``signature``: itsdangerous' HMAC-SHA256 signature of ``atk_<key>.<secret>`` with the
  newest secret key, 43 characters.

The signature lets a forged or mangled string be refused without touching storage.
Every part has a fixed length and alphabet (``_shape``, where the redaction and the
command line find them too) and the signature is compared as *text*, so
exactly one string is valid per token: a base64 character that differs only in unused
bits (which a decoder would accept) is refused.  Old secret keys still verify; only the
first (newest) signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from typing import Final

from itsdangerous import Signer

from ._errors import ArgumentTypeError, InvalidArgument, InvalidToken
from ._shape import PREFIX, SIGNATURE_LENGTH, TOKEN_LENGTH, TOKEN_PATTERN

__all__ = ["PREFIX", "TOKEN_LENGTH", "TokenCodec", "new_key", "secret_digest"]

_SALT: Final = b"authtoken.token.v1"
# Exactly one token string, nothing before or after: the shape of ``_shape``.
_SHAPE: Final = re.compile(TOKEN_PATTERN.encode("ascii") + rb"\Z")

_INVALID: Final = "not a valid authtoken token string"


def new_key() -> str:
    """A fresh token key: 16 characters of lowercase base32."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def secret_digest(secret: bytes) -> bytes:
    """The digest stored in place of a secret (256-bit random input: no KDF needed)."""
    return hashlib.sha256(secret).digest()


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


class TokenCodec:
    """Makes and reads token strings for a list of secret keys, newest first."""

    __slots__ = ("_derived", "_signer")

    def __init__(self, secret_keys: object) -> None:
        keys = normalise_keys(secret_keys)
        # itsdangerous signs with the *last* key of its list; ours is newest first.
        self._signer = Signer(
            list(reversed(keys)), salt=_SALT, sep=".", key_derivation="hmac",
            digest_method=hashlib.sha256,
        )
        # Derive each key once and keep the keyed HMAC state: Signer re-derives the key
        # on every call, and re-keying HMAC costs as much as the MAC itself.
        self._derived = tuple(
            hmac.new(self._signer.derive_key(k), digestmod=hashlib.sha256) for k in keys
        )

    def __repr__(self) -> str:
        return f"TokenCodec(<{len(self._derived)} secret key(s)>)"

    def derive(self, purpose: bytes) -> bytes:
        """A 256-bit key for another ``purpose``, derived from the newest secret key.

        Processes sharing the secret keys derive the same key; it reveals nothing of
        the secret key or of token signatures.
        """
        mac = self._derived[0].copy()
        mac.update(b"authtoken derived key\x00" + purpose)
        return mac.digest()

    def issue(self, key: str) -> tuple[str, bytes]:
        """A new token string for ``key`` and the digest of its secret."""
        secret = _b64(secrets.token_bytes(32))
        token = self._signer.sign(PREFIX.encode() + key.encode() + b"." + secret)
        return token.decode("ascii"), secret_digest(secret)

    def read(self, token: object) -> tuple[str, bytes]:
        """The key and secret digest of a token string whose signature verifies.

        Raises ``InvalidToken`` for anything else (``TypeError`` for a non-string).
        Touches no storage.
        """
        if isinstance(token, str):
            if len(token) != TOKEN_LENGTH or not token.isascii():
                raise InvalidToken(_INVALID)
            raw = token.encode("ascii")
        elif isinstance(token, bytes):
            if len(token) != TOKEN_LENGTH:
                raise InvalidToken(_INVALID)
            raw = token
        else:
            raise TypeError(
                f"a token string is a str or bytes, not {type(token).__name__}"
            )
        m = _SHAPE.match(raw)
        if m is None:
            raise InvalidToken(_INVALID)
        signed = raw[: -SIGNATURE_LENGTH - 1]
        signature = m.group(3)
        for keyed in self._derived:
            mac = keyed.copy()
            mac.update(signed)
            if hmac.compare_digest(_b64(mac.digest()), signature):
                return m.group(1).decode("ascii"), secret_digest(m.group(2))
        raise InvalidToken(_INVALID)
