"""Who is calling the admin API: ``Identity``, the ``Authenticator`` protocol, adapters.

Theory of operation
-------------------
An *authenticator* is any callable that takes the incoming request (its headers and
client address; the body has not been read) and returns the caller's ``Identity``, or
raises: ``AuthenticationFailed`` or any ``LoginError`` (``InvalidToken``,
``TokenExpired``, ...) means "no or bad credentials" and becomes a 401; ``IssuerError``
or ``RepositoryError`` means "cannot tell right now" and becomes a 503 that does not
count as a failed attempt.  The application calls it in a worker thread, so it may
block (a JWKS fetch, a database read).

An ``Identity`` is a user, whether it is an admin, and -- when the caller presented one
of our own delegation tokens -- the ``Principal`` of that login.  The application turns
it into a ``Session`` per request (``Identity.session``); a session with a principal is
one that *logged in by a token*, so every rule of delegation (children only, never
wider) applies to what the caller does.

Three adapters are ready: ``DelegationTokenAuth`` (our own ``atk_`` tokens),
``JWTAuth`` (an OIDC access token checked by ``authtoken.issuers.oidc.JWTVerifier``)
and ``SpatiumAuth`` (a Spatium RS256 permission token).  Messages never carry the
presented credential.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from starlette.requests import HTTPConnection, Request

from .._clock import Clock, system_clock
from .._errors import (
    ArgumentTypeError,
    AuthTokenError,
    InvalidArgument,
    InvalidToken,
    TokenExpired,
)
from .._security import Security
from .._session import Session
from .._token import Principal, UserKey, check_user, same_user

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "DelegationTokenAuth",
    "Identity",
    "JWTAuth",
    "SpatiumAuth",
    "bearer_token",
]

#: Longer credentials are refused before any parsing: nothing legitimate is that long.
MAX_CREDENTIAL_LENGTH: Final = 16_384
#: The ``iss`` of Spatium's permission tokens.
SPATIUM_ISSUER: Final = "authorization-service"
_SPATIUM_MAGIC: Final = "permissionTokenSchema"


class AuthenticationFailed(AuthTokenError):
    """No usable credentials: the admin API answers 401.

    ``challenge`` is the ``WWW-Authenticate`` value to send (``None``: the application's
    default Bearer challenge); ``presented`` tells whether credentials were given at all
    (a Bearer challenge then says ``error="invalid_token"``).
    """

    def __init__(self, message: str, *, challenge: str | None = None,
                 presented: bool = True) -> None:
        super().__init__(message)
        self.challenge = challenge
        self.presented = presented


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated caller: a ``user``, whether it is an ``admin``, and the
    ``principal`` of the delegation token it logged in with, if any.

    With a ``principal`` the caller acts as that token: tokens it authorizes are its
    children and no wider.  Raises ``InvalidArgument`` (``TypeError``
    too for wrong types) for a bad user or a principal of another user.
    """

    user: UserKey
    admin: bool = False
    principal: Principal | None = None

    def __post_init__(self) -> None:
        check_user(self.user)
        if not isinstance(self.admin, bool):
            raise ArgumentTypeError(f"admin must be a bool, not {type(self.admin).__name__}")
        if self.principal is not None:
            if not isinstance(self.principal, Principal):
                raise ArgumentTypeError(
                    f"principal must be a Principal, not {type(self.principal).__name__}"
                )
            if not same_user(self.principal.user, self.user):
                raise InvalidArgument("the principal belongs to another user than the identity")

    def session(self, security: Security) -> Session:
        """A fresh ``Session`` acting for this caller on ``security``.

        With a principal, the session is one that logged in by that token (the login
        already happened, in the authenticator): it delegates only within it.
        """
        session = Session(security, user=self.user, admin=self.admin)
        if self.principal is not None:
            session.principal = self.principal
        return session


@runtime_checkable
class Authenticator(Protocol):
    """Decides who calls: ``authenticate(request) -> Identity``.

    Raise ``AuthenticationFailed`` (or any ``LoginError``) for no or bad credentials
    (401, counted against the client address), ``IssuerError``/``RepositoryError`` when
    the decision cannot be made now (503).  Called in a worker thread: it may block.
    """

    def __call__(self, request: Request) -> Identity: ...


def client_address(request: HTTPConnection) -> str:
    """The client's address, as the rate limit and the audit trail name it."""
    return request.client.host if request.client else "unknown"


def bearer_token(request: HTTPConnection) -> str:
    """The credential of ``Authorization: Bearer <credential>`` (scheme case-insensitive).

    Raises ``AuthenticationFailed`` when the header is missing, of another scheme,
    empty, or absurdly long.  The credential never appears in the message.
    """
    values = request.headers.getlist("authorization")
    if not values:
        raise AuthenticationFailed(
            "no credentials: send 'Authorization: Bearer <token>'", presented=False
        )
    if len(values) > 1:
        raise AuthenticationFailed("more than one Authorization header")
    scheme, _, credential = values[0].strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationFailed(
            "the Authorization header must be 'Bearer <token>'", presented=False
        )
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        raise AuthenticationFailed("the bearer credential is too long")
    return credential


