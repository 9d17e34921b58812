"""The exceptions authtoken raises on purpose.

::

    AuthTokenError(Exception)
    ├── InvalidArgument(AuthTokenError, ValueError)
    │   ├── ScopeError
    │   └── ConcurrentUpdate          the token changed since it was read
    ├── LoginError
    │   ├── InvalidToken              malformed, forged, unknown or wrong secret
    │   ├── TokenExpired
    │   ├── TokenRevoked
    │   ├── TokenExhausted            every use of a max_uses token is spent
    │   └── ScriptNotAuthorized
    ├── TokenNotFound(AuthTokenError, LookupError)
    ├── PermissionDenied
    │   └── PolicyViolation           a Policy forbids it
    ├── RepositoryError
    └── IssuerError
        ├── SessionNotEstablished
        └── SessionExpired

Context travels in typed attributes (``token_key``, ``expired_at``,
``missing_scopes``, ...), never only in the message.  No message, ``repr`` or attribute
holds a token string, its secret or a database password: every constructor passes its
message and its text attributes through ``redact``, so a caller that echoes user input
(a token string given by mistake as a scope, an expiry or a user; a URL with its
password) cannot leak it.  What the constructors cannot see is a chained exception: code
that raises one of these from an error carrying user input raises it outside the
``except`` block, so nothing is chained.

Errors that are also a wrong *type* of argument (``ArgumentTypeError``) derive from
``TypeError`` as well, so both ``except TypeError`` and ``except InvalidArgument`` work.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ._redact import redact

__all__ = [
    "ArgumentTypeError",
    "AuthTokenError",
    "ConcurrentUpdate",
    "InvalidArgument",
    "InvalidToken",
    "IssuerError",
    "LoginError",
    "PermissionDenied",
    "PolicyViolation",
    "RepositoryError",
    "ScopeError",
    "ScriptNotAuthorized",
    "SessionExpired",
    "SessionNotEstablished",
    "TokenExhausted",
    "TokenExpired",
    "TokenNotFound",
    "TokenRevoked",
]


def _masked(text: str) -> str:
    """``text`` through ``redact``, skipping the regular expressions when it cannot match.

    Every forged login raises ``InvalidToken`` with a constant message, so the common
    case must cost next to nothing.  Each of ``redact``'s patterns needs one of these to
    match: a token string its ``_`` (``atk_``), a JSON Web Token or a token body its
    ``.``, a lone secret 43 characters, a password parameter its ``=``, a URL password
    its ``://``.
    """
    if (len(text) < 43 and "_" not in text and "." not in text and "=" not in text
            and "://" not in text):
        return text
    return redact(text)


def _masked_or_none(text: str | None) -> str | None:
    return None if text is None else _masked(str(text))


def _masked_arg(arg: object) -> object:
    if isinstance(arg, str):
        return _masked(arg)
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    try:
        text = str(arg)
    except Exception:  # an argument that cannot be shown is not shown
        return f"<{type(arg).__name__}>"
    masked = _masked(text)
    return arg if masked == text else masked


class AuthTokenError(Exception):
    """Base of every error authtoken raises on purpose.

    The arguments are masked at construction (see the module notes): a ``str`` argument
    through ``redact``, any other one replaced by its masked ``str`` when that holds
    something to mask.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and type(args[0]) is str:
            # The usual case, and the login path's: _masked's quick test, inlined.
            text = args[0]
            if (len(text) >= 43 or "_" in text or "." in text or "=" in text
                    or "://" in text):
                text = redact(text)
            super().__init__(text)
        else:
            super().__init__(*[_masked_arg(arg) for arg in args])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidArgument(AuthTokenError, ValueError):
    """An argument was refused: it says which and how to fix it."""


class ArgumentTypeError(InvalidArgument, TypeError):
    """An argument of the wrong type."""


class ScopeError(InvalidArgument):
    """A scope breaks the grammar: see ``authtoken.AuthToken``."""

    def __init__(self, message: str, *, identifier: str | None = None) -> None:
        super().__init__(message)
        #: the offending identifier, masked and cut to 80 characters, when there is one
        self.identifier = _masked(identifier)[:80] if identifier is not None else None


class ConcurrentUpdate(InvalidArgument):
    """The token was changed by someone else since it was read: read it again."""

    def __init__(self, message: str, *, token_key: str) -> None:
        super().__init__(message)
        self.token_key = _masked(token_key)


class LoginError(AuthTokenError):
    """``login_by_auth_token`` refused; the subclass says which check failed."""

    def __init__(self, message: str, *, token_key: str | None = None) -> None:
        super().__init__(message)
        #: the key of the token, once the secret has matched; ``None`` before
        self.token_key = None if token_key is None else _masked(str(token_key))


class InvalidToken(LoginError):
    """Not a token this engine issued: malformed, forged, unknown or wrong secret."""


class TokenExpired(LoginError):
    """The token was valid but its expiry has passed."""

    def __init__(self, message: str, *, token_key: str | None = None,
                 expired_at: datetime | None = None) -> None:
        super().__init__(message, token_key=token_key)
        self.expired_at = expired_at


class TokenRevoked(LoginError):
    """The token was revoked (by itself, its user, or an ancestor)."""

    def __init__(self, message: str, *, token_key: str | None = None,
                 revoked_at: datetime | None = None) -> None:
        super().__init__(message, token_key=token_key)
        self.revoked_at = revoked_at


class TokenExhausted(LoginError):
    """Every use of a token with ``max_uses`` is spent."""

    def __init__(self, message: str, *, token_key: str | None = None,
                 max_uses: int | None = None) -> None:
        super().__init__(message, token_key=token_key)
        self.max_uses = max_uses


class ScriptNotAuthorized(LoginError):
    """The token is bound to scripts (``vfs:``/``ufs:``) and this one is not among them."""


class TokenNotFound(AuthTokenError, LookupError):
    """No token with that key."""

    def __init__(self, message: str, *, token_key: str | None = None) -> None:
        super().__init__(message)
        self.token_key = _masked_or_none(token_key)


class PermissionDenied(AuthTokenError):
    """The session or principal may not do that; nothing was changed."""

    def __init__(self, message: str, *, missing_scopes: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.missing_scopes: tuple[str, ...] = tuple(_masked(str(s)) for s in missing_scopes)


class PolicyViolation(PermissionDenied):
    """A ``Policy`` forbids it: ``rule`` names the rule, ``limit`` its value."""

    def __init__(self, message: str, *, rule: str, limit: object = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.limit = limit


class RepositoryError(AuthTokenError):
    """Storage is unreachable or failing.  The message never holds a DSN password."""


class IssuerError(AuthTokenError):
    """An upstream issuer failed or refused."""

    def __init__(self, message: str, *, status: int | None = None,
                 request_id: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = _masked_or_none(request_id)
        self.code = _masked_or_none(code)


class SessionNotEstablished(IssuerError):
    """The issuer session was used before ``establish``."""


class SessionExpired(IssuerError):
    """The refresh token is dead: establish the session again."""
