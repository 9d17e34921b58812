"""Spatium's wire format, sans-IO: each request built and each answer parsed, once.

Every call is a ``POST {base}/api/...`` with a JSON body and a fresh UUID in the
``request-id`` header; every answer is ``{"requestId": ..., "data": {...}}``.
``SpatiumProtocol`` turns each call into a flow (a generator that yields one ``Request``,
is sent its ``Response`` and returns the typed result); the clients and the sessions run
those flows.  Arguments are checked when a flow is made, before anything is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Final, TypeVar

from ..._errors import ArgumentTypeError, InvalidArgument, IssuerError
from .._args import required_text
from .._core import Request, Response, issuer_error
from .._urls import credential_url
from ._results import FactorRequirement, PermissionTokens, SecurityToken, SecurityTokens

__all__ = ["DEFAULT_URL", "Fail", "SpatiumProtocol", "permission_names"]

T = TypeVar("T")

#: Spatium's public endpoint.
DEFAULT_URL: Final = "https://cloud.spatium.net/authorization/v1"
_MAX_TREE_DEPTH: Final = 32

#: Makes the error for a malformed answer from what is wrong with it.
Fail = Callable[[str], IssuerError]


# -- arguments ---------------------------------------------------------------------------
def permission_names(permissions: object) -> list[str]:
    """A list of permission names, duplicates dropped; a ``str`` is split on whitespace."""
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
        result.append(required_text(item, "each security token"))
    if not result:
        raise InvalidArgument("at least one security token is needed")
    return result


# -- parsing -----------------------------------------------------------------------------
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
        # Credentials go there: https, or http on loopback.
        self.base_url = credential_url(base_url, "url", base=True)

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
            "username": required_text(username, "username"),
            "password": required_text(password, "password")})
        return self.call("Spatium security-factor/credentials", request, _security_token)

    def probe(self, permissions: Iterable[str]) -> Generator[Request, Response, FactorRequirement]:
        request = self.request("/api/permission/probe",
                               {"permissions": permission_names(permissions)})
        return self.call("Spatium permission/probe", request,
                         lambda data, fail: _requirement(data, fail))

    def issue_by_key(self, token_id: str, permissions: Iterable[str], merchant_key: str,
                     ) -> Generator[Request, Response, PermissionTokens]:
        request = self.request("/api/permission/issue-by-key", {
            "tokenId": required_text(token_id, "token_id"),
            "permissions": permission_names(permissions),
            "merchantKey": required_text(merchant_key, "merchant_key")})
        return self.call("Spatium permission/issue-by-key", request, _permission_tokens)

    def issue_by_factors(self, token_id: str, permissions: Iterable[str],
                         security_tokens: SecurityTokens,
                         ) -> Generator[Request, Response, PermissionTokens]:
        request = self.request("/api/permission/issue-by-factors", {
            "tokenId": required_text(token_id, "token_id"),
            "permissions": permission_names(permissions),
            "securityTokens": _security_tokens(security_tokens)})
        return self.call("Spatium permission/issue-by-factors", request, _permission_tokens)

    def refresh(self, refresh_token: str | PermissionTokens,
                ) -> Generator[Request, Response, PermissionTokens]:
        if isinstance(refresh_token, PermissionTokens):
            refresh_token = refresh_token.refresh_token
        request = self.request("/api/permission/refresh", {
            "permissionRefreshToken": required_text(refresh_token, "refresh_token")})
        return self.call("Spatium permission/refresh", request, _permission_tokens)

    def create_account_with_credentials(self, permission_token: str, username: str,
                                        password: str) -> Generator[Request, Response, str]:
        request = self.request("/api/account/credentials", {
            "username": required_text(username, "username"),
            "password": required_text(password, "password"),
        }, bearer=required_text(permission_token, "permission_token"))
        return self.call("Spatium account/credentials", request, _account_id)

    def email_intent(self, permission_token: str, email: str,
                     ) -> Generator[Request, Response, str]:
        request = self.request("/api/account/email-intent",
                               {"email": required_text(email, "email")},
                               bearer=required_text(permission_token, "permission_token"))
        return self.call("Spatium account/email-intent", request, _utility_token)

    def email_confirm(self, utility_token: str, code: str | int,
                      ) -> Generator[Request, Response, str]:
        if isinstance(code, int) and not isinstance(code, bool):
            code = str(code)
        request = self.request("/api/account/email-confirm", {
            "utilityToken": required_text(utility_token, "utility_token"),
            "code": required_text(code, "code")})
        return self.call("Spatium account/email-confirm", request, _account_id)
