"""Storage that fails: RepositoryError, fast, nothing lost, recovery by itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from authtoken import (
    AuthToken,
    InvalidArgument,
    RepositoryError,
    Security,
    SQLRepository,
    TokenRevoked,
)
from authtoken.testing import FakeClock


def test_locked_store_fails_fast_and_recovers(tmp_path: Path) -> None:
    """While another process holds the write lock, writes fail and usage waits; after, all lands."""
    path = tmp_path / "t.db"
    security = Security(SQLRepository(f"sqlite:///{path}", timeout=0.2),
                        secret_keys="k", clock=FakeClock())
    string = security.authorize_token(AuthToken("a"), user=1)
    security.login_by_auth_token(string)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        security.login_by_auth_token(string)  # WAL: readers are not blocked by a writer
        with pytest.raises(RepositoryError, match="locked"):
            security.authorize_token(AuthToken("b"), user=1)
        with pytest.raises(RepositoryError):
            security.revoke_auth_token(string)
        with pytest.raises(RepositoryError):
            security.flush()
        assert security.get_auth_token(security.list_auth_tokens()[0].key or "").use_count == 2
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    security.login_by_auth_token(string)
    security.flush()  # the usage kept through the failure is written now
    # the authorize that failed stored nothing
    assert [t.scope for t in security.list_auth_tokens()] == ["a"]
    security.revoke_auth_token(string)
    with pytest.raises(TokenRevoked):
        security.login_by_auth_token(string)
    security.close()
    with Security(SQLRepository(f"sqlite:///{path}"), secret_keys="k") as reopened:
        token = reopened.restore_auth_token(string)
        assert token.use_count == 3 and token.revoked_at is not None


def test_repository_error_hides_the_password() -> None:
    """A failing URL's password never appears in the error."""
    from authtoken._sql._failures import Failures

    failures = Failures("hunter2", patience=6)
    error = failures.of(RuntimeError("could not connect to postgresql://u:hunter2@h/db"))
    assert "hunter2" not in str(error) and "***" in str(error)


@pytest.mark.parametrize("url", [
    "postgresql://u@127.0.0.1:1/db?password=SENTINEL",
    "postgresql://u@127.0.0.1:99999/db?password=SENTINEL",
    "postgresql://u@127.0.0.1:1/db?bogus=1&password=SENTINEL",
    "postgresql://u@127.0.0.1:1/db?password=SENTINEL&bogus=1",
    "postgresql://u@127.0.0.1:abc/db?password=SENTINEL",
    "postgresql://u@[::1:1/db?password=SENTINEL",
    "postgresql://u:SENTINEL@127.0.0.1:99999/db",
])
def test_a_password_in_the_query_string_never_shows(url: str) -> None:
    """Not in the repository's repr, a malformed URL's error or a failed call's error."""
    pytest.importorskip("psycopg")
    shown: list[object] = []
    try:
        repository = SQLRepository(url, timeout=1)
    except InvalidArgument as exc:
        shown.append(exc)
    else:
        shown.append(repository)
        with pytest.raises(RepositoryError) as info:
            repository.list(user=None, include_revoked=True)
        shown.append(info.value)
        repository.close()
    for thing in shown:
        texts = [str(thing), repr(thing), *map(str, getattr(thing, "args", ()))]
        assert not [text for text in texts if "SENTINEL" in text], thing


def test_bad_timeout_is_refused(tmp_path: Path) -> None:
    """A timeout that is not a positive number of seconds is refused."""
    for timeout in (0, -1, 61, True, "5"):
        with pytest.raises(ValueError):
            SQLRepository(f"sqlite:///{tmp_path / 't.db'}", timeout=timeout)  # type: ignore[arg-type]
