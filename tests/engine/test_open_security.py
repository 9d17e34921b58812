"""open_security: URLs, the embedded default database and key file, environment."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from authtoken import (
    AuthToken,
    InvalidArgument,
    InvalidToken,
    MemoryRepository,
    RepositoryError,
    Security,
    default_database_path,
    default_key_path,
    open_security,
)


def test_default_paths_and_permissions(tmp_path: Path) -> None:
    """With nothing configured, a private SQLite file and a 0600 key file are made."""
    with open_security() as security:
        string = security.authorize_token(AuthToken("a"), user=1)
    db, key = default_database_path(), default_key_path()
    assert db.parent == key.parent and str(db).startswith(os.environ["XDG_DATA_HOME"])
    assert db.exists() and key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) & 0o077 == 0
    with open_security() as again:  # same key file, same database: the token still works
        assert again.login_by_auth_token(string).user == 1


def test_key_file_race_has_one_winner() -> None:
    """Processes or threads creating the key file at once all end up with one key."""
    from authtoken._defaults import create_key_file

    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(create_key_file(default_key_path())))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({tuple(r) for r in results}) == 1
    assert [p.name for p in default_key_path().parent.iterdir()] == ["secret.key"]


def test_key_file_readable_by_others_is_refused() -> None:
    """A key file that others can read is refused with the fix in the message."""
    with open_security("memory://"):
        pass
    default_key_path().chmod(0o644)
    with pytest.raises(InvalidArgument, match="chmod 600"):
        open_security("memory://")


def test_environment_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTHTOKEN_DATABASE_URL and AUTHTOKEN_SECRET_KEYS are used when set."""
    monkeypatch.setenv("AUTHTOKEN_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", "new-key, old-key")
    with open_security() as security:
        string = security.authorize_token(AuthToken("a"), user=1)
    assert (tmp_path / "env.db").exists() and not default_key_path().exists()
    with open_security(secret_keys=["old-key"]) as old_only, pytest.raises(InvalidToken):
        old_only.login_by_auth_token(string)
    with open_security(secret_keys=["x", "new-key"]) as rotated:
        assert rotated.login_by_auth_token(string).user == 1


def test_memory_url() -> None:
    """memory:// gives a private in-memory repository."""
    with open_security("memory://", secret_keys="k") as security:
        assert isinstance(security.repository, MemoryRepository)


@pytest.mark.parametrize("url", ["mysql://x/y", "nonsense", "sqlite://", "sqlite:///:memory:", ""])
def test_bad_urls(url: str) -> None:
    """Unsupported or unusable URLs are InvalidArgument with a hint."""
    with pytest.raises(InvalidArgument):
        open_security(url, secret_keys="k")


def test_url_type() -> None:
    """A URL that is not a str is a TypeError."""
    with pytest.raises(TypeError):
        open_security(42, secret_keys="k")  # type: ignore[arg-type]


def test_missing_folder_is_repository_error(tmp_path: Path) -> None:
    """A SQLite path in a folder that does not exist says so."""
    with pytest.raises(RepositoryError, match="does not exist"):
        open_security(f"sqlite:///{tmp_path / 'no' / 'such.db'}", secret_keys="k")


@pytest.mark.parametrize("keys", [[], "", [""], 42, [None]])
def test_bad_secret_keys(keys: object) -> None:
    """Empty or mistyped secret keys are refused."""
    with pytest.raises(InvalidArgument):
        Security(MemoryRepository(), secret_keys=keys)  # type: ignore[arg-type]


