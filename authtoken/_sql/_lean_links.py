"""The broker's read of a link without SQLAlchemy: one statement, one row.

``Broker.access_token`` on its fast path reads the session's token (the login's own
read) and the link, and opens the stored access token.  Through SQLAlchemy's
transaction machinery the link read cost ten times the rest of the call; this is the
same read as plain SQL with qmark placeholders, for the lean ``sqlite3`` reads of
``_lean`` (autocommit, each statement its own read transaction, so a write committed
by any process -- a refresh, an unlink -- is seen by the very next read) and, with
``%s`` placeholders, for a psycopg cursor.  Writes stay with SQLAlchemy (``_links``).
``tests/storage/test_lean_links.py`` checks that ``LINK_COLUMNS`` are the table's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .._repository import UpstreamLink
from ._rows import user_of

__all__ = ["LINK_COLUMNS", "LINK_SQL", "link_of"]

#: The columns of ``authtoken_upstream_link`` the read returns, in ``UpstreamLink``'s order.
LINK_COLUMNS: Final = (
    "user_ref", "name", "state", "refresh_token", "access_token", "access_expires",
    "refresh_at", "refresh_expires", "lease_holder", "lease_expires", "version", "updated_at",
)
LINK_SQL: Final = (
    f"SELECT {', '.join(LINK_COLUMNS)} FROM authtoken_upstream_link "  # noqa: S608
    "WHERE user_ref = ? AND name = ?"
)


def link_of(row: Sequence[Any]) -> UpstreamLink:
    """The ``UpstreamLink`` of a row of ``LINK_SQL`` (blobs as ``bytes``)."""
    (ref, name, state, refresh, access, access_expires, refresh_at, refresh_expires,
     holder, lease_expires, version, updated_at) = row
    return UpstreamLink(
        user=user_of(ref), name=name, state=state,
        refresh_token=None if refresh is None else bytes(refresh),
        access_token=None if access is None else bytes(access),
        access_expires=access_expires, refresh_at=refresh_at,
        refresh_expires=refresh_expires, lease_holder=holder, lease_expires=lease_expires,
        version=version, updated_at=updated_at,
    )
