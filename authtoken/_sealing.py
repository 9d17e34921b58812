"""Sealing upstream tokens at rest: AES-GCM under keys derived from the secret keys.

Theory of operation
-------------------
The broker stores a user's upstream refresh and access tokens in the repository, so a
copy of the database must not give them away.  Each is *sealed*:

- the key: for each of the engine's secret keys (newest first), the engine's derived key
  for the purpose ``upstream`` (``Security.derive_keys``), stretched by HKDF-SHA256 with
  ``info=b"authtoken upstream v1"`` into a 256-bit AES key.  Every process that shares
  the secret keys derives the same keys; nothing is stored about them but an 8-byte
  *key id* (a hash of the key, which reveals nothing of it);
- the blob: ``version (1 byte) | key id (8) | nonce (12, random) | AES-GCM ciphertext
  and tag``.  A new blob is sealed under the newest key; a blob opens under whichever
  listed key its id names, so after a rotation (new key first, the old one still listed)
  old blobs open and each refresh re-seals under the new key;
- the associated data binds a blob to its place: the link's user and name and which
  token it is (``refresh`` or ``access``).  A blob copied into another row or column,
  or any byte of it changed, does not open.

Cost: a ``Sealer`` derives its keys and builds their AES-GCM objects once, when it is
made (a broker makes one); opening a blob is then one AES-GCM decryption.  Nothing
opened is kept: a token is read from the store, opened and handed over at every call.

``Sealer.open`` raises ``Unsealable`` -- never the cryptography library's errors, never
with the blob or the token in its message -- for every blob that does not open: altered,
moved, truncated, or sealed under a key that is no longer listed.  Needs the ``broker``
extra (``cryptography``); this module is imported only by ``authtoken.broker``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._token import UserKey

__all__ = ["FIELDS", "INFO", "PURPOSE", "Sealer", "Unsealable"]

#: The purpose the engine derives the sealing keys' material for.
PURPOSE: Final = "upstream"
#: HKDF's ``info``: what the derived key is for (a new label for a new format).
INFO: Final = b"authtoken upstream v1"
#: Which token of a link a blob holds: part of what it is bound to.
FIELDS: Final = ("refresh", "access")

_VERSION: Final = b"\x01"
_ID_LENGTH: Final = 8
_NONCE_LENGTH: Final = 12
_TAG_LENGTH: Final = 16
_HEADER: Final = 1 + _ID_LENGTH + _NONCE_LENGTH
#: Longer tokens than this are refused when sealed (no issuer sends one).
MAX_TOKEN_BYTES: Final = 64 * 1024


class Unsealable(Exception):
    """A blob that does not open: altered, moved to another link, or sealed under a key
    no longer listed.  Never carries the blob or what it held."""


def _user_ref(user: UserKey) -> str:
    # 42 and "42" are two users, as in storage.
    return f"i:{user}" if isinstance(user, int) else f"s:{user}"


# Public bytes (no key, no token), rebuilt for every open otherwise: the broker's fast
# path opens a blob per call.  typed: 42 and "42" (and True) stay apart, as in storage.
@functools.lru_cache(maxsize=4096, typed=True)
def bound_to(user: UserKey, name: str, field: str) -> bytes:
    """The associated data of a blob: the link (user and name) and which token it is."""
    if field not in FIELDS:
        raise ValueError(f"field is one of {FIELDS}")
    parts = (INFO, field.encode(), _user_ref(user).encode("utf-8"), name.encode("utf-8"))
    # Each part is length-prefixed: no two different links give the same bytes.
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _aes_key(material: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(material)


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"authtoken upstream key id\x00" + key).digest()[:_ID_LENGTH]


class Sealer:
    """Seals and opens tokens under keys derived from ``materials``: one per secret key,
    newest first (``Security.derive_keys(PURPOSE)``).  The newest seals; all open."""

    __slots__ = ("_keys",)

    def __init__(self, materials: Sequence[bytes]) -> None:
        if not materials:
            raise ValueError("at least one key is needed")
        keys = [_aes_key(m) for m in materials]
        self._keys = tuple((_key_id(k), AESGCM(k)) for k in keys)

    def __repr__(self) -> str:
        return f"Sealer(<{len(self._keys)} key(s)>)"

    def seal(self, token: str, *, user: UserKey, name: str, field: str) -> bytes:
        """``token`` sealed under the newest key, bound to the link and field."""
        raw = token.encode("utf-8")
        if len(raw) > MAX_TOKEN_BYTES:
            raise ValueError(f"a token is at most {MAX_TOKEN_BYTES} bytes")
        key_id, aead = self._keys[0]
        nonce = os.urandom(_NONCE_LENGTH)
        return (_VERSION + key_id + nonce
                + aead.encrypt(nonce, raw, bound_to(user, name, field)))

    def open(self, blob: bytes, *, user: UserKey, name: str, field: str) -> str:
        """The token ``blob`` holds; ``Unsealable`` if it does not open here."""
        blob = bytes(blob)
        if len(blob) < _HEADER + _TAG_LENGTH or blob[:1] != _VERSION:
            raise Unsealable("the stored token is not a sealed token of this version")
        key_id, nonce = blob[1:1 + _ID_LENGTH], blob[1 + _ID_LENGTH:_HEADER]
        for known, aead in self._keys:
            if hmac.compare_digest(known, key_id):
                try:
                    raw = aead.decrypt(nonce, blob[_HEADER:], bound_to(user, name, field))
                except InvalidTag:
                    break
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError:
                    break
        else:
            raise Unsealable("the stored token was sealed under a secret key that is no "
                             "longer listed: put the old key back after the new one, or "
                             "link the account again")
        raise Unsealable("the stored token does not open: it was altered or belongs to "
                         "another link")

    def sealed_by_newest(self, blob: bytes) -> bool:
        """Whether ``blob`` names the newest key (otherwise a rotation left it behind)."""
        return hmac.compare_digest(bytes(blob)[1:1 + _ID_LENGTH], self._keys[0][0])
