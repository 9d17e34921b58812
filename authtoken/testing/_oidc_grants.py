"""The test provider's clients, refresh tokens and token-endpoint grants (Authlib's
password, refresh token -- rotating -- and client credentials grants), and the RSA key
pool: what ``OIDCProvider`` (``_oidc``) registers on its ``AuthorizationServer``.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    ClientMixin,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.errors import InvalidGrantError  # type: ignore[import-untyped]
from authlib.oauth2.rfc6750 import BearerTokenGenerator  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import WSGIRequestHandler

# The provider is ``_oidc.OIDCProvider``; typed ``Provider`` (``Any``) so that the
# provider's modules import one way only.
Provider = Any

__all__ = ["Client", "ClientCredentialsGrant", "PasswordGrant", "QuietHandler", "RefreshGrant",
           "RefreshRecord", "TokenGenerator", "rsa_key"]

_KEYS: list[rsa.RSAPrivateKey] = []
_KEYS_LOCK = threading.Lock()


def rsa_key(index: int) -> rsa.RSAPrivateKey:
    """The ``index``-th RSA key of a pool shared by the whole process (making one is slow)."""
    with _KEYS_LOCK:
        while len(_KEYS) <= index:
            _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _KEYS[index]


@dataclass(repr=False)
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str | None
    grant_types: tuple[str, ...]
    scope: str = "openid"
    token_type: str = "Bearer"  # noqa: S105 - a scheme name
    redirect_uris: set[str] = field(default_factory=set)

    def __repr__(self) -> str:
        return f"Client({self.client_id!r})"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or self.scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(repr=False)
class RefreshRecord(TokenMixin):  # type: ignore[misc]
    refresh_token: str
    client_id: str
    user: str
    scope: str
    expires_at: float
    revoked: bool = False

    def __repr__(self) -> str:
        return f"RefreshRecord(client_id={self.client_id!r}, revoked={self.revoked})"

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
        return record  # type: ignore[no-any-return]

    def authenticate_user(self, refresh_token: RefreshRecord) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        refresh_token.revoked = True  # rotation: a refresh token is good for one use


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]


class TokenGenerator(BearerTokenGenerator):  # type: ignore[misc]
    """Authlib's bearer generator plus a Brainysoft-like core's extras (``bsauth``, ``sessid``,
    Keycloak's ``refresh_expires_in``)."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider.access_token_for, provider.refresh_token_for,
                         lambda client, grant_type: provider.lifetime)
        self.provider = provider

    def generate(self, grant_type: str, client: Client, user: Any = None,
                 scope: str | None = None, expires_in: int | None = None,
                 include_refresh_token: bool = True) -> dict[str, Any]:
        token: dict[str, Any] = super().generate(
            grant_type, client, user, scope, expires_in, include_refresh_token)
        if client.token_type != "Bearer":  # noqa: S105 - a scheme name
            token["token_type"] = client.token_type
            token["sessid"] = str(secrets.randbelow(10**7))
        if "refresh_token" in token and self.provider.send_refresh_expires_in:
            token["refresh_expires_in"] = self.provider.refresh_lifetime
        return token


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # quiet: tests read ``counts`` and ``api_statuses`` instead


