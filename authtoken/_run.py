"""``RunToken``: a credential that lives for one run of a job.

A scheduler holds a user's standing token; for each run of a job it asks its session
for a run token (``Session.run_token``): a child of the standing token, no wider, an
hour long unless told otherwise (never past the standing token), marked with the run's
id.  The job gets the run token's string, never the standing one; when the run ends the
run token is revoked, whether the body returned or raised::

    with session.run_token("nightly-2026-12-04", scope="reports:read") as run:
        launch(job, token=run.token)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Final

from ._expiry import ExpirySpec
from ._redact import redact

if TYPE_CHECKING:
    from ._security import Security

__all__ = ["RUN_DEFAULT", "RunToken"]

#: A run token's default expiry: an hour, cut to the session token's expiry.
RUN_DEFAULT: Final = ExpirySpec(relative=timedelta(hours=1), is_default=True)


class RunToken:
    """One run's token: ``.token`` (the string, never in the ``repr``), ``.key``,
    ``.run_id``, ``.expires``; ``.revoke()``.  A context manager whose exit revokes it
    (idempotent), whether or not the body raised."""

    __slots__ = ("_expires", "_key", "_run_id", "_security", "_token")

    def __init__(self, security: Security, token: str, key: str, run_id: str,
                 expires: datetime | None) -> None:
        self._security = security
        self._token = token
        self._key = key
        self._run_id = run_id
        self._expires = expires

    @property
    def token(self) -> str:
        """The token string to hand the run (shown nowhere else)."""
        return self._token

    @property
    def key(self) -> str:
        return self._key

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def expires(self) -> datetime | None:
        return self._expires

    def revoke(self) -> None:
        """Revoke the run token (and anything the run delegated from it); idempotent.

        Revoked as its holder, by its string: it works even once the session's own
        token has expired or been revoked.  Raises ``RepositoryError`` if storage fails.
        """
        self._security.revoke_auth_token(self._token)

    def __enter__(self) -> RunToken:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.revoke()

    def __repr__(self) -> str:
        return redact(f"RunToken(key={self._key!r}, run_id={self._run_id!r}, "
                      f"expires={self._expires!r})")
