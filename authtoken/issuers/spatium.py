"""Spatium's authorization service: the API client and self-refreshing sessions.

The wire format: every call is a ``POST {base}/api/...`` with a JSON
body and a fresh UUID in the ``request-id`` header; every answer is ``{"requestId": ...,
"data": {...}}``.  A *permission token* (RS256 JWT, about 15 minutes) is the access
token; a *permission refresh token* (about 2 hours) gets the next pair and is then stale.

- ``SpatiumClient`` / ``AsyncSpatiumClient``: one method per API call, typed results.
- ``AuthorizationSession``: a user's session.  ``establish(security_tokens)`` gets the
  first pair; ``get_permission_token()`` returns a valid token, refreshing it ``leeway``
  before it expires; when the refresh token is dead or refused it raises
  ``SessionExpired`` until ``establish`` is called again.
- ``KeyAuthorizationSession``: a backend's session, issued by merchant key on first use
  and issued again by key whenever the refresh token is dead.

Every request is built and every response parsed once, in ``SpatiumProtocol`` (sans-IO
flows); when to refresh is decided by the shared engine (``_core.Refresher``); the
sync and async classes only carry the bytes (``_shell``).  Needs the ``issuers`` extra:
``pip install "authtoken[issuers]"``.

Failures raise ``IssuerError`` with ``.status`` (``None`` when the issuer could not be
reached), ``.request_id`` and ``.code``; no message or ``repr`` holds a token, password or
merchant key.  While a refresh fails transiently (5xx, 429, no connection) the sessions
keep serving the still-valid permission token and retry after a bounded backoff.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Final, TypeAlias, TypeVar

try:
    import httpx

    from ._shell import AsyncCredential, AsyncDriver, SyncCredential, SyncDriver
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name not in ("httpx", "httpcore", "anyio", "h11"):
        raise
    raise ImportError(
        'authtoken.issuers.spatium needs httpx: pip install "authtoken[issuers]"'
    ) from exc

from .._clock import system_seconds
from .._errors import (
    ArgumentTypeError,
    InvalidArgument,
    IssuerError,
    SessionExpired,
    SessionNotEstablished,
)
from ._core import Flow, Grant, Refresher, Request, Response, guarded, issuer_error
from ._urls import credential_url

__all__ = [
    "AsyncAuthorizationSession",
    "AsyncKeyAuthorizationSession",
    "AsyncSpatiumClient",
    "AuthorizationSession",
    "FactorRequirement",
    "IssuerError",
    "KeyAuthorizationSession",
    "PermissionTokens",
    "SecurityToken",
    "SessionExpired",
    "SessionNotEstablished",
    "SpatiumClient",
    "SpatiumProtocol",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Spatium's public endpoint.
DEFAULT_URL: Final = "https://cloud.spatium.net/authorization/v1"
#: Refresh a 15-minute permission token one minute before it expires.
DEFAULT_LEEWAY: Final = 60.0
DEFAULT_TIMEOUT: Final = 10.0
_MAX_TREE_DEPTH: Final = 32
_SECURE: Final = "[secure]"


# -- results -----------------------------------------------------------------------------
def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ArgumentTypeError(f"{name} must be a datetime")
    if value.tzinfo is None:
        raise InvalidArgument(f"{name} must be timezone-aware")
    return value.astimezone(timezone.utc)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str")
    if not value:
        raise InvalidArgument(f"{name} must not be empty")
    return value


@dataclass(frozen=True, slots=True, repr=False)
class SecurityToken:
    """A security-factor token (proof of one factor, e.g. username and password)."""

    token: str
    issuer: str
    expires_at: datetime

    def __post_init__(self) -> None:
        _text(self.token, "token")
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
        _text(self.permission_token, "permission_token")
        _text(self.refresh_token, "refresh_token")
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
        _text(self.combination, "combination")
        object.__setattr__(self, "types", tuple(self.types))
        if self.combination == "just":
            _text(self.type, "type")
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


# -- arguments ---------------------------------------------------------------------------
def _permissions(permissions: object) -> list[str]:
    """A list of permission names; a ``str`` is split on whitespace."""
    if isinstance(permissions, str):
        items: list[object] = list(permissions.split())
    elif isinstance(permissions, (bytes, Mapping)) or not isinstance(permissions, Iterable):
        raise ArgumentTypeError("permissions must be an iterable of str")
    else:
        items = list(permissions)
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ArgumentTypeError("each permission must be a str")
        if not item or item != item.strip():
            raise InvalidArgument("a permission must be a non-empty name without spaces")
        if item not in result:
            result.append(item)
    if not result:
        raise InvalidArgument("at least one permission is needed")
    return result


def _security_tokens(tokens: object) -> list[str]:
    if isinstance(tokens, (str, SecurityToken)):
        tokens = [tokens]
    if isinstance(tokens, (bytes, Mapping)) or not isinstance(tokens, Iterable):
        raise ArgumentTypeError("security_tokens must be an iterable of str or SecurityToken")
    result: list[str] = []
    for item in tokens:
        if isinstance(item, SecurityToken):
            item = item.token
        result.append(_text(item, "each security token"))
    if not result:
        raise InvalidArgument("at least one security token is needed")
    return result


def _leeway(leeway: object) -> float:
    if isinstance(leeway, timedelta):
        seconds = leeway.total_seconds()
    elif isinstance(leeway, (int, float)) and not isinstance(leeway, bool):
        seconds = float(leeway)
    else:
        raise ArgumentTypeError("leeway is a number of seconds or a timedelta")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument("leeway must be a finite, non-negative number of seconds")
    return seconds


def _base_url(url: object) -> str:
    """The service's base URL: https, or http on loopback (credentials go there)."""
    return credential_url(url, "url", base=True)


