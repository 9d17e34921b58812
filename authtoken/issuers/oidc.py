"""OpenID Connect and OAuth2 issuers (password and client credentials), and a JWT verifier.

::

    from authtoken.issuers.oidc import OIDCPasswordSession

    with OIDCPasswordSession.from_space(space_url, "alice", password) as session:
        httpx.get(f"{space_url}/api/lessons/1", auth=session.auth)

Theory of operation
-------------------
A session keeps one OAuth2 access token fresh.  What to send and what an answer means
lives in small *flows* (generators that yield ``Request`` values and are sent
``Response`` values, see ``_core``): the space's OIDC pointer, the authority's discovery
document, and the token endpoint's grants.  The same flows run in the sync sessions
(over ``httpx.Client``, under a ``threading.Lock``) and in the ``Async…`` twins (over
``httpx.AsyncClient``, under an ``asyncio.Lock``); ``_core.Refresher`` decides *when*:

- ``OIDCPasswordSession``: the password grant, refreshed with the refresh
  token at ``expires_in * 0.9`` after issue; when the issuer refuses the refresh token
  (or it has expired), the password grant again.
- ``ClientCredentialsSession``: the client credentials grant, fetched again
  at ``expires_in * 0.9`` (there is no refresh token).  ``header="bsauth"`` sends the
  token as ``bsauth: <token>`` instead of ``Authorization: <type> <token>``.

A transient failure (connection refused, timeout, HTTP 5xx or 429) while the current
access token is still valid is not raised: callers keep getting that token and the next
attempt waits a growing backoff.  ``start()`` runs the refreshes in the background (a
daemon thread, or an asyncio task), a little before they are due, so callers never wait.

``JWTVerifier`` checks JWT access tokens (signature, ``exp``/``nbf``/``iat`` with a
leeway, and ``iss``/``aud`` when configured) with PyJWT, against keys given up front or
a JWKS fetched lazily, cached, and fetched again when a token names an unknown ``kid``.

Passwords, client secrets and tokens never appear in a message, ``repr`` or log line.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypeVar

try:
    import httpx
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'authtoken.issuers.oidc needs httpx and PyJWT: pip install "authtoken[issuers]"'
    ) from exc

from .._clock import system_seconds
from .._errors import (
    ArgumentTypeError,
    InvalidArgument,
    InvalidToken,
    IssuerError,
)
from .._redact import redact
from ._core import (
    Flow,
    Grant,
    Refresher,
    Request,
    Response,
    TransportFailure,
    guarded,
    issuer_error,
)
from ._shell import AsyncCredential, AsyncDriver, SyncCredential, SyncDriver, check_timeout
from ._urls import credential_url, same_issuer

__all__ = [
    "AsyncClientCredentialsSession",
    "AsyncJWTVerifier",
    "AsyncOIDCPasswordSession",
    "ClientCredentialsSession",
    "JWTVerifier",
    "OIDCPasswordSession",
]

log = logging.getLogger(__name__)

#: Refresh when this fraction of ``expires_in`` has passed.
REFRESH_FRACTION: Final = 0.9
#: Assumed lifetime when a token response has no ``expires_in``.
DEFAULT_EXPIRES_IN: Final = 300.0
#: The background refresher runs this long (at most) before a refresh is due...
BACKGROUND_LEAD: Final = 5.0
#: ...and sleeps at most this long at a time (it looks at the clock again on waking)...
BACKGROUND_NAP: Final = 60.0
#: ...and at least this long, so that a clock that stands still never makes it spin.
BACKGROUND_MIN_NAP: Final = 0.05
DEFAULT_TIMEOUT: Final = 10.0
MAX_TOKEN_LENGTH: Final = 65536
_MAX_LIFETIME: Final = 10 * 365 * 86400.0

_T = TypeVar("_T")
Clock = Callable[[], datetime]

_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_VISIBLE_ASCII: Final = re.compile(r"[\x21-\x7e]+\Z")
_JSON_ACCEPT: Final = (("accept", "application/json"),)


# -- arguments ----------------------------------------------------------------------------

def _text(value: object, name: str, *, line: bool = True) -> str:
    """``value`` as a non-empty ``str``; the message names the argument, never its value.

    ``line``: the value ends up in a URL or header, so it may not break lines.
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{name} must not be empty")
    if line and any(c in value for c in "\r\n\x00"):
        raise InvalidArgument(f"{name} must not contain line breaks or NUL characters")
    return value


def _optional_text(value: object, name: str, *, line: bool = True) -> str | None:
    return None if value is None else _text(value, name, line=line)


def _url(value: object, name: str, *, base: bool = False) -> str:
    """A URL credentials may go to (https, or http on loopback), without a trailing slash;
    ``base``: one that paths are appended to."""
    return credential_url(value, name, base=base)


def _header_name(value: object) -> str:
    name = _text(value, "header")
    if not _HEADER_NAME.match(name):
        raise InvalidArgument("header must be an HTTP header name, such as 'Authorization'")
    return name


def _seconds_clock(clock: Clock | None) -> Callable[[], float]:
    if clock is None:
        return system_seconds
    if not callable(clock):
        raise ArgumentTypeError("clock must be a callable returning an aware datetime")
    return lambda: clock().timestamp()


def _client(client: object, kind: type[_T], name: str) -> _T | None:
    if client is not None and not isinstance(client, kind):
        raise ArgumentTypeError(f"client must be an {name} or None, not {type(client).__name__}")
    return client


# -- the flows: what to send and what the answers mean (no I/O) ----------------------------

def _malformed(response: Response, what: str, problem: str) -> IssuerError:
    return IssuerError(
        f"{what}: the issuer's answer {problem}",
        status=response.status,
        request_id=response.headers.get("request-id") or response.headers.get("x-request-id"),
    )


