"""The upstreams a broker links accounts at: an OIDC issuer and Spatium.

An upstream says *what to send*, as the issuer adapters' sans-IO flows (``Flow``: yields
requests, is sent responses, returns a ``Grant``); it never sends anything itself and
keeps no credential.  Each builds on the issuers' own protocol code:

- ``OIDCUpstream``: the password grant and the refresh grant of the OIDC password
  session (``issuers.oidc``'s ``PasswordGrant``: discovery, the token endpoint, RFC 6749
  answers), for an authority and client id, or for a space (``from_space``); and the
  browser's authorization-code flow (``code_client``: ``issuers.oidc``'s
  ``AuthorizationCodeClient``, asking ``openid offline_access`` and the upstream's scope);
- ``SpatiumUpstream``: Spatium's credentials factor, ``issue-by-factors`` and
  ``refresh`` (``SpatiumProtocol``).  Each link gets a ``tokenId`` of its own, derived
  from the upstream's ``token_id`` and the user, because Spatium keeps one live refresh
  token per ``tokenId``: two users (or one user and a script) sharing one would keep
  making each other's refresh tokens stale.

Arguments are checked when an upstream is made (``InvalidArgument`` or ``TypeError``,
never quoting a secret); URLs obey the issuers' https-or-loopback rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Final, Protocol

import httpx

from .._token import UserKey
from ..issuers._args import optional_text, required_text, seconds
from ..issuers._core import Flow, Grant
from ..issuers._urls import credential_url
from ..issuers.oidc import AuthorizationCodeClient
from ..issuers.oidc._grants import PasswordGrant
from ..issuers.spatium import DEFAULT_LEEWAY, PermissionTokens, SpatiumProtocol
from ..issuers.spatium._protocol import permission_names

__all__ = ["OIDCUpstream", "SpatiumUpstream", "Upstream", "link_token_id"]

#: A Spatium ``tokenId`` derived for a link: the upstream's id, then this many hex digits.
TOKEN_ID_DIGITS: Final = 32
#: What a link by the browser asks at least: an ID token, and a refresh token.
CODE_SCOPE: Final = ("openid", "offline_access")

Now = Callable[[], float]


class Upstream(Protocol):
    """What a broker asks of an upstream: flows, no I/O."""

    def password_flow(self, user: UserKey, username: str, password: str, now: Now) -> Flow:
        """The first grant of a link, by the account's username and password."""

    def refresh_flow(self, user: UserKey, grant: Grant, now: Now) -> Flow:
        """The next grant, by ``grant``'s refresh token (which may then be stale)."""


def _user_ref(user: UserKey) -> str:
    return f"i:{user}" if isinstance(user, int) else f"s:{user}"


def link_token_id(token_id: str, user: UserKey) -> str:
    """The Spatium ``tokenId`` of ``user``'s link: ``<token_id>-<32 hex digits>``, the
    digits a SHA-256 of both -- stable, different for every user, and naming no user."""
    digest = hashlib.sha256(b"authtoken upstream tokenId\x00" + token_id.encode("utf-8")
                            + b"\x00" + _user_ref(user).encode("utf-8")).hexdigest()
    return f"{token_id}-{digest[:TOKEN_ID_DIGITS]}"


