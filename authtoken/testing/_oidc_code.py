"""The test provider's browser sign-in: Authlib's authorization-code grant with PKCE
(S256, required) and OpenID Connect (``OpenIDCode``), a login page, RFC 9207's ``iss``.

``OIDCProvider`` (``_oidc``) registers these on its ``AuthorizationServer`` and serves
``install_login_page``'s routes; the codes, users and knobs live on the provider.
"""

from __future__ import annotations

import html
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import jwt
from authlib.oauth2.rfc6749 import grants  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.errors import (  # type: ignore[import-untyped]
    InvalidRequestError,
    OAuth2Error,
)
from authlib.oauth2.rfc7636 import CodeChallenge  # type: ignore[import-untyped]
from authlib.oauth2.rfc9207 import IssuerParameter  # type: ignore[import-untyped]
from authlib.oidc.core import AuthorizationCodeMixin  # type: ignore[import-untyped]
from authlib.oidc.core.grants import OpenIDCode  # type: ignore[import-untyped]
from authlib.oidc.core.grants.util import create_half_hash  # type: ignore[import-untyped]
from flask import Flask, request

# The provider is ``_oidc.OIDCProvider``; typed ``Provider`` (``Any``) so that the
# provider's modules import one way only.
Provider = Any

__all__ = ["AUTH_PATH", "CodeGrant", "CodeRecord", "Issuer", "OpenIDCodeExtension",
           "S256Challenge", "install_login_page", "sign_in"]

#: The authorization endpoint, under the realm (as Keycloak spells it).
AUTH_PATH = "/protocol/openid-connect/auth"
#: How long a code may be redeemed, in seconds.
CODE_LIFETIME = 60.0


@dataclass(repr=False)
class CodeRecord(AuthorizationCodeMixin):  # type: ignore[misc]
    """One authorization code, as the provider keeps it (good for one use)."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float

    def __repr__(self) -> str:
        return f"CodeRecord(client_id={self.client_id!r})"

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """Authlib's authorization-code grant over the provider's ``codes``."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code: str, req: Any) -> None:
        provider: Provider = self.server.provider
        data = req.payload.data
        provider.codes[code] = CodeRecord(
            code=code, client_id=req.client.client_id,
            redirect_uri=req.payload.redirect_uri, scope=req.scope or "", user=req.user,
            nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=int(time.time()), expires_at=time.time() + CODE_LIFETIME)

    def query_authorization_code(self, code: str, client: Any) -> CodeRecord | None:
        provider: Provider = self.server.provider
        record = provider.codes.get(code)
        if record is None:
            if code in provider.used_codes:
                provider.reused_codes += 1
            return None
        if record.client_id != client.client_id or time.time() >= record.expires_at:
            return None
        return record  # type: ignore[no-any-return]

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        provider: Provider = self.server.provider
        provider.codes.pop(authorization_code.code, None)
        provider.used_codes.add(authorization_code.code)

    def authenticate_user(self, authorization_code: CodeRecord) -> str:
        return authorization_code.user


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE, required of every client, by S256 only (RFC 7636, as OAuth 2.1 asks)."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required: send code_challenge with "
                                      "code_challenge_method=S256")
        super().validate_code_challenge(grant, redirect_uri)


