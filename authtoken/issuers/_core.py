"""The refresh engine, written once: when to refresh, what to send, what it means.

Theory of operation
-------------------
An issuer session holds one *grant*: an access token (Spatium's permission token, an
OAuth2 access token), when it expires, and maybe a refresh token.  Nothing here does
I/O.  A session asks its ``Refresher`` for the token; the fast path is two attribute
reads and a comparison -- no lock, no network.  When the grant is missing or due, the
refresher hands out a *flow*: a generator that yields ``Request`` values and is sent
``Response`` values (the shape of ``httpx.Auth.auth_flow``) and finally returns a new
``Grant``.  The sync and async shells (``_shell.py``) only carry the requests and hold
the lock; they run one flow at a time per session and look again after taking the lock,
so many concurrent callers cause exactly one request at the token endpoint.

Adapters (Spatium, OIDC) implement ``Protocol``: how to obtain a first grant, how to
refresh one, and what to do when the refresh token is refused.  They build requests and
parse responses and decide nothing about timing.

Failures:

- *Transient* (connection refused, timeout, HTTP 5xx, 429 or 408, a 2xx answer that
  cannot be read, anything that is not a 4xx): the grant is kept; while its access token
  is still valid callers keep getting it and nothing is raised.  Once the token has
  expired the failure is raised (``IssuerError``).
- *Refused* refresh token (another 4xx on the refresh request): the adapter decides --
  ``SessionExpired`` (Spatium user sessions), a new grant by key or by password.
- After any failure, transient or not, the next request waits for a growing, capped
  backoff (``backoff``), and this state is the session's, shared by every caller: during
  it callers get the still-valid token, or else the last error again, without a request.
  So a failing issuer sees at most ``1 / BACKOFF_FIRST`` requests a second per session,
  however many callers and however long the outage.
- A refresh token is consumed by the request that carries it.  The engine never sends
  the same refresh token in two requests at once (one flow at a time), never again once
  the issuer answered it (a 2xx that cannot be read counts as an answer), and after a
  transient failure only when the issuer cannot have used it (the connection failed, or
  it answered with a server error).  A flow closed with a request in flight (the shell's
  caller was cancelled) counts as sent.
- Whatever goes wrong surfaces as ``IssuerError``: an adapter that trips over an answer
  (``ValueError``, ``LookupError``...) is reported as an unreadable answer.

Times are seconds since 1970 as ``float``, from an injected clock.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, TypeVar

from .._errors import AuthTokenError, IssuerError, SessionExpired, SessionNotEstablished

__all__ = [
    "Adapter",
    "Flow",
    "Grant",
    "Refresher",
    "Request",
    "Response",
    "TransportFailure",
    "backoff",
    "guarded",
    "is_transient",
    "issuer_error",
]

T = TypeVar("T")

BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
BACKOFF_EXPIRED_MAX: Final = 2.0
# 2 ** 16 * BACKOFF_FIRST is far past every cap: the exponent never needs to grow further.
_MAX_DOUBLINGS: Final = 16


def backoff(failures: int, cap: float = BACKOFF_MAX) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``BACKOFF_FIRST`` doubled
    each time, at most ``cap`` -- for any count, however large."""
    doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
    return min(cap, BACKOFF_FIRST * 2.0 ** doublings)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, as data.  ``json`` or ``form`` is the body."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    json: Any = None
    form: tuple[tuple[str, str], ...] | None = None

    def __repr__(self) -> str:  # bodies carry passwords and tokens: never shown
        return f"Request({self.method} {self.url})"


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response, as data."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __repr__(self) -> str:
        return f"Response({self.status})"

    @property
    def request_id(self) -> str | None:
        """The answer's ``request-id`` header (Spatium's), else its ``x-request-id``."""
        return self.headers.get("request-id") or self.headers.get("x-request-id")

    def json(self) -> Any:
        """The body as JSON; ``IssuerError`` if it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." bodies
            raise IssuerError(
                f"the issuer answered HTTP {self.status} with a body that is not JSON",
                status=self.status, request_id=self.request_id,
            ) from exc


class TransportFailure(Exception):
    """Raised *into* a flow by a shell when a request could not be completed.

    ``sent`` says whether the request may have reached the issuer (a timeout after
    sending) -- then a refresh token it carried counts as used.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


