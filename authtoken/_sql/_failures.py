"""What a failed database call raises: a ``RepositoryError`` that says what failed.

Every driver error leaves the ``_sql`` package as ``RepositoryError``, raised ``from``
the original, with a one-line cause -- the driver's class name and first line, never
the URL's password (given in the URL's user part or as ``?password=``).  A call the
watchdog ended says the server did not answer; a write whose commit was sent but never
answered says its outcome is unknown, and what to do about it.
"""

from __future__ import annotations

from typing import Final

from .._errors import RepositoryError
from .._redact import redact
from .._watchdog import Watch

__all__ = ["BATCH_UNKNOWN", "CHANGE_UNKNOWN", "Failures"]

# What a write whose commit was sent but never answered tells its caller to do.
CHANGE_UNKNOWN: Final = "read the token back to see whether the change was made, then retry"
BATCH_UNKNOWN: Final = (
    "the usage batch is kept and will be written again, safely: a batch the database "
    "has already is recognised and skipped"
)


class Failures:
    """The errors of one repository.

    ``password``: the URL's password, masked wherever a driver's message repeats it;
    ``patience``: how long a step may wait on the server (``timeout`` + 1 s), named in
    the error of a server that did not answer.
    """

    __slots__ = ("password", "patience")

    def __init__(self, password: str | None, patience: float) -> None:
        self.password = password
        self.patience = patience

    def detail(self, exc: BaseException) -> str:
        """What went wrong, in one line, with no password: ``Class: first line``."""
        inner = getattr(exc, "orig", None) or exc
        detail = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
        detail = redact(detail)
        if self.password:
            detail = detail.replace(self.password, "***")
        return f"{type(inner).__name__}: {detail[:300]}"

    def of(self, exc: BaseException, watch: Watch | None = None) -> RepositoryError:
        """The error of a call that failed with ``exc`` (under ``watch``, if watched)."""
        if watch is not None and watch.fired:
            return self.no_answer()
        return RepositoryError(
            f"the token store failed ({self.detail(exc)}); check that the database is "
            "reachable and writable, then retry"
        )

    def no_answer(self) -> RepositoryError:
        """The error of a call whose server stopped answering."""
        return RepositoryError(
            f"PostgreSQL did not answer within {self.patience:g} s (the server is frozen "
            "or the network to it is down); check the server, then retry"
        )

    def unknown(self, exc: BaseException, watch: Watch | None, then: str) -> RepositoryError:
        """The error of a commit that was sent but never answered: it may have landed.

        ``then``: what the caller should do (``CHANGE_UNKNOWN``, ``BATCH_UNKNOWN``).
        """
        lost = (f"PostgreSQL did not answer within {self.patience:g} s"
                if watch is not None and watch.fired
                else f"the connection failed before the answer came ({self.detail(exc)})")
        return RepositoryError(
            f"the outcome of the write is unknown: its commit was sent, but {lost}; {then}"
        )
