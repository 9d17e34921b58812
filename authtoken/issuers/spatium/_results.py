"""What Spatium's calls return, as frozen values: ``SecurityToken``, ``PermissionTokens``,
``FactorRequirement``.

Each validates in ``__init__`` (times must be aware; they are kept in UTC), and the
``repr`` of a value holding a token shows ``[secure]`` instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final, TypeAlias

from ..._errors import ArgumentTypeError, InvalidArgument
from .._args import required_text

__all__ = ["FactorRequirement", "PermissionTokens", "SecurityToken", "SecurityTokens"]

_SECURE: Final = "[secure]"


def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ArgumentTypeError(f"{name} must be a datetime")
    if value.tzinfo is None:
        raise InvalidArgument(f"{name} must be timezone-aware")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True, repr=False)
class SecurityToken:
    """A security-factor token (proof of one factor, e.g. username and password)."""

    token: str
    issuer: str
    expires_at: datetime

    def __post_init__(self) -> None:
        required_text(self.token, "token")
        if not isinstance(self.issuer, str):
            raise ArgumentTypeError("issuer must be a str")
        object.__setattr__(self, "expires_at", _aware(self.expires_at, "expires_at"))

    def __repr__(self) -> str:
        return (f"SecurityToken(token={_SECURE}, issuer={self.issuer!r}, "
                f"expires_at={self.expires_at.isoformat()!r})")


#: What ``establish`` and ``issue_by_factors`` take: security tokens, as strings or
#: ``SecurityToken`` values (one alone is fine too).
SecurityTokens: TypeAlias = "Iterable[str | SecurityToken] | SecurityToken"


@dataclass(frozen=True, slots=True, repr=False)
class PermissionTokens:
    """A permission (access) token and the refresh token that gets the next pair."""

    permission_token: str
    permission_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    issuer: str

    def __post_init__(self) -> None:
        required_text(self.permission_token, "permission_token")
        required_text(self.refresh_token, "refresh_token")
        if not isinstance(self.issuer, str):
            raise ArgumentTypeError("issuer must be a str")
        object.__setattr__(self, "permission_expires_at",
                           _aware(self.permission_expires_at, "permission_expires_at"))
        object.__setattr__(self, "refresh_expires_at",
                           _aware(self.refresh_expires_at, "refresh_expires_at"))

    def __repr__(self) -> str:
        return (f"PermissionTokens(permission_token={_SECURE}, "
                f"permission_expires_at={self.permission_expires_at.isoformat()!r}, "
                f"refresh_token={_SECURE}, "
                f"refresh_expires_at={self.refresh_expires_at.isoformat()!r}, "
                f"issuer={self.issuer!r})")


@dataclass(frozen=True, slots=True)
class FactorRequirement:
    """The security factors a set of permissions needs, as a tree.

    ``combination == "just"``: one factor, named by ``type`` (``"credentials"``,
    ``"email"``, ...).  Otherwise (``"or"``, ``"and"``) ``types`` holds the children.
    """

    combination: str
    type: str | None = None
    types: tuple[FactorRequirement, ...] = ()

    def __post_init__(self) -> None:
        required_text(self.combination, "combination")
        object.__setattr__(self, "types", tuple(self.types))
        if self.combination == "just":
            required_text(self.type, "type")
            if self.types:
                raise InvalidArgument('a "just" requirement has a type, not types')
        else:
            if self.type is not None:
                raise InvalidArgument(f'an "{self.combination}" requirement has types, not a type')
            for child in self.types:
                if not isinstance(child, FactorRequirement):
                    raise ArgumentTypeError("types must be FactorRequirement values")

    def factor_types(self) -> frozenset[str]:
        """Every factor type named anywhere in the tree."""
        if self.type is not None:
            return frozenset((self.type,))
        return frozenset().union(*(child.factor_types() for child in self.types))

    def satisfied_by(self, factor_types: Iterable[str]) -> bool:
        """Whether tokens of these factor types meet the requirement (``and``/``or``/``just``;
        an unknown combination is never satisfied)."""
        have = frozenset(factor_types)
        if self.combination == "just":
            return self.type in have
        if self.combination == "or":
            return any(child.satisfied_by(have) for child in self.types)
        if self.combination == "and":
            return all(child.satisfied_by(have) for child in self.types)
        return False
