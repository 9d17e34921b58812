"""Reading a token string from a file, the way ssh reads a private key: the one reader
behind the command line's ``--token-file`` and the schedulers' ``token_file(path)``.

Theory of operation
-------------------
A token file is refused (``InvalidArgument``, a message naming the file and what to do,
never its content) unless it is safe:

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
5. it holds at most :data:`MAX_TOKEN_FILE` bytes, all of them ASCII (a token string is
   ASCII, at most 256 characters), and something besides whitespace.

The content is stripped of surrounding whitespace, so a trailing newline (or a Windows
``\\r\\n``) is fine.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from typing import Final

from ._errors import InvalidArgument

__all__ = ["MAX_TOKEN_FILE", "read_token_file"]

#: A token file holding more than this is refused (a token string is at most 256 bytes).
MAX_TOKEN_FILE: Final = 4 * 1024

_ACL_XATTR: Final = "system.posix_acl_access"
# Tags of a POSIX ACL entry as Linux stores them (linux/posix_acl_xattr.h).
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_READ_WRITE: Final = 0o6


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


class _Refusal:
    """Builds the refusals of one file: ``label``, the path, then what is wrong."""

    __slots__ = ("label", "path")

    def __init__(self, label: str, path: str) -> None:
        self.label = label
        self.path = path

    def __call__(self, problem: str) -> InvalidArgument:
        return InvalidArgument(f"{self.label} {self.path!r} {problem}")


def _check_open_file(fd: int, refuse: _Refusal) -> None:
    """Refuse an unsafe token file (see the module's docstring)."""
    path = refuse.path
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise refuse("is a folder, not a file: give the file that holds the token")
    if not stat.S_ISREG(info.st_mode):
        raise refuse("is not a regular file (a FIFO, socket or device is never read): "
                     "give the file that holds the token")
    uid = os.geteuid()
    if info.st_uid not in (uid, 0):
        raise refuse(f"is owned by user id {info.st_uid}, neither you ({uid}) nor root: a "
                     f"token file must be yours or root's; copy it to a file of your own "
                     f"and chmod 600 it")
    mode = stat.S_IMODE(info.st_mode)
    acl = _acl_grants_others(fd, uid) if mode & 0o070 else None
    if mode & 0o007 or (mode & 0o070 and acl is not False):
        raise refuse(f"has mode {mode:04o}: other users may read or change it, and a "
                     f"token file must be private to its owner; run 'chmod 600 {path}' "
                     f"(or 400) and try again")
    if info.st_size > MAX_TOKEN_FILE:
        raise refuse(f"holds {info.st_size} bytes, more than {MAX_TOKEN_FILE}: a token "
                     "file holds one token string (at most 256 characters)")


def _read_all(fd: int, refuse: _Refusal) -> bytes:
    """At most ``MAX_TOKEN_FILE + 1`` bytes of ``fd`` (the file may have grown since
    ``fstat``)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_TOKEN_FILE:
        try:
            chunk = os.read(fd, MAX_TOKEN_FILE + 1 - size)
        except OSError as exc:
            if exc.errno == errno.EINTR:  # pragma: no cover - PEP 475 retries
                continue
            raise refuse(f"cannot be read: {os.strerror(exc.errno or 0)}") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_token_file(path: str, *, label: str = "the token file") -> str:
    """The token string held in the file ``path``, stripped of surrounding whitespace.

    Raises ``InvalidArgument`` -- ``"<label> '<path>' <what is wrong and what to do>"``,
    never quoting the content -- when the file cannot be opened or read, is not a
    regular file, is not the user's or root's, may be read or written by group or others
    (an ACL granting only the current user aside), holds more than
    :data:`MAX_TOKEN_FILE` bytes or bytes that are not ASCII, or only whitespace.
    Nothing is left open after a refusal.
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        raise InvalidArgument(f"{label} needs the path of the file that holds the token")
    refuse = _Refusal(label, path)
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise refuse("does not exist") from None
    except PermissionError:
        raise refuse("cannot be read: permission denied (the file and the folders above "
                     "it must be readable by this user)") from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise refuse(f"cannot be opened: {reason}") from None
    try:
        _check_open_file(fd, refuse)
        raw = _read_all(fd, refuse)
    finally:
        os.close(fd)
    if len(raw) > MAX_TOKEN_FILE:
        raise refuse(f"holds more than {MAX_TOKEN_FILE} bytes: a token file holds one "
                     "token string (at most 256 characters)")
    if not raw.isascii():
        raise refuse("holds bytes that are not ASCII, and a token string is plain ASCII "
                     "('atk_...'): write only the token string into it")
    text = raw.decode("ascii").strip()
    if not text:
        raise refuse("is empty: write the token string into it (authtoken authorize ... "
                     "> FILE, with umask 077)")
    return text