class DelegationTokenAuth:
    """The caller presents one of this engine's tokens: ``Authorization: Bearer atk_…``.

    The token's user is the caller; it is an admin when the token holds ``admin_scope``
    (``None``: nobody is).  The token logs in without a script, so a token bound to
    scripts (``vfs:``/``ufs:``) is refused (``ScriptNotAuthorized``, a 401).  What the
    caller creates derives from the presented token.
    """

    def __init__(self, security: Security, *,
                 admin_scope: str | None = "authtoken:admin") -> None:
        if not isinstance(security, Security):
            raise ArgumentTypeError(f"expected a Security, not {type(security).__name__}")
        if admin_scope is not None and (not isinstance(admin_scope, str) or not admin_scope):
            raise ArgumentTypeError("admin_scope must be a non-empty str or None")
        self.security = security
        self.admin_scope = admin_scope

    def __repr__(self) -> str:
        return f"DelegationTokenAuth(admin_scope={self.admin_scope!r})"

    def __call__(self, request: HTTPConnection) -> Identity:
        """The identity of the presented token; ``LoginError`` when it is refused."""
        session = Session(self.security)
        principal = session.login_by_auth_token(bearer_token(request))
        return Identity(principal.user, admin=self._admin(principal), principal=principal)

    def _admin(self, principal: Principal) -> bool:
        return self.admin_scope is not None and principal.has_scope(self.admin_scope)

    def resume(self, credential: str) -> Identity:
        """The identity of a token that already signed in (the token page's cookie),
        checked as a login would check it now but *without* being one: no use is
        spent and nothing is recorded, so browsing the page does not inflate the
        token's ``use_count``.  A revoked, expired or script-bound token is refused as
        a login would be (``AuthenticationFailed`` with what to change); a token whose
        uses ran out still resumes, as its sign-in was the login it spent.
        """
        token = self.security.restore_auth_token(credential)
        assert token.key is not None
        assert token.user is not None
        check = self.security.explain_login(token.key)
        if not check.ok and check.reason != "TokenExhausted":
            raise AuthenticationFailed(check.message)
        principal = Principal(token.user, token.key, token.scopes, token.data,
                              token.expires, parent_key=token.parent_key,
                              run_id=token.run_id)
        return Identity(principal.user, admin=self._admin(principal), principal=principal)


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """``claims[name]``, else the dotted path (``"realm_access.roles"``), else ``None``."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _holds(value: Any, wanted: Any) -> bool:
    """Whether a claim ``value`` grants ``wanted``: equal, a member of a list, or one of
    the words of a space-separated string (an OAuth ``scope``)."""
    if isinstance(value, (list, tuple)):
        return any(type(v) is type(wanted) and v == wanted for v in value)
    if isinstance(value, str) and isinstance(wanted, str):
        return value == wanted or wanted in value.split()
    return type(value) is type(wanted) and value == wanted


class _Verifies(Protocol):
    def verify(self, token: str) -> Mapping[str, Any]: ...


class JWTAuth:
    """The caller presents an OIDC access token (a JWT) checked by ``verifier``.

    ``verifier`` is an ``authtoken.issuers.oidc.JWTVerifier`` (or anything with
    ``verify(token) -> claims`` raising ``InvalidToken``).  The user is the
    ``user_claim`` (a string or integer claim, as it is: ``"42"`` stays a string).
    The caller is an admin when ``admin_claim`` is set and its value holds
    ``admin_value`` -- equal to it, a member of a list, or a word of a space-separated
    string such as ``scope`` -- or, with ``admin_value=None``, is ``true``.  Claim names
    may be dotted paths (``"realm_access.roles"``).
    """

    def __init__(self, verifier: _Verifies, *, user_claim: str = "sub",
                 admin_claim: str | None = None, admin_value: Any = None) -> None:
        verify = getattr(verifier, "verify", None)
        if not callable(verify):
            raise ArgumentTypeError("verifier needs a verify(token) method (a JWTVerifier)")
        if inspect.iscoroutinefunction(verify):
            raise ArgumentTypeError("authenticators run in a worker thread: give a "
                                    "JWTVerifier, not an AsyncJWTVerifier")
        if not isinstance(user_claim, str) or not user_claim:
            raise ArgumentTypeError("user_claim must be a non-empty str")
        if admin_claim is not None and (not isinstance(admin_claim, str) or not admin_claim):
            raise ArgumentTypeError("admin_claim must be a non-empty str or None")
        self.verifier = verifier
        self.user_claim = user_claim
        self.admin_claim = admin_claim
        self.admin_value = admin_value

    def __repr__(self) -> str:
        return (f"JWTAuth({self.verifier!r}, user_claim={self.user_claim!r}, "
                f"admin_claim={self.admin_claim!r})")

    def __call__(self, request: HTTPConnection) -> Identity:
        """The identity the token's claims name; ``InvalidToken`` when it is refused."""
        claims = self.verifier.verify(bearer_token(request))
        return identity_from_claims(claims, self.user_claim, self.admin_claim,
                                    self.admin_value, what="the token")


