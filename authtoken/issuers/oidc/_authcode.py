"""The OIDC authorization-code flow with PKCE: a person signs in at a browser.

::

    with AuthorizationCodeClient(authority, client_id) as client:
        request = client.begin("https://app.example/callback")   # send the browser to .url
        cookie = request.to_json()                               # keep it, signed, until ...
        ...                                                      # ... the browser comes back
        result = client.finish(AuthorizationRequest.from_json(cookie), callback_query)
        result.claims["sub"], result.grant.refresh_token

``begin`` reads the authority's discovery document (once) and makes a fresh ``state``,
``nonce`` and PKCE ``code_verifier`` (S256).  ``finish`` takes the callback's query
parameters and checks, in this order: the ``state`` (constant time; else
``InvalidArgument``: start the sign-in again), an ``error`` the provider sent
(``IssuerError`` naming the OAuth error code), RFC 9207's ``iss`` when present (the
issuer the flow began with), then exchanges the code at the token endpoint with the
verifier and checks the ID token: its signature against the discovery's JWKS
(``JWTVerifier``), ``iss``, ``aud`` (the client id; ``azp`` too when there are several
audiences), ``exp``/``iat`` with a small leeway, and the ``nonce`` (constant time).

What is sent and what an answer means are sans-IO flows (``_flows``' discovery and token
flows, tapped for the fields they do not keep); the issuers' driver sends them.  No code,
verifier, state, nonce or token appears in a message or ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import httpx

from ..._clock import ClockOrSeconds, seconds_clock
from ..._errors import ArgumentTypeError, InvalidArgument, InvalidToken, IssuerError
from ..._redact import redact
from .._answers import MAX_TOKEN_LENGTH, answer_url, json_object
from .._args import DEFAULT_TIMEOUT, optional_text, required_text
from .._core import Grant, Request, Response, TransportFailure, guarded
from .._shell import SyncDriver
from .._urls import credential_url, same_issuer
from ..jwt import JWTVerifier
from ._flows import VISIBLE_ASCII, Discovery, discovery_flow, space_flow, token_flow

__all__ = ["ID_TOKEN_LEEWAY", "AuthorizationCodeClient", "AuthorizationRequest",
           "CodeEndpoints", "CodeGrant", "code_discovery_flow", "code_exchange_flow"]

T = TypeVar("T")

#: Seconds of clock skew allowed on an ID token's ``exp`` and ``iat``.
ID_TOKEN_LEEWAY: Final = 60.0
_MASK: Final = "[redacted]"
# RFC 7636 §4.1: 43 to 128 unreserved characters.
_VERIFIER: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}\Z")
# RFC 6749 §4.1.2.1: an error code is printable ASCII without '"' and '\'.
_ERROR_CODE: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}\Z")
_NOT_PRINTABLE: Final = re.compile(r"[^\x20-\x7e]")
_MAX_STATE: Final = 512
_RESTART: Final = "start the sign-in again from the beginning"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two texts (any characters)."""
    return secrets.compare_digest(a.encode("utf-8", "surrogatepass"),
                                  b.encode("utf-8", "surrogatepass"))


def _scope(value: object, name: str = "scope") -> str:
    text = required_text(value, name, one_line=True)
    words = text.split(" ")
    if not all(VISIBLE_ASCII.match(word) for word in words):
        raise InvalidArgument(f"{name} is scope names of printable ASCII separated by "
                              "single spaces, such as 'openid offline_access'")
    return text


