"""Why a login would be refused, for both admin faces; and how a pin is shown.

The engine answers the question (``Session.explain_login``: the login's own checks, in
its order, secret aside); this module only reads what the faces are given and shapes
what they show:

- ``script_from``: the script a ``GET /tokens/{key}/check`` names in its query
  (``script_key``, ``script_path``, ``script_digest``), or a 422 ``Problem`` that says
  which parameter is wrong and never echoes it (a token string may be pasted anywhere);
- ``bound_script``: the script a token is bound to, rebuilt from its own bindings, so
  that the page can show the verdict "a login by its script" would get now -- a
  bound token's login with no script is always refused, which says nothing new;
- ``read_digests``: the page's "pin to code" field, SHA-256 hex digests one a line (or
  separated by spaces or commas), each checked as the engine checks a code binding;
- ``verdict``: a ``LoginCheck`` as the page's list shows it, saying by which script;
- ``shown_pin``: a ``sha256:`` binding shortened for a list (``sha256:1a2b3c4d…``), the
  full value kept for a title.

Pure functions, no request and no engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from .._errors import InvalidArgument
from .._escape import strict_unescape
from .._explain import LoginCheck
from .._scopes import Script, bindings_of, code_bindings_of
from .._shape import is_token_key
from ._problems import Problem

__all__ = ["bound_script", "check_key", "read_digests", "script_from", "shown_pin",
           "verdict"]

_PIN_PREFIX: Final = "sha256:"
_SHORT: Final = 8
_DIGEST: Final = re.compile(r"[0-9a-f]{64}\Z", re.ASCII)
_ANY_CASE_DIGEST: Final = re.compile(r"[0-9a-fA-F]{64}\Z", re.ASCII)
# Longer than any key that fits an identifier; int() of far longer text is slow.
_SCRIPT_KEY: Final = re.compile(r"-?[0-9]{1,600}\Z", re.ASCII)
_VFS_KEY: Final = re.compile(r"vfs:ikey\?(-?[0-9]{1,600})\Z", re.ASCII)
_SEPARATORS: Final = re.compile(r"[\s,]+")
_NTH: Final = ("first", "second", "third")


def check_key(key: str) -> str:
    """``key`` if it is shaped as a token key (16 characters of a-z and 2-7), else a 422
    ``Problem`` that does not echo it."""
    if not is_token_key(key):
        raise Problem(422, "the key is not a token key: 16 characters of a-z and 2-7 "
                           "(listing your tokens shows them)")
    return key


def _digest_problem(text: str, what: str) -> str:
    """Why ``text`` is no SHA-256 hex digest, naming ``what`` -- never ``text`` itself."""
    if _ANY_CASE_DIGEST.fullmatch(text):
        problem = "has upper-case hex digits; write them in lower case"
    elif len(text) != 64:
        problem = f"has {len(text)} characters, not 64"
    else:
        problem = "holds characters that are not hex digits (0-9, a-f)"
    return (f"{what} {problem}: give the 64 lower-case hex digits of the code's SHA-256, "
            "as 'sha256sum FILE' prints them")


def script_from(key: str | None, path: str | None, digest: str | None) -> Script | None:
    """The script a check names by its query's ``key``, ``path`` and ``digest`` texts;
    ``None`` when it names none.  A 422 ``Problem`` for a key that is no integer, an
    empty path or one holding NUL, and a digest that is not 64 lower-case hex digits
    (a leading ``sha256:`` is allowed)."""
    script_key: int | None = None
    if key is not None:
        if not _SCRIPT_KEY.fullmatch(key.strip()):
            raise Problem(422, "script_key must be an integer, such as 42")
        script_key = int(key.strip())
    if path is not None and (not path or "\x00" in path):
        raise Problem(422, "script_path must be a non-empty path without NUL characters")
    if digest is not None:
        digest = digest.removeprefix(_PIN_PREFIX)
        if not _DIGEST.fullmatch(digest):
            raise Problem(422, _digest_problem(digest, "script_digest"))
    if script_key is None and path is None and digest is None:
        return None
    try:
        return Script(key=script_key, path=path, digest=digest)
    except InvalidArgument:
        # Everything Script checks was checked above; say it without the values.
        raise Problem(422, "the script named by script_key, script_path and "
                           "script_digest is not valid") from None


def bound_script(scopes: Iterable[str]) -> Script | None:
    """The script a token with canonical ``scopes`` is bound to: its first script key
    or path and its first code digest, or ``None`` for a token bound to nothing.

    A binding that cannot be turned back into a script (a key too large, a path that
    does not escape to itself again) is passed over; the script returned satisfies
    every binding it was built from.
    """
    scopes = tuple(scopes)
    key: int | None = None
    path: str | None = None
    for binding in bindings_of(scopes):
        found = _VFS_KEY.fullmatch(binding)
        if found is not None and key is None:
            key = int(found.group(1))
        elif binding.startswith("ufs:") and path is None:
            unescaped = strict_unescape(binding[4:])
            if unescaped and "\x00" not in unescaped \
                    and binding in Script(path=unescaped).identifiers():
                path = unescaped
    code = code_bindings_of(scopes)
    digest = code[0][len(_PIN_PREFIX):] if code else None
    if key is None and path is None and digest is None:
        return None
    if path is not None and key is not None:
        path = None  # one script binding is enough for a login to pass it
    return Script(key=key, path=path, digest=digest)


def read_digests(text: str) -> list[str]:
    """The page's "pin to code" field: SHA-256 hex digests separated by spaces, commas
    or lines, each optionally written as its binding (``sha256:…``).  A 422 ``Problem``
    naming which one is wrong and why, never what it holds."""
    words = [w for w in _SEPARATORS.split(text) if w]
    digests: list[str] = []
    for number, word in enumerate(words):
        digest = word.removeprefix(_PIN_PREFIX)
        if not _DIGEST.fullmatch(digest):
            if len(words) == 1:
                what = "the digest"
            elif number < len(_NTH):
                what = f"the {_NTH[number]} digest"
            else:
                what = f"digest number {number + 1}"
            raise Problem(422, "Pin to code: " + _digest_problem(digest, what))
        digests.append(digest)
    return digests


def shown_pin(binding: str) -> dict[str, str]:
    """A code binding as a list shows it: ``short`` (``sha256:1a2b3c4d…``) and ``full``."""
    digest = binding[len(_PIN_PREFIX):]
    return {"short": f"{_PIN_PREFIX}{digest[:_SHORT]}…", "full": binding}


def verdict(check: LoginCheck, script: Script | None) -> dict[str, Any]:
    """``check`` as the list shows it: ``ok``, ``reason``, the (masked) ``message`` and
    ``by``, the login it is about (``"no script"`` or ``"its script"``)."""
    return {"ok": check.ok, "reason": check.reason, "message": check.message,
            "by": "no script" if script is None else "its script"}
