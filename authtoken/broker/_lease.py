"""One refresh per link across every process: the lease, and what a refresh leaves.

Theory of operation
-------------------
A link's tokens live in the repository, sealed.  A caller whose access token is due
takes the link's *lease* (``UpstreamLinks.take_lease``, atomic in storage) before it
refreshes; a caller that finds the lease held by another process does not refresh: it
re-reads the store every ``POLL`` seconds until the holder has written the new access
token, and meanwhile serves the current one if that is still valid.  Within a process a
lock per link keeps the other threads off the store while one of them refreshes.

Under the lease the issuers' own refresh engine (``issuers._core.Refresher``) decides,
as it does for a session: refresh with the refresh token, keep serving a still-valid
token through a transient failure (with its backoff, shared by the process), never send
a refresh token again that a failed request may have carried.  Its grant is read from
the store at every refresh; what the process remembers (the backoff, the last error) is
about the tokens then stored, and is forgotten as soon as the store holds others -- the
owner linked again, another process refreshed -- so a relinked account is tried at once
and is never marked ``needs_relink`` by an error about tokens it no longer holds.  What
the engine leaves is written back only while the lease is still ours (compare-and-set on
the holder):

- a new grant: sealed and stored, the lease cleared (``finish_refresh``);
- a refused refresh token (HTTP 4xx): the link is ``needs_relink`` (``mark_needs_relink``)
  and the caller gets ``SessionExpired``; its owner links again;
- a transient failure: the lease is released, a refresh token that may have been used
  is dropped from the store, and the caller gets the still-valid token or ``IssuerError``.

A process killed while it holds the lease leaves it to expire (``lease`` seconds, by the
engine's clock).  The next holder then refreshes with the stored refresh token: if the
killed process's request never reached the issuer, that works; if it did and the issuer
rotated the token, the issuer refuses the stale one and the link becomes
``needs_relink``.  Either way the link is usable or says it is not -- never silently
broken.  The lease must outlast a refresh (``timeout`` per request, a few requests):
the default is ``4 * timeout + 5`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .._repository import UpstreamLink
from ..issuers._core import Grant

__all__ = ["POLL", "Fresh", "grant_times", "serves"]

#: How often a caller waiting for another process's refresh re-reads the store (s).
POLL: Final = 0.05


@dataclass(frozen=True, slots=True)
class Fresh:
    """A link's times as microseconds, from a ``Grant`` (seconds)."""

    access_expires: int
    refresh_at: int
    refresh_expires: int | None


def grant_times(grant: Grant) -> Fresh:
    """The stored times of ``grant``."""
    return Fresh(
        access_expires=int(grant.expires_at * 1_000_000),
        refresh_at=int(min(grant.refresh_at, grant.expires_at) * 1_000_000),
        refresh_expires=None if grant.refresh_expires_at is None
        else int(grant.refresh_expires_at * 1_000_000),
    )


def serves(link: UpstreamLink, now: int, *, until_due: bool) -> bool:
    """Whether ``link``'s stored access token may be given out at ``now`` (µs): before it
    is due for refresh (``until_due``), or merely before it expires."""
    if link.state != "ok" or link.access_token is None:
        return False
    limit = link.refresh_at if until_due else link.access_expires
    return limit is not None and now < limit
