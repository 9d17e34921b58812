"""The two OAuth2 grants as refresh-engine adapters (``_core.Adapter``): which flow gets
the first grant, which refreshes it, and what happens when a refresh token is refused.

- ``PasswordGrant``: discovery (once), the password grant, the refresh grant -- and the
  password grant again when the refresh token is refused or has expired;
- ``ClientCredentialsGrant``: the client credentials grant, fetched again when due
  (there is no refresh token).

``password_grant`` and ``client_credentials_grant`` check the sessions' arguments and
build them; nothing is sent before every check passed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import replace

from ..._errors import InvalidArgument, IssuerError
from .._args import optional_text, required_text
from .._core import Flow, Grant, Request, Response
from .._urls import credential_url
from ._flows import HEADER_NAME, Discovery, discovery_flow, space_flow, token_flow

__all__ = ["ClientCredentialsGrant", "PasswordGrant", "client_credentials_grant",
           "header_name", "password_grant"]

log = logging.getLogger("authtoken.issuers.oidc")


class PasswordGrant:
    """The password session's adapter: discovery, the password grant, the refresh grant,
    and the password grant again when the refresh token is refused."""

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

    def __repr__(self) -> str:
        return f"PasswordGrant(client_id={self.client_id!r})"

    def where(self) -> str:
        """The issuer, as the session's ``repr`` shows it."""
        if self.authority is not None:
            return f"authority={self.authority!r}"
        return f"space_url={self.space_url!r}"

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


class ClientCredentialsGrant:
    """The client credentials session's adapter: the grant, fetched again when due."""

    def __init__(self, *, token_url: str, client_id: str, client_secret: str,
                 scope: str | None, now: Callable[[], float]) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._now = now

    def __repr__(self) -> str:
        return f"ClientCredentialsGrant(client_id={self.client_id!r})"

    def where(self) -> str:
        """The issuer, as the session's ``repr`` shows it."""
        return f"token_url={self.token_url!r}"

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


def password_grant(*, space_url: object, authority: object, client_id: object,
                   username: object, password: object, client_secret: object,
                   scope: object, now: Callable[[], float]) -> PasswordGrant:
    """A ``PasswordGrant`` from a session's arguments (``space_url`` or ``authority`` and
    ``client_id``), each checked; ``InvalidArgument``/``ArgumentTypeError`` otherwise."""
    return PasswordGrant(
        space_url=None if space_url is None else credential_url(space_url, "space_url",
                                                                base=True),
        authority=None if authority is None else credential_url(authority, "authority",
                                                                base=True),
        client_id=None if client_id is None else required_text(client_id, "client_id",
                                                               one_line=True),
        username=required_text(username, "username"),
        password=required_text(password, "password"),
        client_secret=optional_text(client_secret, "client_secret"),
        scope=optional_text(scope, "scope", one_line=True),
        now=now,
    )


def client_credentials_grant(token_url: object, client_id: object, client_secret: object,
                             scope: object, now: Callable[[], float],
                             ) -> ClientCredentialsGrant:
    """A ``ClientCredentialsGrant`` from a session's arguments, each checked."""
    return ClientCredentialsGrant(
        token_url=credential_url(token_url, "token_url"),
        client_id=required_text(client_id, "client_id", one_line=True),
        client_secret=required_text(client_secret, "client_secret"),
        scope=optional_text(scope, "scope", one_line=True),
        now=now,
    )


def header_name(value: object) -> str:
    """The name of the header a session sends its token in (``Authorization``,
    ``bsauth``, ...)."""
    name = required_text(value, "header", one_line=True)
    if not HEADER_NAME.match(name):
        raise InvalidArgument("header must be an HTTP header name, such as 'Authorization'")
    return name
