"""Where the command line reads a token string: ``--token-file``, standard input, or
``AUTHTOKEN_TOKEN``, in that order.

Theory of operation
-------------------
``--token-file F`` wins: when it is given, neither standard input nor the environment
is looked at, so standard input stays free for the command ``authtoken exec`` runs.  The
file is read the way ssh reads a private key, and refused (``InvalidArgument``, exit 1,
a message naming the file and what to do, never its content) unless it is safe:

1. it is opened first, without following into a FIFO's wait (``O_NONBLOCK``) and never
   inherited by a child (``O_CLOEXEC``), and every check is made on the open descriptor
   (``fstat``), so nothing can be swapped in between a check and the read;
2. it is a regular file (a symlink to one is followed, as ssh does): not a folder, a
   FIFO or a device such as ``/dev/zero``;
3. it is owned by the current user or by root;
4. neither group nor others may read or write it.  On a file with a POSIX access ACL the
   group bits of the mode are the ACL's mask, not the owning group's rights, so the ACL
   itself is read: only the owner and the current user may be granted anything.  That is
   how systemd hands a credential to a service's ``User=`` on a file system with ACLs
   (the file stays root's, mode 0400, plus an entry for the user, which shows as 0440);
   without ACLs it gives the file to the user, mode 0400.  Both pass;
5. it holds at most :data:`MAX_TOKEN_FILE` bytes, and something besides whitespace.

The content is stripped of surrounding whitespace (a trailing newline is normal) and
decoded as UTF-8 (undecodable bytes become U+FFFD, so the login refuses them as
``InvalidToken`` without them being shown).  Without ``--token-file``, standard input is
read unless it is a terminal, and ``AUTHTOKEN_TOKEN`` is used when it held nothing but
whitespace.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys
from typing import Any, Final, NamedTuple

from .._errors import InvalidArgument, InvalidToken

__all__ = [
    "MAX_STDIN",
    "MAX_TOKEN_FILE",
    "TOKEN_ENV",
    "TokenInput",
    "read_token",
    "read_token_file",
    "token_input",
]

#: At most this much of standard input is read when looking for a token string.
MAX_STDIN: Final = 64 * 1024
#: A token file holding more than this is refused (a token string is at most 256 bytes).
MAX_TOKEN_FILE: Final = 4 * 1024
TOKEN_ENV: Final = "AUTHTOKEN_TOKEN"  # noqa: S105 - a variable name, not a secret

_ACL_XATTR: Final = "system.posix_acl_access"
# Tags of a POSIX ACL entry as Linux stores them (linux/posix_acl_xattr.h).
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_READ_WRITE: Final = 0o6


class TokenInput(NamedTuple):
    """A token string read for a command, and whether standard input was consumed to
    read it (``authtoken exec`` then gives its command ``/dev/null`` instead)."""

    text: str
    read_stdin: bool


def _refuse(path: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"--token-file {path!r} {problem}")


def _acl_grants_others(fd: int, uid: int) -> bool | None:
    """Whether the file's POSIX access ACL lets anyone but its owner and ``uid`` read or
    write it; ``None`` when it has no ACL (or the system keeps none)."""
    try:
        raw = os.getxattr(fd, _ACL_XATTR)
    except (AttributeError, OSError):  # no ACL, no xattr support, or not Linux
        return None
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != 2:
        return True  # an ACL we cannot read: assume the worst
    entries = [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]
    mask = next((perm for tag, perm, _ in entries if tag == _MASK), 0o7)
    for tag, perm, who in entries:
        if tag == _OTHER and perm & _READ_WRITE:
            return True
        if tag in (_GROUP_OBJ, _GROUP) and perm & mask & _READ_WRITE:
            return True
        if tag == _USER and who != uid and perm & mask & _READ_WRITE:
            return True
    return False


def _check_open_file(fd: int, path: str) -> int:
    """Refuse an unsafe token file (see the module's docstring); its size when safe."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "is a folder, not a file: give the file that holds the token")
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, "is not a regular file (a FIFO, socket or device is never "
                            "read): give the file that holds the token")
    uid = os.geteuid()
    if info.st_uid not in (uid, 0):
        raise _refuse(path, f"is owned by user id {info.st_uid}, neither you ({uid}) nor "
                            f"root: a token file must be yours or root's; copy it to a "
                            f"file of your own and chmod 600 it")
    mode = stat.S_IMODE(info.st_mode)
    acl = _acl_grants_others(fd, uid) if mode & 0o070 else None
    if mode & 0o007 or (mode & 0o070 and acl is not False):
        raise _refuse(path, f"has mode {mode:04o}: other users may read or change it, and "
                            f"a token file must be private to its owner; run "
                            f"'chmod 600 {path}' (or 400) and try again")
    if info.st_size > MAX_TOKEN_FILE:
        raise _refuse(path, f"holds {info.st_size} bytes, more than {MAX_TOKEN_FILE}: a "
                            "token file holds one token string (at most 256 characters)")
    return info.st_size


