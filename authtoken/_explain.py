"""Why would a login be refused?  ``explain`` answers for a stored token, secret aside.

The owner of a token rarely holds its string -- a scheduler or a job does -- yet it is
the owner who must fix a refused login.  ``explain`` takes what storage keeps of the
token (a ``TokenRecord``), the script that would log in and the time, and says what a
login by that script would get now, as a ``LoginCheck``: whether it would pass, the
class name of the ``LoginError`` it would raise, and in plain words what to change.

Theory of operation
-------------------
The checks are the login's own, in the login's order, stopping at the first that fails:
existence (``InvalidToken``), revocation (``TokenRevoked``), expiry, with a token
expired when ``now >= expires`` (``TokenExpired``), script and code bindings
(``ScriptNotAuthorized``) and, for a token with ``max_uses``, a use left
(``TokenExhausted``).  The signature and the secret are not checked: there is no string
to check.  The binding verdict is ``script_matches``'s, the function every login
decides with, so a new kind of binding changes both at once; the two halves of the rule
(script bindings, code bindings) are asked separately only to word the advice.

Everything here is a pure function of its arguments: no storage, no clock.  Scopes,
paths and users may hold text pasted by mistake, token strings included: every message
is masked (``redact``) before it leaves, and ``LoginCheck`` masks whatever it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ._errors import (
    ArgumentTypeError,
    InvalidArgument,
    InvalidToken,
    ScriptNotAuthorized,
    TokenExhausted,
    TokenExpired,
    TokenRevoked,
)
from ._expiry import aware_utc
from ._jobs import renewal_end
from ._redact import redact
from ._scopes import Script, bindings_of, code_bindings_of, script_matches
from ._token import TokenRecord

__all__ = ["REASONS", "LoginCheck", "explain"]

#: The reasons a ``LoginCheck`` may give: class names of the ``LoginError`` subclasses a
#: login by a stored token can raise once the secret has matched, and ``InvalidToken``
#: for a token that is not stored at all.
REASONS: Final = frozenset(
    cls.__name__ for cls in (InvalidToken, TokenRevoked, TokenExpired,
                             ScriptNotAuthorized, TokenExhausted)
)

# How many identifiers a message lists before it says "and N more", and how long one
# may be before it is cut: a scope may hold 256 identifiers of 512 characters.
_LISTED: Final = 5
_LISTED_SCOPES: Final = 10
_LONGEST: Final = 80


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """What a login would get: ``ok``, the ``reason`` it would be refused (the class
    name of the ``LoginError``, ``None`` when ``ok``) and a ``message`` saying what to
    change -- or, when ``ok``, what the login would get.

    Raises ``InvalidArgument`` when ``ok`` and ``reason`` disagree or ``reason`` is not
    a login refusal, ``TypeError`` for wrong types.  The message is masked: a token
    string in it is replaced by ``[redacted]``.
    """

    ok: bool
    reason: str | None
    message: str

    def __post_init__(self) -> None:
        if not isinstance(self.ok, bool):
            raise ArgumentTypeError(f"LoginCheck.ok must be a bool, not {type(self.ok).__name__}")
        if self.reason is not None and not isinstance(self.reason, str):
            raise ArgumentTypeError(
                f"LoginCheck.reason must be a str or None, not {type(self.reason).__name__}"
            )
        if not isinstance(self.message, str):
            raise ArgumentTypeError(
                f"LoginCheck.message must be a str, not {type(self.message).__name__}"
            )
        if self.ok != (self.reason is None):
            raise InvalidArgument("a LoginCheck has a reason exactly when it is not ok")
        if self.reason is not None and self.reason not in REASONS:
            raise InvalidArgument(
                "LoginCheck.reason must be one of " + ", ".join(sorted(REASONS))
            )
        object.__setattr__(self, "message", redact(self.message))


def explain(record: TokenRecord | None, script: Script | None, now: datetime) -> LoginCheck:
    """What a login with the token stored as ``record``, by ``script``, would get at
    ``now`` -- its secret aside (see the module notes for the order of the checks).

    ``record`` is ``None`` for a token that is not stored: ``InvalidToken``.  ``now``
    naive means UTC.  Raises ``TypeError`` for arguments of the wrong types; never
    changes anything.
    """
    if record is not None and not isinstance(record, TokenRecord):
        raise ArgumentTypeError(
            f"record must be a TokenRecord or None, not {type(record).__name__}"
        )
    if script is not None and not isinstance(script, Script):
        raise ArgumentTypeError(f"script must be a Script or None, not {type(script).__name__}")
    if not isinstance(now, datetime):
        raise ArgumentTypeError(f"now must be a datetime, not {type(now).__name__}")
    now = aware_utc(now)
    if record is None:
        return LoginCheck(False, InvalidToken.__name__, (
            "no token is stored with that key: check the key (listing your tokens shows "
            "them), or authorize a new token"
        ))
    if record.revoked_at is not None:
        return LoginCheck(False, TokenRevoked.__name__, (
            f"revoked at {_when(record.revoked_at)}: revoked tokens cannot be restored; "
            "authorize a new one"
        ))
    if record.expires is not None and now >= record.expires:
        return LoginCheck(False, TokenExpired.__name__, _expired(record, record.expires, now))
    scopes = tuple(record.scope.split(" "))
    scripts = bindings_of(scopes)
    code = code_bindings_of(scopes)
    if not script_matches(scripts + code, script):
        return LoginCheck(False, ScriptNotAuthorized.__name__,
                          _not_authorized(scripts, code, script))
    if record.max_uses is not None and record.use_count >= record.max_uses:
        return LoginCheck(False, TokenExhausted.__name__, _exhausted(record.max_uses))
    return LoginCheck(True, None, _passes(record, scopes, script))


# -- the words -----------------------------------------------------------------------------
def _when(moment: datetime) -> str:
    return aware_utc(moment).isoformat()


def _shown(identifier: str) -> str:
    # Masked before it is cut, so that a cut never leaves part of a secret unmasked.
    identifier = redact(identifier)
    return identifier if len(identifier) <= _LONGEST else identifier[:_LONGEST - 3] + "..."


def _listed(identifiers: Sequence[str], most: int = _LISTED) -> str:
    """``a``, ``a and b``, ``a, b and c``; past ``most``, ``... and N more``."""
    shown = [_shown(i) for i in identifiers[:most]]
    rest = len(identifiers) - len(shown)
    if rest:
        return ", ".join(shown) + f" and {rest} more"
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _expired(record: TokenRecord, expires: datetime, now: datetime) -> str:
    expired = f"expired at {_when(expires)}"
    end = renewal_end(record) if record.max_lifetime is not None else None
    if end is None:
        return f"{expired}: authorize a new token or update its expiry to a later time"
    if now < end:
        # A renewal refuses an expired token: the way back is an update of its expiry.
        return (f"{expired}; an expired token can no longer be renewed: update its "
                f"expiry to a time no later than {_when(end)} (it is renewable until "
                "then, so renew it before it expires next time), or authorize a new token")
    return (f"{expired}, and its max_lifetime ran out at {_when(end)}, so it can be "
            "neither renewed nor given a later expiry: authorize a new token")


def _script_named(script: Script) -> str:
    """The script as bindings name it: its ``vfs:``, ``ufs:`` and ``sha256:`` identifiers."""
    own = sorted(script.identifiers())
    return _listed(own) if own else "a key too large to bind"


def _not_authorized(scripts: tuple[str, ...], code: tuple[str, ...],
                    script: Script | None) -> str:
    parts: list[str] = []
    if not script_matches(scripts, script):
        bound = (f"the token is bound to the {_plural(len(scripts), 'script', 'scripts')} "
                 f"{_listed(scripts)}")
        own = () if script is None else tuple(sorted(bindings_of(script.identifiers())))
        if script is None:
            parts.append(f"{bound}, and the login names no script: log in as "
                         f"{_plural(len(scripts), 'it', 'one of them')} (a Script with "
                         "that key or path)")
        elif not own:
            parts.append(f"{bound}, and the script has neither a key nor a path: give "
                         "the Script the key or the path it runs as")
        else:
            parts.append(f"{bound}, and this script ({_listed(own)}) "
                         f"{_plural(len(scripts), 'is not it', 'is none of them')}: "
                         f"log in as {_plural(len(scripts), 'it', 'one of them')} or "
                         f"update the token's scope to add {_either(own)}")
    if not script_matches(code, script):
        pinned = f"the token is pinned to the code {_listed(code)}"
        digest = None if script is None else script.digest
        if digest is None:
            parts.append(f"{pinned}, and the login gives no digest of the code it runs: "
                         "log in giving the SHA-256 of the file it runs (--script-file "
                         "on the command line, Script.for_file in Python)")
        else:
            parts.append(f"{pinned}, and this script's code (sha256:{digest}) "
                         f"{_plural(len(code), 'is not it', 'is none of them')} -- was "
                         "the file changed "
                         "since the token was made? Run the pinned code, or update the "
                         f"token's scope to add sha256:{digest}")
    if not parts:
        # A binding rule neither half words (script_matches alone decides the verdict).
        return ("this script does not satisfy the token's bindings "
                f"({_listed(scripts + code)}): log in as a script that does, or update "
                "the token's scope")
    return "; also, ".join(parts)


def _either(identifiers: Sequence[str]) -> str:
    shown = [_shown(i) for i in identifiers[:_LISTED]]
    return " or ".join(shown)


def _exhausted(max_uses: int) -> str:
    spent = ("its one use is spent" if max_uses == 1
             else f"every one of its {max_uses} uses is spent")
    return (f"{spent}: authorize a new token, or raise its max_uses with an update "
            "(a use-limited token may be given more uses, not made unlimited)")


def _passes(record: TokenRecord, scopes: tuple[str, ...], script: Script | None) -> str:
    if record.max_uses is None:
        uses = "no limit on uses"
    else:
        left = record.max_uses - record.use_count
        uses = f"{left} of {record.max_uses} {_plural(record.max_uses, 'use', 'uses')} left"
    expiry = ("never expires" if record.expires is None
              else f"expires at {_when(record.expires)}")
    by = "" if script is None else f" by this script ({_script_named(script)})"
    return (f"a login with the token's string{by} would pass now: user {record.user!r}, "
            f"scopes {_listed(scopes, _LISTED_SCOPES)}; {uses}; {expiry}")
