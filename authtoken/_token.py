"""The token model (``AuthToken``), what storage keeps of it, and ``Principal``.

An ``AuthToken`` is what users hold and change; a ``TokenRecord`` is what storage keeps.
The engine moves between the two through four functions (``token_from_record``,
``load_record``, ``read_record``, ``assigned_changes``) and nothing else: a token
remembers the record it was last read as, so that an update writes only the fields its
holder assigned since.
"""

from __future__ import annotations

import contextlib
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final

from dateutil.relativedelta import relativedelta

from ._clock import system_clock
from ._errors import ArgumentTypeError, InvalidArgument, PermissionDenied
from ._expiry import DEFAULT_SPEC, ExpirySpec, parse_duration, parse_expires, span
from ._redact import redact
from ._scopes import Script, bindings_of, canonical_identifier, code_bindings_of, parse_scope

__all__ = [
    "AuthToken",
    "ExpiresLike",
    "Principal",
    "ScopeLike",
    "TokenRecord",
    "UserKey",
    "assigned_changes",
    "check_max_uses",
    "check_user",
    "load_record",
    "read_record",
    "same_user",
    "token_from_record",
]

UserKey = int | str
ExpiresLike = datetime | date | timedelta | relativedelta | str | None
ScopeLike = str | int | list[str | int] | tuple[str | int, ...]

MAX_DATA_BYTES: Final = 65_536
MAX_DESCRIPTION: Final = 1_024
MAX_USER_LENGTH: Final = 256


class _Default:
    def __repr__(self) -> str:
        return "<30 days>"


_DEFAULT: Final = _Default()


def check_user(user: object) -> UserKey:
    """Return ``user`` if it is a valid user key; raise otherwise."""
    if isinstance(user, bool) or not isinstance(user, (int, str)):
        raise ArgumentTypeError(
            f"a user is an int or a str, not {type(user).__name__}"
        )
    if isinstance(user, int) and not -(2**63) <= user < 2**63:
        raise InvalidArgument("an int user must fit in 64 bits (a database BIGINT)")
    if isinstance(user, str):
        if not user or len(user) > MAX_USER_LENGTH:
            raise InvalidArgument(
                f"a str user must hold 1 to {MAX_USER_LENGTH} characters"
            )
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in user):
            raise InvalidArgument(
                "a str user cannot hold control characters or lone surrogates"
            )
    return user


