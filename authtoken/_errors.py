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
    │   └── ScriptNotAuthorized
    ├── TokenNotFound(AuthTokenError, LookupError)
    ├── PermissionDenied
    ├── RepositoryError
    └── IssuerError
        ├── SessionNotEstablished
        └── SessionExpired

Context travels in typed attributes (``token_key``, ``expired_at``,
``missing_scopes``, ...), never only in the message.  No message or ``repr`` holds a
token string or its secret: the constructors take none.

Errors that are also a wrong *type* of argument (``ArgumentTypeError``) derive from
``TypeError`` as well, so both ``except TypeError`` and ``except InvalidArgument`` work.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

__all__ = [
    "ArgumentTypeError",
    "AuthTokenError",
    "ConcurrentUpdate",
    "InvalidArgument",
    "InvalidToken",
    "IssuerError",
    "LoginError",
    "PermissionDenied",
    "RepositoryError",
    "ScopeError",
    "ScriptNotAuthorized",
    "SessionExpired",
    "SessionNotEstablished",
    "TokenExpired",
    "TokenNotFound",
    "TokenRevoked",
]


class AuthTokenError(Exception):
    """Base of every error authtoken raises on purpose."""

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
        #: the offending identifier, cut to 80 characters, when there is one
        self.identifier = identifier[:80] if identifier is not None else None


class ConcurrentUpdate(InvalidArgument):
    """The token was changed by someone else since it was read: read it again."""

    def __init__(self, message: str, *, token_key: str) -> None:
        super().__init__(message)
        self.token_key = token_key


class LoginError(AuthTokenError):
    """``login_by_auth_token`` refused; the subclass says which check failed."""

    def __init__(self, message: str, *, token_key: str | None = None) -> None:
        super().__init__(message)
        #: the key of the token, once the secret has matched; ``None`` before
        self.token_key = token_key


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


class ScriptNotAuthorized(LoginError):
    """The token is bound to scripts (``vfs:``/``ufs:``) and this one is not among them."""


class TokenNotFound(AuthTokenError, LookupError):
    """No token with that key."""

    def __init__(self, message: str, *, token_key: str | None = None) -> None:
        super().__init__(message)
        self.token_key = token_key


class PermissionDenied(AuthTokenError):
    """The session or principal may not do that; nothing was changed."""

    def __init__(self, message: str, *, missing_scopes: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.missing_scopes: tuple[str, ...] = tuple(missing_scopes)


class RepositoryError(AuthTokenError):
    """Storage is unreachable or failing.  The message never holds a DSN password."""


class IssuerError(AuthTokenError):
    """An upstream issuer failed or refused."""

    def __init__(self, message: str, *, status: int | None = None,
                 request_id: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.code = code


class SessionNotEstablished(IssuerError):
    """The issuer session was used before ``establish``."""


class SessionExpired(IssuerError):
    """The refresh token is dead: establish the session again."""