Clock = Callable[[], "datetime | float"]


def _seconds(clock: Clock | None) -> Callable[[], float]:
    """The engine's clock (seconds since 1970) from a clock of datetimes or seconds."""
    if clock is None:
        return system_seconds
    if not callable(clock):
        raise ArgumentTypeError("clock must be a callable returning a datetime")

    def now() -> float:
        value = clock()
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.timestamp()
        return float(value)

    return now


# -- parsing -----------------------------------------------------------------------------
Fail = Callable[[str], IssuerError]


def _field(obj: Mapping[str, Any], key: str, fail: Fail) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise fail(f"no {key}")
    return value


def _issuer(obj: Mapping[str, Any]) -> str:
    value = obj.get("issuer")
    return value if isinstance(value, str) else ""


def _timestamp(obj: Mapping[str, Any], key: str, fail: Fail) -> datetime:
    """Seconds since 1970 (what Spatium sends); milliseconds or ISO 8601 are tolerated."""
    value = obj.get(key)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"{key} is not a time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(f"no {key}")
    if value > 1e11:  # no date in seconds before the year 5000: milliseconds
        value = value / 1000
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise fail(f"{key} out of range") from None


def _object(obj: Mapping[str, Any], key: str, fail: Fail) -> Mapping[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise fail(f"no {key} object")
    return value


def _requirement(node: object, fail: Fail, depth: int = 0) -> FactorRequirement:
    if depth > _MAX_TREE_DEPTH:
        raise fail("factor tree too deep")
    if not isinstance(node, dict):
        raise fail("factor requirement is not an object")
    combination = _field(node, "combination", fail)
    if combination == "just":
        return FactorRequirement("just", _field(node, "type", fail))
    children = node.get("types")
    if not isinstance(children, list):
        raise fail("no types")
    return FactorRequirement(
        combination, None, tuple(_requirement(c, fail, depth + 1) for c in children)
    )


def _security_token(data: Mapping[str, Any], fail: Fail) -> SecurityToken:
    return SecurityToken(_field(data, "securityToken", fail), _issuer(data),
                         _timestamp(data, "expiresAt", fail))


def _permission_tokens(data: Mapping[str, Any], fail: Fail) -> PermissionTokens:
    access = _object(data, "permissionToken", fail)
    refresh = _object(data, "permissionRefreshToken", fail)
    return PermissionTokens(
        permission_token=_field(access, "permissionToken", fail),
        permission_expires_at=_timestamp(access, "expiresAt", fail),
        refresh_token=_field(refresh, "permissionRefreshToken", fail),
        refresh_expires_at=_timestamp(refresh, "expiresAt", fail),
        issuer=_issuer(access),
    )


def _account_id(data: Mapping[str, Any], fail: Fail) -> str:
    return _field(data, "accountId", fail)


def _utility_token(data: Mapping[str, Any], fail: Fail) -> str:
    return _field(data, "utilityToken", fail)


# -- the protocol: requests and responses, no I/O ----------------------------------------
class SpatiumProtocol:
    """Builds each Spatium request and parses each answer, as sans-IO flows.

    Each method returns a generator that yields one ``Request``, is sent its
    ``Response`` and returns the typed result -- or raises ``IssuerError`` (with the
    status, request id and upstream code) for a refusal or a malformed answer.  A shell
    may throw ``TransportFailure`` into it; it propagates unchanged.  Arguments are
    checked when the flow is created, before anything is sent.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = _base_url(base_url)

    def __repr__(self) -> str:
        return f"SpatiumProtocol({self.base_url!r})"

    def request(self, path: str, body: Mapping[str, Any], *, bearer: str | None = None,
                ) -> Request:
        """A POST of ``body`` as JSON to ``{base_url}{path}`` with a fresh ``request-id``."""
        headers = [("accept", "application/json"), ("request-id", str(uuid.uuid4()))]
        if bearer is not None:
            headers.append(("authorization", f"Bearer {bearer}"))
        return Request("POST", self.base_url + path, tuple(headers), json=dict(body))

    def call(self, what: str, request: Request,
             parse: Callable[[Mapping[str, Any], Fail], T]) -> Generator[Request, Response, T]:
        """Send ``request``; parse the ``data`` object of a 2xx answer."""
        response = yield request
        request_id = dict(request.headers).get("request-id")
        if not 200 <= response.status < 300:
            error = issuer_error(response, what)
            error.request_id = error.request_id or request_id
            raise error

        def fail(detail: str) -> IssuerError:
            return IssuerError(f"{what} failed: the issuer's answer is malformed ({detail})",
                               status=response.status, request_id=request_id)

        try:
            body = response.json()
        except IssuerError:
            raise fail("not JSON") from None
        if not isinstance(body, dict):
            raise fail("not an object")
        return parse(_object(body, "data", fail), fail)

    def security_factor_credentials(self, username: str, password: str,
                                    ) -> Generator[Request, Response, SecurityToken]:
        request = self.request("/api/security-factor/credentials", {
            "username": _text(username, "username"), "password": _text(password, "password")})
        return self.call("Spatium security-factor/credentials", request, _security_token)

    def probe(self, permissions: Iterable[str]) -> Generator[Request, Response, FactorRequirement]:
        request = self.request("/api/permission/probe", {"permissions": _permissions(permissions)})
        return self.call("Spatium permission/probe", request,
                         lambda data, fail: _requirement(data, fail))

    def issue_by_key(self, token_id: str, permissions: Iterable[str], merchant_key: str,
                     ) -> Generator[Request, Response, PermissionTokens]:
        request = self.request("/api/permission/issue-by-key", {
            "tokenId": _text(token_id, "token_id"), "permissions": _permissions(permissions),
            "merchantKey": _text(merchant_key, "merchant_key")})
        return self.call("Spatium permission/issue-by-key", request, _permission_tokens)

    def issue_by_factors(self, token_id: str, permissions: Iterable[str],
                         security_tokens: SecurityTokens,
                         ) -> Generator[Request, Response, PermissionTokens]:
        request = self.request("/api/permission/issue-by-factors", {
            "tokenId": _text(token_id, "token_id"), "permissions": _permissions(permissions),
            "securityTokens": _security_tokens(security_tokens)})
        return self.call("Spatium permission/issue-by-factors", request, _permission_tokens)

    def refresh(self, refresh_token: str | PermissionTokens,
                ) -> Generator[Request, Response, PermissionTokens]:
        if isinstance(refresh_token, PermissionTokens):
            refresh_token = refresh_token.refresh_token
        request = self.request("/api/permission/refresh", {
            "permissionRefreshToken": _text(refresh_token, "refresh_token")})
        return self.call("Spatium permission/refresh", request, _permission_tokens)

    def create_account_with_credentials(self, permission_token: str, username: str,
                                        password: str) -> Generator[Request, Response, str]:
        request = self.request("/api/account/credentials", {
            "username": _text(username, "username"), "password": _text(password, "password"),
        }, bearer=_text(permission_token, "permission_token"))
        return self.call("Spatium account/credentials", request, _account_id)

    def email_intent(self, permission_token: str, email: str,
                     ) -> Generator[Request, Response, str]:
        request = self.request("/api/account/email-intent", {"email": _text(email, "email")},
                               bearer=_text(permission_token, "permission_token"))
        return self.call("Spatium account/email-intent", request, _utility_token)

    def email_confirm(self, utility_token: str, code: str | int,
                      ) -> Generator[Request, Response, str]:
        if isinstance(code, int) and not isinstance(code, bool):
            code = str(code)
        request = self.request("/api/account/email-confirm", {
            "utilityToken": _text(utility_token, "utility_token"), "code": _text(code, "code")})
        return self.call("Spatium account/email-confirm", request, _account_id)


# -- the clients -------------------------------------------------------------------------
class SpatiumClient:
    """Spatium's authorization API, one method per call (see ``SpatiumProtocol``).

    Every method raises ``IssuerError``: with the HTTP ``status``, ``request_id`` and
    upstream ``code`` when the service refused, with ``status=None`` when it could not be
    reached.  A client given as ``client`` is not closed by ``close()``.
    """

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 client: httpx.Client | None = None) -> None:
        self.protocol = SpatiumProtocol(base_url)
        self._driver = SyncDriver(client, timeout)

    def __repr__(self) -> str:
        return f"SpatiumClient({self.protocol.base_url!r})"

    def _run(self, flow: Generator[Request, Response, T]) -> T:
        return self._driver.run(guarded(flow))

    def security_factor_credentials(self, username: str, password: str) -> SecurityToken:
        """Prove the credentials factor: a security token for ``issue_by_factors``."""
        return self._run(self.protocol.security_factor_credentials(username, password))

    def probe(self, permissions: Iterable[str]) -> FactorRequirement:
        """The security factors needed for ``permissions``."""
        return self._run(self.protocol.probe(permissions))

    def issue_by_key(self, token_id: str, permissions: Iterable[str],
                     merchant_key: str) -> PermissionTokens:
        """A backend's tokens, by merchant key; ``token_id`` should be static per service."""
        return self._run(self.protocol.issue_by_key(token_id, permissions, merchant_key))

    def issue_by_factors(self, token_id: str, permissions: Iterable[str],
                         security_tokens: SecurityTokens) -> PermissionTokens:
        """A user's tokens, by security tokens; ``token_id`` per user or device."""
        return self._run(self.protocol.issue_by_factors(token_id, permissions, security_tokens))

    def refresh(self, refresh_token: str | PermissionTokens) -> PermissionTokens:
        """The next pair; the refresh token given is stale afterwards."""
        return self._run(self.protocol.refresh(refresh_token))

    def create_account_with_credentials(self, permission_token: str, username: str,
                                        password: str) -> str:
        """Register a user with the credentials factor; returns the account id."""
        return self._run(self.protocol.create_account_with_credentials(
            permission_token, username, password))

    def email_intent(self, permission_token: str, email: str) -> str:
        """Send a confirmation code to ``email``; returns the utility token."""
        return self._run(self.protocol.email_intent(permission_token, email))

    def email_confirm(self, utility_token: str, code: str | int) -> str:
        """Confirm the emailed code; returns the new account id."""
        return self._run(self.protocol.email_confirm(utility_token, code))

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> SpatiumClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncSpatiumClient:
    """``SpatiumClient`` with coroutine methods over an ``httpx.AsyncClient``."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 client: httpx.AsyncClient | None = None) -> None:
        self.protocol = SpatiumProtocol(base_url)
        self._driver = AsyncDriver(client, timeout)

    def __repr__(self) -> str:
        return f"AsyncSpatiumClient({self.protocol.base_url!r})"

    async def _run(self, flow: Generator[Request, Response, T]) -> T:
        return await self._driver.run(guarded(flow))

    async def security_factor_credentials(self, username: str, password: str) -> SecurityToken:
        """Prove the credentials factor: a security token for ``issue_by_factors``."""
        return await self._run(self.protocol.security_factor_credentials(username, password))

    async def probe(self, permissions: Iterable[str]) -> FactorRequirement:
        """The security factors needed for ``permissions``."""
        return await self._run(self.protocol.probe(permissions))

    async def issue_by_key(self, token_id: str, permissions: Iterable[str],
                           merchant_key: str) -> PermissionTokens:
        """A backend's tokens, by merchant key; ``token_id`` should be static per service."""
        return await self._run(self.protocol.issue_by_key(token_id, permissions, merchant_key))

    async def issue_by_factors(self, token_id: str, permissions: Iterable[str],
                               security_tokens: SecurityTokens,
                               ) -> PermissionTokens:
        """A user's tokens, by security tokens; ``token_id`` per user or device."""
        return await self._run(
            self.protocol.issue_by_factors(token_id, permissions, security_tokens))

    async def refresh(self, refresh_token: str | PermissionTokens) -> PermissionTokens:
        """The next pair; the refresh token given is stale afterwards."""
        return await self._run(self.protocol.refresh(refresh_token))

    async def create_account_with_credentials(self, permission_token: str, username: str,
                                              password: str) -> str:
        """Register a user with the credentials factor; returns the account id."""
        return await self._run(self.protocol.create_account_with_credentials(
            permission_token, username, password))

    async def email_intent(self, permission_token: str, email: str) -> str:
        """Send a confirmation code to ``email``; returns the utility token."""
        return await self._run(self.protocol.email_intent(permission_token, email))

    async def email_confirm(self, utility_token: str, code: str | int) -> str:
        """Confirm the emailed code; returns the new account id."""
        return await self._run(self.protocol.email_confirm(utility_token, code))

    async def aclose(self) -> None:
        await self._driver.aclose()

    async def close(self) -> None:
        await self._driver.aclose()

    async def __aenter__(self) -> AsyncSpatiumClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


# -- the sessions: adapters to the refresh engine ----------------------------------------
class _Adapter:
    """What both session kinds share: the refresh call and the grant it makes."""

    def __init__(self, protocol: SpatiumProtocol, token_id: str, permissions: list[str],
                 leeway: float, now: Callable[[], float]) -> None:
        self.protocol = protocol
        self.token_id = token_id
        self.permissions = permissions
        self.leeway = leeway
        self.now = now

    def grant(self, tokens: PermissionTokens) -> Grant:
        expires_at = tokens.permission_expires_at.timestamp()
        # Refresh ``leeway`` early -- unless the token lives no longer than the leeway:
        # then at half its life, so that a short token is not refreshed on every call.
        remaining = max(0.0, expires_at - self.now())
        lead = self.leeway if self.leeway < remaining else remaining / 2
        return Grant(
            access_token=tokens.permission_token,
            expires_at=expires_at,
            refresh_at=expires_at - lead,
            refresh_token=tokens.refresh_token,
            refresh_expires_at=tokens.refresh_expires_at.timestamp(),
        )

    def refresh_grant(self, grant: Grant) -> Flow:
        assert grant.refresh_token is not None  # the engine checks refreshable() first
        tokens = yield from self.protocol.refresh(grant.refresh_token)
        log.debug("Spatium permission token refreshed (token id %s, expires %s)",
                  self.token_id, tokens.permission_expires_at.isoformat())
        return self.grant(tokens)


class _UserAdapter(_Adapter):
    """``AuthorizationSession``: established by security tokens, dead with its refresh token."""

    def __init__(self, protocol: SpatiumProtocol, token_id: str, permissions: list[str],
                 leeway: float, now: Callable[[], float]) -> None:
        super().__init__(protocol, token_id, permissions, leeway, now)
        self.expired: SessionExpired | None = None

    def first_grant(self) -> Flow | None:
        if self.expired is not None:
            raise SessionExpired(str(self.expired), status=self.expired.status,
                                 request_id=self.expired.request_id, code=self.expired.code)
        return None

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        if error.status is None and grant.refresh_token is None and grant.usable(self.now()):
            # The refresh token went out in a request that failed after sending: it may
            # have been used, so it is never sent again; the permission token still
            # serves until it expires.
            return _unchanged(grant)
        if error.status is not None:
            message = (f"the Spatium session has expired: the refresh token was refused "
                       f"(HTTP {error.status}); establish the session again")
        else:
            message = "the Spatium session has expired: establish the session again"
        self.expired = SessionExpired(message, status=error.status,
                                      request_id=error.request_id, code=error.code)
        log.info("Spatium session expired (token id %s)", self.token_id)
        raise SessionExpired(message, status=error.status, request_id=error.request_id,
                             code=error.code) from error

    def establish(self, refresher: Refresher, security_tokens: SecurityTokens,
                  ) -> Generator[Request, Response, None]:
        tokens = yield from guarded(self.protocol.issue_by_factors(
            self.token_id, self.permissions, security_tokens))
        refresher.succeeded(self.grant(tokens))
        self.expired = None
        log.debug("Spatium session established (token id %s, expires %s)",
                  self.token_id, tokens.permission_expires_at.isoformat())


class _KeyAdapter(_Adapter):
    """``KeyAuthorizationSession``: issued by merchant key, again whenever needed."""

    def __init__(self, protocol: SpatiumProtocol, token_id: str, permissions: list[str],
                 leeway: float, now: Callable[[], float], merchant_key: str) -> None:
        super().__init__(protocol, token_id, permissions, leeway, now)
        self.merchant_key = merchant_key

    def __repr__(self) -> str:
        return "_KeyAdapter(merchant_key=[secure])"

    def issue(self) -> Flow:
        tokens = yield from self.protocol.issue_by_key(
            self.token_id, self.permissions, self.merchant_key)
        log.debug("Spatium permission token issued by key (token id %s, expires %s)",
                  self.token_id, tokens.permission_expires_at.isoformat())
        return self.grant(tokens)

    def first_grant(self) -> Flow | None:
        return self.issue()

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        log.info("Spatium refresh token dead (token id %s): issuing again by key",
                 self.token_id)
        return self.issue()


def _unchanged(grant: Grant) -> Flow:
    return grant
    yield  # a generator that sends nothing


class _Session:
    """The logic both session kinds share, sync and async alike (no I/O here)."""

    _adapter: _UserAdapter | _KeyAdapter

    def __init__(self, url: str, token_id: str, permissions: Iterable[str],
                 leeway: float | timedelta, clock: Clock | None,
                 merchant_key: str | None = None) -> None:
        protocol = SpatiumProtocol(url)
        token_id = _text(token_id, "token_id")
        names = _permissions(permissions)
        seconds = _leeway(leeway)
        now = _seconds(clock)
        if merchant_key is None:
            self._adapter = _UserAdapter(protocol, token_id, names, seconds, now)
        else:
            self._adapter = _KeyAdapter(protocol, token_id, names, seconds, now,
                                        merchant_key=_text(merchant_key, "merchant_key"))
        self._refresher = Refresher(self._adapter, now)

    @property
    def url(self) -> str:
        return self._adapter.protocol.base_url

    @property
    def token_id(self) -> str:
        return self._adapter.token_id

    @property
    def permissions(self) -> tuple[str, ...]:
        return tuple(self._adapter.permissions)

    @property
    def leeway(self) -> float:
        return self._adapter.leeway

    @property
    def expires_at(self) -> datetime | None:
        """When the current permission token expires; ``None`` before the first one."""
        grant = self._refresher.grant
        return None if grant is None else datetime.fromtimestamp(grant.expires_at, timezone.utc)

    def _state(self) -> str:
        if isinstance(self._adapter, _UserAdapter) and self._adapter.expired is not None:
            return "expired"
        return "active" if self._refresher.grant is not None else "new"

    def __repr__(self) -> str:
        expires = self.expires_at
        shown = f", expires_at={expires.isoformat()!r}" if expires is not None else ""
        return (f"{type(self).__name__}(url={self.url!r}, "
                f"token_id={self.token_id!r}, permissions={list(self.permissions)!r}, "
                f"state={self._state()!r}{shown})")

    def _refresh_now(self) -> Generator[Request, Response, None]:
        yield from self._refresher.ensure(force=True)
        if self._refresher.last_error is not None:
            raise self._refresher.last_error  # the token still serves; the refresh failed
        grant = self._refresher.grant
        if isinstance(self._adapter, _UserAdapter) and grant is not None \
                and grant.refresh_token is None:
            raise SessionExpired("the refresh token was lost in an interrupted request: the "
                                 "permission token serves until it expires; establish again")


class AuthorizationSession(_Session):
    """A user's Spatium session: ``establish`` once, then
    ``get_permission_token`` whenever a token is needed.

    ``token_id`` names the session at the service (stable per user or device);
    ``leeway`` (seconds or a ``timedelta``) is how long before expiry a token is
    refreshed.  Concurrent callers share one refresh.  Before ``establish``:
    ``SessionNotEstablished``; once the refresh token is dead or refused:
    ``SessionExpired`` until ``establish`` succeeds again.  ``clock`` (aware datetimes or
    seconds) is for tests.
    """

    def __init__(self, url: str, token_id: str, permissions: Iterable[str], *,
                 leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(url, token_id, permissions, leeway, clock)
        self._credential = SyncCredential(self._refresher, SyncDriver(client, timeout))

    def establish(self, security_tokens: SecurityTokens) -> None:
        """Get a new pair by security tokens, replacing any previous session.

        Raises ``IssuerError`` if the service refuses or cannot be reached; the previous
        session, if any, is then left as it was.
        """
        assert isinstance(self._adapter, _UserAdapter)
        self._credential.run(self._adapter.establish(self._refresher, security_tokens))

    def get_permission_token(self) -> str:
        """A valid permission token, refreshed when within ``leeway`` of expiry.

        Raises ``SessionNotEstablished``, ``SessionExpired``, or ``IssuerError`` when a
        refresh failed and the current token has expired (a transient failure before
        that is retried later, and the still-valid token is returned).
        """
        return self._credential.get()

    def refresh(self) -> None:
        """Refresh now.  Raises like ``get_permission_token``, and ``IssuerError`` when
        the refresh failed even though the current token still serves."""
        self._credential.run(self._refresh_now())

    def close(self) -> None:
        self._credential.driver.close()

    def __enter__(self) -> AuthorizationSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class KeyAuthorizationSession(_Session):
    """A backend's Spatium session by merchant key: no ``establish``.

    The first ``get_permission_token`` issues a pair by key; refreshes use the refresh
    token, and when that is dead or refused the pair is issued by key again.  Raises
    ``IssuerError`` when the key is refused, or when the service cannot be reached and
    the current token has expired.
    """

    def __init__(self, url: str, token_id: str, permissions: Iterable[str],
                 merchant_key: str, *, leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(url, token_id, permissions, leeway, clock,
                         merchant_key=merchant_key)
        self._credential = SyncCredential(self._refresher, SyncDriver(client, timeout))

    def get_permission_token(self) -> str:
        """A valid permission token, issued or refreshed as needed."""
        return self._credential.get()

    def refresh(self) -> None:
        """Refresh now (issue by key if needed); raises ``IssuerError`` if that failed."""
        self._credential.run(self._refresh_now())

    def close(self) -> None:
        self._credential.driver.close()

    def __enter__(self) -> KeyAuthorizationSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncAuthorizationSession(_Session):
    """``AuthorizationSession`` with coroutine methods (one ``asyncio.Lock`` per session)."""

    def __init__(self, url: str, token_id: str, permissions: Iterable[str], *,
                 leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(url, token_id, permissions, leeway, clock)
        self._credential = AsyncCredential(self._refresher, AsyncDriver(client, timeout))

    async def establish(self, security_tokens: SecurityTokens) -> None:
        """See ``AuthorizationSession.establish``."""
        assert isinstance(self._adapter, _UserAdapter)
        await self._credential.run(self._adapter.establish(self._refresher, security_tokens))

    async def get_permission_token(self) -> str:
        """See ``AuthorizationSession.get_permission_token``."""
        return await self._credential.get()

    async def refresh(self) -> None:
        """See ``AuthorizationSession.refresh``."""
        await self._credential.run(self._refresh_now())

    async def aclose(self) -> None:
        await self._credential.driver.aclose()

    async def close(self) -> None:
        await self._credential.driver.aclose()

    async def __aenter__(self) -> AsyncAuthorizationSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class AsyncKeyAuthorizationSession(_Session):
    """``KeyAuthorizationSession`` with coroutine methods."""

    def __init__(self, url: str, token_id: str, permissions: Iterable[str],
                 merchant_key: str, *, leeway: float | timedelta = DEFAULT_LEEWAY,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(url, token_id, permissions, leeway, clock,
                         merchant_key=merchant_key)
        self._credential = AsyncCredential(self._refresher, AsyncDriver(client, timeout))

    async def get_permission_token(self) -> str:
        """See ``KeyAuthorizationSession.get_permission_token``."""
        return await self._credential.get()

    async def refresh(self) -> None:
        """See ``KeyAuthorizationSession.refresh``."""
        await self._credential.run(self._refresh_now())

    async def aclose(self) -> None:
        await self._credential.driver.aclose()

    async def close(self) -> None:
        await self._credential.driver.aclose()

    async def __aenter__(self) -> AsyncKeyAuthorizationSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