def same_user(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` name the same user: the one rule for it.

    Type and value must both be equal -- the ``int`` user ``42`` is not the ``str``
    user ``"42"`` -- and ``None`` is nobody, the same as no one (not even ``None``).
    """
    return a is not None and b is not None and type(a) is type(b) and a == b


def _check_data(data: object) -> str | None:
    if data is None:
        return None
    if not isinstance(data, str):
        raise ArgumentTypeError(f"data must be a str or None, not {type(data).__name__}")
    # Refused outside the ``except``: a chained UnicodeEncodeError would carry the data.
    size = -1
    with contextlib.suppress(UnicodeEncodeError):
        size = len(data.encode("utf-8"))
    if size < 0:
        raise InvalidArgument(
            "data holds a lone surrogate and cannot be stored as UTF-8; encode binary "
            "payloads (base64, JSON) before binding them"
        )
    if size > MAX_DATA_BYTES:
        raise InvalidArgument(
            f"data is {size} bytes in UTF-8; the limit is {MAX_DATA_BYTES}: store the "
            "payload elsewhere and bind a reference to it"
        )
    return data


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise ArgumentTypeError(
            f"description must be a str, not {type(description).__name__}"
        )
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgument(
            f"description is {len(description)} characters; the limit is "
            f"{MAX_DESCRIPTION}"
        )
    try:
        description.encode("utf-8")
    except UnicodeEncodeError:
        pass  # refused below, with no chained error carrying the description
    else:
        return description
    raise InvalidArgument("description holds a lone surrogate")


def check_max_uses(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"max_uses is an int or None, not {type(value).__name__}")
    if not 1 <= value < 2**63:
        raise InvalidArgument(
            f"max_uses is {value}; give a whole number from 1 (a one-time token) up, or "
            "None for no limit"
        )
    return value


def _check_expires(value: object) -> ExpirySpec:
    spec = parse_expires(value)
    spec.resolve(system_clock())  # a delta too large to add to a date fails here, not later
    return spec


@dataclass(slots=True, repr=False)
class TokenRecord:
    """A token as storage keeps it: the secret only as a digest (never in its ``repr``)."""

    key: str
    user: UserKey
    scope: str
    data: str | None
    description: str
    expires: datetime | None
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    use_count: int
    parent_key: str | None
    secret_hash: bytes = field(repr=False)
    version: int = 1
    max_uses: int | None = None
    max_lifetime: timedelta | None = None  # fixed at created_at
    lifetime: timedelta | None = None  # the first lifetime: a renewal's default step
    run_id: str | None = None
    ancestors: tuple[str, ...] = ()  # the keys from the root of its tree to its parent

    def __repr__(self) -> str:
        # Masked: a token string accepted by mistake as a scope or a user shows here.
        return redact(
            f"TokenRecord(key={self.key!r}, user={self.user!r}, scope={self.scope!r}, "
            f"expires={self.expires!r}, revoked_at={self.revoked_at!r}, "
            f"parent_key={self.parent_key!r}, version={self.version!r})"
        )


class AuthToken:
    """A delegation token: who may log in as its user, for what, until when.

    ``AuthToken(scope, data=None, *, description="", expires=<30 days>,
    max_uses=None, max_lifetime=None)``.  The arguments are checked here: a bad scope
    raises ``ScopeError``, bad data, description, expiry or limits ``InvalidArgument``
    (``TypeError`` too for a wrong type).  The token has no key until a ``Security`` or
    ``Session`` authorizes it.  ``scope``, ``data``, ``description``, ``expires``,
    ``max_uses`` and ``max_lifetime`` may be assigned (checked the same way) and then
    persisted with ``update_auth_token``; the other attributes are read-only.

    ``max_uses``: how many logins the token allows (``None``: no limit); ``max_lifetime``:
    a duration that makes the token renewable up to ``created_at + max_lifetime``;
    ``run_id``: the run of a job a run token was made for (``Session.run_token``).
    """

    __slots__ = (
        "_base",
        "_created_at",
        "_data",
        "_description",
        "_expires",
        "_key",
        "_last_used_at",
        "_max_lifetime",
        "_max_uses",
        "_parent_key",
        "_revoked_at",
        "_run_id",
        "_scopes",
        "_updated_at",
        "_use_count",
        "_user",
        "_version",
    )

    def __init__(
        self,
        scope: ScopeLike,
        data: str | None = None,
        *,
        description: str = "",
        expires: ExpiresLike | _Default = _DEFAULT,
        max_uses: int | None = None,
        max_lifetime: timedelta | relativedelta | str | None = None,
    ) -> None:
        self._scopes = parse_scope(scope)
        self._data = _check_data(data)
        self._description = _check_description(description)
        self._expires = DEFAULT_SPEC if expires is _DEFAULT else _check_expires(expires)
        self._key: str | None = None
        self._user: UserKey | None = None
        self._created_at: datetime | None = None
        self._updated_at: datetime | None = None
        self._revoked_at: datetime | None = None
        self._last_used_at: datetime | None = None
        self._use_count = 0
        self._parent_key: str | None = None
        self._max_uses = check_max_uses(max_uses)
        self._max_lifetime = parse_duration(max_lifetime, "max_lifetime")
        self._run_id: str | None = None
        self._version = 0
        self._base: TokenRecord | None = None

    # -- built by the engine ------------------------------------------------------
    @classmethod
    def _from_record(cls, record: TokenRecord) -> AuthToken:
        token = cls.__new__(cls)
        token._load(record)
        return token

    def _load(self, record: TokenRecord) -> None:
        self._key = record.key
        self._user = record.user
        self._scopes = tuple(record.scope.split(" "))
        self._data = record.data
        self._description = record.description
        self._expires = ExpirySpec(absolute=record.expires) if record.expires else ExpirySpec()
        self._created_at = record.created_at
        self._updated_at = record.updated_at
        self._revoked_at = record.revoked_at
        self._last_used_at = record.last_used_at
        self._use_count = record.use_count
        self._parent_key = record.parent_key
        self._max_uses = record.max_uses
        self._max_lifetime = record.max_lifetime
        self._run_id = record.run_id
        self._version = record.version
        self._base = record  # what storage held when this object last saw it

    # -- changeable -----------------------------------------------------------------
    @property
    def scope(self) -> str:
        """The canonical scope: identifiers joined by single spaces."""
        return " ".join(self._scopes)

    @scope.setter
    def scope(self, value: ScopeLike) -> None:
        self._scopes = parse_scope(value)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The canonical identifiers, first-seen order, duplicates dropped."""
        return self._scopes

    @scopes.setter
    def scopes(self, value: ScopeLike) -> None:
        self._scopes = parse_scope(value)

    @property
    def bindings(self) -> tuple[str, ...]:
        """The ``vfs:``/``ufs:`` identifiers: the scripts allowed to use the token."""
        return bindings_of(self._scopes)

    @property
    def code_bindings(self) -> tuple[str, ...]:
        """The ``sha256:`` identifiers: the code a script logging in must be."""
        return code_bindings_of(self._scopes)

    @property
    def data(self) -> str | None:
        return self._data

    @data.setter
    def data(self, value: str | None) -> None:
        self._data = _check_data(value)

    @property
    def description(self) -> str:
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = _check_description(value)

    @property
    def expires(self) -> datetime | None:
        """When the token stops working (``None``: never).

        A relative expiry not yet fixed by the engine shows as measured from now.
        """
        return self._expires.resolve(system_clock())

    @expires.setter
    def expires(self, value: ExpiresLike) -> None:
        self._expires = _check_expires(value)

    @property
    def expiry_spec(self) -> ExpirySpec:
        """The expiry as given: absolute, relative to authorization/update, or never."""
        return self._expires

    @property
    def max_uses(self) -> int | None:
        """How many logins the token allows in all (``None``: no limit)."""
        return self._max_uses

    @max_uses.setter
    def max_uses(self, value: int | None) -> None:
        self._max_uses = check_max_uses(value)

    @property
    def max_lifetime(self) -> timedelta | relativedelta | None:
        """How long after ``created_at`` renewals may extend the token (``None``: not
        renewable); a ``timedelta`` once authorized."""
        return self._max_lifetime

    @max_lifetime.setter
    def max_lifetime(self, value: timedelta | relativedelta | str | None) -> None:
        self._max_lifetime = parse_duration(value, "max_lifetime")

    # -- read-only ------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        """The run of a job this token was made for (``Session.run_token``), else ``None``."""
        return self._run_id

    @property
    def key(self) -> str | None:
        """The token's key: safe to show and log, useless for logging in."""
        return self._key

    @property
    def user(self) -> UserKey | None:
        return self._user

    @property
    def created_at(self) -> datetime | None:
        return self._created_at

    @property
    def updated_at(self) -> datetime | None:
        return self._updated_at

    @property
    def revoked_at(self) -> datetime | None:
        return self._revoked_at

    @property
    def last_used_at(self) -> datetime | None:
        return self._last_used_at

    @property
    def use_count(self) -> int:
        return self._use_count

    @property
    def parent_key(self) -> str | None:
        return self._parent_key

    @property
    def revoked(self) -> bool:
        return self._revoked_at is not None

    def _changes(self, now: datetime) -> dict[str, object]:
        """The editable fields assigned since the token was last read or written.

        ``expires`` is resolved at ``now`` when relative.  Empty for a token never
        authorized.
        """
        base = self._base
        if base is None:
            return {}
        changes: dict[str, object] = {}
        if self.scope != base.scope:
            changes["scope"] = self.scope
        if self._data != base.data:
            changes["data"] = self._data
        if self._description != base.description:
            changes["description"] = self._description
        spec = self._expires
        if spec.relative is not None or spec.absolute != base.expires:
            changes["expires"] = spec.resolve(now)
        if self._max_uses != base.max_uses:
            changes["max_uses"] = self._max_uses
        lifetime = self._max_lifetime
        if lifetime is not None and not isinstance(lifetime, timedelta):
            lifetime = span(lifetime, base.created_at)
        if lifetime != base.max_lifetime:
            changes["max_lifetime"] = lifetime
        return changes

    def is_expired(self, now: datetime) -> bool:
        """Whether the token is expired at ``now`` (``now >= expires``)."""
        expires = self._expires.resolve(now)
        return expires is not None and now >= expires

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("key", "user", "created_at", "updated_at", "revoked_at",
                    "last_used_at", "use_count", "parent_key", "bindings", "code_bindings",
                    "run_id"):
            raise ReadOnlyAttribute(
                f"AuthToken.{name} is set by the engine and cannot be changed"
            )
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        expires = self._expires
        shown = (
            expires.absolute.isoformat() if expires.absolute
            else "never" if expires.never else f"+{expires.relative}"
        )
        # Masked: a token string accepted by mistake as a scope or a user shows here.
        return redact(
            f"AuthToken(key={self._key!r}, user={self._user!r}, scope={self.scope!r}, "
            f"expires={shown}, revoked={self._revoked_at is not None})"
        )


# -- the engine's side of a token ---------------------------------------------------------
def token_from_record(record: TokenRecord) -> AuthToken:
    """A token object showing ``record`` as storage holds it."""
    return AuthToken._from_record(record)


def load_record(token: AuthToken, record: TokenRecord) -> None:
    """Make ``token`` show ``record``, just written by the engine (authorize, update)."""
    token._load(record)


def read_record(token: AuthToken) -> TokenRecord | None:
    """The record ``token`` was last read or written as (``None``: never authorized)."""
    return token._base


def assigned_changes(token: AuthToken, now: datetime) -> dict[str, object]:
    """The editable fields assigned on ``token`` since it was read or written.

    A relative expiry is resolved at ``now``.  Empty for a token never authorized.
    """
    return token._changes(now)


class ReadOnlyAttribute(InvalidArgument, AttributeError):
    """An attribute the engine owns was assigned."""


def _scope_name(scope: object) -> str:
    if isinstance(scope, str):
        return scope
    if isinstance(scope, int) and scope.bit_length() <= 1700:
        return f"vfs:ikey?{scope}"
    return repr(type(scope).__name__)


@dataclass(frozen=True, slots=True, repr=False)
class Principal:
    """Who logged in, with which token, for what: the result of a login.

    Its ``repr`` is masked: a user or a scope may be a token string accepted by mistake.
    """

    user: UserKey
    token_key: str
    scopes: tuple[str, ...]
    data: str | None
    expires: datetime | None
    script: Script | None = None
    parent_key: str | None = None
    run_id: str | None = None
    #: The keys from the root of the token's delegation tree down to the token itself
    #: (``chain[-1] == token_key``): who acts for whom.  Defaults to ``(token_key,)``.
    chain: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.chain:
            object.__setattr__(self, "chain", (self.token_key,))

    def __repr__(self) -> str:
        return redact(
            f"Principal(user={self.user!r}, token_key={self.token_key!r}, "
            f"scopes={self.scopes!r}, data={self.data!r}, expires={self.expires!r}, "
            f"script={self.script!r}, run_id={self.run_id!r}, chain={self.chain!r})"
        )

    def has_scope(self, scope: str | int) -> bool:
        """Whether the token holds the identifier ``scope`` (compared canonically).

        An ``int`` means the script binding ``vfs:ikey?<int>``, as in ``AuthToken``.
        """
        if scope in self.scopes:
            return True
        if isinstance(scope, int) and not isinstance(scope, bool):
            try:
                return parse_scope(scope)[0] in self.scopes
            except InvalidArgument:
                return False
        if not isinstance(scope, str):
            return False
        try:
            return canonical_identifier(scope) in self.scopes
        except InvalidArgument:
            return False

    def require(self, *scopes: str | int) -> None:
        """Raise ``PermissionDenied`` naming every one of ``scopes`` the token lacks."""
        missing = [s for s in scopes if not self.has_scope(s)]
        if missing:
            raise PermissionDenied(
                "the token lacks the scope(s) "
                + ", ".join(ascii(_scope_name(s)) for s in missing),
                missing_scopes=[_scope_name(s) for s in missing],
            )
