"""The default store: where it lives, and that nobody else can plant anything in it.

With nothing configured, ``open_security`` keeps its SQLite database and its secret key
file in a per-user data folder.  Whoever can write in that folder can put a key and a
database of their own there, and with both they can log in as anyone, so the folder and
the key file are checked before use:

- the folder is created 0700; one that exists already must belong to the current user
  and be writable by nobody else (group and others may read and enter it: the files in
  it are private themselves);
- the key file must be a regular file -- not a symbolic link, not a named pipe -- that
  belongs to the current user, with no permission for group or others (0600 or 0400).
  It is checked on the opened descriptor (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``),
  so it cannot be swapped between the check and the read, and a named pipe cannot make
  the read wait forever.

A store that fails a check is refused with ``InvalidArgument`` whose message says what
to run (``chmod 700 …``, ``chmod 600 …``).  ``InvalidArgument``, not
``RepositoryError``: nothing is down and retrying will not help -- the setup is unsafe
and only its owner can fix it.  ``RepositoryError`` stays for what *is* a storage
failure: a folder that cannot be created, a key file that cannot be read.

On systems without POSIX owners and modes (Windows) only the file type is checked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from ._errors import InvalidArgument, RepositoryError

__all__ = [
    "create_key_file",
    "default_database_path",
    "default_database_url",
    "default_key_path",
    "default_secret_keys",
    "load_key_file",
    "parse_keys",
    "private_folder",
]

_POSIX: Final = os.name == "posix"
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
#: A key file is a few lines; anything larger is not one.
MAX_KEY_FILE_BYTES: Final = 65_536


def _data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("authtoken", appauthor=False))


def default_database_path() -> Path:
    """Where the embedded SQLite database lives: ``<user data dir>/authtoken/authtoken.db``.

    On Linux ``~/.local/share/authtoken/authtoken.db`` (``$XDG_DATA_HOME`` is honoured),
    on macOS ``~/Library/Application Support/authtoken/``, on Windows
    ``%LOCALAPPDATA%\\authtoken\\``.
    """
    return _data_dir() / "authtoken.db"


def default_key_path() -> Path:
    """Where the default secret key file lives: beside the default database."""
    return _data_dir() / "secret.key"


def _me() -> int:
    # The effective uid: the one that owns the files this process creates.
    return os.geteuid()


def private_folder(path: Path) -> None:
    """Make sure ``path`` is a folder only the current user can write in.

    Creates it with mode 0700 (and its parents as usual) when it is missing.  Raises
    ``InvalidArgument`` when it exists but belongs to someone else or is writable by
    group or others, ``RepositoryError`` when it cannot be created.  Nothing is changed
    on a refusal.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # checked below, like any folder found in place
    except OSError as exc:
        raise RepositoryError(
            f"cannot create the folder {str(path)!r}: {exc.strerror}; create it or set "
            "AUTHTOKEN_DATABASE_URL"
        ) from None
    else:
        # The umask may have taken bits off 0700 (so the folder is unusable) -- never
        # added any; set it exactly.
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise RepositoryError(f"cannot read the folder {str(path)!r}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidArgument(
            f"{str(path)!r} is not a folder; authtoken keeps its database and key file "
            "in a folder there: move the file away, or set AUTHTOKEN_DATABASE_URL and "
            "AUTHTOKEN_SECRET_KEYS"
        )
    if not _POSIX:
        return
    if info.st_uid != _me():
        raise InvalidArgument(
            f"the folder {str(path)!r} belongs to another user (uid {info.st_uid}), who "
            "could plant a key and a database there: remove it (authtoken makes a new "
            "one), or make it yours with 'chown' and 'chmod 700'"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InvalidArgument(
            f"the folder {str(path)!r} is writable by other users, who could plant a key "
            f"and a database there: run 'chmod 700 {path}', then check the files in it"
        )


def parse_keys(text: str, origin: str, *, comments: bool = False) -> list[str]:
    """The keys in ``text`` (one per line or comma-separated, newest first).

    ``comments``: lines starting with ``#`` are skipped (a key file has them; an
    environment variable does not, so a key there may start with ``#``).  Raises
    ``InvalidArgument`` naming ``origin`` when there is no key.
    """
    if comments:
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    keys = [k.strip() for k in text.replace("\n", ",").split(",")]
    keys = [k for k in keys if k]
    if not keys:
        raise InvalidArgument(f"{origin} holds no secret key; put at least one key in it")
    return keys


def _not_regular(path: Path, what: str) -> InvalidArgument:
    return InvalidArgument(
        f"the key file {str(path)!r} is {what}, not a regular file: a key file must be "
        "a file of its own that nobody else can swap; remove it (authtoken makes a new "
        "key on first use, and tokens signed with the old key stop working) or put the "
        "key file itself there, with 'chmod 600'"
    )


def _open_key_file(path: Path) -> int | None:
    """A descriptor of the key file at ``path`` once it passed the checks; ``None`` if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        # O_NOFOLLOW refuses a symbolic link (ELOOP on Linux, EMLINK on BSD); a socket
        # cannot be opened at all (ENXIO).  Say which, from the link itself.
        with contextlib.suppress(OSError):
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                raise _not_regular(path, "a symbolic link") from None
            if not stat.S_ISREG(info.st_mode):
                raise _not_regular(path, "a special file") from None
        if exc.errno == errno.ENOENT:
            return None
        raise RepositoryError(
            f"cannot read the key file {str(path)!r}: {exc.strerror}"
        ) from None
    try:
        _check_key_file(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_key_file(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise _not_regular(path, "a folder")
    if stat.S_ISFIFO(info.st_mode):
        raise _not_regular(path, "a named pipe")
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, "a special file")
    if not _POSIX:
        return
    if info.st_uid != _me():
        raise InvalidArgument(
            f"the key file {str(path)!r} belongs to another user (uid {info.st_uid}), "
            "who chose the key: remove it (authtoken makes a new one on first use) or "
            f"make it yours with 'chown' and 'chmod 600 {path}'"
        )
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidArgument(
            f"the key file {str(path)!r} is open to other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run 'chmod 600 {path}' (and, if others "
            "could read it, rotate the key)"
        )


def _read_key_file(path: Path, fd: int) -> list[str]:
    chunks: list[bytes] = []
    size = 0
    with os.fdopen(fd, "rb", closefd=True) as f:
        while chunk := f.read(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_KEY_FILE_BYTES:
                raise InvalidArgument(
                    f"the key file {str(path)!r} is larger than {MAX_KEY_FILE_BYTES} "
                    "bytes: it is not a key file"
                )
    try:
        text = b"".join(chunks).decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise InvalidArgument(f"the key file {str(path)!r} is not ASCII text")
    return parse_keys(text, f"the key file {str(path)!r}", comments=True)


def _load(path: Path) -> list[str] | None:
    """The keys of the key file at ``path`` once it passed the checks; ``None`` if absent."""
    try:
        fd = _open_key_file(path)
        return None if fd is None else _read_key_file(path, fd)
    except OSError as exc:
        raise RepositoryError(
            f"cannot read the key file {str(path)!r}: {exc.strerror}"
        ) from None


def load_key_file(path: Path) -> list[str]:
    """The keys of the key file at ``path`` (one per line or comma-separated, newest first).

    Raises ``InvalidArgument`` when the file is not a regular file of the current user
    with no permission for group or others (see the module notes) or holds no key,
    ``RepositoryError`` when it cannot be read (a missing file included).
    """
    keys = _load(path)
    if keys is None:
        raise RepositoryError(f"cannot read the key file {str(path)!r}: it does not exist")
    return keys


def create_key_file(path: Path) -> list[str]:
    """The keys of the key file at ``path``, created (mode 0600) with a fresh key if absent.

    The folder is made private or refused first (``private_folder``).  Creation is race
    safe: the key is written to a new file of its own (``O_CREAT | O_EXCL | O_NOFOLLOW``,
    mode 0600), which is then linked to ``path`` only if nothing is there yet -- so
    processes racing to create it all end up reading the complete key of the one that
    won, never a half-written file.  Raises as ``load_key_file``.
    """
    private_folder(path.parent)
    keys = _load(path)
    if keys is not None:
        return keys
    key = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            if _POSIX:
                os.fchmod(f.fileno(), 0o600)  # exactly, whatever the umask
            f.write(
                "# authtoken secret keys, newest first: the first signs, all verify.\n"
                f"{key}\n"
            )
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # never replaces what is there, a link included
    except OSError as exc:
        raise RepositoryError(
            f"cannot create the key file {str(path)!r}: {exc.strerror}"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return load_key_file(path)


def default_secret_keys() -> list[str]:
    """``AUTHTOKEN_SECRET_KEYS`` (comma-separated, newest first), else the key file.

    The key file is ``default_key_path()``, created on first use; see ``create_key_file``
    for what is refused.
    """
    env = os.environ.get("AUTHTOKEN_SECRET_KEYS", "")
    if env.strip():
        return parse_keys(env, "AUTHTOKEN_SECRET_KEYS")
    return create_key_file(default_key_path())


def default_database_url() -> str:
    """``AUTHTOKEN_DATABASE_URL`` if set, else the embedded SQLite file.

    For the embedded file the folder is made private or refused (``private_folder``).
    """
    url = os.environ.get("AUTHTOKEN_DATABASE_URL", "").strip()
    if url:
        return url
    path = default_database_path()
    private_folder(path.parent)
    return f"sqlite:///{path}"
