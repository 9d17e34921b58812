"""Argument checks shared by every issuer adapter: one meaning for each.

A check returns the value in the form the adapter keeps, or raises before anything is
sent: ``ArgumentTypeError`` (also a ``TypeError``) for a wrong type, ``InvalidArgument``
for a wrong value.  A message names the argument and what to change, never the value: a
password or a key may be the value.  URLs have their own rule, in ``_urls``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final, TypeVar

from .._errors import ArgumentTypeError, InvalidArgument

__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "check_timeout", "given_client", "optional_text",
           "required_text", "seconds"]

T = TypeVar("T")

#: The ``timeout`` of every adapter unless given, in seconds.
DEFAULT_TIMEOUT: Final = 10.0
#: The longest ``timeout`` an adapter accepts, in seconds.
MAX_TIMEOUT: Final = 300


def required_text(value: object, name: str, *, one_line: bool = False) -> str:
    """``value`` as a non-empty ``str``.

    ``one_line``: the value ends up in a URL, a form field or a header, so it may hold no
    line break and no NUL character.
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{name} must not be empty")
    if one_line and any(c in value for c in "\r\n\x00"):
        raise InvalidArgument(f"{name} must not contain line breaks or NUL characters")
    return value


def optional_text(value: object, name: str, *, one_line: bool = False) -> str | None:
    """``None``, or ``value`` checked by ``required_text``."""
    return None if value is None else required_text(value, name, one_line=one_line)


def seconds(value: object, name: str) -> float:
    """A length of time given as a number of seconds or a ``timedelta``, as a finite,
    non-negative ``float`` (a ``bool`` is no number here)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} is a number of seconds or a timedelta")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{name} must be a finite number of seconds, at least 0")
    return float(value)


def check_timeout(timeout: object) -> float:
    """A request timeout: more than 0 and at most ``MAX_TIMEOUT`` seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError("timeout is a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InvalidArgument(
            f"timeout must be more than 0 and at most {MAX_TIMEOUT} seconds")
    return float(timeout)


def given_client(client: object, kind: type[T]) -> T | None:
    """The HTTP client a caller handed in (``httpx.Client`` for the sync classes,
    ``httpx.AsyncClient`` for the async ones), or ``None`` to make one."""
    if client is not None and not isinstance(client, kind):
        raise ArgumentTypeError(f"client must be an httpx.{kind.__name__} or None, "
                                f"not {type(client).__name__}")
    return client
