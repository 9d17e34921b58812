"""``Policy``: the limits an organisation puts on every token of one repository.

A policy caps how long a token may live (``max_lifetime``: no token may expire later
than its ``created_at`` plus this, nor be renewed past it, nor carry a longer
``max_lifetime`` of its own), may require every token to expire (``require_expiry``),
and may cap how many live tokens -- neither revoked nor expired -- a user holds
(``max_tokens_per_user``).  The engine applies it at authorize, update and renew, on
every face, and a refusal is ``PolicyViolation`` naming the rule and its limit.  Under
a ``max_lifetime`` the default expiry is the shorter of 30 days and that lifetime.

``Policy.from_env`` reads the same limits from ``AUTHTOKEN_MAX_LIFETIME`` (a duration
such as ``"90d"``), ``AUTHTOKEN_REQUIRE_EXPIRY`` (``1``/``true``/``yes``/``on`` or
``0``/``false``/``no``/``off``) and ``AUTHTOKEN_MAX_TOKENS_PER_USER`` (a whole
number); ``open_security`` and the command line use it when no policy is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from ._errors import ArgumentTypeError, InvalidArgument, PolicyViolation
from ._expiry import Relative, parse_duration, shown_duration, to_micros
from ._repository import Repository, TokenCap
from ._token import TokenRecord

__all__ = ["ENV_MAX_LIFETIME", "ENV_MAX_TOKENS", "ENV_REQUIRE_EXPIRY", "Policy"]

ENV_MAX_LIFETIME: Final = "AUTHTOKEN_MAX_LIFETIME"
ENV_REQUIRE_EXPIRY: Final = "AUTHTOKEN_REQUIRE_EXPIRY"
ENV_MAX_TOKENS: Final = "AUTHTOKEN_MAX_TOKENS_PER_USER"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


class Policy:
    """Limits on every token: ``Policy(*, max_lifetime=None, require_expiry=False,
    max_tokens_per_user=None)``.

    ``max_lifetime``: a duration (``"90d"``, a ``timedelta`` or ``relativedelta``) or
    ``None``; ``require_expiry``: refuse tokens that never expire;
    ``max_tokens_per_user``: an ``int`` of at least 1, or ``None``.
    """

    __slots__ = ("max_lifetime", "max_tokens_per_user", "require_expiry")

    max_lifetime: Relative | None
    require_expiry: bool
    max_tokens_per_user: int | None

    def __init__(self, *, max_lifetime: object = None, require_expiry: bool = False,
                 max_tokens_per_user: int | None = None) -> None:
        if not isinstance(require_expiry, bool):
            raise ArgumentTypeError(
                f"require_expiry is a bool, not {type(require_expiry).__name__}"
            )
        count = max_tokens_per_user
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int):
                raise ArgumentTypeError(
                    f"max_tokens_per_user is an int or None, not {type(count).__name__}"
                )
            if count < 1:
                raise InvalidArgument(
                    f"max_tokens_per_user is {count}; give 1 or more, or None for no limit"
                )
        object.__setattr__(self, "max_lifetime",
                           parse_duration(max_lifetime, "the policy's max_lifetime"))
        object.__setattr__(self, "require_expiry", require_expiry)
        object.__setattr__(self, "max_tokens_per_user", count)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Policy cannot be changed; make a new one")

    def __repr__(self) -> str:
        lifetime = None if self.max_lifetime is None else shown_duration(self.max_lifetime)
        return (f"Policy(max_lifetime={lifetime!r}, require_expiry={self.require_expiry}, "
                f"max_tokens_per_user={self.max_tokens_per_user})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Policy):
            return NotImplemented
        return (self.max_lifetime, self.require_expiry, self.max_tokens_per_user) == (
            other.max_lifetime, other.require_expiry, other.max_tokens_per_user)

    def __hash__(self) -> int:
        return hash((repr(self.max_lifetime), self.require_expiry, self.max_tokens_per_user))

    @property
    def empty(self) -> bool:
        """Whether the policy limits nothing."""
        return (self.max_lifetime is None and not self.require_expiry
                and self.max_tokens_per_user is None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Policy | None:
        """The policy the environment sets (``None`` when it sets none); a value that
        does not read is ``InvalidArgument`` naming the variable."""
        env = os.environ if environ is None else environ
        lifetime = env.get(ENV_MAX_LIFETIME, "").strip()
        required = env.get(ENV_REQUIRE_EXPIRY, "").strip().lower()
        count = env.get(ENV_MAX_TOKENS, "").strip()
        if not (lifetime or required or count):
            return None
        if required not in _TRUE | _FALSE:
            raise InvalidArgument(
                f"{ENV_REQUIRE_EXPIRY} must be 1, true, yes, on, 0, false, no or off"
            )
        if count and not (count.isascii() and count.isdigit() and len(count) <= 18
                          and int(count) >= 1):
            raise InvalidArgument(
                f"{ENV_MAX_TOKENS} must be a whole number of 1 or more, such as 50 (unset "
                "it for no limit)"
            )
        # Read here, not in __init__, so that a refusal names the variable to fix.
        max_lifetime = parse_duration(lifetime or None, ENV_MAX_LIFETIME)
        return cls(max_lifetime=max_lifetime, require_expiry=required in _TRUE,
                   max_tokens_per_user=int(count) if count else None)

    # -- the rules, for the engine --------------------------------------------------
    def cap(self, created_at: datetime) -> datetime | None:
        """The latest expiry a token created at ``created_at`` may have (``None``: no cap)."""
        if self.max_lifetime is None:
            return None
        return created_at + self.max_lifetime

    def check_expiry(self, expires: datetime | None, created_at: datetime) -> None:
        """``PolicyViolation`` for an expiry the policy forbids."""
        if expires is None and self.require_expiry:
            raise PolicyViolation(
                "the policy requires every token to expire (require_expiry); give an "
                "expiry such as '30d'", rule="require_expiry", limit=True,
            )
        cap = self.cap(created_at)
        if cap is not None and (expires is None or expires > cap):
            assert self.max_lifetime is not None
            raise PolicyViolation(
                f"the policy's max_lifetime is {shown_duration(self.max_lifetime)}: this "
                f"token may not expire after {cap.isoformat()}; give an earlier expiry",
                rule="max_lifetime", limit=shown_duration(self.max_lifetime),
            )

    def check_max_lifetime(self, lifetime: timedelta | None, created_at: datetime) -> None:
        """``PolicyViolation`` for a token ``max_lifetime`` longer than the policy's."""
        cap = self.cap(created_at)
        if cap is not None and lifetime is not None and created_at + lifetime > cap:
            assert self.max_lifetime is not None
            raise PolicyViolation(
                f"the policy's max_lifetime is {shown_duration(self.max_lifetime)}: a "
                "token's own max_lifetime may not be longer",
                rule="max_lifetime", limit=shown_duration(self.max_lifetime),
            )

    def insert(self, repository: Repository, record: TokenRecord, now: datetime) -> None:
        """Store the new ``record`` in ``repository`` under the cap on live tokens per
        user: atomically where the repository can (``TokenCap``), else counted first."""
        limit = self.max_tokens_per_user
        if limit is None:
            repository.insert(record)
            return
        if isinstance(repository, TokenCap):
            live = repository.insert_within(record, limit, to_micros(now))
        else:  # a repository of one's own: counted, then inserted (not atomic)
            live = sum(1 for r in repository.list(record.user, False)
                       if r.expires is None or r.expires > now)
            if live < limit:
                repository.insert(record)
        self.check_count(live)

    def check_count(self, live: int) -> None:
        """``PolicyViolation`` when a user holding ``live`` live tokens may get no more."""
        limit = self.max_tokens_per_user
        if limit is not None and live >= limit:
            raise PolicyViolation(
                f"the policy allows {limit} live token(s) per user "
                f"(max_tokens_per_user), and the user holds {live}: revoke one first",
                rule="max_tokens_per_user", limit=limit,
            )
