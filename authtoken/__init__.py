"""authtoken: scoped, revocable delegation tokens.

A user authorizes a token -- scopes, optionally bound to the scripts allowed to use it,
a data payload, an expiry -- and a script runner or job scheduler later logs in *as that
user* with it, without ever holding the user's password::

    from authtoken import AuthToken, Script, open_security

    with open_security() as security:
        string = security.authorize_token(AuthToken("reports:read vfs:ikey?42"), user=7)
        principal = security.login_by_auth_token(string, script=Script(key=42))

See ``docs/`` for the concepts and the command line (``authtoken --help``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._defaults import default_database_path as default_database_path
from ._defaults import default_key_path as default_key_path
from ._errors import AuthTokenError as AuthTokenError
from ._errors import ConcurrentUpdate as ConcurrentUpdate
from ._errors import InvalidArgument as InvalidArgument
from ._errors import InvalidToken as InvalidToken
from ._errors import IssuerError as IssuerError
from ._errors import LoginError as LoginError
from ._errors import PermissionDenied as PermissionDenied
from ._errors import PolicyViolation as PolicyViolation
from ._errors import RepositoryError as RepositoryError
from ._errors import ScopeError as ScopeError
from ._errors import ScriptNotAuthorized as ScriptNotAuthorized
from ._errors import SessionExpired as SessionExpired
from ._errors import SessionNotEstablished as SessionNotEstablished
from ._errors import TokenExhausted as TokenExhausted
from ._errors import TokenExpired as TokenExpired
from ._errors import TokenNotFound as TokenNotFound
from ._errors import TokenRevoked as TokenRevoked
from ._escape import escape as escape
from ._escape import unescape as unescape
from ._explain import LoginCheck as LoginCheck
from ._open import open_security as open_security
from ._policy import Policy as Policy
from ._repository import MemoryRepository as MemoryRepository
from ._repository import Repository as Repository
from ._run import RunToken as RunToken
from ._scan import FoundToken as FoundToken
from ._scan import find_tokens as find_tokens
from ._scopes import Script as Script
from ._scopes import digest_binding as digest_binding
from ._scopes import key_binding as key_binding
from ._scopes import path_binding as path_binding
from ._scopes import scope_warnings as scope_warnings
from ._security import Security as Security
from ._session import ScriptRunner as ScriptRunner
from ._session import Session as Session
from ._token import AuthToken as AuthToken
from ._token import Principal as Principal
from ._token import UserKey as UserKey

if TYPE_CHECKING:
    from ._sql import SQLRepository as SQLRepository

__version__ = "0.1.0"

__all__ = [
    "AuthToken",
    "AuthTokenError",
    "ConcurrentUpdate",
    "FoundToken",
    "InvalidArgument",
    "InvalidToken",
    "IssuerError",
    "LoginCheck",
    "LoginError",
    "MemoryRepository",
    "PermissionDenied",
    "Policy",
    "PolicyViolation",
    "Principal",
    "Repository",
    "RepositoryError",
    "RunToken",
    "SQLRepository",
    "ScopeError",
    "Script",
    "ScriptNotAuthorized",
    "ScriptRunner",
    "Security",
    "Session",
    "SessionExpired",
    "SessionNotEstablished",
    "TokenExhausted",
    "TokenExpired",
    "TokenNotFound",
    "TokenRevoked",
    "UserKey",
    "default_database_path",
    "default_key_path",
    "digest_binding",
    "escape",
    "find_tokens",
    "key_binding",
    "open_security",
    "path_binding",
    "scope_warnings",
    "unescape",
]


def __getattr__(name: str) -> Any:
    # SQLAlchemy is imported only when a SQL repository is asked for.
    if name == "SQLRepository":
        from ._sql import SQLRepository

        return SQLRepository
    raise AttributeError(f"module 'authtoken' has no attribute {name!r}")
