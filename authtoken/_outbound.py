"""A delegation token on its way to a service: what ``authtoken.httpx.DelegationAuth``
and ``authtoken.requests.DelegationAuth`` share, written once.

- ``OutboundToken`` holds the token string an HTTP client sends as
  ``Authorization: Bearer <token>``.  It takes only a ``str`` shaped as one of our token
  strings (surrounding whitespace, such as the newline that ends a token file, is
  dropped), shows only the token's key in its ``repr``, and cannot be pickled or copied:
  a token string that travels does so on purpose (an environment variable, a file of
  mode 0600), never inside an object graph that a task queue or a cache serialises.
- ``check_destination`` is the rule of where it may go: over ``https://``, or over
  ``http://`` to this machine (``127.0.0.0/8``, ``::1``, ``localhost``) -- the rule the
  issuer adapters keep for every credential they send (``issuers._urls.is_loopback``).

Neither touches a network nor imports an HTTP client, so both faces share them.
"""

from __future__ import annotations

import re
from typing import Final, NoReturn

from ._codec import CHECKSUM_PATTERN
from ._errors import ArgumentTypeError, InvalidArgument
from ._redact import redact
from ._shape import KEY_LENGTH, PREFIX, TOKEN_PATTERN
from .issuers._urls import is_loopback

__all__ = ["OutboundToken", "check_destination"]

# A token string of either format: with the checksum issued now, or without (earlier).
_SHAPE: Final = re.compile(rf"{TOKEN_PATTERN}(?:\.{CHECKSUM_PATTERN})?\Z", re.ASCII)
_WHERE: Final = ("a delegation token is sent only over https://, or over http:// to "
                 "this machine (127.0.0.1, ::1, localhost)")


class OutboundToken:
    """A token string to send, checked for shape; ``key`` is its public key.

    Raises ``TypeError`` (an ``ArgumentTypeError``) for anything but a ``str``, and
    ``InvalidArgument`` for a string that is not shaped as a token string.  Neither
    message holds what was given.  Checks no signature and reads no store: the service
    decides whether the token is good.
    """

    __slots__ = ("_string", "key")

    def __init__(self, token_string: object, owner: str) -> None:
        if not isinstance(token_string, str):
            raise ArgumentTypeError(
                f"{owner} takes the token string as a str, not {type(token_string).__name__}")
        string = token_string.strip()
        if not _SHAPE.match(string):
            raise InvalidArgument(
                f"{owner} takes a delegation token string, whole, as 'authtoken "
                "authorize' or POST /tokens gave it (or AUTHTOKEN_TOKEN holds it); this "
                "is not one")
        self._string = string
        self.key: str = string[len(PREFIX):len(PREFIX) + KEY_LENGTH]

    def __repr__(self) -> str:
        return f"OutboundToken(key={self.key!r})"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a delegation token is not pickled or copied: give the other "
                        "process the token string itself (AUTHTOKEN_TOKEN, or a file of "
                        "mode 0600) and build its own auth there")

    def header(self) -> str:
        """The ``Authorization`` value: ``Bearer <token>``."""
        return f"Bearer {self._string}"


def check_destination(scheme: str, host: str) -> None:
    """Nothing when a token may be sent to ``scheme://host``: ``https``, or ``http`` to a
    loopback host (IPv6 without brackets).  Otherwise ``InvalidArgument``, before
    anything was sent, naming the host (masked) and the rule."""
    scheme = scheme.lower()
    if scheme == "https" or (scheme == "http" and is_loopback(host)):
        return
    raise InvalidArgument(f"refusing to send a delegation token to {redact(scheme)}://"
                          f"{redact(host)}: {_WHERE}; use an https:// URL")
