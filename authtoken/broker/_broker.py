"""``Broker``: a job reaches an upstream as its user, with neither password nor refresh token.

The owner links an account once (``link_password``, ``link_refresh_token``, or from a
browser for an OIDC upstream: ``begin_link`` then ``finish_link``); the broker
keeps its tokens in the engine's repository, sealed (``authtoken._sealing``).  A session
that logged in by a token holding ``upstream:<name>`` then asks for an access token
(``access_token``, ``auth``): the stored one while it is fresh (one read by key of the
session's token, one read of the link, one decryption: no network), else one refresh
for the link across every process (``_lease``).  Every access token given out, and
every refusal of one, is an ``upstream`` event on the audit trail.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import httpx

from .._errors import (
    ArgumentTypeError,
    AuthTokenError,
    InvalidArgument,
    IssuerError,
    PermissionDenied,
    SessionExpired,
    SessionNotEstablished,
    TokenExpired,
    TokenRevoked,
)
from .._expiry import from_micros, to_micros
from .._repository import UpstreamLink, UpstreamLinks
from .._sealing import PURPOSE, Sealer, Unsealable
from .._security import Security
from .._session import Session
from .._token import Principal, UserKey, check_user
from ..issuers._args import DEFAULT_TIMEOUT, required_text
from ..issuers._core import Flow, Grant, Refresher, guarded
from ..issuers._shell import SyncDriver
from ..issuers.oidc import AuthorizationCodeClient, AuthorizationRequest
from ._auth import BrokerAuth
from ._lease import POLL, grant_times, serves
from ._upstreams import OIDCUpstream, SpatiumUpstream, Upstream

__all__ = ["LINK_NAME", "Broker"]

log = logging.getLogger("authtoken.broker")

#: What a link name may be: it is also the scope ``upstream:<name>``.
LINK_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_RELINK: Final = ("link the account again (link_password, link_refresh_token, or "
                  "begin_link and finish_link from a browser)")


def _name(name: object) -> str:
    if not isinstance(name, str):
        raise ArgumentTypeError(f"a link name is a str, not {type(name).__name__}")
    if not LINK_NAME.match(name):
        raise InvalidArgument("a link name is 1 to 64 letters, digits, '_', '.' or '-', "
                              "starting with a letter or digit")
    return name


class Broker:
    """Upstream accounts linked once by their owners, used by jobs as those owners.

    ``Broker(security, upstreams)``: ``upstreams`` maps each link name (also the scope
    ``upstream:<name>`` a session needs) to an ``OIDCUpstream`` or ``SpatiumUpstream``.
    The engine's repository must keep upstream links (memory, SQLite and PostgreSQL
    do).  ``timeout``: seconds per request to an upstream; ``lease``: how long a refresh
    may hold a link (default ``4 * timeout + 5``); ``wait``: how long a caller waits for
    another process's refresh before ``IssuerError`` (default ``lease + 1``).
    """

    def __init__(self, security: Security, upstreams: Mapping[str, Upstream], *,
                 timeout: float = DEFAULT_TIMEOUT, lease: float | None = None,
                 wait: float | None = None, client: httpx.Client | None = None) -> None:
        if not isinstance(security, Security):
            raise ArgumentTypeError(f"security must be a Security, not {type(security).__name__}")
        repository = security.repository
        if not isinstance(repository, UpstreamLinks):
            raise InvalidArgument(f"{type(repository).__name__} cannot keep upstream links: "
                                  "use memory://, SQLite or PostgreSQL")
        if not isinstance(upstreams, Mapping):
            raise ArgumentTypeError("upstreams maps link names to OIDCUpstream or "
                                    "SpatiumUpstream")
        self._upstreams: dict[str, Upstream] = {}
        for name, upstream in upstreams.items():
            if not isinstance(upstream, (OIDCUpstream, SpatiumUpstream)):
                raise ArgumentTypeError(f"upstream {name!r} is a {type(upstream).__name__}, "
                                        "not an OIDCUpstream or SpatiumUpstream")
            self._upstreams[_name(name)] = upstream
        self._security = security
        self._links: UpstreamLinks = repository
        self._driver = SyncDriver(client, timeout)
        self._lease = 4 * self._driver.timeout + 5 if lease is None else float(lease)
        self._wait = self._lease + 1 if wait is None else float(wait)
        if not (self._lease > 0 and self._wait >= 0):
            raise InvalidArgument("lease must be more than 0 seconds and wait at least 0")
        self._sealer = Sealer(security.derive_keys(PURPOSE))
        self._holder = f"{secrets.token_hex(8)}"
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._memory: dict[tuple[str, str], _Memory] = {}
        self._code_clients: dict[str, AuthorizationCodeClient] = {}

    def __repr__(self) -> str:
        return f"Broker(upstreams={sorted(self._upstreams)!r})"

    @property
    def upstreams(self) -> Mapping[str, Upstream]:
        """The upstreams by link name, read-only (an ``OIDCUpstream`` can be linked from a
        browser, a ``SpatiumUpstream`` by credentials only)."""
        return MappingProxyType(self._upstreams)

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client the broker made (not one passed in)."""
        self._driver.close()

    # -- the clock -------------------------------------------------------------------------
    def _now_us(self) -> int:
        return to_micros(self._security.now())

    def _now(self) -> float:
        return self._security.now().timestamp()

    # -- linking ---------------------------------------------------------------------------
    def _upstream(self, name: object) -> Upstream:
        name = _name(name)
        upstream = self._upstreams.get(name)
        if upstream is None:
            raise InvalidArgument(f"no upstream is named {name!r} here; known: "
                                  f"{', '.join(sorted(self._upstreams)) or 'none'}")
        return upstream

    def link_password(self, user: UserKey, name: str, username: str, password: str) -> None:
        """Link ``user``'s account at upstream ``name`` by its username and password (the
        OIDC password grant, or Spatium's credentials factor): used once, never stored.
        Linking again replaces the link and heals ``needs_relink``.  ``IssuerError`` when
        the upstream refuses or cannot be reached; the link is then left as it was."""
        upstream, user = self._upstream(name), check_user(user)
        username = required_text(username, "username")
        password = required_text(password, "password")
        grant = self._driver.run(guarded(upstream.password_flow(user, username, password,
                                                                self._now)))
        self._store(user, name, grant)

    def link_refresh_token(self, user: UserKey, name: str, refresh_token: str) -> None:
        """Link ``user``'s account by a refresh token the owner obtained (it is used at
        once, and rotated when the upstream rotates).  ``IssuerError`` when refused."""
        upstream, user = self._upstream(name), check_user(user)
        given = Grant(access_token="", expires_at=0.0, refresh_at=0.0,
                      refresh_token=required_text(refresh_token, "refresh_token"))
        grant = self._driver.run(guarded(upstream.refresh_flow(user, given, self._now)))
        self._store(user, name, grant)

    def _code_client(self, name: str) -> AuthorizationCodeClient:
        upstream = self._upstream(name)
        if not isinstance(upstream, OIDCUpstream):
            raise InvalidArgument(f"upstream {name!r} is Spatium, which links by credentials "
                                  "(link_password), not from a browser")
        with self._guard:
            client = self._code_clients.get(name)
        if client is None:
            client = upstream.code_client(self._driver.client, self._driver.timeout,
                                          self._now)
            with self._guard:
                client = self._code_clients.setdefault(name, client)
        return client

    def begin_link(self, user: UserKey, name: str, redirect_uri: str) -> AuthorizationRequest:
        """Start linking ``user``'s account at OIDC upstream ``name`` from a browser: send
        the browser to the result's ``url`` and keep the result (``to_json``, in a signed
        cookie of the owner's session) for ``finish_link``.  ``redirect_uri``, where the
        provider sends the browser back, must be registered with it.  Asks ``openid
        offline_access`` and the upstream's scope, with ``prompt=consent`` (so a refresh
        token comes back).  ``InvalidArgument`` for a Spatium upstream."""
        check_user(user)
        return self._code_client(name).begin(redirect_uri, prompt="consent")

    def finish_link(self, user: UserKey, name: str, request: AuthorizationRequest,
                    params: Mapping[str, str]) -> None:
        """Finish ``begin_link`` with the callback's query ``params``: check them, redeem
        the code, verify the ID token, and keep the tokens as ``link_password`` does
        (replacing the link, healing ``needs_relink``).  ``InvalidArgument`` for a wrong
        state (start again), ``IssuerError`` when the provider refused; the link is then
        left as it was."""
        user = check_user(user)
        client = self._code_client(name)
        result = client.finish(request, params)
        if result.grant.refresh_token is None:
            log.warning("upstream %r: the provider gave no refresh token; the link ends "
                        "when its access token expires", name)
        self._store(user, name, result.grant)

    def _sealed(self, user: UserKey, name: str, grant: Grant) -> UpstreamLink:
        times = grant_times(grant)
        seal = self._sealer.seal
        return UpstreamLink(
            user=user, name=name, state="ok",
            refresh_token=None if grant.refresh_token is None else seal(
                grant.refresh_token, user=user, name=name, field="refresh"),
            access_token=seal(grant.access_token, user=user, name=name, field="access"),
            access_expires=times.access_expires, refresh_at=times.refresh_at,
            refresh_expires=times.refresh_expires)

    def _store(self, user: UserKey, name: str, grant: Grant) -> None:
        self._links.put_link(self._sealed(user, name, grant), self._now_us())
        log.info("upstream %r linked for a user", name)

    def links(self, user: UserKey) -> dict[str, str]:
        """``user``'s links: name -> state (``"ok"`` or ``"needs_relink"``)."""
        return {link.name: link.state for link in self._links.list_links(check_user(user))}

    def unlink(self, user: UserKey, name: str) -> bool:
        """Forget ``user``'s link ``name`` and its tokens; whether there was one."""
        return self._links.delete_link(check_user(user), _name(name))

    # -- using -----------------------------------------------------------------------------
    def _principal(self, session: Session, name: str) -> Principal:
        """The session's principal, if it may use link ``name`` now."""
        if not isinstance(session, Session):
            raise ArgumentTypeError(f"session must be a Session, not {type(session).__name__}")
        principal = session.principal
        if principal is None:
            raise PermissionDenied("the session has not logged in by a token: an upstream "
                                   "is used by a session whose token holds upstream:<name>")
        return principal

    def _check(self, principal: Principal, name: str) -> None:
        principal.require(f"upstream:{name}")
        # The login's own read: a revocation (or expiry) since the session logged in is
        # seen at once, as by a login.
        row = self._security.repository.login_row(principal.token_key)
        if row is None or row.revoked_at is not None:
            raise TokenRevoked("this session's token was revoked: it can no longer use "
                               "upstreams", token_key=principal.token_key,
                               revoked_at=None if row is None or row.revoked_at is None
                               else from_micros(row.revoked_at))
        if row.expires is not None and self._now_us() >= row.expires:
            raise TokenExpired("this session's token has expired",
                               token_key=principal.token_key,
                               expired_at=from_micros(row.expires))

    def access_token(self, session: Session, name: str) -> str:
        """A valid access token of the session's user at upstream ``name``.

        Needs a session logged in by a token holding ``upstream:<name>``
        (``PermissionDenied``) that is neither revoked nor expired (``TokenRevoked``,
        ``TokenExpired``).  ``SessionNotEstablished`` when the user has no such link,
        ``SessionExpired`` when it needs linking again (a refresh was refused),
        ``IssuerError`` when the upstream cannot be reached and no valid token is at hand.
        """
        principal = self._principal(session, name)
        name = _name(name)  # checked before the trail names it
        try:
            self._check(principal, name)
            if name not in self._upstreams:
                raise SessionNotEstablished(f"no upstream is named {name!r} here")
            token = self._token(principal.user, name)
        except AuthTokenError as exc:
            self._security.record_upstream(principal, name, type(exc).__name__)
            raise
        self._security.record_upstream(principal, name)
        return token

    def auth(self, session: Session, name: str) -> httpx.Auth:
        """An ``httpx.Auth`` that sends ``Authorization: Bearer <access token>`` of link
        ``name`` with each request (``access_token`` per request; after a 401, once more
        if the token changed).  Refused now as ``access_token`` would refuse."""
        principal = self._principal(session, name)
        name = _name(name)
        self._check(principal, name)
        return BrokerAuth(lambda: self.access_token(session, name), name)

    # -- the token: the store, else one refresh per link ----------------------------------------
    def _open(self, link: UpstreamLink, field: str) -> str:
        blob = link.access_token if field == "access" else link.refresh_token
        assert blob is not None
        try:
            return self._sealer.open(blob, user=link.user, name=link.name, field=field)
        except Unsealable as exc:
            raise SessionExpired(f"the {link.name!r} link's stored tokens do not open with "
                                 f"these secret keys ({exc}); or {_RELINK}") from None

    def _stored(self, user: UserKey, name: str) -> UpstreamLink:
        link = self._links.get_link(user, name)
        if link is None:
            raise SessionNotEstablished(f"no {name!r} account is linked for this user: "
                                        f"its owner must link it first")
        if link.state != "ok":
            raise SessionExpired(f"the {name!r} link needs its owner to {_RELINK}")
        return link

    def _token(self, user: UserKey, name: str) -> str:
        link = self._stored(user, name)
        if serves(link, self._now_us(), until_due=True):
            return self._open(link, "access")
        ref = (f"{type(user).__name__}:{user}", name)
        with self._guard:
            lock = self._locks.setdefault(ref, threading.Lock())
        with lock:
            return self._refresh(user, name, ref)

    def _memory_of(self, ref: tuple[str, str], link: UpstreamLink) -> _Memory:
        """What this process remembers of refreshing ``link`` (under its lock): afresh
        when the store holds other tokens than those its last decision was about -- the
        owner linked again, another process refreshed -- as a backoff and a last error
        are about tokens the store no longer holds (the store is the truth)."""
        with self._guard:
            memory = self._memory.get(ref)
            if memory is None or not memory.about(link):
                memory = self._memory[ref] = _Memory(Refresher(_LinkAdapter(
                    self._upstreams[link.name], link.user, link.name, self._now), self._now))
            return memory

    def _refresh(self, user: UserKey, name: str, ref: tuple[str, str]) -> str:
        deadline = time.monotonic() + self._wait
        while True:
            now = self._now_us()
            link = self._links.take_lease(user, name, self._holder, now,
                                          now + int(self._lease * 1_000_000))
            if link is None:  # unlinked meanwhile
                raise SessionNotEstablished(f"no {name!r} account is linked for this user")
            if link.lease_holder == self._holder:
                break
            if serves(link, now, until_due=False):  # another process refreshes: this serves
                return self._open(link, "access")
            if time.monotonic() >= deadline:
                raise IssuerError(f"another process has been refreshing the {name!r} link "
                                  f"for more than {self._wait:.0f} s; try again")
            time.sleep(POLL)
        try:
            return self._refresh_held(link, ref)
        finally:
            self._links.release_lease(user, name, self._holder)  # nothing if finished

    def _refresh_held(self, link: UpstreamLink, ref: tuple[str, str]) -> str:
        """Refresh ``link`` under its lease (see ``_lease``)."""
        if link.state != "ok":
            raise SessionExpired(f"the {link.name!r} link needs its owner to {_RELINK}")
        if serves(link, self._now_us(), until_due=True):
            return self._open(link, "access")  # refreshed by another while we waited
        memory = self._memory_of(ref, link)
        memory.basis = link  # what the store holds unless this refresh writes
        refresher = memory.refresher
        held = Grant(access_token=self._open(link, "access") if link.access_token else "",
                     expires_at=(link.access_expires or 0) / 1e6,
                     refresh_at=(link.refresh_at or 0) / 1e6,
                     refresh_token=None if link.refresh_token is None
                     else self._open(link, "refresh"),
                     refresh_expires_at=None if link.refresh_expires is None
                     else link.refresh_expires / 1e6)
        refresher.grant = held
        try:
            token = self._driver.run(refresher.ensure())
        except SessionExpired:
            refresher.grant = None
            self._links.mark_needs_relink(link.user, link.name, self._holder, self._now_us())
            log.warning("upstream %r: the refresh was refused; the link needs relinking",
                        link.name)
            raise
        except BaseException:
            self._write_back(link, held, memory)  # a refresh token it may have spent
            raise
        self._write_back(link, held, memory)
        return token

    def _write_back(self, link: UpstreamLink, held: Grant, memory: _Memory) -> None:
        """Store what the refresh engine left, if anything changed, while the lease is ours;
        the engine keeps no grant in memory (the store is the truth)."""
        refresher = memory.refresher
        new, refresher.grant = refresher.grant, None
        if new is None or new is held:
            return
        written = self._sealed(link.user, link.name, new)
        stored = self._links.finish_refresh(written, self._holder, self._now_us())
        if stored is None:
            log.warning("upstream %r: the lease was lost during a refresh; its result was "
                        "not stored", link.name)
        else:
            memory.basis = written  # our own write does not make the memory stale


