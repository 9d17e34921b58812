"""Opening an engine from a URL: ``open_security`` and the repository it picks.

``open_security(url=None, *, secret_keys=None, clock=None, policy=None)`` is what most
callers use:
a ``Security`` over the database a URL names (``memory://``, ``sqlite:///…``,
``postgresql://…``), with the default database and key file of ``_defaults`` when
nothing is configured.  The SQL backend is imported only when a SQL URL is opened, so
``import authtoken`` stays light.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._clock import Clock
from ._defaults import default_database_url, default_secret_keys
from ._errors import ArgumentTypeError, InvalidArgument
from ._policy import Policy
from ._repository import MemoryRepository, Repository
from ._security import Security

__all__ = ["open_repository", "open_security"]


def open_repository(url: str) -> Repository:
    """The repository for a URL: ``memory://``, ``sqlite:///…`` or ``postgresql://…``."""
    if not isinstance(url, str):
        raise ArgumentTypeError(f"a database URL is a str, not {type(url).__name__}")
    scheme = url.split(":", 1)[0].lower()
    if url == "memory://" or scheme == "memory":
        return MemoryRepository()
    base = scheme.split("+", 1)[0]
    if base in ("sqlite", "postgresql", "postgres"):
        from ._sql import SQLRepository

        if base == "postgres":
            url = "postgresql" + url[len("postgres"):]
        return SQLRepository(url)
    raise InvalidArgument(
        f"unsupported database URL scheme {scheme[:20]!r}: use 'memory://', "
        "'sqlite:///path.db' or 'postgresql://user@host/db'"
    )


def open_security(
    url: str | None = None,
    *,
    secret_keys: str | bytes | Iterable[str | bytes] | None = None,
    clock: Clock | None = None,
    policy: Policy | None = None,
) -> Security:
    """A ``Security`` over the database at ``url``; also a context manager.

    ``url`` defaults to ``AUTHTOKEN_DATABASE_URL``, else the embedded SQLite file at
    ``default_database_path()``.  ``secret_keys`` default to ``AUTHTOKEN_SECRET_KEYS``
    (comma-separated, newest first), else the key file at ``default_key_path()``,
    created with mode 0600 on first use.  The default folder is created 0700; a folder
    of another user or one that others can write, and a key file that is not a regular
    file of the current user closed to everyone else, are refused with
    ``InvalidArgument`` saying how to fix them (see ``authtoken._defaults``).
    ``policy`` (a ``Policy``) defaults to the one the environment sets
    (``Policy.from_env``: ``AUTHTOKEN_MAX_LIFETIME``, ``AUTHTOKEN_REQUIRE_EXPIRY``,
    ``AUTHTOKEN_MAX_TOKENS_PER_USER``), else none.
    ``RepositoryError`` when storage cannot be reached or a file cannot be read.
    """
    if policy is None:
        policy = Policy.from_env()
    keys: str | bytes | list[str | bytes]
    if secret_keys is None:
        keys = list(default_secret_keys())
    elif isinstance(secret_keys, (str, bytes)):
        keys = secret_keys
    else:
        keys = list(secret_keys)
    repository = open_repository(default_database_url() if url is None else url)
    try:
        return Security(repository, secret_keys=keys, clock=clock, policy=policy)
    except BaseException:
        repository.close()
        raise