class OpenIDCodeExtension(OpenIDCode):  # type: ignore[misc]
    """OpenID Connect on the code grant: an RS256 ID token by the provider's current key,
    with ``nonce``, ``aud`` = the client id and the user's ``groups`` -- or whatever a
    test told the provider to get wrong (``id_token_claims``, ``id_token_key``)."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, req: Any) -> bool:
        return False  # each sign-in brings a fresh nonce; the client checks it

    def generate_user_info(self, user: str, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user}
        groups = self.provider.groups.get(user)
        if groups is not None:
            info["groups"] = list(groups)
        return info

    def encode_id_token(self, token: dict[str, Any], req: Any) -> str:
        provider = self.provider
        kid, key = provider.keys[-1]
        now = time.time()
        code: CodeRecord = req.authorization_code
        claims: dict[str, Any] = {
            "iss": provider.issuer, "aud": req.client.client_id,
            "azp": req.client.client_id, "iat": int(now),
            "exp": math.ceil(now + provider.lifetime), "auth_time": code.auth_time,
            **self.generate_user_info(req.user, token.get("scope", "")),
        }
        if code.nonce is not None:
            claims["nonce"] = code.nonce
        at_hash = create_half_hash(token["access_token"], "RS256")
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode("ascii")
        for name, value in provider.id_token_claims.items():  # a test's forgery
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if provider.id_token_key is not None:
            key, kid = provider.id_token_key, "forged-key"
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


class Issuer(IssuerParameter):  # type: ignore[misc]
    """RFC 9207: every authorization response names the issuer (``iss``), unless a
    test turned ``send_iss`` off or set ``callback_iss`` to another."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def get_issuer(self) -> str | None:
        if not self.provider.send_iss:
            return None
        return str(self.provider.callback_iss or self.provider.issuer)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to {realm}</title></head>
<body><main>
<h1>Sign in to {realm}</h1>
<p>{client} asks to sign you in.</p>{message}
<form method="post" action="{action}">
<p><label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required></p>
<p><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
required></p>
<p><button type="submit" name="action" value="login">Sign in</button>
<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button></p>
</form>
</main></body></html>
"""


def _page(client_id: str, message: str = "") -> str:
    action = "?" + urlencode(list(request.args.items(multi=True)))
    shown = f'\n<p role="alert">{html.escape(message)}</p>' if message else ""
    return _PAGE.format(realm="the test realm", client=html.escape(client_id),
                        message=shown, action=html.escape(action, quote=True))


def install_login_page(app: Flask, server: Any, provider: Provider, realm: str) -> None:
    """``GET {realm}/protocol/openid-connect/auth``: the login form for a valid
    authorization request; ``POST``: sign in (or cancel) and redirect with the code."""

    def headers() -> dict[str, str]:
        return {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}

    @app.route(realm + AUTH_PATH, methods=["GET", "POST"])
    def authorize() -> Any:
        with provider.lock:
            provider.counts["authorize"] += 1
        try:
            grant = server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            if error.redirect_uri:
                return server.handle_error_response(request, error)
            return (f"<!doctype html><title>Bad request</title><p>{html.escape(error.error)}: "
                    f"{html.escape(error.description or '')}</p>", 400, headers())
        client_id = grant.request.client.client_id
        if request.method == "GET":
            return _page(client_id), 200, headers()
        if request.form.get("action") == "cancel":
            return server.create_authorization_response(grant_user=None, grant=grant)
        username = request.form.get("username", "")
        expected = provider.users.get(username)
        password = request.form.get("password", "")
        if expected is None or not secrets.compare_digest(expected.encode(),
                                                          password.encode()):
            return _page(client_id, "Invalid username or password."), 401, headers()
        return server.create_authorization_response(grant_user=username, grant=grant)


def sign_in(url: str, username: str, password: str, *, cancel: bool = False,
            timeout: float = 10.0) -> dict[str, str]:
    """Play the browser: open ``url`` (an ``AuthorizationRequest.url``), fill in the login
    form and submit it (or press Cancel); the query parameters of the redirect, read from
    its ``Location`` without following it.  ``AssertionError`` when the page or the
    answer is not what a browser would expect (a wrong password: the form again, 401)."""
    with httpx.Client(timeout=timeout, follow_redirects=False) as browser:
        page = browser.get(url)
        if page.status_code in (302, 303):  # the provider refused the request outright
            return dict(parse_qsl(urlsplit(page.headers["location"]).query))
        assert page.status_code == 200, f"the login page answered {page.status_code}"
        found = re.search(r'<form method="post" action="([^"]*)"', page.text)
        assert found is not None, "the login page has no form"
        action = page.url.join(html.unescape(found.group(1)))
        form = {"username": username, "password": password,
                "action": "cancel" if cancel else "login"}
        answer = browser.post(action, data=form)
        assert answer.status_code == 302, (
            f"signing in answered {answer.status_code}, not a redirect")
        return dict(parse_qsl(urlsplit(answer.headers["location"]).query))