def _same(a: bytes | None, b: bytes | None) -> bool:
    if a is None or b is None:
        return a is b
    return hmac.compare_digest(a, b)


@dataclass(slots=True)
class _Memory:
    """What a process remembers of one link's refreshes: the refresh engine (its backoff
    and last error) and ``basis``, the stored link its last decision was about (``None``
    before any).  Sealed blobs are sealed afresh at every write, so other tokens in the
    store -- a relink, another process's refresh -- always mean other blobs."""

    refresher: Refresher
    basis: UpstreamLink | None = None

    def about(self, link: UpstreamLink) -> bool:
        """Whether ``link`` as stored now holds the tokens the memory is about."""
        basis = self.basis
        return basis is None or (_same(basis.refresh_token, link.refresh_token)
                                 and _same(basis.access_token, link.access_token))


class _LinkAdapter:
    """The refresh engine's adapter for one link: refresh by the upstream; a refused or
    expired refresh token ends the link (no password is kept to start again)."""

    def __init__(self, upstream: Upstream, user: UserKey, name: str,
                 now: Callable[[], float]) -> None:
        self._upstream, self._user, self._name = upstream, user, name
        self._now = now

    def first_grant(self) -> Flow | None:
        return None

    def refresh_grant(self, grant: Grant) -> Flow:
        return self._upstream.refresh_flow(self._user, grant, self._now)

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        if error.status is None and grant.refresh_token is None and grant.usable(self._now()):
            # A refresh that failed after sending: its token is never sent again, and the
            # access token serves until it expires.
            return _unchanged(grant)
        raise SessionExpired(f"the {self._name!r} link's refresh was refused or has "
                             f"expired: its owner must {_RELINK}", status=error.status,
                             request_id=error.request_id, code=error.code)


def _unchanged(grant: Grant) -> Flow:
    return grant
    yield  # a flow that sends nothing
