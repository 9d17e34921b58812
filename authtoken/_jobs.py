"""The rules of tokens for jobs: use limits, lifetimes and renewal, run ids.

- ``max_uses``: a token that may log in that many times.  Its uses are spent one by one,
  atomically in storage (``UseLimits``), by logins that passed every other check; the
  rest of the engine treats it like any token.
- ``max_lifetime``: a token that may be renewed, up to ``created_at + max_lifetime``.
  A renewal sets ``expires = min(now + by, created_at + max_lifetime)`` -- ``by``
  defaults to the token's first lifetime (its first ``expires`` minus ``created_at``) --
  never past its parent's expiry or the policy's cap, and never shortens the token.
- ``run_id``: the run of a job a run token was made for (``Session.run_token``).

Everything here is a pure function of its arguments: no storage, no clock.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Final

from ._errors import (
    ArgumentTypeError,
    InvalidArgument,
    PermissionDenied,
    TokenExpired,
    TokenRevoked,
)
from ._expiry import Relative, parse_duration, shown_duration, span
from ._policy import Policy
from ._redact import redact
from ._token import TokenRecord

__all__ = ["MAX_RUN_ID", "Limits", "check_changed_limits", "check_child_uses",
           "check_expiring", "check_run_id", "new_limits", "renewed_expiry"]

MAX_RUN_ID: Final = 200


def check_run_id(value: object) -> str:
    """``value`` if it is a valid run id: 1 to 200 characters, no control characters,
    not a token string (it is shown in lists and logs)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"run_id is a str, not {type(value).__name__}")
    if not value or len(value) > MAX_RUN_ID:
        raise InvalidArgument(
            f"run_id is {len(value)} characters; give 1 to {MAX_RUN_ID}, such as the "
            "scheduler's id of the run"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value):
        raise InvalidArgument("run_id cannot hold control characters or lone surrogates")
    if redact(value) != value:
        raise InvalidArgument(
            "run_id looks like a token string or a secret; use the scheduler's id of the "
            "run (it is shown in lists and logs)"
        )
    return value


class Limits:
    """What an authorize stores of a token's limits: ``max_uses``, ``max_lifetime``
    and the first lifetime (``lifetime``), the last two fixed at ``created_at``."""

    __slots__ = ("lifetime", "max_lifetime", "max_uses")

    def __init__(self, max_uses: int | None, max_lifetime: timedelta | None,
                 lifetime: timedelta | None) -> None:
        self.max_uses = max_uses
        self.max_lifetime = max_lifetime
        self.lifetime = lifetime


def new_limits(*, max_uses: int | None, max_lifetime: Relative | None,
               expires: datetime | None, now: datetime, parent: TokenRecord | None,
               policy: Policy | None) -> Limits:
    """The limits a new token gets, checked: ``InvalidArgument`` for a ``max_lifetime``
    without an expiry or shorter than the first lifetime, ``PermissionDenied`` for a
    child of a use-limited token without a limit as tight, ``PolicyViolation``."""
    lifetime = span(max_lifetime, now) if max_lifetime is not None else None
    if lifetime is not None:
        check_expiring(expires is None, lifetime)
        assert expires is not None
        if expires - now > lifetime:
            raise InvalidArgument(
                f"max_lifetime {shown_duration(lifetime)} is shorter than the token's "
                "first lifetime; give a longer max_lifetime or an earlier expiry"
            )
    check_child_uses(parent, max_uses)
    if policy is not None:
        policy.check_expiry(expires, now)
        policy.check_max_lifetime(lifetime, now)
    first = None if lifetime is None or expires is None else expires - now
    return Limits(max_uses, lifetime, first)


def check_expiring(never: bool, max_lifetime: object) -> None:
    """``InvalidArgument`` for a renewable token (``max_lifetime``) that never expires:
    checked before the delegation rules, since no session could make it right."""
    if never and max_lifetime is not None:
        raise InvalidArgument(
            "a token with a max_lifetime must expire: give an expiry such as '1d' "
            "(renewals extend it up to the max_lifetime)"
        )


def check_child_uses(parent: TokenRecord | None, max_uses: int | None) -> None:
    """``PermissionDenied`` unless a token made or changed by a session of ``parent``
    is limited to no more uses than ``parent`` itself."""
    if parent is None or parent.max_uses is None:
        return
    if max_uses is None or max_uses > parent.max_uses:
        raise PermissionDenied(
            f"this session's token may be used {parent.max_uses} time(s), so a token it "
            f"delegates needs a max_uses of at most {parent.max_uses}"
        )


def check_changed_limits(stored: TokenRecord, max_uses: int | None) -> None:
    """``InvalidArgument`` for a use limit put on or taken off an authorized token: the
    uses of a token without a limit are counted lazily, so a limit added later could
    not be exact, and a limit taken off would make a one-time token unlimited."""
    if (stored.max_uses is None) != (max_uses is None):
        raise InvalidArgument(
            "max_uses can be changed, but not added to or removed from an authorized "
            "token: authorize a new token with the limit you need"
        )


def renewed_expiry(record: TokenRecord, by: object, now: datetime,
                   parent: TokenRecord | None, policy: Policy | None) -> datetime:
    """The expiry a renewal of ``record`` at ``now`` gives (see the module notes).

    ``TokenRevoked``, ``TokenExpired``, ``InvalidArgument`` for a token that is not
    renewable or a ``by`` that is not a positive duration.
    """
    step = parse_duration(by, "by")
    if record.revoked_at is not None:
        raise TokenRevoked("the token is revoked and cannot be renewed",
                           token_key=record.key, revoked_at=record.revoked_at)
    if record.max_lifetime is None or record.expires is None:
        raise InvalidArgument(
            "the token is not renewable: only a token authorized with a max_lifetime "
            "can be renewed"
        )
    if now >= record.expires:
        raise TokenExpired("the token has expired and cannot be renewed",
                           token_key=record.key, expired_at=record.expires)
    if step is None:
        step = record.lifetime or (record.expires - record.created_at)
    try:
        wanted = now + step
    except (OverflowError, ValueError):
        wanted = datetime.max.replace(tzinfo=now.tzinfo)
    new = min(wanted, record.created_at + record.max_lifetime)
    if parent is not None and parent.expires is not None:
        new = min(new, parent.expires)
    cap = None if policy is None else policy.cap(record.created_at)
    if cap is not None:
        new = min(new, cap)
    return max(new, record.expires)