def identity_from_claims(claims: Mapping[str, Any], user_claim: str,
                         admin_claim: str | None, admin_value: Any, *,
                         what: str) -> Identity:
    """The ``Identity`` verified ``claims`` name (``JWTAuth``, the page's single
    sign-on): the user is ``claims[user_claim]``; an admin when ``admin_claim`` holds
    ``admin_value`` (see ``JWTAuth``).  ``AuthenticationFailed`` naming ``what`` carried
    the claims when there is no usable user."""
    user = _claim(claims, user_claim)
    if isinstance(user, bool) or not isinstance(user, (str, int)):
        raise AuthenticationFailed(f"{what} carries no usable {user_claim!r} claim")
    try:
        user = check_user(user)
    except InvalidArgument:
        raise AuthenticationFailed(f"{what}'s {user_claim!r} claim is not a valid user"
                                   ) from None
    admin = False
    if admin_claim is not None:
        value = _claim(claims, admin_claim)
        admin = value is True if admin_value is None else _holds(value, admin_value)
    return Identity(user, admin=admin)


class SpatiumAuth:
    """The caller presents a Spatium permission token (RS256).

    ``public_key`` is the authorization service's RSA public key (PEM text or bytes,
    or a ``cryptography`` RSA public key).  The user is the token's ``accountId`` (a
    token issued by merchant key names no account and is refused); the caller is an
    admin when ``permissions`` holds ``admin_permission``.  ``issuer`` is the expected
    ``iss`` (``None``: unchecked); ``leeway`` the seconds of clock skew allowed; expiry is
    judged by ``clock`` (aware UTC datetimes).  Needs PyJWT with cryptography:
    ``pip install "authtoken[admin]"``.
    """

    def __init__(self, public_key: str | bytes | RSAPublicKey, *,
                 admin_permission: str | None = "authtoken:admin",
                 issuer: str | None = SPATIUM_ISSUER, leeway: float = 0.0,
                 clock: Clock | None = None) -> None:
        try:
            import jwt
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                'SpatiumAuth needs PyJWT[crypto]: pip install "authtoken[admin]"'
            ) from exc
        if isinstance(public_key, (str, bytes)):
            pem = public_key.encode("ascii", "replace") if isinstance(public_key, str) \
                else public_key
            try:
                loaded = serialization.load_pem_public_key(pem)
            except (ValueError, TypeError) as exc:
                raise InvalidArgument("public_key is not a PEM public key") from exc
        else:
            loaded = public_key
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise InvalidArgument("public_key must be an RSA public key (Spatium signs RS256)")
        if admin_permission is not None and (
                not isinstance(admin_permission, str) or not admin_permission):
            raise ArgumentTypeError("admin_permission must be a non-empty str or None")
        if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or not leeway >= 0:
            raise InvalidArgument("leeway must be a number of seconds, 0 or more")
        if clock is not None and not callable(clock):
            raise ArgumentTypeError("clock must be a callable returning an aware datetime")
        self._jwt = jwt
        self._key = loaded
        self.admin_permission = admin_permission
        self.issuer = issuer
        self.leeway = float(leeway)
        self._clock: Callable[[], datetime] = clock or system_clock

    def __repr__(self) -> str:
        return f"SpatiumAuth(admin_permission={self.admin_permission!r}, issuer={self.issuer!r})"

    def claims(self, token: str) -> dict[str, Any]:
        """The claims of a genuine, current permission token.

        Raises ``InvalidToken`` (forged, malformed, not a permission token, not yet
        valid) or ``TokenExpired``.
        """
        jwt = self._jwt
        if len(token) > MAX_CREDENTIAL_LENGTH:
            raise InvalidToken("the permission token is too long")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=["RS256"], issuer=self.issuer,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "verify_aud": False, "require": ["exp"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError, LookupError):
            raise InvalidToken("not a valid Spatium permission token") from None
        if claims.get("magic") != _SPATIUM_MAGIC:
            raise InvalidToken("not a Spatium permission token (a refresh or other token?)")
        now = self._clock().timestamp()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise InvalidToken("the permission token's exp is malformed")
        if now >= exp + self.leeway:
            raise TokenExpired("the permission token has expired")
        if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) \
                and now + self.leeway < nbf:
            raise InvalidToken("the permission token is not valid yet")
        return claims

    def __call__(self, request: HTTPConnection) -> Identity:
        """The identity of the token's account; ``LoginError`` when it is refused."""
        claims = self.claims(bearer_token(request))
        account = claims.get("accountId")
        if not isinstance(account, str) or not account:
            raise AuthenticationFailed(
                "the permission token names no account (a token issued by merchant key?)"
            )
        try:
            user = check_user(account)
        except InvalidArgument:
            raise AuthenticationFailed("the permission token's accountId is not a valid user") \
                from None
        permissions = claims.get("permissions")
        admin = (
            self.admin_permission is not None
            and isinstance(permissions, list)
            and self.admin_permission in permissions
        )
        return Identity(user, admin=admin)
