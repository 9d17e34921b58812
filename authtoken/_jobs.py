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

import hashlib
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
from ._expiry import ExpirySpec, Relative, parse_duration, shown_duration, span
from ._policy import Policy
from ._redact import redact
from ._token import TokenRecord

__all__ = ["MAX_RUN_ID", "Limits", "check_changed_limits", "check_child_uses",
           "check_expiring", "check_renewal_within", "check_run_id", "default_spec",
           "new_limits", "renewal_end", "renewed_expiry", "stored_digest"]

MAX_RUN_ID: Final = 200
_LIMITED_TAG: Final = b"authtoken: a token with max_uses\x00"


def stored_digest(digest: bytes, max_uses: int | None) -> bytes:
    """What storage keeps of a token's secret: its ``digest``, or for a token with
    ``max_uses`` a digest of that digest under a tag of its own.

    A process of a release that knows nothing of use limits (still running after the
    schema was upgraded, or after a downgrade) compares the plain digest, finds none
    that matches, and refuses the token as unknown -- rather than let a one-time token
    log in again and again.  ``max_uses`` is fixed when a token is authorized (it cannot
    be added or removed later), so a token never changes domain.
    """
    if max_uses is None:
        return digest
    return hashlib.sha256(_LIMITED_TAG + digest).digest()


def default_spec(spec: ExpirySpec, max_lifetime: Relative | None, now: datetime,
                 ) -> ExpirySpec:
    """The expiry a renewable token gets when none was given: the default, but no
    longer than its ``max_lifetime`` (the first lifetime of a token renewable for a
    week is a week, not 30 days)."""
    if not spec.is_default or max_lifetime is None:
        return spec
    lifetime = span(max_lifetime, now)
    expires = spec.resolve(now)
    if expires is not None and expires - now <= lifetime:
        return spec
    return ExpirySpec(relative=lifetime, is_default=True)


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


def renewal_end(record: TokenRecord) -> datetime | None:
    """The latest ``record`` may ever expire: ``created_at + max_lifetime`` for a
    renewable token, else its expiry (``None``: never)."""
    if record.max_lifetime is not None:
        return record.created_at + record.max_lifetime
    return record.expires


def check_renewal_within(parent: TokenRecord, record: TokenRecord) -> None:
    """``PermissionDenied`` unless a token changed by a session of ``parent`` may not be
    renewed past what ``parent`` itself may ever reach (its own token included: a
    session cannot make itself renewable, nor lengthen its own renewals)."""
    if record.max_lifetime is None:
        return
    limit = renewal_end(parent)
    if limit is not None and record.created_at + record.max_lifetime > limit:
        raise PermissionDenied(
            "a token session cannot make a token renewable past what its own token may "
            f"reach ({limit.isoformat()}); give a shorter max_lifetime"
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
    if by is not None and step is None:
        raise InvalidArgument("by is how much longer the token should live, such as '7d'; "
                              "'never' is not a renewal")
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
