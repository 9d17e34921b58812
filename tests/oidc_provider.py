"""A real OAuth2 / OpenID Connect provider for the tests, on 127.0.0.1.

Built on Authlib's server side (``AuthorizationServer`` with the password, refresh
token -- rotating: a used refresh token is revoked -- and client credentials grants) and
Flask, served by werkzeug in a daemon thread.  It plays every party of seeds 003/004:

- a Keycloak-like realm at ``{url}/realms/test``: ``/.well-known/openid-configuration``,
  ``/protocol/openid-connect/token``, ``/protocol/openid-connect/certs`` (the JWKS);
  access tokens are RS256 JWTs signed with the current key (``rotate_key`` adds one);
- a space at ``{url}/space``: ``/api/.well-known/oidc`` and the protected
  ``/api/lessons/<id>`` (Bearer JWT, checked with the provider's own keys);
- a Brainysoft-like core: ``POST {url}/oauth/token`` (``token_type: bsauth``) and
  ``GET {url}/bs-core/utils/session/whoami`` (``bsauth: <token>``).

Knobs for the tests: ``lifetime`` (``expires_in`` seconds), ``refresh_lifetime``,
``send_refresh_expires_in``, ``token_delay``, ``fail_token_requests(n)`` (the next n
token requests answer 503), ``refuse_refresh``, ``reject_api(n)`` (the next n API calls
answer 401 whatever the token), ``stop()``.  ``counts`` tallies requests per grant type
and per endpoint; ``reused_refresh_tokens`` counts refresh tokens presented again after
use.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

REALM = "/realms/test"
AUDIENCE = "lessons"
PUBLIC_CLIENT = "space"
SERVICE_CLIENT = "brainy-service"

_KEYS: list[rsa.RSAPrivateKey] = []
_KEYS_LOCK = threading.Lock()


def rsa_key(index: int) -> rsa.RSAPrivateKey:
    """The ``index``-th RSA key of a pool shared by all tests (key generation is slow)."""
    with _KEYS_LOCK:
        while len(_KEYS) <= index:
            _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _KEYS[index]


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str | None
    grant_types: tuple[str, ...]
    scope: str = "openid"
    token_type: str = "Bearer"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or self.scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class RefreshRecord(TokenMixin):  # type: ignore[misc]
    refresh_token: str
    client_id: str
    user: str
    scope: str
    expires_at: float
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Any:
        return None


class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic", "client_secret_post", "none"]

    def authenticate_user(self, username: str, password: str) -> str:
        provider: Provider = self.server.provider
        expected = provider.users.get(username)
        if expected is None or not secrets.compare_digest(expected, password):
            raise InvalidGrantError("Invalid user credentials")
        return username


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        provider: Provider = self.server.provider
        record = provider.refresh_tokens.get(refresh_token)
        if record is not None and record.revoked:
            provider.reused_refresh_tokens += 1
        if provider.refuse_refresh or record is None or record.revoked or record.is_expired():
            return None
        return record

    def authenticate_user(self, refresh_token: RefreshRecord) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        refresh_token.revoked = True  # rotation: a refresh token is good for one use


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]


class _Generator(BearerTokenGenerator):  # type: ignore[misc]
    """Authlib's bearer generator plus the seed's extras (``bsauth``, ``sessid``,
    Keycloak's ``refresh_expires_in``)."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider._access_token, provider._refresh_token,
                         lambda client, grant_type: provider.lifetime)
        self.provider = provider

    def generate(self, grant_type: str, client: Client, user: Any = None,
                 scope: str | None = None, expires_in: int | None = None,
                 include_refresh_token: bool = True) -> dict[str, Any]:
        token: dict[str, Any] = super().generate(
            grant_type, client, user, scope, expires_in, include_refresh_token)
        if client.token_type != "Bearer":
            token["token_type"] = client.token_type
            token["sessid"] = str(secrets.randbelow(10**7))
        if "refresh_token" in token and self.provider.send_refresh_expires_in:
            token["refresh_expires_in"] = self.provider.refresh_lifetime
        return token


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class Provider:
    """The provider's state and knobs; ``start()`` serves it on 127.0.0.1."""

    password: str = "alice-password"
    client_secret: str = "service-secret"
    lifetime: float = 60.0
    refresh_lifetime: float = 3600.0
    send_refresh_expires_in: bool = False
    token_delay: float = 0.0
    refuse_refresh: bool = False
    users: dict[str, str] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshRecord] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    api_statuses: list[int] = field(default_factory=list)
    reused_refresh_tokens: int = 0

    def __post_init__(self) -> None:
        self.users["alice"] = self.password
        self.clients[PUBLIC_CLIENT] = Client(PUBLIC_CLIENT, None, ("password", "refresh_token"))
        self.clients[SERVICE_CLIENT] = Client(
            SERVICE_CLIENT, self.client_secret, ("client_credentials",),
            scope="core_basic admin:read", token_type="bsauth")
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = [("key-0", rsa_key(0))]
        self._lock = threading.Lock()
        self._fail_token = 0
        self._fail_status = 503
        self._fail_grant: str | None = None
        self._reject_api = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = self._make_app()

    # -- addresses ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.url + REALM

    @property
    def token_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/token"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/protocol/openid-connect/certs"

    @property
    def space_url(self) -> str:
        return self.url + "/space"

    @property
    def bs_token_url(self) -> str:
        return self.url + "/oauth/token"

    @property
    def whoami_url(self) -> str:
        return self.url + "/bs-core/utils/session/whoami"

    # -- knobs --------------------------------------------------------------------------
    def fail_token_requests(self, n: int, status: int = 503,
                            grant_type: str | None = None) -> None:
        """The next ``n`` token requests (of ``grant_type``, if given) answer ``status``."""
        with self._lock:
            self._fail_token = n
            self._fail_status = status
            self._fail_grant = grant_type

    def reject_api(self, n: int) -> None:
        """The next ``n`` protected API calls answer 401 whatever token they carry."""
        with self._lock:
            self._reject_api = n

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Sign from now on with a new key (new ``kid``); the JWKS lists it (and the old)."""
        with self._lock:
            kid = f"key-{len(self.keys)}"
            new = (kid, rsa_key(len(self.keys)))
            self.keys = [*self.keys, new] if keep_old else [new]
            return kid

    def token_requests(self) -> int:
        return sum(self.counts[g] for g in ("password", "refresh_token", "client_credentials"))

    # -- tokens -------------------------------------------------------------------------
    def mint(self, claims: dict[str, Any] | None = None, *, key: Any = None,
             kid: str | None = "", algorithm: str = "RS256",
             lifetime: float | None = None) -> str:
        """A JWT like the ones the provider issues, with ``claims`` overriding.

        ``key``/``kid`` default to the current signing key; ``kid=None`` leaves it out.
        """
        current_kid, current_key = self.keys[-1]
        now = time.time()
        payload: dict[str, Any] = {
            "iss": self.issuer, "sub": "alice", "aud": AUDIENCE, "azp": PUBLIC_CLIENT,
            # NumericDates are integers (PyJWT truncates them): round exp up, never down.
            "iat": int(now),
            "exp": math.ceil(now + (self.lifetime if lifetime is None else lifetime)),
            "jti": secrets.token_hex(8), "typ": "Bearer",
        }
        payload.update(claims or {})
        headers = {} if kid is None else {"kid": current_kid if kid == "" else kid}
        return jwt.encode(payload, current_key if key is None else key,
                          algorithm=algorithm, headers=headers)

    def _access_token(self, client: Client, grant_type: str, user: Any, scope: str,
                      ) -> str:
        return self.mint({"sub": user or client.client_id, "azp": client.client_id,
                          "scope": scope, "client_id": client.client_id})

    def _refresh_token(self, client: Client, grant_type: str, user: Any, scope: str,
                       ) -> str:
        return secrets.token_urlsafe(32)

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        refresh = token.get("refresh_token")
        if refresh:
            self.refresh_tokens[refresh] = RefreshRecord(
                refresh, req.client.client_id, req.user, token.get("scope", ""),
                time.time() + self.refresh_lifetime)

    def check(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this provider issued and that is still valid."""
        keys = dict(self.keys)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            claims: dict[str, Any] = jwt.decode(
                token, keys[kid].public_key(), algorithms=["RS256"], issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp"]})
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return None
        return claims

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    # -- the application ----------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask(__name__)
        server = AuthorizationServer(app, query_client=self.clients.get,
                                     save_token=self._save_token)
        server.provider = self
        server.register_token_generator("default", _Generator(self))
        server.register_grant(PasswordGrant)
        server.register_grant(RefreshGrant)
        server.register_grant(ClientCredentialsGrant)

        @app.after_request
        def close_connection(response: Any) -> Any:
            # No keep-alive: a stopped provider must refuse at once, even to pooled clients.
            response.headers["Connection"] = "close"
            return response

        @app.post(REALM + "/protocol/openid-connect/token")
        @app.post("/oauth/token")
        def token() -> Any:
            grant_type = request.form.get("grant_type", "")
            with self._lock:
                self.counts[grant_type] += 1
            if self.token_delay:
                time.sleep(self.token_delay)
            with self._lock:
                if self._fail_token > 0 and self._fail_grant in (None, grant_type):
                    self._fail_token -= 1
                    return jsonify(error="temporarily_unavailable"), self._fail_status
                return server.create_token_response()

        @app.get(REALM + "/.well-known/openid-configuration")
        def openid_configuration() -> Any:
            self.counts["discovery"] += 1
            return jsonify(issuer=self.issuer, token_endpoint=self.token_url,
                           jwks_uri=self.jwks_uri,
                           grant_types_supported=["password", "refresh_token",
                                                  "client_credentials"])

        @app.get(REALM + "/protocol/openid-connect/certs")
        def certs() -> Any:
            with self._lock:
                self.counts["jwks"] += 1
                return jsonify(self.jwks())

        @app.get("/space/api/.well-known/oidc")
        def space_oidc() -> Any:
            self.counts["space"] += 1
            return jsonify(data={"authority": self.issuer, "client_id": PUBLIC_CLIENT})

        @app.get("/space/api/lessons/<int:lesson>")
        def lesson(lesson: int) -> Any:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            with self._lock:
                rejected = self._reject_api > 0
                self._reject_api -= rejected
            claims = None if rejected or scheme != "Bearer" else self.check(value)
            status = 401 if claims is None else 200
            with self._lock:
                self.api_statuses.append(status)
            if claims is None:
                return (jsonify(message="Unauthenticated."), 401,
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return jsonify(data={"id": lesson, "space_id": 1, "name": "Урок",
                                 "user": claims["sub"]})

        @app.get("/bs-core/utils/session/whoami")
        def whoami() -> Any:
            self.counts["whoami"] += 1
            claims = self.check(request.headers.get("bsauth", ""))
            if claims is None:
                return jsonify(status="error", code="INVALID_SESSION"), 401
            return jsonify(timestamp=int(time.time() * 1000), status="ok", data={
                "userId": 123, "branchId": 101301, "subdivisionId": 101791,
                "legalEntityId": 102071, "accessRightId": 102036,
                "customerKey": claims["sub"]})

        return app

    # -- serving ------------------------------------------------------------------------
    def start(self) -> Provider:
        server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                             request_handler=_QuietHandler)
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        daemon=True, name="oidc-provider")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: from now on connections to ``url`` are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
