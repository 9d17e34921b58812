"""What the OIDC sessions send and what the answers mean, as sans-IO flows (no I/O here).

Three documents and one endpoint:

- a space's pointer, ``{space_url}/api/.well-known/oidc``: the authority and client id
  (``space_flow``);
- the authority's discovery document, ``{authority}/.well-known/openid-configuration``:
  the token endpoint and the JWKS (``discovery_flow``); its ``issuer`` must be the
  authority it was fetched for, and every URL in it is held to the issuers' URL rule;
- the token endpoint (``token_flow``): a form POST of a grant, answered by a token
  response that ``parse_grant`` reads (RFC 6749 §5.1).

Each flow yields ``Request`` values, is sent ``Response`` values and returns its
result, or raises ``IssuerError`` with the answer's status, request id and code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final, TypeGuard

from ..._errors import IssuerError
from ..._redact import redact
from .._answers import (
    JSON_ACCEPT,
    MAX_TOKEN_LENGTH,
    answer_url,
    json_object,
    malformed,
    succeeded,
)
from .._core import Flow, Grant, Request, Response, issuer_error
from .._urls import same_issuer

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "HEADER_NAME",
    "REFRESH_FRACTION",
    "VISIBLE_ASCII",
    "Discovery",
    "discovery_flow",
    "parse_grant",
    "space_flow",
    "token_flow",
]

#: Refresh when this fraction of ``expires_in`` has passed.
REFRESH_FRACTION: Final = 0.9
#: Assumed lifetime when a token response has no ``expires_in``.
DEFAULT_EXPIRES_IN: Final = 300.0
_MAX_LIFETIME: Final = 10 * 365 * 86400.0

#: An HTTP header name (RFC 9110 token): also what a ``token_type`` must look like.
HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
#: Printable ASCII without spaces: what a client id or a token may hold.
VISIBLE_ASCII: Final = re.compile(r"[\x21-\x7e]+\Z")


def space_flow(space_url: str) -> Generator[Request, Response, tuple[str, str]]:
    """The space's OIDC authority and client id, from ``{space_url}/api/.well-known/oidc``."""
    what = "reading the space's OIDC configuration"
    origin = f"{space_url}/api/.well-known/oidc"
    response = yield Request("GET", origin, headers=JSON_ACCEPT)
    if not succeeded(response):
        raise issuer_error(response, what)
    data = json_object(response, what).get("data")
    if not isinstance(data, dict):
        raise malformed(response, what, "has no 'data' object")
    authority = answer_url(response, data.get("authority"), what, "authority",
                           origin=origin, base=True)
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not VISIBLE_ASCII.match(client_id):
        raise malformed(response, what, "has no usable 'client_id'")
    return authority, client_id


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the authority's ``/.well-known/openid-configuration`` says."""

    issuer: str
    token_endpoint: str
    jwks_uri: str | None


def discovery_flow(authority: str) -> Generator[Request, Response, Discovery]:
    """The token endpoint (and issuer, JWKS) from the authority's discovery document.

    The document's ``issuer`` must be the authority it was fetched for (RFC 8414 §3.3,
    OpenID Connect Discovery §4.3; spelt alike up to the case of the scheme and host, a
    default port and a trailing slash), and its URLs are held to the https rule: else
    ``IssuerError``, before anything is sent to them.
    """
    what = "reading the OpenID configuration"
    origin = f"{authority}/.well-known/openid-configuration"
    response = yield Request("GET", origin, headers=JSON_ACCEPT)
    if not succeeded(response):
        raise issuer_error(response, what)
    body = json_object(response, what)
    issuer = body.get("issuer")
    if not isinstance(issuer, str) or not same_issuer(issuer, authority):
        raise IssuerError(
            f"{what}: the document's issuer is not the authority it was fetched from "
            f"({redact(authority)}); a document naming another issuer could send the "
            "password elsewhere -- use the issuer's own URL as the authority",
            status=response.status, request_id=response.request_id,
        )
    token_endpoint = answer_url(response, body.get("token_endpoint"), what, "token_endpoint",
                                origin=origin)
    jwks_uri = body.get("jwks_uri")
    return Discovery(
        issuer=issuer,
        token_endpoint=token_endpoint,
        jwks_uri=(answer_url(response, jwks_uri, what, "jwks_uri", origin=origin)
                  if jwks_uri is not None else None),
    )


def _lifetime(value: object) -> float | None:
    """``expires_in``-like values: a positive number (or numeric string), else ``None``."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return min(float(value), _MAX_LIFETIME)


def _token_text(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a token as an issuer may hand one out."""
    return (isinstance(value, str) and len(value) <= MAX_TOKEN_LENGTH
            and VISIBLE_ASCII.match(value) is not None)


def parse_grant(response: Response, what: str, issued_at: float) -> Grant:
    """A ``Grant`` from a successful token response (RFC 6749 §5.1).

    The refresh is due at ``expires_in * 0.9`` after ``issued_at`` (when the request was
    sent).  Raises ``IssuerError`` if the answer is not a usable token response.
    """
    body = json_object(response, what)
    access_token = body.get("access_token")
    if not _token_text(access_token):
        raise malformed(response, what, "has no usable access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or not HEADER_NAME.match(token_type):
        raise malformed(response, what, "has no usable token_type")
    if token_type.lower() == "bearer":
        token_type = "Bearer"  # noqa: S105 - RFC 6750's scheme, however the issuer spells it
    raw_expires = body.get("expires_in")
    expires_in = _lifetime(raw_expires)
    if expires_in is None:
        if raw_expires is not None:
            raise malformed(response, what, "has an unusable expires_in")
        expires_in = DEFAULT_EXPIRES_IN
    refresh_token = body.get("refresh_token")
    if refresh_token is not None and not _token_text(refresh_token):
        raise malformed(response, what, "has an unusable refresh_token")
    # Keycloak says how long the refresh token lives; 0 means "as long as the session".
    refresh_expires_in = _lifetime(body.get("refresh_expires_in"))
    extra = {k: body[k] for k in ("scope", "sessid") if isinstance(body.get(k), (str, int))}
    return Grant(
        access_token=access_token,
        expires_at=issued_at + expires_in,
        refresh_at=issued_at + expires_in * REFRESH_FRACTION,
        refresh_token=refresh_token,
        refresh_expires_at=(issued_at + refresh_expires_in
                            if refresh_token is not None and refresh_expires_in else None),
        token_type=token_type,
        extra=extra,
    )


def token_flow(url: str, form: list[tuple[str, str]], what: str,
               now: Callable[[], float]) -> Flow:
    """POST ``form`` to the token endpoint; the new ``Grant``, or ``IssuerError``."""
    issued_at = now()
    response = yield Request("POST", url, headers=JSON_ACCEPT, form=tuple(form))
    if not succeeded(response):
        raise issuer_error(response, what)
    return parse_grant(response, what, issued_at)
