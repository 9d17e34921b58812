"""``authtoken scan``: find token strings in files, folders and standard input.

Theory of operation
-------------------
A file is read as bytes, a line at a time, and each line at most :data:`PIECE` bytes at
a time, so a file of any size -- one long line included -- takes bounded memory.  Bytes
are decoded as Latin-1: a token string is ASCII, every byte of a multi-byte UTF-8
character is above 0x7f, so no decoding error can hide a token or make one up, and a
file need not be UTF-8.  When a line is longer than a piece, the last
``TOKEN_LENGTH - 1`` characters of one piece are searched again with the next, so a
token cut in two is still found, and found once: the carried tail is too short to hold
a whole token.

A file whose first block (:data:`BINARY_PROBE` bytes) holds a NUL byte is binary and
skipped, as git does; a file that cannot be read is skipped with a note on standard
error.  A folder is walked recursively, ``.git`` folders left out (``git log -p |
authtoken scan -`` reads a history), symbolic links to folders not followed, and only
regular files read, each opened without blocking so that a FIFO never hangs the walk.

Nothing here opens the store or needs a key: only ``--check`` and ``--revoke`` do, once.
No line written holds a token string: a finding is its key, and paths are shown masked
(:func:`authtoken._redact.redact`) and with control characters escaped.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO, Final, NamedTuple

from .._errors import InvalidToken
from .._redact import redact
from .._scan import find_tokens
from .._security import Security
from ._commands import open_store, usage_error
from ._output import note, out, print_json, safe

__all__ = ["BINARY_PROBE", "PIECE", "TOKEN_LENGTH", "Finding", "cmd_scan", "scan_stream"]

#: The length of a token string issued now (``atk_`` + key + three parts + dots).
TOKEN_LENGTH: Final = 115
#: How much of a line is searched at once.
PIECE: Final = 1024 * 1024
#: A NUL byte in this many first bytes makes a file binary.
BINARY_PROBE: Final = 8192

_SKIPPED_FOLDERS: Final = frozenset({".git"})


class Finding(NamedTuple):
    """A token string found: where (``path`` as shown, ``line`` from 1) and its key."""

    path: str
    line: int
    key: str


class _Binary(Exception):
    """The stream is binary (a NUL byte in its first block)."""


def _keys_in_line(read: _Prefixed, first: bytes) -> Iterator[tuple[str, str]]:
    """The keys and strings of the tokens in one line whose first piece is ``first``;
    reads the rest of the line from ``read`` piece by piece.  The string is kept for
    ``--check``/``--revoke`` to verify, never shown."""
    tail = ""
    piece = first
    while True:
        text = tail + piece.decode("latin-1")
        # The tail is one character shorter than a token: none found twice.
        for found in find_tokens(text):
            yield found.key, text[found.start:found.end]
        if not piece or piece.endswith(b"\n") or len(piece) < PIECE:
            return
        tail = text[-(TOKEN_LENGTH - 1):]
        piece = read.readline(PIECE)


class _Prefixed:
    """``head`` (bytes already read), then ``rest``: a ``readline(limit)`` over both."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head = head
        self.rest = rest

    def readline(self, limit: int) -> bytes:
        if not self.head:
            return self.rest.readline(limit)
        end = self.head.find(b"\n", 0, limit)
        if end >= 0 or len(self.head) >= limit:
            cut = end + 1 if end >= 0 else limit
            line, self.head = self.head[:cut], self.head[cut:]
            return line
        line, self.head = self.head, b""
        return line + self.rest.readline(limit - len(line))


def scan_stream(stream: IO[bytes], shown: str) -> Iterator[Finding]:
    """The tokens in ``stream``, line by line, as ``Finding`` under the name ``shown``.

    Raises ``_Binary`` before yielding anything when the first block holds a NUL byte,
    and ``OSError`` when the stream cannot be read.
    """
    for finding, _string in _found_in(stream, shown):
        yield finding


def _found_in(stream: IO[bytes], shown: str) -> Iterator[tuple[Finding, str]]:
    """``scan_stream``'s findings, each with the string found (to verify, not show)."""
    head = stream.read(BINARY_PROBE)
    if b"\0" in head:
        raise _Binary
    lines = _Prefixed(head, stream)
    number = 0
    while piece := lines.readline(PIECE):
        number += 1
        for key, string in _keys_in_line(lines, piece):
            yield Finding(shown, number, key), string


def _shown(path: str) -> str:
    return safe(redact(path))


