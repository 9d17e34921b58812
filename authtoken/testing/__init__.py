"""Helpers for testing code that uses authtoken (public API, like ``structlog.testing``).

``FakeClock`` is a clock you move by hand; pass it as ``clock=`` to ``Security`` or
``open_security`` and expiry becomes a matter of ``clock.advance(days=31)`` instead of
sleeping::

    clock = FakeClock()
    security = open_security("memory://", secret_keys="test", clock=clock)

``SpatiumAuthority`` is a Spatium-compatible authorization service on 127.0.0.1 to run
``authtoken.issuers.spatium`` against (it needs the ``testing`` extra and is imported
only when first used, so ``import authtoken.testing`` stays light)::

    with SpatiumAuthority(clock=clock, permission_lifetime=60) as authority:
        session = KeyAuthorizationSession(authority.url, "jobs", ["register"],
                                          authority.merchant_key, clock=clock)

``OIDCProvider`` is an OAuth2 / OpenID Connect provider (Authlib and Flask) on 127.0.0.1,
with a space and a protected lesson API, to run ``authtoken.issuers.oidc`` against (the
``testing`` extra too, imported only when first used)::

    with OIDCProvider(lifetime=60) as provider:
        session = OIDCPasswordSession.from_space(provider.space_url, "alice",
                                                 provider.password)
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._oidc import OIDCProvider as OIDCProvider
    from ._spatium import SpatiumAuthority as SpatiumAuthority

__all__ = ["FakeClock", "OIDCProvider", "SpatiumAuthority"]

_START = datetime(2030, 1, 1, tzinfo=timezone.utc)


class FakeClock:
    """A thread-safe clock that stands still until moved; returns aware UTC datetimes."""

    def __init__(self, start: datetime = _START) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or ``timedelta(**kwargs)``; return the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive means UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        with self._lock:
            self._now = when.astimezone(timezone.utc)


def __getattr__(name: str) -> Any:
    if name == "SpatiumAuthority":  # lazily: it needs the "testing" extra
        from ._spatium import SpatiumAuthority

        return SpatiumAuthority
    if name == "OIDCProvider":  # lazily: it needs the "testing" extra (Authlib, Flask)
        from ._oidc import OIDCProvider

        return OIDCProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
