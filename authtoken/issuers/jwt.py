"""Checking JWT access tokens on the API side: ``JWTVerifier`` and ``AsyncJWTVerifier``.

::

    from authtoken.issuers.jwt import JWTVerifier   # also from authtoken.issuers.oidc

    verifier = JWTVerifier(jwks_uri=jwks_uri, issuer=authority, audience="lessons")
    claims = verifier.verify(token)        # a dict, or InvalidToken

A verifier checks the signature, ``exp``/``nbf``/``iat`` with a leeway, and ``iss``/``aud``
when configured, with PyJWT, against keys given up front (``keys=``) and/or a JWKS
(``jwks_uri=``) fetched on first use, cached, and fetched again when a token names an
unknown ``kid``.  What is pure (reading a token, choosing keys, the state of the JWKS
cache) is ``_Verifier``; the sync and async classes only fetch, under their own lock.
The JWKS URL is held to the issuers' one URL rule (``_urls``): keys fetched in clear
could be swapped.

Every refusal is ``InvalidToken`` with a reason that quotes nothing from the token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

try:
    import httpx
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'authtoken.issuers.jwt needs httpx and PyJWT: pip install "authtoken[issuers]"'
    ) from exc

from .._errors import ArgumentTypeError, InvalidArgument, InvalidToken, IssuerError
from ._answers import JSON_ACCEPT, MAX_TOKEN_LENGTH, json_object, malformed, succeeded
from ._args import (
    DEFAULT_TIMEOUT,
    check_timeout,
    given_client,
    optional_text,
    required_text,
    seconds,
)
from ._core import Request, Response, TransportFailure, issuer_error
from ._shell import AsyncDriver, SyncDriver
from ._urls import credential_url

__all__ = ["AsyncJWTVerifier", "JWTVerifier"]

log = logging.getLogger(__name__)

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


def _from_jwk(jwk: jwt.PyJWK, alg: object) -> _Key | None:
    """A signing key from a JWK; ``alg`` is the algorithm the JWK names, if any (a key
    without one fits every algorithm of its type)."""
    if jwk.public_key_use not in (None, "sig") or jwk.key_type is None:
        return None
    return _Key(kid=jwk.key_id, kty=jwk.key_type,
                alg=alg if isinstance(alg, str) else None, key=jwk.key)


def _jwks_keys(data: Mapping[str, Any]) -> list[_Key]:
    """The signing keys of a JWKS document; ``ValueError`` if there is none.

    Members that are no usable JWK are skipped, as PyJWT's ``PyJWKSet`` does; each key
    keeps the ``alg`` its member names.
    """
    members = data.get("keys")
    if not members or not isinstance(members, list):
        raise ValueError("no usable signing key")
    keys: list[_Key] = []
    try:
        for member in members:
            if not isinstance(member, dict):
                continue
            try:
                jwk = jwt.PyJWK(member)
            except jwt.PyJWTError:
                continue
            key = _from_jwk(jwk, member.get("alg"))
            if key is not None:
                keys.append(key)
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        # PyJWT's messages can quote the keys: an "oct" key is a secret.
        raise ValueError("no usable signing key") from None
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
            continue
        if isinstance(item, Mapping):
            try:
                key = _from_jwk(jwt.PyJWK.from_dict(dict(item)), item.get("alg"))
            except (jwt.PyJWTError, ValueError, TypeError):
                raise InvalidArgument("keys: an item is not a usable JWK") from None
        elif isinstance(item, jwt.PyJWK):
            # A PyJWK is bound to the algorithm PyJWT made it for (named, or implied by
            # its type and curve): PyJWT itself verifies with no other.
            key = _from_jwk(item, item.algorithm_name)
        else:
            raise ArgumentTypeError("keys: each item is a PEM str/bytes or a JWK dict")
        if key is None:
            raise InvalidArgument("keys: a JWK is not a signing key")
        result.append(key)
    if not result:
        raise InvalidArgument("keys must hold at least one key")
    return result


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
        response = yield Request("GET", jwks_uri, headers=JSON_ACCEPT)
    except TransportFailure as exc:
        raise IssuerError(f"{what} failed: the issuer could not be reached ({exc})") from None
    if not succeeded(response):
        raise issuer_error(response, what)
    try:
        return _jwks_keys(json_object(response, what))
    except ValueError:
        raise malformed(response, what, "holds no usable signing key") from None


class _Verifier:
    """The pure part of the verifiers: reading tokens, choosing keys, JWKS cache state."""

    def __init__(self, *, jwks_uri: str | None, keys: object, issuer: str | None,
                 audience: str | Iterable[str] | None, leeway: float | timedelta,
                 algorithms: Iterable[str], require: Iterable[str],
                 refetch_interval: float, cache_lifespan: float) -> None:
        if jwks_uri is None and keys is None:
            raise InvalidArgument("JWTVerifier needs jwks_uri or keys (or both)")
        self.jwks_uri = None if jwks_uri is None else credential_url(jwks_uri, "jwks_uri")
        self._static = [] if keys is None else _static_keys(keys)
        self.issuer = optional_text(issuer, "issuer", one_line=True)
        if audience is None or isinstance(audience, str):
            self.audience: str | list[str] | None = audience
        else:
            self.audience = [required_text(a, "audience", one_line=True) for a in audience]
        self.leeway = seconds(leeway, "leeway")
        if isinstance(algorithms, str):
            algorithms = [algorithms]
        self.algorithms = tuple(algorithms)
        supported = jwt.algorithms.get_default_algorithms()
        if not self.algorithms or any(
                a not in supported or a == "none" or a[:2] not in _KTY
                for a in self.algorithms):
            raise InvalidArgument("algorithms must name JWS algorithms such as 'RS256'")
        self.require = [required_text(c, "require", one_line=True) for c in require]
        self.refetch_interval = seconds(refetch_interval, "refetch_interval")
        self.cache_lifespan = seconds(cache_lifespan, "cache_lifespan")
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

    def _fetch_flow(self) -> Generator[Request, Response, list[_Key]]:
        assert self.jwks_uri is not None
        self.fetches += 1
        return (yield from jwks_flow(self.jwks_uri))

    def _fetched_keys(self, keys: list[_Key] | IssuerError, kid: str | None) -> None:
        """Keep what a fetch brought: the keys, or the failure (and wait a moment)."""
        now = time.monotonic()
        if isinstance(keys, IssuerError):
            self._failed_at = now
            self._error = keys
            log.warning("JWKS fetch failed: %s", keys)
            return
        self._fetched, self._fetched_at, self._error = keys, now, None
        if not self._known(kid):
            self._cooldown_until = now + self.refetch_interval

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
        self._given_client = given_client(client, httpx.Client)
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
        if self._driver is None:
            self._driver = SyncDriver(self._given_client, self._timeout)
        try:
            keys: list[_Key] | IssuerError = self._driver.run(self._fetch_flow())
        except IssuerError as exc:
            keys = exc
        self._fetched_keys(keys, kid)

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
        self._given_client = given_client(client, httpx.AsyncClient)
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
        if self._driver is None:
            self._driver = AsyncDriver(self._given_client, self._timeout)
        try:
            keys: list[_Key] | IssuerError = await self._driver.run(self._fetch_flow())
        except IssuerError as exc:
            keys = exc
        self._fetched_keys(keys, kid)

    async def close(self) -> None:
        """Close the HTTP client (if the verifier made it)."""
        if self._driver is not None:
            await self._driver.aclose()
            self._driver = None

    async def __aenter__(self) -> AsyncJWTVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