class OIDCUpstream:
    """An OpenID Connect issuer: ``authority`` (its URL; the token endpoint comes from
    its discovery document) and the public ``client_id`` of the password grant, with a
    ``client_secret`` for a confidential client.  ``from_space(space_url)`` reads the
    authority and client id from a space's ``/api/.well-known/oidc`` when first used."""

    def __init__(self, authority: str, client_id: str, *,
                 client_secret: str | None = None, scope: str | None = None) -> None:
        self.authority: str | None = credential_url(authority, "authority", base=True)
        self.client_id: str | None = required_text(client_id, "client_id", one_line=True)
        self.space_url: str | None = None
        self._client_secret = optional_text(client_secret, "client_secret")
        self._scope = optional_text(scope, "scope", one_line=True)
        self._refresher: PasswordGrant | None = None

    @classmethod
    def from_space(cls, space_url: str) -> OIDCUpstream:
        """The issuer of a space (``{space_url}/api/.well-known/oidc``, read on first use)."""
        upstream = cls.__new__(cls)
        upstream.space_url = credential_url(space_url, "space_url", base=True)
        upstream.authority = upstream.client_id = None
        upstream._client_secret = upstream._scope = None
        upstream._refresher = None
        return upstream

    def __repr__(self) -> str:
        if self.space_url is not None:
            return f"OIDCUpstream.from_space({self.space_url!r})"
        return f"OIDCUpstream({self.authority!r}, {self.client_id!r})"

    def _grant(self, username: str, password: str, now: Now) -> PasswordGrant:
        return PasswordGrant(space_url=self.space_url, authority=self.authority,
                             client_id=self.client_id, username=username, password=password,
                             client_secret=self._client_secret, scope=self._scope, now=now)

    def password_flow(self, user: UserKey, username: str, password: str, now: Now) -> Flow:
        grant = self._grant(required_text(username, "username"),
                            required_text(password, "password"), now)
        return grant.first_grant()

    def code_scope(self) -> str:
        """What a link by the browser asks: ``openid offline_access`` and this upstream's
        own scope (what its other grants ask)."""
        words = list(CODE_SCOPE)
        for word in (self._scope or "").split():
            if word not in words:
                words.append(word)
        return " ".join(words)

    def code_client(self, http: httpx.Client, timeout: float,
                    now: Now) -> AuthorizationCodeClient:
        """The browser sign-in at this issuer, sending with ``http``; a space's pointer is
        read now (``IssuerError`` if that fails)."""
        if self.space_url is not None:
            return AuthorizationCodeClient.from_space(
                self.space_url, client_secret=self._client_secret, scope=self.code_scope(),
                timeout=timeout, http=http, clock=now)
        assert self.authority is not None
        assert self.client_id is not None
        return AuthorizationCodeClient(self.authority, self.client_id,
                                       client_secret=self._client_secret,
                                       scope=self.code_scope(), timeout=timeout, http=http,
                                       clock=now)

    def refresh_flow(self, user: UserKey, grant: Grant, now: Now) -> Flow:
        # One adapter keeps the discovery for every refresh; it holds no credential (its
        # password grant is never run: a refused refresh ends the link instead).
        refresher = self._refresher
        if refresher is None:
            refresher = self._refresher = self._grant("", "", now)
        return refresher.refresh_grant(grant)


class SpatiumUpstream:
    """Spatium's authorization service at ``url``, for ``permissions``.  ``token_id``
    names the application; each user's link gets its own ``tokenId`` from it
    (``link_token_id``).  ``leeway``: how long before expiry a permission token is
    refreshed (seconds or a ``timedelta``; at half its life when it lives no longer)."""

    def __init__(self, url: str, token_id: str, permissions: Iterable[str], *,
                 leeway: float | timedelta = DEFAULT_LEEWAY) -> None:
        self.protocol = SpatiumProtocol(url)
        self.token_id = required_text(token_id, "token_id", one_line=True)
        self.permissions = tuple(permission_names(permissions))
        self.leeway = seconds(leeway, "leeway")

    def __repr__(self) -> str:
        return (f"SpatiumUpstream({self.protocol.base_url!r}, {self.token_id!r}, "
                f"{list(self.permissions)!r})")

    def _grant(self, tokens: PermissionTokens, now: Now) -> Grant:
        # As Spatium's sessions do: refresh ``leeway`` early, or at half the life of a
        # token that lives no longer than that.
        expires_at = tokens.permission_expires_at.timestamp()
        remaining = max(0.0, expires_at - now())
        lead = self.leeway if self.leeway < remaining else remaining / 2
        return Grant(access_token=tokens.permission_token, expires_at=expires_at,
                     refresh_at=expires_at - lead, refresh_token=tokens.refresh_token,
                     refresh_expires_at=tokens.refresh_expires_at.timestamp())

    def password_flow(self, user: UserKey, username: str, password: str, now: Now) -> Flow:
        factor = yield from self.protocol.security_factor_credentials(username, password)
        tokens = yield from self.protocol.issue_by_factors(
            link_token_id(self.token_id, user), self.permissions, [factor])
        return self._grant(tokens, now)

    def refresh_flow(self, user: UserKey, grant: Grant, now: Now) -> Flow:
        assert grant.refresh_token is not None
        tokens = yield from self.protocol.refresh(grant.refresh_token)
        return self._grant(tokens, now)
