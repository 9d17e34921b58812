"""A real OAuth2 / OpenID Connect provider on 127.0.0.1, for tests.

Built on Authlib's server side (``AuthorizationServer`` with the password, refresh
token -- rotating: a used refresh token is revoked -- client credentials and
authorization-code grants; the last with PKCE required, S256 only, and OpenID Connect's
ID token) and Flask, served by werkzeug in a daemon thread.  It plays every party the
OIDC adapters meet:

- a Keycloak-like realm at ``{url}/realms/test`` (``issuer``):
  ``/.well-known/openid-configuration``, ``/protocol/openid-connect/token``
  (``token_url``), ``/protocol/openid-connect/certs`` (``jwks_uri``),
  ``/protocol/openid-connect/auth`` (``authorization_url``: a login form, labelled
  "Username", "Password", "Sign in" and "Cancel"; signing in redirects to the
  ``redirect_uri`` with ``code``, ``state`` and ``iss``, cancelling with
  ``error=access_denied``); access tokens and ID tokens are RS256 JWTs signed with the
  current key (``rotate_key`` adds one); an ID token has ``nonce``, ``aud`` = the client
  id and the user's ``groups`` when ``groups`` names some;
- a space at ``{url}/space`` (``space_url``): ``/api/.well-known/oidc`` and the
  protected ``/api/lessons/<id>`` (Bearer JWT, checked with the provider's own keys);
- a Brainysoft-like core: ``POST {url}/oauth/token`` (``bs_token_url``, ``token_type:
  bsauth``) and ``GET {url}/bs-core/utils/session/whoami`` (``whoami_url``, header
  ``bsauth: <token>``).

One user (``username``/``password``, "alice" by default; ``users`` maps more usernames to
passwords) and two clients: the public ``PUBLIC_CLIENT`` (password, refresh and
authorization-code grants, no secret) and the confidential ``SERVICE_CLIENT`` (client
credentials, secret ``client_secret``); ``register_client`` adds one.  A code goes only
to a redirect URI allowed for every client: ``redirect_uris`` or ``allow_redirect(uri)``.

Knobs for tests: ``lifetime`` (``expires_in`` seconds), ``refresh_lifetime``,
``send_refresh_expires_in``, ``token_delay``, ``fail_token_requests(n)`` (the next n
token requests answer 503, or any status and body), ``refuse_refresh``,
``space_authority`` (the authority the space names instead of the realm),
``discovery_overrides`` (fields the discovery document says instead of the true ones),
``reject_api(n)`` (the next n API calls answer 401 whatever the token), ``groups`` (user ->
group names, into the ID token), and a misbehaving ID token: ``id_token_claims`` (claims
that replace the true ones, ``None`` removes one: a wrong ``nonce``, ``aud``...) and
``id_token_key`` (sign with this key instead), ``send_iss``/``callback_iss`` (the
callback's RFC 9207 ``iss``: left out, or another), ``stop()``.  ``sign_in(url)`` plays
the browser at an authorization request's URL (fills in the form; ``cancel=True``
presses Cancel) and returns the redirect's query parameters.
``counts`` tallies requests per grant type and per endpoint; ``token_requests()`` sums
the grants; ``reused_refresh_tokens`` counts refresh tokens presented again after use,
``reused_codes`` authorization codes;
``api_statuses`` lists the lesson API's answers.  The provider runs on real time
(``time.time``): pass a ``FakeClock`` to the session under test, not to the provider.

The clients, refresh tokens and token-endpoint grants are in ``_oidc_grants``; the
browser sign-in (the code grant, its ID token, the login page) in ``_oidc_code``.

Needs the ``testing`` extra: ``pip install "authtoken[testing]"``.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Final

try:
    import jwt
    from authlib.integrations.flask_oauth2 import (  # type: ignore[import-untyped]
        AuthorizationServer,
    )
    from cryptography.hazmat.primitives.asymmetric import rsa
    from flask import Flask, jsonify, request
    from werkzeug.serving import BaseWSGIServer, make_server

    from ._oidc_code import (
        AUTH_PATH,
        CodeGrant,
        CodeRecord,
        Issuer,
        OpenIDCodeExtension,
        S256Challenge,
        install_login_page,
        sign_in,
    )
    from ._oidc_grants import (
        Client,
        ClientCredentialsGrant,
        PasswordGrant,
        QuietHandler,
        RefreshGrant,
        RefreshRecord,
        TokenGenerator,
        rsa_key,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "authtoken.testing.OIDCProvider needs Authlib, Flask and PyJWT[crypto]: "
        'pip install "authtoken[testing]"'
    ) from exc

__all__ = ["AUDIENCE", "PUBLIC_CLIENT", "REALM", "SERVICE_CLIENT", "OIDCProvider", "rsa_key"]

#: The realm's path under the provider's URL.
REALM: Final = "/realms/test"
#: The ``aud`` of the access tokens.
AUDIENCE: Final = "lessons"
#: The space's public client: password and refresh grants, no secret.
PUBLIC_CLIENT: Final = "space"
#: The service's confidential client: client credentials, ``token_type: bsauth``.
SERVICE_CLIENT: Final = "brainy-service"

@dataclass(repr=False, eq=False)
class OIDCProvider:
    """An OAuth2 / OIDC provider, a space and a Brainysoft-like core on 127.0.0.1.

    ``start()`` (or ``with``) serves it in a daemon thread on a free port; ``stop()``
    makes connections to ``url`` fail at once (every answer says ``Connection: close``,
    so pooled clients notice too)::

        with OIDCProvider(lifetime=2) as provider:
            session = OIDCPasswordSession.from_space(provider.space_url, "alice",
                                                     provider.password)

    ``private_key`` is the first signing key (by default one of a pool shared by the
    process, as generating RSA keys is slow).
    """

    PUBLIC_CLIENT: ClassVar[str] = PUBLIC_CLIENT
    SERVICE_CLIENT: ClassVar[str] = SERVICE_CLIENT
    AUDIENCE: ClassVar[str] = AUDIENCE

    password: str = field(default="alice-password")
    client_secret: str = field(default="service-secret")
    lifetime: float = 60.0
    refresh_lifetime: float = 3600.0
    send_refresh_expires_in: bool = False
    token_delay: float = 0.0
    refuse_refresh: bool = False
    space_authority: str | None = None
    discovery_overrides: dict[str, Any] = field(default_factory=dict)
    username: str = "alice"
    private_key: rsa.RSAPrivateKey | None = None
    users: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    redirect_uris: set[str] = field(default_factory=set)
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    id_token_key: rsa.RSAPrivateKey | None = None
    send_iss: bool = True
    callback_iss: str | None = None
    clients: dict[str, Client] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshRecord] = field(default_factory=dict)
    codes: dict[str, CodeRecord] = field(default_factory=dict)
    used_codes: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    api_statuses: list[int] = field(default_factory=list)
    reused_refresh_tokens: int = 0
    reused_codes: int = 0

    def __post_init__(self) -> None:
        self.users[self.username] = self.password
        self.clients[PUBLIC_CLIENT] = Client(
            PUBLIC_CLIENT, None, ("password", "refresh_token", "authorization_code"),
            redirect_uris=self.redirect_uris)
        self.clients[SERVICE_CLIENT] = Client(
            SERVICE_CLIENT, self.client_secret, ("client_credentials",),
            scope="core_basic admin:read", token_type="bsauth")  # noqa: S106 - a scheme
        first = self.private_key if self.private_key is not None else rsa_key(0)
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = [("key-0", first)]
        self.lock = threading.Lock()
        self._fail_token = 0
        self._fail_status = 503
        self._fail_grant: str | None = None
        self._fail_body: bytes | None = None
        self._reject_api = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = self._make_app()

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"OIDCProvider({state})"

    # -- addresses ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; ``RuntimeError`` before the first ``start()``."""
        if not self.port:
            raise RuntimeError("the provider has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        """The realm: the ``authority`` for ``OIDCPasswordSession`` and the ``iss``."""
        return self.url + REALM

    @property
    def token_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/token"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/protocol/openid-connect/certs"

    @property
    def authorization_url(self) -> str:
        """The authorization endpoint: the login form of the browser sign-in."""
        return self.issuer + AUTH_PATH

    @property
    def space_url(self) -> str:
        """The space: ``OIDCPasswordSession.from_space(space_url, ...)``."""
        return self.url + "/space"

    @property
    def bs_token_url(self) -> str:
        """The core's token endpoint, for ``ClientCredentialsSession(header="bsauth")``."""
        return self.url + "/oauth/token"

    @property
    def whoami_url(self) -> str:
        return self.url + "/bs-core/utils/session/whoami"

    # -- knobs --------------------------------------------------------------------------
    def fail_token_requests(self, n: int, status: int = 503,
                            grant_type: str | None = None, body: bytes | None = None) -> None:
        """The next ``n`` token requests (of ``grant_type``, if given) answer ``status``,
        with ``body`` (e.g. an HTML page with status 200) or an OAuth2 error; they are not
        processed."""
        with self.lock:
            self._fail_token = n
            self._fail_status = status
            self._fail_grant = grant_type
            self._fail_body = body

    def allow_redirect(self, uri: str) -> None:
        """Let every client's codes go to ``uri`` (compared exactly)."""
        with self.lock:
            self.redirect_uris.add(uri)

    def register_client(self, client_id: str, client_secret: str | None = None, *,
                        grant_types: tuple[str, ...] = ("authorization_code",
                                                        "refresh_token")) -> None:
        """Add a client (confidential when it has a secret) that may use ``grant_types``
        and the redirect URIs ``allow_redirect`` allows."""
        with self.lock:
            self.clients[client_id] = Client(client_id, client_secret, grant_types,
                                              redirect_uris=self.redirect_uris)

    def sign_in(self, url: str, username: str | None = None, password: str | None = None,
                *, cancel: bool = False) -> dict[str, str]:
        """Play the browser at ``url`` (an authorization request's): GET the login form,
        POST it (or Cancel); the redirect's query parameters (``code``, ``state``,
        ``iss``, or ``error``), its redirect URI never visited.  ``username``/``password``
        default to the provider's own user."""
        return sign_in(url, self.username if username is None else username,
                       self.password if password is None else password, cancel=cancel)

    def reject_api(self, n: int) -> None:
        """The next ``n`` protected API calls answer 401 whatever token they carry."""
        with self.lock:
            self._reject_api = n

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Sign from now on with a new key (new ``kid``); the JWKS lists it (and the old)."""
        with self.lock:
            kid = f"key-{len(self.keys)}"
            new = (kid, rsa_key(len(self.keys)))
            self.keys = [*self.keys, new] if keep_old else [new]
            return kid

    def token_requests(self) -> int:
        """How many grant requests (password, refresh, client credentials) arrived."""
        return sum(self.counts[g] for g in ("password", "refresh_token", "client_credentials",
                                            "authorization_code"))

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
            "iss": self.issuer, "sub": self.username, "aud": AUDIENCE, "azp": PUBLIC_CLIENT,
            # NumericDates are integers (PyJWT truncates them): round exp up, never down.
            "iat": int(now),
            "exp": math.ceil(now + (self.lifetime if lifetime is None else lifetime)),
            "jti": secrets.token_hex(8), "typ": "Bearer",
        }
        payload.update(claims or {})
        headers = {} if kid is None else {"kid": current_kid if kid == "" else kid}
        return jwt.encode(payload, current_key if key is None else key,
                          algorithm=algorithm, headers=headers)

    def access_token_for(self, client: Client, grant_type: str, user: Any, scope: str,
                      ) -> str:
        return self.mint({"sub": user or client.client_id, "azp": client.client_id,
                          "scope": scope, "client_id": client.client_id})

    def refresh_token_for(self, client: Client, grant_type: str, user: Any, scope: str,
                       ) -> str:
        return secrets.token_urlsafe(32)

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        refresh = token.get("refresh_token")
        if refresh:
            self.refresh_tokens[refresh] = RefreshRecord(
                refresh, req.client.client_id, req.user, token.get("scope", ""),
                time.time() + self.refresh_lifetime)

    def check(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this provider issued and that is still valid, else ``None``."""
        keys = dict(self.keys)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            claims: dict[str, Any] = jwt.decode(
                token, keys[str(kid)].public_key(), algorithms=["RS256"], issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp"]})
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return None
        return claims

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWKS document."""
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
        server.register_token_generator("default", TokenGenerator(self))
        server.register_grant(PasswordGrant)
        server.register_grant(RefreshGrant)
        server.register_grant(ClientCredentialsGrant)
        server.register_grant(CodeGrant, [S256Challenge(required=True),
                                          OpenIDCodeExtension(self)])
        server.register_extension(Issuer(self))
        install_login_page(app, server, self, REALM)

        @app.after_request
        def close_connection(response: Any) -> Any:
            # No keep-alive: a stopped provider must refuse at once, even to pooled clients.
            response.headers["Connection"] = "close"
            return response

        @app.post(REALM + "/protocol/openid-connect/token")
        @app.post("/oauth/token")
        def token() -> Any:
            grant_type = request.form.get("grant_type", "")
            with self.lock:
                self.counts[grant_type] += 1
            if self.token_delay:
                time.sleep(self.token_delay)
            with self.lock:
                if self._fail_token > 0 and self._fail_grant in (None, grant_type):
                    self._fail_token -= 1
                    if self._fail_body is not None:
                        return self._fail_body, self._fail_status, {
                            "Content-Type": "text/html"}
                    return jsonify(error="temporarily_unavailable"), self._fail_status
                return server.create_token_response()

        @app.get(REALM + "/.well-known/openid-configuration")
        def openid_configuration() -> Any:
            with self.lock:
                self.counts["discovery"] += 1
            document: dict[str, Any] = {
                "issuer": self.issuer, "token_endpoint": self.token_url,
                "jwks_uri": self.jwks_uri, "authorization_endpoint": self.authorization_url,
                "grant_types_supported": ["password", "refresh_token", "client_credentials",
                                          "authorization_code"],
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "authorization_response_iss_parameter_supported": True}
            document.update(self.discovery_overrides)
            return jsonify(document)

        @app.get(REALM + "/protocol/openid-connect/certs")
        def certs() -> Any:
            with self.lock:
                self.counts["jwks"] += 1
                return jsonify(self.jwks())

        @app.get("/space/api/.well-known/oidc")
        def space_oidc() -> Any:
            with self.lock:
                self.counts["space"] += 1
            authority = self.space_authority or self.issuer
            return jsonify(data={"authority": authority, "client_id": PUBLIC_CLIENT})

        @app.get("/space/api/lessons/<int:lesson>")
        def lesson(lesson: int) -> Any:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            with self.lock:
                rejected = self._reject_api > 0
                self._reject_api -= rejected
            claims = None if rejected or scheme != "Bearer" else self.check(value)
            status = 401 if claims is None else 200
            with self.lock:
                self.api_statuses.append(status)
            if claims is None:
                return (jsonify(message="Unauthenticated."), 401,
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return jsonify(data={"id": lesson, "space_id": 1, "name": "Урок",
                                 "user": claims["sub"]})

        @app.get("/bs-core/utils/session/whoami")
        def whoami() -> Any:
            with self.lock:
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
    def start(self) -> OIDCProvider:
        """Serve on 127.0.0.1 (the same port as before after a ``stop``); returns self."""
        if self._server is not None:
            return self
        server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                             request_handler=QuietHandler)
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        daemon=True, name=f"oidc-provider-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: from now on connections to ``url`` are refused; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