class _Scan:
    """One run of ``scan``: what it found, what it skipped, and the store it asks."""

    def __init__(self, args: argparse.Namespace, security: Security | None) -> None:
        self.security = security
        self.revoke: bool = args.revoke
        self.json: bool = bool(getattr(args, "json", False))
        self.found: list[dict[str, object]] = []
        self.binary = 0
        self.statuses: dict[str, str] = {}

    def status(self, string: str) -> str:
        """What the store knows of the token ``string``: the string itself is verified
        (signature and secret), so that a string made up around a real token's key --
        keys are no secret, and the checksum needs no key -- is ``unknown``, never
        reported live nor revoked."""
        assert self.security is not None
        if string in self.statuses:
            return self.statuses[string]
        try:
            token = self.security.restore_auth_token(string)
        except InvalidToken:
            status = "unknown"
        else:
            if token.revoked_at is not None:
                status = "revoked"
            elif token.expires is not None and self.security.now() >= token.expires:
                status = "expired"
            else:
                status = "live"
        self.statuses[string] = status
        return status

    def report(self, finding: Finding, string: str) -> None:
        entry: dict[str, object] = {"path": finding.path, "line": finding.line,
                                    "key": finding.key}
        line = f"{finding.path}:{finding.line}: {finding.key}"
        if self.security is not None:
            status = self.status(string)
            entry["status"] = status
            line += f" {status}"
            if status == "live" and self.revoke:
                self.security.revoke_auth_token(string)
                self.statuses[string] = "revoked"
                entry["revoked"] = True
                line += f"; revoked {finding.key} now (and every token derived from it)"
        self.found.append(entry)
        if not self.json:
            out(line)

    def stream(self, stream: IO[bytes], shown: str) -> None:
        try:
            for finding, string in _found_in(stream, shown):
                self.report(finding, string)
        except _Binary:
            self.binary += 1
        except OSError as exc:
            note(f"authtoken: skipped {shown}: {exc.strerror or type(exc).__name__}")

    def file(self, path: str, *, walked: bool) -> None:
        """Scan the file at ``path``; when ``walked``, only a regular file."""
        shown = _shown(path)
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        if walked:  # a FIFO met in a folder must not block the walk
            flags |= getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            note(f"authtoken: skipped {shown}: {exc.strerror or type(exc).__name__}")
            return
        try:
            mode = os.fstat(fd).st_mode
        except OSError:  # pragma: no cover - fstat of an open descriptor
            os.close(fd)
            return
        if stat.S_ISDIR(mode) or (walked and not stat.S_ISREG(mode)):
            os.close(fd)
            return
        with os.fdopen(fd, "rb") as stream:
            self.stream(stream, shown)

    def folder(self, top: str) -> None:
        def skipped(error: OSError) -> None:
            where = error.filename if isinstance(error.filename, str) else top
            note(f"authtoken: skipped {_shown(where)}: "
                 f"{error.strerror or type(error).__name__}")

        for folder, folders, files in os.walk(top, onerror=skipped):
            folders[:] = sorted(f for f in folders if f not in _SKIPPED_FOLDERS)
            for name in sorted(files):
                self.file(os.path.join(folder, name), walked=True)

    def path(self, path: str) -> None:
        if path == "-":
            source = getattr(sys.stdin, "buffer", None)
            if source is None:  # a text stream stands in for standard input
                import io

                text = sys.stdin.read() if sys.stdin is not None else ""
                source = io.BufferedReader(io.BytesIO(text.encode("utf-8")))
            self.stream(source, "-")
        elif os.path.isdir(path):
            self.folder(path)
        else:
            self.file(path, walked=False)


def cmd_scan(args: argparse.Namespace) -> int:
    paths: list[str] = args.paths or ["."]
    missing = [p for p in paths if p != "-" and not os.path.lexists(p)]
    if missing:
        for path in missing:
            note(f"authtoken: scan: no such file or folder: {_shown(path)}")
        usage_error(args, "give paths that exist (nothing was scanned)")
    if paths.count("-") > 1:
        usage_error(args, "standard input ('-') can be read once")
    if args.revoke or args.check:
        with open_store(args) as security:
            return _run(args, security, paths)
    return _run(args, None, paths)


def _run(args: argparse.Namespace, security: Security | None, paths: list[str]) -> int:
    scan = _Scan(args, security)
    for path in paths:
        scan.path(path)
    if scan.binary:
        note(f"authtoken: skipped {scan.binary} binary file{'s' if scan.binary > 1 else ''} "
             f"(a NUL byte in the first {BINARY_PROBE // 1024} KiB)")
    if scan.json:
        print_json({"found": scan.found})
    return 1 if scan.found else 0