def test_bad_repository_and_clock() -> None:
    """A repository or clock of the wrong type is a TypeError."""
    with pytest.raises(TypeError):
        Security(object(), secret_keys="k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Security(MemoryRepository(), secret_keys="k", clock="now")  # type: ignore[arg-type]


def test_unwritable_database_is_repository_error(tmp_path: Path) -> None:
    """A database that cannot be written gives RepositoryError, and recovers after."""
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    path = tmp_path / "ro.db"
    with open_security(f"sqlite:///{path}", secret_keys="k") as security:
        security.authorize_token(AuthToken("a"), user=1)
        path.chmod(0o400)
        with pytest.raises(RepositoryError):
            security.authorize_token(AuthToken("a"), user=1)
        path.chmod(0o600)
        security.authorize_token(AuthToken("a"), user=1)


def test_environment_keys_have_no_comments(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in AUTHTOKEN_SECRET_KEYS that starts with '#' is a key, not a comment."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", "#first,second")
    with open_security(url) as security:
        string = security.authorize_token(AuthToken("a"), user=1)
    with open_security(url, secret_keys="#first") as signer:
        assert signer.login_by_auth_token(string).user == 1
    with open_security(url, secret_keys="second") as other:
        with pytest.raises(InvalidToken):
            other.login_by_auth_token(string)


@pytest.mark.parametrize("url", ["sqlite:///\x00", "sqlite:////tmp/x.db?timeout=abc"])
def test_unusable_urls_are_invalid_argument(url: str) -> None:
    """A URL that cannot be used gives InvalidArgument, not a raw ValueError."""
    with pytest.raises(InvalidArgument):
        open_security(url, secret_keys="k")


# -- the default store is private or refused ------------------------------------------------
OTHER_UID = 54321


def _first_use() -> tuple[Path, Path]:
    """Open the default store once, so that its folder and key file exist."""
    with open_security("memory://"):
        pass
    return default_key_path().parent, default_key_path()


def _refused(match: str) -> InvalidArgument:
    """The InvalidArgument that open_security() raises, its message matching ``match``."""
    with pytest.raises(InvalidArgument, match=match) as info:
        open_security()
    return info.value


@pytest.fixture
def as_root() -> None:
    """Skip unless the tests run as root, who can hand a file to another user."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702, 0o1777])
def test_folder_writable_by_others_is_refused(mode: int) -> None:
    """An existing data folder that group or others can write is refused, with the fix."""
    folder, _ = _first_use()
    folder.chmod(mode)
    error = _refused("chmod 700")
    assert str(folder) in str(error)
    folder.chmod(0o700)
    with open_security():
        pass


def test_folder_made_by_someone_else_before_first_use_is_refused() -> None:
    """A world-writable folder planted before first use is not adopted."""
    folder = default_key_path().parent
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    _refused("chmod 700")
    assert not default_key_path().exists() and not default_database_path().exists()


def test_folder_of_another_user_is_refused(as_root: None) -> None:
    """An existing data folder owned by someone else is refused."""
    folder, _ = _first_use()
    os.chown(folder, OTHER_UID, -1)
    _refused("belongs to")


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    """A key file that is a symbolic link is refused, even to a private regular file."""
    _, key = _first_use()
    elsewhere = tmp_path / "planted.key"
    elsewhere.write_text("planted-key\n")
    elsewhere.chmod(0o600)
    key.unlink()
    key.symlink_to(elsewhere)
    _refused("symbolic link")


def test_key_file_of_another_user_is_refused(as_root: None) -> None:
    """A key file owned by someone else is refused, whatever its mode."""
    _, key = _first_use()
    os.chown(key, OTHER_UID, -1)
    _refused("belongs to")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_key_file_open_to_others_is_refused(mode: int) -> None:
    """A key file that group or others have any permission on is refused with the fix."""
    _, key = _first_use()
    key.chmod(mode)
    _refused("chmod 600")


def test_key_file_that_is_a_directory_is_refused() -> None:
    """A directory where the key file belongs is refused, not read."""
    _, key = _first_use()
    key.unlink()
    key.mkdir(mode=0o700)
    _refused("regular file")


def test_key_file_that_is_a_fifo_is_refused_without_hanging() -> None:
    """A named pipe in place of the key file is refused at once instead of blocking."""
    _, key = _first_use()
    key.unlink()
    os.mkfifo(key, 0o600)
    code = "import authtoken\nauthtoken.open_security('memory://')\n"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("open_security() blocked on a named pipe")
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "regular file" in result.stderr


def test_private_store_is_used() -> None:
    """A folder that is ours and not writable by others, and a 0400/0600 key file, work."""
    folder, key = _first_use()
    folder.chmod(0o755)  # readable by others is fine: the files in it are private
    key.chmod(0o400)
    with open_security() as security:
        string = security.authorize_token(AuthToken("a"), user=1)
    key.chmod(0o600)
    with open_security() as security:
        assert security.login_by_auth_token(string).user == 1


def test_folder_is_private_whatever_the_umask() -> None:
    """The folder is created 0700 and the key file 0600 even under umask 000."""
    old = os.umask(0)
    try:
        _first_use()
    finally:
        os.umask(old)
    assert stat.S_IMODE(default_key_path().parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(default_key_path().stat().st_mode) == 0o600


def test_explicit_url_and_keys_skip_the_default_store() -> None:
    """With a URL and keys given, the default folder is neither made nor checked."""
    folder = default_key_path().parent
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    with open_security("memory://", secret_keys="k"):
        pass