def read_token_file(path: str) -> str:
    """The token string held in the file ``path``, stripped of surrounding whitespace.

    Raises ``InvalidArgument`` naming the file, never quoting its content, when it
    cannot be read, is not a regular file, is not the user's or root's, may be read or
    written by group or others, is larger than :data:`MAX_TOKEN_FILE` bytes, or holds
    only whitespace.
    """
    if not path:
        raise InvalidArgument("--token-file needs the path of the file that holds the "
                              "token")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _refuse(path, "does not exist") from None
    except PermissionError:
        raise _refuse(path, "cannot be read: permission denied (the file and the "
                            "folders above it must be readable by this user)") from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise _refuse(path, f"cannot be opened: {reason}") from None
    try:
        _check_open_file(fd, path)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_TOKEN_FILE:  # the file may have grown since fstat
            try:
                chunk = os.read(fd, MAX_TOKEN_FILE + 1 - size)
            except OSError as exc:
                if exc.errno == errno.EINTR:  # pragma: no cover - PEP 475 retries
                    continue
                raise _refuse(path, f"cannot be read: {os.strerror(exc.errno or 0)}") \
                    from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_TOKEN_FILE:
        raise _refuse(path, f"holds more than {MAX_TOKEN_FILE} bytes: a token file holds "
                            "one token string (at most 256 characters)")
    text = b"".join(chunks).decode("utf-8", "replace").strip()
    if not text:
        raise _refuse(path, "is empty: write the token string into it (authtoken "
                            "authorize ... > FILE, with umask 077)")
    return text


def _stdin_text(stream: Any) -> tuple[str, bool]:
    """What ``stream`` holds (at most ``MAX_STDIN``; ``""`` for a terminal), and whether
    it was read."""
    if stream is None:
        return "", False
    isatty = getattr(stream, "isatty", None)
    try:
        if callable(isatty) and isatty():
            return "", False
        source = getattr(stream, "buffer", None)
        if source is None or not callable(getattr(source, "read", None)):
            source = stream
        raw = source.read(MAX_STDIN + 1)
    except (OSError, ValueError):  # closed, unreadable or captured: nothing to read
        return "", False
    if raw is None:
        return "", True
    if len(raw) > MAX_STDIN and raw.strip():
        raise InvalidToken(
            "standard input holds more than 64 KiB; a token string is at most 256 characters"
        )
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "replace"), True
    return str(raw), True


def token_input(token_file: str | None = None) -> TokenInput:
    """The token string: from ``token_file`` when given (see :func:`read_token_file`),
    else from standard input, else from ``AUTHTOKEN_TOKEN``.

    Surrounding whitespace is stripped.  Standard input is used unless it is a terminal
    or holds only whitespace.  Raises ``InvalidToken`` when neither holds anything.
    """
    if token_file is not None:
        return TokenInput(read_token_file(token_file), read_stdin=False)
    text, read_stdin = _stdin_text(sys.stdin)
    text = text.strip()
    if not text:
        text = os.environ.get(TOKEN_ENV, "").strip()
    if not text:
        raise InvalidToken(
            f"no token string: pipe it on standard input, set {TOKEN_ENV} or give "
            "--token-file F"
        )
    return TokenInput(text, read_stdin)


def read_token(token_file: str | None = None) -> str:
    """The token string, as :func:`token_input` finds it."""
    return token_input(token_file).text