# A flow yields requests, is sent responses, and returns a grant.
Flow = Generator[Request, Response, "Grant"]


@dataclass(frozen=True, slots=True)
class Grant:
    """A credential as issued: times in seconds since 1970."""

    access_token: str = field(repr=False)
    expires_at: float
    refresh_at: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def usable(self, now: float) -> bool:
        return now < self.expires_at

    def refreshable(self, now: float) -> bool:
        return self.refresh_token is not None and (
            self.refresh_expires_at is None or now < self.refresh_expires_at
        )


class Adapter(Protocol):
    """What an issuer adapter supplies to the engine."""

    def first_grant(self) -> Flow | None:
        """A flow for the first grant, or ``None`` if the session must be established."""

    def refresh_grant(self, grant: Grant) -> Flow:
        """A flow that refreshes ``grant`` with its refresh token."""

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        """What to do when ``grant``'s refresh token was refused: raise, or a new flow."""


def issuer_error(response: Response, what: str) -> IssuerError:
    """An ``IssuerError`` for a refusal, with the status, request id and error code."""
    code: str | None = None
    try:
        body = json.loads(response.body) if response.body else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw = body.get("error") or body.get("code")
        if isinstance(raw, dict):
            raw = raw.get("code") or raw.get("type")
        if isinstance(raw, (str, int)):
            code = str(raw)[:100]
    request_id = response.request_id
    if isinstance(body, dict) and isinstance(body.get("requestId"), str):
        request_id = request_id or body["requestId"]
    detail = f" ({code})" if code else ""
    return IssuerError(
        f"{what} failed: HTTP {response.status}{detail}",
        status=response.status, request_id=request_id, code=code,
    )


def is_transient(status: int) -> bool:
    """Whether a failure with this HTTP status says nothing about the credential:
    everything but a 4xx refusal (408 and 429 are transient too)."""
    return not 400 <= status < 500 or status in (408, 429)


def _answered(status: int | None) -> bool:
    """Whether the issuer processed the request: it answered 2xx (unreadably, or the
    failure would not be here)."""
    return status is not None and 200 <= status < 300


def _again(error: IssuerError) -> IssuerError:
    """A copy of ``error`` to raise once more: the stored one keeps no traceback that
    grows with every caller, and threads never share one being raised."""
    return copy.copy(error).with_traceback(None)


def guarded(flow: Generator[Request, Response, T]) -> Generator[Request, Response, T]:
    """``flow``, with a transport failure turned into ``IssuerError(status=None)``: for
    flows run outside a ``Refresher`` (one-off calls, discovery)."""
    try:
        return (yield from flow)
    except TransportFailure as exc:
        raise IssuerError(f"the issuer could not be reached: {exc}") from exc


def _readable(flow: Flow) -> Flow:
    """``flow``, with an adapter's slip over an odd answer reported as ``IssuerError``."""
    status: int | None = None
    try:
        request = next(flow)
        while True:
            try:
                response = yield request
            except TransportFailure as exc:
                request = flow.throw(exc)
                continue
            status = response.status
            request = flow.send(response)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except (ValueError, TypeError, LookupError, ArithmeticError, RecursionError) as exc:
        if isinstance(exc, AuthTokenError):
            raise
        raise IssuerError(
            f"the issuer's answer (HTTP {status}) could not be read ({type(exc).__name__})",
            status=status) from None