def _redirect_uri(value: object) -> str:
    """``value`` as given (it must match the registration exactly), if a code may go there."""
    credential_url(value, "redirect_uri")
    assert isinstance(value, str)
    return value


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser (``url``), and what to keep until it comes back.

    Keep it server-side or in a signed cookie (``to_json``/``from_json``): the
    ``code_verifier`` is what makes a stolen code useless.  ``scope`` is what was asked.
    """

    url: str = field(repr=False)
    redirect_uri: str
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    scope: str = "openid"

    def __repr__(self) -> str:
        endpoint = self.url.split("?", 1)[0]
        return (f"AuthorizationRequest(endpoint={endpoint!r}, "
                f"redirect_uri={self.redirect_uri!r}, scope={self.scope!r}, "
                f"state={_MASK}, nonce={_MASK}, code_verifier={_MASK})")

    def to_json(self) -> str:
        """The request as JSON, for ``from_json`` (it holds the verifier: sign it)."""
        return json.dumps({"url": self.url, "redirect_uri": self.redirect_uri,
                           "state": self.state, "nonce": self.nonce,
                           "code_verifier": self.code_verifier, "scope": self.scope},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AuthorizationRequest:
        """The request ``to_json`` wrote; ``InvalidArgument`` if ``text`` is not one."""
        if not isinstance(text, (str, bytes)):
            raise ArgumentTypeError(f"an authorization request is JSON text, not "
                                    f"{type(text).__name__}")
        problem = f"this is not a saved authorization request: {_RESTART}"
        if len(text) > 16384:
            raise InvalidArgument(problem)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidArgument(problem) from None
        fields = ("url", "redirect_uri", "state", "nonce", "code_verifier", "scope")
        if (not isinstance(data, dict) or set(data) != set(fields)
                or not all(isinstance(data[k], str) for k in fields)):
            raise InvalidArgument(problem)
        try:
            credential_url(data["url"], "url")
            _redirect_uri(data["redirect_uri"])
            _scope(data["scope"])
        except InvalidArgument:
            raise InvalidArgument(problem) from None
        for name in ("state", "nonce"):
            value = data[name]
            if not 0 < len(value) <= _MAX_STATE or not VISIBLE_ASCII.match(value):
                raise InvalidArgument(problem)
        if not _VERIFIER.match(data["code_verifier"]):
            raise InvalidArgument(problem)
        return cls(**{k: data[k] for k in fields})


@dataclass(frozen=True)
class CodeGrant:
    """What a code bought: the verified ID token's ``claims`` and the ``grant`` (access
    token, refresh token and their times, as the other grants give them)."""

    claims: Mapping[str, Any] = field(repr=False)
    grant: Grant = field(repr=False)

    def __repr__(self) -> str:
        return (f"CodeGrant(sub={self.claims.get('sub')!r}, "
                f"refresh_token={'yes' if self.grant.refresh_token else 'no'})")


@dataclass(frozen=True, slots=True)
class CodeEndpoints:
    """What the code flow needs of the discovery document."""

    discovery: Discovery
    authorization_endpoint: str
    jwks_uri: str


def _tap(flow: Generator[Request, Response, T],
         seen: list[Response]) -> Generator[Request, Response, T]:
    """``flow``, keeping every response it is sent in ``seen`` (for fields it drops)."""
    try:
        request = next(flow)
        while True:
            try:
                response = yield request
            except TransportFailure as exc:
                request = flow.throw(exc)
                continue
            seen.append(response)
            request = flow.send(response)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def code_discovery_flow(authority: str) -> Generator[Request, Response, CodeEndpoints]:
    """The discovery document (``discovery_flow``'s checks), with the authorization
    endpoint and JWKS the code flow needs; ``IssuerError`` if either is missing or breaks
    the https rule."""
    seen: list[Response] = []
    discovery = yield from _tap(discovery_flow(authority), seen)
    response = seen[-1]
    what = "reading the OpenID configuration"
    origin = f"{authority}/.well-known/openid-configuration"
    body = json_object(response, what)
    endpoint = answer_url(response, body.get("authorization_endpoint"), what,
                          "authorization_endpoint", origin=origin)
    if discovery.jwks_uri is None:
        raise IssuerError(f"{what}: the issuer publishes no jwks_uri, so its ID tokens "
                          "cannot be checked", status=response.status,
                          request_id=response.request_id)
    return CodeEndpoints(discovery, endpoint, discovery.jwks_uri)


def code_exchange_flow(token_endpoint: str, form: list[tuple[str, str]],
                       now: Callable[[], float],
                       ) -> Generator[Request, Response, tuple[Grant, str | None]]:
    """The authorization code grant at the token endpoint: the ``Grant`` and the
    ``id_token`` text (``None`` if the answer has none)."""
    seen: list[Response] = []
    grant = yield from _tap(token_flow(token_endpoint, form,
                                       "the authorization code grant", now), seen)
    id_token = json_object(seen[-1], "the authorization code grant").get("id_token")
    if id_token is not None and (not isinstance(id_token, str)
                                 or not 0 < len(id_token) <= MAX_TOKEN_LENGTH):
        raise IssuerError("the authorization code grant: the issuer's answer has an "
                          "unusable id_token", status=seen[-1].status,
                          request_id=seen[-1].request_id)
    return grant, id_token


def _callback_text(params: Mapping[str, object], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"the callback's {name!r} parameter must be text (pass the "
                              "query parameters as a mapping of str to str)")
    return value


def _provider_refusal(params: Mapping[str, object]) -> IssuerError:
    raw = params.get("error")
    code = raw if isinstance(raw, str) and _ERROR_CODE.match(raw) else "invalid_error"
    description = params.get("error_description")
    detail = ""
    if isinstance(description, str) and description:
        detail = ": " + redact(_NOT_PRINTABLE.sub("?", description[:300]))
    return IssuerError(f"the identity provider refused the sign-in ({redact(code)}){detail}",
                       code=code)


class AuthorizationCodeClient:
    """A client of one authority's authorization-code flow with PKCE (S256).

    ``authority``: the issuer's URL (https, or http on a loopback host); ``client_id``
    and, for a confidential client, ``client_secret`` (sent as ``client_secret_post``).
    ``scope`` is what ``begin`` asks unless told otherwise.  ``http``: an
    ``httpx.Client`` to send with (else the client makes its own; ``close`` closes it).
    ``clock`` (aware datetimes, or seconds) dates the grant's times, for tests; the ID
    token's ``exp``/``iat`` are checked against the real clock, as the provider's.
    """

    def __init__(self, authority: str, client_id: str, *, client_secret: str | None = None,
                 scope: str = "openid", timeout: float = DEFAULT_TIMEOUT,
                 http: httpx.Client | None = None,
                 clock: ClockOrSeconds | None = None) -> None:
        self._now = seconds_clock(clock)
        self.authority = credential_url(authority, "authority", base=True)
        self.client_id = required_text(client_id, "client_id", one_line=True)
        if not VISIBLE_ASCII.match(self.client_id):
            raise InvalidArgument("client_id must be printable ASCII without spaces")
        self._client_secret = optional_text(client_secret, "client_secret")
        self.scope = _scope(scope)
        if http is not None and not isinstance(http, httpx.Client):
            raise ArgumentTypeError(f"http must be an httpx.Client or None, not "
                                    f"{type(http).__name__}")
        self._driver = SyncDriver(http, timeout)
        self._lock = threading.Lock()
        self._endpoints: CodeEndpoints | None = None
        self._verifier: JWTVerifier | None = None

    @classmethod
    def from_space(cls, space_url: str, **kwargs: Any) -> AuthorizationCodeClient:
        """The client of a space's identity provider, read from its
        ``{space_url}/api/.well-known/oidc`` now (``IssuerError`` if that fails)."""
        url = credential_url(space_url, "space_url", base=True)
        http = kwargs.get("http")
        if http is not None and not isinstance(http, httpx.Client):
            raise ArgumentTypeError(f"http must be an httpx.Client or None, not "
                                    f"{type(http).__name__}")
        driver = SyncDriver(http, kwargs.get("timeout", DEFAULT_TIMEOUT))
        try:
            authority, client_id = driver.run(guarded(space_flow(url)))
        finally:
            driver.close()
        return cls(authority, client_id, **kwargs)

    def __repr__(self) -> str:
        return f"AuthorizationCodeClient({self.authority!r}, {self.client_id!r})"

    def __enter__(self) -> AuthorizationCodeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client (if this client made it)."""
        with self._lock:
            if self._verifier is not None:
                self._verifier.close()
            self._driver.close()

    # -- discovery ---------------------------------------------------------------------
    def endpoints(self) -> CodeEndpoints:
        """The authority's endpoints, read once and kept; ``IssuerError``."""
        with self._lock:
            if self._endpoints is None:
                self._endpoints = self._driver.run(
                    guarded(code_discovery_flow(self.authority)))
                self._verifier = JWTVerifier(
                    jwks_uri=self._endpoints.jwks_uri,
                    issuer=self._endpoints.discovery.issuer, audience=self.client_id,
                    leeway=ID_TOKEN_LEEWAY, algorithms=("RS256", "PS256", "ES256", "EdDSA"),
                    require=("exp", "iat", "iss", "aud", "sub"),
                    timeout=self._driver.timeout, client=self._driver.client)
            return self._endpoints

    # -- the flow ----------------------------------------------------------------------
    def begin(self, redirect_uri: str, *, scope: str | None = None,
              prompt: str | None = None) -> AuthorizationRequest:
        """A new sign-in: the URL to send the browser to, and what to keep for ``finish``.

        ``redirect_uri`` must be registered with the provider, exactly as given.
        ``scope`` replaces the client's; ``prompt`` is OIDC's (``login``, ``consent``...).
        """
        uri = _redirect_uri(redirect_uri)
        asked = self.scope if scope is None else _scope(scope)
        prompt = optional_text(prompt, "prompt", one_line=True)
        endpoint = self.endpoints().authorization_endpoint
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        query = [("response_type", "code"), ("client_id", self.client_id),
                 ("redirect_uri", uri), ("scope", asked), ("state", state),
                 ("nonce", nonce),
                 ("code_challenge", _b64(hashlib.sha256(verifier.encode()).digest())),
                 ("code_challenge_method", "S256")]
        if prompt is not None:
            query.append(("prompt", prompt))
        url = endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)
        return AuthorizationRequest(url=url, redirect_uri=uri, state=state, nonce=nonce,
                                    code_verifier=verifier, scope=asked)

    def finish(self, request: AuthorizationRequest,
               params: Mapping[str, str]) -> CodeGrant:
        """Check the callback's query ``params`` against ``request`` and redeem the code.

        ``InvalidArgument`` when the state is missing or wrong (a forged or stale
        callback: start again) or the callback carries no usable code; ``IssuerError``
        when the provider refused the sign-in, the ``iss`` is another issuer's, the token
        endpoint refused the code, or the ID token does not check out.
        """
        if not isinstance(request, AuthorizationRequest):
            raise ArgumentTypeError(f"request is the AuthorizationRequest begin() returned, "
                                    f"not {type(request).__name__}")
        if not isinstance(params, Mapping):
            raise ArgumentTypeError(f"params are the callback's query parameters as a "
                                    f"mapping, not {type(params).__name__}")
        state = _callback_text(params, "state")
        if state is None or not _same(state, request.state):
            raise InvalidArgument("the sign-in's state is missing or does not match this "
                                  f"browser's sign-in (a stale or forged callback): {_RESTART}")
        if params.get("error") is not None:
            raise _provider_refusal(params)
        endpoints = self.endpoints()
        issuer = _callback_text(params, "iss")
        if issuer is not None and not same_issuer(issuer, endpoints.discovery.issuer):
            raise IssuerError("the callback names another issuer than the one the sign-in "
                              f"began with (a mix-up attack?): {_RESTART}")
        code = _callback_text(params, "code")
        if not code or len(code) > MAX_TOKEN_LENGTH or not VISIBLE_ASCII.match(code):
            raise InvalidArgument(f"the callback carries no usable code: {_RESTART}")
        form = [("grant_type", "authorization_code"), ("code", code),
                ("redirect_uri", request.redirect_uri),
                ("code_verifier", request.code_verifier), ("client_id", self.client_id)]
        if self._client_secret is not None:
            form.append(("client_secret", self._client_secret))
        grant, id_token = self._driver.run(guarded(code_exchange_flow(
            endpoints.discovery.token_endpoint, form, self._now)))
        if id_token is None:
            if "openid" in request.scope.split(" "):
                raise IssuerError("the authorization code grant: the issuer's answer has no "
                                  "id_token although 'openid' was asked")
            return CodeGrant(claims={}, grant=grant)
        return CodeGrant(claims=self._id_claims(id_token, request.nonce), grant=grant)

    def _id_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        verifier = self._verifier
        assert verifier is not None
        try:
            claims = verifier.verify(id_token)
        except InvalidToken as exc:
            raise IssuerError(f"the ID token was refused: {exc}") from None
        audience = claims.get("aud")
        azp = claims.get("azp")
        several = isinstance(audience, list) and len(audience) > 1
        if (several or azp is not None) and azp != self.client_id:
            raise IssuerError("the ID token was refused: it was issued to another client "
                              "(azp)")
        got = claims.get("nonce")
        if not isinstance(got, str) or not _same(got, nonce):
            raise IssuerError("the ID token was refused: its nonce is not this sign-in's "
                              f"(a replayed token?): {_RESTART}")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise IssuerError("the ID token was refused: it names no subject (sub)")
        return claims
