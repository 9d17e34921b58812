"""``AdminContext``: what both admin faces share about the engine and their callers.

The JSON API (``_api``) and the HTML token page (``_page``) are two faces of one
application, built on one ``AdminContext``: the engine (``security``), the
application's ``Authenticator``, the ``FailureLimiter`` and the body limit.  Through it
both faces

- ask whether a client address must wait before authenticating again
  (``retry_after``), and
- turn a request into the caller's ``Identity`` (``authenticated``): a refusal is
  counted against the client address, put on the audit trail (action
  ``authenticate``) and ends the request with a 401, the same way whichever face it
  came through.

What a caller may then do is decided by the engine: each face acts through a fresh
``Session`` for the caller (``Identity.session``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from .._errors import LoginError, RepositoryError
from .._security import Security
from ._auth import AuthenticationFailed, Authenticator, Identity, client_address
from ._limiter import FailureLimiter
from ._problems import Problem, unauthorized

__all__ = ["AdminContext"]

log = logging.getLogger("authtoken.admin")


@dataclass(frozen=True, slots=True)
class AdminContext:
    """The admin application's state, shared by its API and its page.

    ``max_body`` is the largest request body (JSON or form) either face reads, in bytes.
    """

    security: Security
    authenticate: Authenticator
    limiter: FailureLimiter
    max_body: int

    def retry_after(self, request: Request) -> int | None:
        """Whole seconds this client must wait before authenticating again, or ``None``."""
        wait = self.limiter.retry_after(client_address(request))
        return None if wait is None else max(1, math.ceil(wait))

    async def authenticated(self, request: Request, presented: Request | None = None
                            ) -> Identity:
        """The authenticator's ``Identity`` for ``presented`` (default ``request``).

        A refusal (``AuthenticationFailed`` or any ``LoginError``) is counted against
        the client address of ``request``, put on the audit trail, and raised as a 401
        ``Problem`` (``unauthorized``).  An authenticator that cannot decide now raises
        ``IssuerError``/``RepositoryError``, which is raised as it is and not counted.
        ``TypeError`` when the authenticator returns something else than an
        ``Identity``.
        """
        return await self._identity(request, self.authenticate, presented or request)

    async def resumed(self, request: Request, credential: str) -> Identity:
        """Who ``credential`` -- kept by the token page since its sign-in -- is now.

        An authenticator with a ``resume(credential)`` method (``DelegationTokenAuth``)
        is asked through it, so that a page view is no login; any other is handed the
        credential as ``Authorization: Bearer …``, as at sign-in.  Refusals as for
        ``authenticated``.
        """
        resume = getattr(self.authenticate, "resume", None)
        if not callable(resume):
            headers = [(k, v) for k, v in request.scope["headers"]
                       if k not in (b"authorization", b"cookie")]
            headers.append((b"authorization", b"Bearer " + credential.encode()))
            return await self.authenticated(
                request, Request({**request.scope, "headers": headers}))
        return await self._identity(request, resume, credential)

    async def _identity(self, request: Request, authenticate: Callable[[Any], Any],
                        presented: Any) -> Identity:
        """``authenticate(presented)`` in a worker thread; a refusal counted against
        ``request``'s address, recorded, and raised as a 401 ``Problem``."""
        try:
            identity = await run_in_threadpool(authenticate, presented)
        except (AuthenticationFailed, LoginError) as exc:
            raise await self.refused(request, exc) from None
        if not isinstance(identity, Identity):
            raise TypeError(f"the authenticator returned {type(identity).__name__}, "
                            "not an Identity")
        return identity

    async def refused(self, request: Request, exc: Exception) -> Problem:
        """The 401 for credentials refused with ``exc``, the refusal counted against
        ``request``'s address and put on the audit trail."""
        address = client_address(request)
        self.limiter.failed(address)
        await run_in_threadpool(self._record_failure, address, exc)
        return unauthorized(exc)

    def _record_failure(self, address: str, exc: Exception) -> None:
        try:
            self.security.record_authentication_failure(actor=f"address:{address}",
                                                       reason=type(exc).__name__)
        except RepositoryError as error:  # the 401 stands; the store is down
            log.warning("admin: could not record a failed authentication: %s", error)