def _ok(response: Response) -> bool:
    return 200 <= response.status < 300


def _json_object(response: Response, what: str) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise _malformed(response, what, "is not a JSON object")
    return body


def _answer_url(response: Response, value: object, what: str, field: str, *, origin: str,
                base: bool = False) -> str:
    """A URL read from an issuer's document, held to the rule for URL arguments and never
    a downgrade from ``origin`` (where the document came from); else ``IssuerError``."""
    if not isinstance(value, str) or not value:
        raise _malformed(response, what, f"has no usable {field!r}")
    try:
        return credential_url(value, field, base=base, origin=origin)
    except InvalidArgument as exc:
        raise IssuerError(
            f"{what}: the issuer's answer was refused: {exc}", status=response.status,
            request_id=response.headers.get("request-id") or response.headers.get("x-request-id"),
        ) from None


def space_flow(space_url: str) -> Generator[Request, Response, tuple[str, str]]:
    """The space's OIDC authority and client id, from ``{space_url}/api/.well-known/oidc``."""
    what = "reading the space's OIDC configuration"
    origin = f"{space_url}/api/.well-known/oidc"
    response = yield Request("GET", origin, headers=_JSON_ACCEPT)
    if not _ok(response):
        raise issuer_error(response, what)
    data = _json_object(response, what).get("data")
    if not isinstance(data, dict):
        raise _malformed(response, what, "has no 'data' object")
    authority = _answer_url(response, data.get("authority"), what, "authority",
                            origin=origin, base=True)
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not _VISIBLE_ASCII.match(client_id):
        raise _malformed(response, what, "has no usable 'client_id'")
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
    response = yield Request("GET", origin, headers=_JSON_ACCEPT)
    if not _ok(response):
        raise issuer_error(response, what)
    body = _json_object(response, what)
    issuer = body.get("issuer")
    if not isinstance(issuer, str) or not same_issuer(issuer, authority):
        raise IssuerError(
            f"{what}: the document's issuer is not the authority it was fetched from "
            f"({redact(authority)}); a document naming another issuer could send the "
            "password elsewhere -- use the issuer's own URL as the authority",
            status=response.status,
            request_id=response.headers.get("request-id") or response.headers.get("x-request-id"),
        )
    token_endpoint = _answer_url(response, body.get("token_endpoint"), what, "token_endpoint",
                                 origin=origin)
    jwks_uri = body.get("jwks_uri")
    return Discovery(
        issuer=issuer,
        token_endpoint=token_endpoint,
        jwks_uri=(_answer_url(response, jwks_uri, what, "jwks_uri", origin=origin)
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


def parse_grant(response: Response, what: str, issued_at: float) -> Grant:
    """A ``Grant`` from a successful token response (RFC 6749 §5.1).

    The refresh is due at ``expires_in * 0.9`` after ``issued_at`` (when the request was
    sent).  Raises ``IssuerError`` if the answer is not a usable token response.
    """
    body = _json_object(response, what)
    access_token = body.get("access_token")
    if (not isinstance(access_token, str) or len(access_token) > MAX_TOKEN_LENGTH
            or not _VISIBLE_ASCII.match(access_token)):
        raise _malformed(response, what, "has no usable access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or not _HEADER_NAME.match(token_type):
        raise _malformed(response, what, "has no usable token_type")
    if token_type.lower() == "bearer":
        token_type = "Bearer"  # noqa: S105 - RFC 6750's scheme, however the issuer spells it
    raw_expires = body.get("expires_in")
    expires_in = _lifetime(raw_expires)
    if expires_in is None:
        if raw_expires is not None:
            raise _malformed(response, what, "has an unusable expires_in")
        expires_in = DEFAULT_EXPIRES_IN
    refresh_token = body.get("refresh_token")
    if refresh_token is not None and (
            not isinstance(refresh_token, str) or len(refresh_token) > MAX_TOKEN_LENGTH
            or not _VISIBLE_ASCII.match(refresh_token)):
        raise _malformed(response, what, "has an unusable refresh_token")
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
    response = yield Request("POST", url, headers=_JSON_ACCEPT, form=tuple(form))
    if not _ok(response):
        raise issuer_error(response, what)
    return parse_grant(response, what, issued_at)


class _PasswordAdapter:
    """The password session: discovery, the password grant, the refresh grant, and the
    password grant again when the refresh token is refused."""

    def __init__(self, *, space_url: str | None, authority: str | None,
                 client_id: str | None, username: str, password: str,
                 client_secret: str | None, scope: str | None,
                 now: Callable[[], float]) -> None:
        self.space_url = space_url
        self.authority = authority
        self.client_id = client_id
        self.discovery: Discovery | None = None
        self._username = username
        self._password = password
        self._client_secret = client_secret
        self._scope = scope
        self._now = now

    def discover(self) -> Generator[Request, Response, Discovery]:
        """Find the token endpoint (once): the space's pointer, then the authority's."""
        if self.authority is None or self.client_id is None:
            assert self.space_url is not None
            self.authority, self.client_id = yield from space_flow(self.space_url)
        if self.discovery is None:
            self.discovery = yield from discovery_flow(self.authority)
        return self.discovery

    def _client_form(self) -> list[tuple[str, str]]:
        assert self.client_id is not None
        form = [("client_id", self.client_id)]
        if self._client_secret is not None:
            form.append(("client_secret", self._client_secret))
        return form

    def _password_grant(self) -> Flow:
        discovery = yield from self.discover()
        form = [*self._client_form(), ("grant_type", "password"),
                ("username", self._username), ("password", self._password)]
        if self._scope is not None:
            form.append(("scope", self._scope))
        log.debug("password grant at %s for client %s", discovery.token_endpoint,
                  self.client_id)
        return (yield from token_flow(discovery.token_endpoint, form,
                                      "the password grant", self._now))

    def first_grant(self) -> Flow:
        return self._password_grant()

    def refresh_grant(self, grant: Grant) -> Flow:
        discovery = yield from self.discover()
        assert grant.refresh_token is not None
        form = [*self._client_form(), ("grant_type", "refresh_token"),
                ("refresh_token", grant.refresh_token)]
        log.debug("refresh grant at %s for client %s", discovery.token_endpoint,
                  self.client_id)
        new = yield from token_flow(discovery.token_endpoint, form,
                                    "the refresh grant", self._now)
        if new.refresh_token is None:  # RFC 6749 §6: no new one means keep the old one
            new = replace(new, refresh_token=grant.refresh_token,
                          refresh_expires_at=grant.refresh_expires_at)
        return new

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        log.info("the refresh token was refused or has expired (%s); "
                 "using the password grant again", error.code or error.status or "expired")
        return self._password_grant()


class _ClientCredentialsAdapter:
    """The client credentials grant, fetched again when due."""

    def __init__(self, *, token_url: str, client_id: str, client_secret: str,
                 scope: str | None, now: Callable[[], float]) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._now = now

    def _fetch(self) -> Flow:
        form = [("grant_type", "client_credentials"), ("client_id", self.client_id),
                ("client_secret", self._client_secret)]
        if self._scope is not None:
            form.append(("scope", self._scope))
        log.debug("client credentials grant at %s for client %s", self.token_url,
                  self.client_id)
        grant = yield from token_flow(self.token_url, form, "the client credentials grant",
                                      self._now)
        # RFC 6749 §4.4.3: no refresh token here; the credentials themselves renew.
        return replace(grant, refresh_token=None, refresh_expires_at=None)

    def first_grant(self) -> Flow:
        return self._fetch()

    def refresh_grant(self, grant: Grant) -> Flow:
        return self._fetch()

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        return self._fetch()


# -- the sessions -----------------------------------------------------------------------

def _wake_at(grant: Grant) -> float:
    """When the background refresher should act: a little before the refresh is due."""
    return grant.refresh_at - min(BACKGROUND_LEAD, 0.5 * (grant.expires_at - grant.refresh_at))


class _Session:
    """What the sync and async sessions share: arguments, state, the flows they run."""

    _adapter: _PasswordAdapter | _ClientCredentialsAdapter
    _refresher: Refresher
    _header: str
    _closed: bool

    def _setup(self, adapter: _PasswordAdapter | _ClientCredentialsAdapter,
               now: Callable[[], float], header: str) -> None:
        self._adapter = adapter
        self._now = now
        self._refresher = Refresher(adapter, now)
        self._header = header
        self._closed = False

    @property
    def header(self) -> str:
        """The name of the header the token is sent in."""
        return self._header

    @property
    def expires_at(self) -> datetime | None:
        """When the current access token expires (aware UTC), ``None`` before the first."""
        grant = self._refresher.grant
        if grant is None:
            return None
        return datetime.fromtimestamp(grant.expires_at, tz=timezone.utc)

    def _header_for(self, token: str) -> dict[str, str]:
        if self._header.lower() != "authorization":
            return {self._header: token}
        grant = self._refresher.grant
        token_type = grant.token_type if grant is not None else "Bearer"
        return {self._header: f"{token_type} {token}"}

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def _renew_flow(self, rejected: str) -> Generator[Request, Response, str]:
        """After a 401: retire the rejected token (once, however many callers saw it)."""
        grant = self._refresher.grant
        if grant is not None and hmac.compare_digest(grant.access_token, rejected):
            self._refresher.expire_access_token()
        return (yield from self._refresher.ensure())

    def _background_flow(self, seen: Grant | None) -> Generator[Request, Response, None]:
        if self._refresher.grant is not seen:
            return  # a caller refreshed meanwhile
        yield from self._refresher.ensure(force=True)

    def _background_due(self) -> tuple[bool, Grant | None]:
        seen = self._refresher.grant
        return seen is None or self._now() >= _wake_at(seen), seen

    def _background_delay(self) -> float:
        """How long to sleep after a round: until the next refresh is due, or until the
        engine's backoff after a failure is over (at least a moment, at most a nap)."""
        grant = self._refresher.grant
        now = self._now()
        wake = _wake_at(grant) if grant is not None else now
        wait = max(wake, self._refresher.retry_at) - now
        return min(max(wait, BACKGROUND_MIN_NAP), BACKGROUND_NAP)

    def _refresh_flow(self) -> Generator[Request, Response, str]:
        """Refresh now; ``IssuerError`` when that failed, even if the old token serves."""
        token = yield from self._refresher.ensure(force=True)
        error = self._refresher.last_error
        if error is not None:
            raise IssuerError(str(error), status=error.status, request_id=error.request_id,
                              code=error.code)
        return token

    def _describe(self) -> str:
        adapter = self._adapter
        if isinstance(adapter, _PasswordAdapter):
            where = (f"authority={adapter.authority!r}" if adapter.authority is not None
                     else f"space_url={adapter.space_url!r}")
        else:
            where = f"token_url={adapter.token_url!r}"
        grant = self._refresher.grant
        state = ("no token" if grant is None
                 else "fresh" if self._now() < grant.refresh_at else "due")
        return f"{type(self).__name__}({where}, client_id={adapter.client_id!r}, {state})"

    def __repr__(self) -> str:
        return f"<{self._describe()}>"


_S = TypeVar("_S", bound="_SyncSession")
_A = TypeVar("_A", bound="_AsyncSession")


class _SyncSession(_Session):
    _credential: SyncCredential

    def _start_io(self, client: httpx.Client | None, timeout: float) -> None:
        self._credential = SyncCredential(self._refresher, SyncDriver(client, timeout))
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._guard = threading.Lock()
        self.auth: httpx.Auth = _SyncAuth(self)

    def get_access_token(self) -> str:
        """A valid access token, fetched or refreshed when due (one request at a time).

        Raises ``IssuerError`` when the issuer refuses or cannot be reached and no valid
        token is at hand; the session stays usable and tries again on the next call.
        """
        self._check_open()
        return self._credential.get()

    def authorization_header(self) -> dict[str, str]:
        """The header to send: ``{"Authorization": "Bearer <t>"}`` or ``{"bsauth": "<t>"}``."""
        return self._header_for(self.get_access_token())

    def refresh(self) -> str:
        """Refresh now, whatever the clock says; the new access token."""
        self._check_open()
        return self._credential.run(self._refresh_flow())

    def _renew(self, rejected: str) -> str:
        self._check_open()
        return self._credential.run(self._renew_flow(rejected))

    def start(self) -> None:
        """Refresh in a daemon thread, a little before each refresh is due; idempotent."""
        self._check_open()
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._background, args=(self._stop_event,),
                name=f"authtoken-{type(self).__name__}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the background refresh (waits for a refresh in progress); idempotent."""
        with self._guard:
            thread, self._thread = self._thread, None
            self._stop_event.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _background(self, stop: threading.Event) -> None:
        delay = 0.0
        while not stop.wait(delay):
            due, seen = self._background_due()
            if due:
                try:
                    self._credential.run(self._background_flow(seen))
                except Exception as exc:  # keep refreshing; the callers see the error
                    log.warning("background refresh failed: %s: %s",
                                type(exc).__name__, exc)
            delay = self._background_delay()

    def close(self) -> None:
        """Stop the background refresh and close the HTTP client (if the session made it)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        self._credential.driver.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _AsyncSession(_Session):
    _credential: AsyncCredential

    def _start_io(self, client: httpx.AsyncClient | None, timeout: float) -> None:
        self._credential = AsyncCredential(self._refresher, AsyncDriver(client, timeout))
        self._task: asyncio.Task[None] | None = None
        self._stop_event: asyncio.Event | None = None
        self.auth: httpx.Auth = _AsyncAuth(self)

    async def get_access_token(self) -> str:
        """A valid access token, fetched or refreshed when due (one request at a time).

        Raises ``IssuerError`` when the issuer refuses or cannot be reached and no valid
        token is at hand; the session stays usable and tries again on the next call.
        """
        self._check_open()
        return await self._credential.get()

    async def authorization_header(self) -> dict[str, str]:
        """The header to send: ``{"Authorization": "Bearer <t>"}`` or ``{"bsauth": "<t>"}``."""
        return self._header_for(await self.get_access_token())

    async def refresh(self) -> str:
        """Refresh now, whatever the clock says; the new access token."""
        self._check_open()
        return await self._credential.run(self._refresh_flow())

    async def _renew(self, rejected: str) -> str:
        self._check_open()
        return await self._credential.run(self._renew_flow(rejected))

    async def start(self) -> None:
        """Refresh in an asyncio task, a little before each refresh is due; idempotent."""
        self._check_open()
        if self._task is not None and not self._task.done():
            return
        self._stop_event = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._background(self._stop_event), name=f"authtoken-{type(self).__name__}")

    async def stop(self) -> None:
        """Stop the background refresh (waits for a refresh in progress); idempotent."""
        task, self._task = self._task, None
        if self._stop_event is not None:
            self._stop_event.set()
        if task is not None and task is not asyncio.current_task():
            await task

    async def _background(self, stop: asyncio.Event) -> None:
        delay = 0.0
        while True:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
            due, seen = self._background_due()
            if due:
                try:
                    await self._credential.run(self._background_flow(seen))
                except Exception as exc:  # keep refreshing; the callers see the error
                    log.warning("background refresh failed: %s: %s",
                                type(exc).__name__, exc)
            delay = self._background_delay()

    async def close(self) -> None:
        """Stop the background refresh and close the HTTP client (if the session made it)."""
        if self._closed:
            return
        await self.stop()
        self._closed = True
        await self._credential.driver.aclose()

    async def aclose(self) -> None:
        """The same as ``close()``."""
        await self.close()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _SyncAuth(httpx.Auth):
    """Adds the session's header; after a 401, retries once with a fresh token."""

    def __init__(self, session: _SyncSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"<auth of {self._session._describe()}>"

    def sync_auth_flow(self, request: httpx.Request,
                       ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._session.get_access_token()
        request.headers.update(self._session._header_for(token))
        response = yield request
        if response.status_code == 401:
            fresh = self._session._renew(token)
            if not hmac.compare_digest(fresh, token):
                request.headers.update(self._session._header_for(fresh))
                yield request

    async def async_auth_flow(self, request: httpx.Request,
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # A sync session in an AsyncClient: works, but a refresh blocks the event loop.
        token = self._session.get_access_token()
        request.headers.update(self._session._header_for(token))
        response = yield request
        if response.status_code == 401:
            fresh = self._session._renew(token)
            if not hmac.compare_digest(fresh, token):
                request.headers.update(self._session._header_for(fresh))
                yield request


class _AsyncAuth(httpx.Auth):
    """Adds the session's header; after a 401, retries once with a fresh token."""

    def __init__(self, session: _AsyncSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"<auth of {self._session._describe()}>"

    def sync_auth_flow(self, request: httpx.Request,
                       ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(
            f"{type(self._session).__name__}.auth needs an httpx.AsyncClient; "
            "use the sync session with httpx.Client")

    async def async_auth_flow(self, request: httpx.Request,
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._session.get_access_token()
        request.headers.update(self._session._header_for(token))
        response = yield request
        if response.status_code == 401:
            fresh = await self._session._renew(token)
            if not hmac.compare_digest(fresh, token):
                request.headers.update(self._session._header_for(fresh))
                yield request


def _password_adapter(*, space_url: str | None, authority: object, client_id: object,
                      username: object, password: object, client_secret: object,
                      scope: object, now: Callable[[], float]) -> _PasswordAdapter:
    return _PasswordAdapter(
        space_url=space_url,
        authority=None if authority is None else _url(authority, "authority", base=True),
        client_id=None if client_id is None else _text(client_id, "client_id"),
        username=_text(username, "username", line=False),
        password=_text(password, "password", line=False),
        client_secret=_optional_text(client_secret, "client_secret", line=False),
        scope=_optional_text(scope, "scope"),
        now=now,
    )


class _PasswordInfo:
    """What the sync and async password sessions tell about their issuer."""

    _adapter: _PasswordAdapter | _ClientCredentialsAdapter

    @property
    def _password_adapter(self) -> _PasswordAdapter:
        assert isinstance(self._adapter, _PasswordAdapter)
        return self._adapter

    @property
    def authority(self) -> str | None:
        """The issuer's URL (``None`` until a space's pointer has been read)."""
        return self._password_adapter.authority

    @property
    def client_id(self) -> str | None:
        return self._password_adapter.client_id

    @property
    def token_endpoint(self) -> str | None:
        """The token endpoint, once discovered."""
        discovery = self._password_adapter.discovery
        return discovery.token_endpoint if discovery is not None else None

    @property
    def jwks_uri(self) -> str | None:
        """The issuer's JWKS (for ``JWTVerifier``), once discovered."""
        discovery = self._password_adapter.discovery
        return discovery.jwks_uri if discovery is not None else None


class OIDCPasswordSession(_PasswordInfo, _SyncSession):
    """An OpenID Connect session by the password grant.

    ``authority`` is the issuer's URL (a Keycloak realm: ``https://id.example/realms/x``);
    the token endpoint comes from its ``/.well-known/openid-configuration`` on first use.
    The access token is refreshed with the refresh token at ``expires_in * 0.9`` after
    issue; if the refresh token is refused or expired, the password grant runs again.
    ``from_space`` reads the authority and client id from a space's
    ``/api/.well-known/oidc``.  ``clock`` (aware datetimes) is for tests.
    """

    def __init__(self, authority: str, client_id: str, username: str, password: str, *,
                 client_secret: str | None = None, scope: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: Clock | None = None) -> None:
        now = _seconds_clock(clock)
        adapter = _password_adapter(
            space_url=None, authority=authority, client_id=client_id, username=username,
            password=password, client_secret=client_secret, scope=scope, now=now)
        self._setup(adapter, now, "Authorization")
        self._start_io(_client(client, httpx.Client, "httpx.Client"), check_timeout(timeout))

    @classmethod
    def from_space(cls, space_url: str, username: str, password: str, *,
                   client_secret: str | None = None, scope: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                   clock: Clock | None = None) -> OIDCPasswordSession:
        """A session for a space: reads ``{space_url}/api/.well-known/oidc`` and the
        authority's discovery document now (``IssuerError`` if they fail)."""
        now = _seconds_clock(clock)
        adapter = _password_adapter(
            space_url=_url(space_url, "space_url", base=True), authority=None, client_id=None,
            username=username, password=password, client_secret=client_secret,
            scope=scope, now=now)
        session = cls.__new__(cls)
        session._setup(adapter, now, "Authorization")
        session._start_io(_client(client, httpx.Client, "httpx.Client"),
                          check_timeout(timeout))
        try:
            session.discover()
        except BaseException:
            session.close()
            raise
        return session

    def discover(self) -> None:
        """Read the discovery documents now rather than on first use; ``IssuerError``."""
        self._check_open()
        self._credential.run(guarded(self._password_adapter.discover()))


class AsyncOIDCPasswordSession(_PasswordInfo, _AsyncSession):
    """``OIDCPasswordSession`` for asyncio: the same methods, as coroutines.

    ``from_space`` returns the session at once and reads the discovery documents on
    first use; ``await AsyncOIDCPasswordSession.from_space(...)`` reads them now.
    """

    def __init__(self, authority: str, client_id: str, username: str, password: str, *,
                 client_secret: str | None = None, scope: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: Clock | None = None) -> None:
        now = _seconds_clock(clock)
        adapter = _password_adapter(
            space_url=None, authority=authority, client_id=client_id, username=username,
            password=password, client_secret=client_secret, scope=scope, now=now)
        self._setup(adapter, now, "Authorization")
        self._start_io(_client(client, httpx.AsyncClient, "httpx.AsyncClient"),
                       check_timeout(timeout))

    @classmethod
    def from_space(cls, space_url: str, username: str, password: str, *,
                   client_secret: str | None = None, scope: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                   clock: Clock | None = None) -> AsyncOIDCPasswordSession:
        """A session for a space (``{space_url}/api/.well-known/oidc``), discovered lazily."""
        now = _seconds_clock(clock)
        adapter = _password_adapter(
            space_url=_url(space_url, "space_url", base=True), authority=None, client_id=None,
            username=username, password=password, client_secret=client_secret,
            scope=scope, now=now)
        session = cls.__new__(cls)
        session._setup(adapter, now, "Authorization")
        session._start_io(_client(client, httpx.AsyncClient, "httpx.AsyncClient"),
                          check_timeout(timeout))
        return session

    async def discover(self) -> AsyncOIDCPasswordSession:
        """Read the discovery documents now rather than on first use; ``IssuerError``."""
        self._check_open()
        await self._credential.run(guarded(self._password_adapter.discover()))
        return self

    def __await__(self) -> Generator[Any, None, AsyncOIDCPasswordSession]:
        return self.discover().__await__()


def _client_credentials_adapter(token_url: object, client_id: object, client_secret: object,
                                scope: object, now: Callable[[], float],
                                ) -> _ClientCredentialsAdapter:
    return _ClientCredentialsAdapter(
        token_url=_url(token_url, "token_url"),
        client_id=_text(client_id, "client_id"),
        client_secret=_text(client_secret, "client_secret", line=False),
        scope=_optional_text(scope, "scope"),
        now=now,
    )


class ClientCredentialsSession(_SyncSession):
    """A service's own token by the client credentials grant.

    Fetched from ``token_url`` on first use and again at ``expires_in * 0.9``.  The
    credentials go in the form body (``client_secret_post``).  ``header="bsauth"`` sends
    ``bsauth: <token>``; the default sends ``Authorization: <token_type> <token>``.
    """

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scope: str | None = None, header: str = "Authorization",
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None,
                 clock: Clock | None = None) -> None:
        now = _seconds_clock(clock)
        adapter = _client_credentials_adapter(token_url, client_id, client_secret, scope, now)
        self._setup(adapter, now, _header_name(header))
        self._start_io(_client(client, httpx.Client, "httpx.Client"), check_timeout(timeout))

    @property
    def token_url(self) -> str:
        assert isinstance(self._adapter, _ClientCredentialsAdapter)
        return self._adapter.token_url


class AsyncClientCredentialsSession(_AsyncSession):
    """``ClientCredentialsSession`` for asyncio: the same methods, as coroutines."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scope: str | None = None, header: str = "Authorization",
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None,
                 clock: Clock | None = None) -> None:
        now = _seconds_clock(clock)
        adapter = _client_credentials_adapter(token_url, client_id, client_secret, scope, now)
        self._setup(adapter, now, _header_name(header))
        self._start_io(_client(client, httpx.AsyncClient, "httpx.AsyncClient"),
                       check_timeout(timeout))

    @property
    def token_url(self) -> str:
        assert isinstance(self._adapter, _ClientCredentialsAdapter)
        return self._adapter.token_url


# -- JWT verification ---------------------------------------------------------------------

#: At most this many keys are tried for a token that names no ``kid``.
_MAX_CANDIDATES: Final = 8
#: After a failed JWKS fetch, wait this long before the next attempt.
_FETCH_FAILURE_GAP: Final = 1.0
_KTY: Final = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP", "HS": "oct"}


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    kty: str
    alg: str | None
    key: Any = None

    def __repr__(self) -> str:  # an "oct" key is a secret
        return f"_Key(kid={self.kid!r}, kty={self.kty!r})"

    def fits(self, alg: str) -> bool:
        return self.kty == _KTY.get(alg[:2]) and self.alg in (None, alg)


def _from_jwk(jwk: jwt.PyJWK) -> _Key | None:
    if jwk.public_key_use not in (None, "sig") or jwk.key_type is None:
        return None
    alg = jwk._jwk_data.get("alg")
    return _Key(kid=jwk.key_id, kty=jwk.key_type,
                alg=alg if isinstance(alg, str) else None, key=jwk.key)


def _jwks_keys(data: Mapping[str, Any]) -> list[_Key]:
    """The signing keys of a JWKS document; ``ValueError`` if there is none."""
    try:
        jwks = jwt.PyJWKSet.from_dict(dict(data))
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        # PyJWT's messages can quote the keys: an "oct" key is a secret.
        raise ValueError("no usable signing key") from None
    keys = [k for k in map(_from_jwk, jwks.keys) if k is not None]
    if not keys:
        raise ValueError("no usable signing key")
    return keys


def _pem_key(data: str | bytes) -> _Key:
    raw = data.encode() if isinstance(data, str) else data
    public: Any
    try:
        public = serialization.load_pem_public_key(raw)
    except ValueError:
        try:
            public = x509.load_pem_x509_certificate(raw).public_key()
        except ValueError:
            raise InvalidArgument("keys: an item is neither a PEM public key nor a "
                                  "PEM certificate") from None
    if isinstance(public, rsa.RSAPublicKey):
        kty = "RSA"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        kty = "EC"
    elif isinstance(public, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        kty = "OKP"
    else:
        raise InvalidArgument("keys: unsupported public key type")
    return _Key(kid=None, kty=kty, alg=None, key=public)


def _static_keys(keys: object) -> list[_Key]:
    """``keys=``: a JWKS dict, one JWK dict, or a list of PEM strings and JWK dicts."""
    if isinstance(keys, Mapping):
        if "keys" in keys:
            try:
                return _jwks_keys(keys)
            except ValueError:
                raise InvalidArgument("keys: the JWKS holds no usable signing key") from None
        keys = [keys]
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    if not isinstance(keys, Iterable):
        raise ArgumentTypeError("keys must be a JWKS dict or a list of PEM keys or JWK dicts")
    result: list[_Key] = []
    for item in keys:
        if isinstance(item, (str, bytes)):
            result.append(_pem_key(item))
        elif isinstance(item, Mapping):
            try:
                key = _from_jwk(jwt.PyJWK.from_dict(dict(item)))
            except (jwt.PyJWTError, ValueError, TypeError):
                raise InvalidArgument("keys: an item is not a usable JWK") from None
            if key is None:
                raise InvalidArgument("keys: a JWK is not a signing key")
            result.append(key)
        elif isinstance(item, jwt.PyJWK):
            key = _from_jwk(item)
            if key is None:
                raise InvalidArgument("keys: a JWK is not a signing key")
            result.append(key)
        else:
            raise ArgumentTypeError("keys: each item is a PEM str/bytes or a JWK dict")
    if not result:
        raise InvalidArgument("keys must hold at least one key")
    return result


def _seconds(value: object, name: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} is a number of seconds or a timedelta")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{name} must be a finite number of seconds, at least 0")
    return float(value)


_REASONS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidIssuerError, "the token's issuer is not accepted"),
    (jwt.InvalidAudienceError, "the token's audience is not accepted"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
)


def _refusal(exc: Exception) -> InvalidToken:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return InvalidToken(reason)
    return InvalidToken("the token is malformed or its claims are invalid")


def jwks_flow(jwks_uri: str) -> Generator[Request, Response, list[_Key]]:
    """Fetch and read a JWKS; ``IssuerError`` if it fails or holds no usable key."""
    what = "fetching the JWKS"
    try:
        response = yield Request("GET", jwks_uri, headers=_JSON_ACCEPT)
    except TransportFailure as exc:
        raise IssuerError(f"{what} failed: the issuer could not be reached ({exc})") from None
    if not _ok(response):
        raise issuer_error(response, what)
    try:
        return _jwks_keys(_json_object(response, what))
    except ValueError:
        raise _malformed(response, what, "holds no usable signing key") from None


class _Verifier:
    """The pure part of the verifiers: reading tokens, choosing keys, JWKS cache state."""

    def __init__(self, *, jwks_uri: str | None, keys: object, issuer: str | None,
                 audience: str | Iterable[str] | None, leeway: float | timedelta,
                 algorithms: Iterable[str], require: Iterable[str],
                 refetch_interval: float, cache_lifespan: float) -> None:
        if jwks_uri is None and keys is None:
            raise InvalidArgument("JWTVerifier needs jwks_uri or keys (or both)")
        self.jwks_uri = None if jwks_uri is None else _url(jwks_uri, "jwks_uri")
        self._static = [] if keys is None else _static_keys(keys)
        self.issuer = _optional_text(issuer, "issuer")
        if audience is None or isinstance(audience, str):
            self.audience: str | list[str] | None = audience
        else:
            self.audience = [_text(a, "audience") for a in audience]
        self.leeway = _seconds(leeway, "leeway")
        if isinstance(algorithms, str):
            algorithms = [algorithms]
        self.algorithms = tuple(algorithms)
        supported = jwt.algorithms.get_default_algorithms()
        if not self.algorithms or any(
                a not in supported or a == "none" or a[:2] not in _KTY
                for a in self.algorithms):
            raise InvalidArgument("algorithms must name JWS algorithms such as 'RS256'")
        self.require = [_text(c, "require") for c in require]
        self.refetch_interval = _seconds(refetch_interval, "refetch_interval")
        self.cache_lifespan = _seconds(cache_lifespan, "cache_lifespan")
        self._fetched: list[_Key] | None = None
        self._fetched_at = -math.inf
        self._failed_at = -math.inf
        self._error: IssuerError | None = None
        self._cooldown_until = -math.inf
        self.fetches = 0  # how many JWKS requests were sent

    def __repr__(self) -> str:
        source = (f"jwks_uri={self.jwks_uri!r}" if self.jwks_uri
                  else f"{len(self._static)} key(s)")
        return (f"<{type(self).__name__}({source}, issuer={self.issuer!r}, "
                f"audience={self.audience!r})>")

    def _read(self, token: object) -> tuple[str, str, str | None]:
        """The token text, its algorithm and ``kid``; ``TypeError`` or ``InvalidToken``."""
        if isinstance(token, bytes):
            if len(token) > MAX_TOKEN_LENGTH:
                raise InvalidToken("the token is too long")
            try:
                text = token.decode("ascii")
            except UnicodeDecodeError:
                raise InvalidToken("the token is not a JWT") from None
        elif isinstance(token, str):
            text = token
        else:
            raise ArgumentTypeError(f"a token is a str or bytes, not {type(token).__name__}")
        if len(text) > MAX_TOKEN_LENGTH:
            raise InvalidToken("the token is too long")
        try:
            # The whole structure, not just the header, so garbage never costs a fetch.
            parts = jwt.decode_complete(text, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, LookupError):
            raise InvalidToken("the token is not a JWT") from None
        header = parts["header"]
        if not parts["signature"]:
            raise InvalidToken("the token is not signed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken("the token's algorithm is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's key id is malformed")
        return text, alg, kid

    def _keys(self) -> list[_Key]:
        return self._static + (self._fetched or [])

    def _known(self, kid: str | None) -> bool:
        return kid is None or any(k.kid == kid for k in self._keys())

    def _should_fetch(self, kid: str | None) -> bool:
        """Whether to (re)fetch the JWKS before verifying a token naming ``kid``."""
        if self.jwks_uri is None:
            return False
        now = time.monotonic()
        if now < self._failed_at + _FETCH_FAILURE_GAP:
            return False
        if self._fetched is None or now >= self._fetched_at + self.cache_lifespan:
            return True
        # Unknown kid: the issuer may have rotated its keys.  A refetch that did not find
        # the kid starts a cooldown, so a flood of made-up kids costs one request.
        return not self._known(kid) and now >= self._cooldown_until

    def _fetch_succeeded(self, keys: list[_Key], kid: str | None) -> None:
        now = time.monotonic()
        self._fetched, self._fetched_at, self._error = keys, now, None
        if not self._known(kid):
            self._cooldown_until = now + self.refetch_interval

    def _fetch_failed(self, error: IssuerError) -> None:
        self._failed_at = time.monotonic()
        self._error = error
        log.warning("JWKS fetch failed: %s", error)

    def _usable(self) -> None:
        """Raise the last fetch error when there is no key to verify with at all."""
        if not self._keys() and self._error is not None:
            raise self._error

    def _decode(self, text: str, alg: str, kid: str | None) -> dict[str, Any]:
        keys = [k for k in self._keys() if k.fits(alg)]
        if kid is not None:
            named = [k for k in keys if k.kid == kid]
            keys = named or [k for k in keys if k.kid is None]
        if not keys:
            raise InvalidToken("the token is signed with an unknown key")
        options: dict[str, Any] = {"require": self.require,
                                   "verify_aud": self.audience is not None}
        for key in keys[:_MAX_CANDIDATES]:
            try:
                claims: dict[str, Any] = jwt.decode(
                    text, key.key, algorithms=[alg], issuer=self.issuer,
                    audience=self.audience, leeway=self.leeway, options=options)  # type: ignore[arg-type]
            except jwt.InvalidSignatureError:
                continue
            except (jwt.PyJWTError, ValueError, TypeError, LookupError) as exc:
                raise _refusal(exc) from None
            return claims
        raise InvalidToken("the token's signature does not verify")


class JWTVerifier(_Verifier):
    """Checks JWT access tokens: signature, ``exp``/``nbf``/``iat``, ``iss``, ``aud``.

    Keys come from ``keys`` (a JWKS dict, one JWK, or a list of PEM public keys or
    certificates and JWK dicts) and/or ``jwks_uri`` (fetched on first use, cached for
    ``cache_lifespan`` seconds, fetched again when a token names an unknown ``kid`` --
    and after a fetch that did not find it, not again for ``refetch_interval``
    seconds).  ``issuer``/``audience`` of ``None`` leave ``iss``/``aud`` unchecked;
    ``leeway`` is the clock skew allowed, in seconds; ``require`` lists claims that
    must be present.  ``verify`` is thread-safe.
    """

    def __init__(self, *, jwks_uri: str | None = None, keys: object = None,
                 issuer: str | None = None, audience: str | Iterable[str] | None = None,
                 leeway: float | timedelta = 0.0,
                 algorithms: Iterable[str] = ("RS256", "ES256"),
                 require: Iterable[str] = ("exp",),
                 refetch_interval: float = 10.0, cache_lifespan: float = 600.0,
                 timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None) -> None:
        super().__init__(jwks_uri=jwks_uri, keys=keys, issuer=issuer, audience=audience,
                         leeway=leeway, algorithms=algorithms, require=require,
                         refetch_interval=refetch_interval, cache_lifespan=cache_lifespan)
        self._timeout = check_timeout(timeout)
        self._given_client = _client(client, httpx.Client, "httpx.Client")
        self._driver: SyncDriver | None = None
        self._lock = threading.Lock()

    def verify(self, token: str | bytes) -> dict[str, Any]:
        """The token's claims; ``InvalidToken`` if anything is wrong with it.

        ``TypeError`` for a non-``str``/``bytes`` token; ``IssuerError`` when the JWKS
        cannot be fetched and no key is known yet.
        """
        text, alg, kid = self._read(token)
        if self._should_fetch(kid):
            with self._lock:
                if self._should_fetch(kid):  # another caller may have fetched meanwhile
                    self._fetch(kid)
        self._usable()
        return self._decode(text, alg, kid)

    def _fetch(self, kid: str | None) -> None:
        assert self.jwks_uri is not None
        if self._driver is None:
            self._driver = SyncDriver(self._given_client, self._timeout)
        self.fetches += 1
        try:
            keys = self._driver.run(jwks_flow(self.jwks_uri))
        except IssuerError as exc:
            self._fetch_failed(exc)
        else:
            self._fetch_succeeded(keys, kid)

    def close(self) -> None:
        """Close the HTTP client (if the verifier made it)."""
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def __enter__(self) -> JWTVerifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncJWTVerifier(_Verifier):
    """``JWTVerifier`` for asyncio: ``await verifier.verify(token)``."""

    def __init__(self, *, jwks_uri: str | None = None, keys: object = None,
                 issuer: str | None = None, audience: str | Iterable[str] | None = None,
                 leeway: float | timedelta = 0.0,
                 algorithms: Iterable[str] = ("RS256", "ES256"),
                 require: Iterable[str] = ("exp",),
                 refetch_interval: float = 10.0, cache_lifespan: float = 600.0,
                 timeout: float = DEFAULT_TIMEOUT,
                 client: httpx.AsyncClient | None = None) -> None:
        super().__init__(jwks_uri=jwks_uri, keys=keys, issuer=issuer, audience=audience,
                         leeway=leeway, algorithms=algorithms, require=require,
                         refetch_interval=refetch_interval, cache_lifespan=cache_lifespan)
        self._timeout = check_timeout(timeout)
        self._given_client = _client(client, httpx.AsyncClient, "httpx.AsyncClient")
        self._driver: AsyncDriver | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str | bytes) -> dict[str, Any]:
        """The token's claims; ``InvalidToken`` if anything is wrong with it.

        ``TypeError`` for a non-``str``/``bytes`` token; ``IssuerError`` when the JWKS
        cannot be fetched and no key is known yet.
        """
        text, alg, kid = self._read(token)
        if self._should_fetch(kid):
            async with self._lock:
                if self._should_fetch(kid):
                    await self._fetch(kid)
        self._usable()
        return self._decode(text, alg, kid)

    async def _fetch(self, kid: str | None) -> None:
        assert self.jwks_uri is not None
        if self._driver is None:
            self._driver = AsyncDriver(self._given_client, self._timeout)
        self.fetches += 1
        try:
            keys = await self._driver.run(jwks_flow(self.jwks_uri))
        except IssuerError as exc:
            self._fetch_failed(exc)
        else:
            self._fetch_succeeded(keys, kid)

    async def close(self) -> None:
        """Close the HTTP client (if the verifier made it)."""
        if self._driver is not None:
            await self._driver.aclose()
            self._driver = None

    async def __aenter__(self) -> AsyncJWTVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