class Refresher:
    """The state of one credential and the decisions about it.  Not thread-safe by
    itself: the shells call ``token`` from anywhere and the rest under their lock."""

    def __init__(self, protocol: Adapter, clock: Callable[[], float]) -> None:
        self._protocol = protocol
        self._clock = clock
        self.grant: Grant | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: IssuerError | None = None

    @property
    def last_error(self) -> IssuerError | None:
        """The transient failure the current backoff follows; ``None`` after a success."""
        return self._last_error

    # -- the fast path: no lock, no I/O --------------------------------------------------
    def token(self) -> str | None:
        """The access token if it is present and not yet due for refresh."""
        grant = self.grant
        if grant is not None and self._clock() < grant.refresh_at:
            return grant.access_token
        return None

    @property
    def retry_at(self) -> float:
        """No request before this time (after a failure); 0 when not backing off."""
        return self._retry_at

    # -- under the shell's lock ----------------------------------------------------------
    def ensure(self, *, force: bool = False) -> Generator[Request, Response, str]:
        """The flow a shell drives (under its lock) to get a valid access token.

        Returns at once, without a request, if another caller refreshed meanwhile.
        Raises ``SessionNotEstablished``, ``SessionExpired`` or ``IssuerError``; after a
        transient failure it returns the current token while that is still valid.
        During the backoff after a failure nothing is sent: ordinary callers get the
        still-valid token or the last error again; ``force`` gets the last error.
        """
        now = self._clock()
        grant = self.grant
        if grant is not None and not force and now < grant.refresh_at:
            return grant.access_token
        if now < self._retry_at and self._last_error is not None:
            if grant is not None and not force and grant.usable(now):
                return grant.access_token
            raise _again(self._last_error)
        try:
            new = yield from _readable(self._obtain(grant, now))
        except GeneratorExit:
            # The shell abandoned the flow with a request in flight (its caller was
            # cancelled or interrupted): the issuer may have used the refresh token.
            self._burn(grant)
            self._keep(grant)
            raise
        except TransportFailure as exc:
            if exc.sent:
                self._burn(grant)
            self._keep(grant)
            return self._transient(IssuerError(f"the issuer could not be reached: {exc}"))
        except SessionNotEstablished:
            raise
        except IssuerError as exc:
            # Without a status the adapter itself gave up (SessionExpired): final.
            if exc.status is not None and is_transient(exc.status):
                if _answered(exc.status):
                    self._burn(grant)
                self._keep(grant)
                return self._transient(exc)
            self.failed(exc)
            raise
        self.succeeded(new)
        return new.access_token

    def _obtain(self, grant: Grant | None, now: float) -> Flow:
        """The adapter's flow for a new grant: first, refreshed, or after a refusal."""
        if grant is None:
            first = self._protocol.first_grant()
            if first is None:
                raise SessionNotEstablished(
                    "the session is not established: call establish() first"
                )
            return (yield from first)
        if grant.refreshable(now):
            try:
                return (yield from self._protocol.refresh_grant(grant))
            except IssuerError as exc:
                if exc.status is None or is_transient(exc.status):
                    raise
                # The issuer refused the refresh token: it is dead, whatever the adapter
                # does next (raise SessionExpired, or a new grant).
                self.grant = None
                return (yield from self._protocol.refused(grant, exc))
        self.grant = None
        return (yield from self._protocol.refused(
            grant, SessionExpired("the refresh token has expired")))

    def _burn(self, grant: Grant | None) -> None:
        """The refresh request may have reached the issuer, which then rotated the token:
        never send it again.  The access token stays usable."""
        if grant is not None and self.grant is grant and grant.refresh_token:
            self.grant = replace(grant, refresh_token=None)

    def _keep(self, previous: Grant | None) -> None:
        """After a dead refresh token's replacement failed transiently, keep serving the
        old access token while it is valid (without the dead refresh token)."""
        if self.grant is None and previous is not None and previous.usable(self._clock()):
            self.grant = replace(previous, refresh_token=None, refresh_expires_at=None)

    def _transient(self, error: IssuerError) -> str:
        token = self.failed(error)
        if token is None:
            raise error
        return token

    def succeeded(self, grant: Grant) -> None:
        self.grant = grant
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = None

    def failed(self, error: IssuerError) -> str | None:
        """Record a failure and start the backoff; the still-valid token to use, else
        ``None``."""
        now = self._clock()
        self._failures += 1
        grant = self.grant
        usable = grant is not None and grant.usable(now)
        # While a valid token is at hand the backoff may grow long, but never much past
        # its expiry; once callers are getting errors, retry soon after the issuer is back.
        retry_at = now + backoff(self._failures, BACKOFF_MAX if usable else BACKOFF_EXPIRED_MAX)
        if grant is not None and usable:
            retry_at = min(retry_at, max(grant.expires_at, now + BACKOFF_FIRST))
        self._retry_at = retry_at
        self._last_error = error
        if grant is not None and usable:
            return grant.access_token
        return None

    def expire_access_token(self) -> None:
        """Make the access token due now (the API refused it), keeping the refresh token."""
        grant = self.grant
        if grant is not None:
            self.grant = replace(grant, refresh_at=float("-inf"))
        # The backoff stands: a rejected token does not make a failing issuer work again.
