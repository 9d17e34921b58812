"""The scope grammar and script bindings.

A scope is a set of identifiers.  Most are opaque to the engine; three families bind a
token to the scripts allowed to use it:

- ``vfs:ikey?<integer>`` -- a script by its integer key (canonical decimal);
- ``ufs:<escaped path>`` -- a script by its path, JavaScript-``escape``d so that it
  holds no whitespace, stored as ``ufs:`` + ``escape(normpath(unescape(path)))``;
- ``sha256:<64 lower-case hex digits>`` -- a *code binding*: the SHA-256 of the code
  the script runs (``Script.digest``).

The first two are *script bindings*; a token holding any may be used by a script that
matches one of them.  Code bindings are a second, separate rule: a token holding any may
be used only by a script whose digest is one of them.  A token holding both kinds needs
both satisfied (``script_matches``).  Identifiers are case-sensitive: ``VFS:``, ``UFS:``
and ``SHA256:`` in another case are opaque (``scope_warnings`` says so).

``parse_scope`` turns any accepted input into the canonical tuple, first-seen order,
duplicates dropped, or raises ``ScopeError`` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._errors import ArgumentTypeError, InvalidArgument, ScopeError
from ._escape import escape, strict_unescape
from ._redact import redact

__all__ = [
    "MAX_IDENTIFIERS",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_SCOPE_LENGTH",
    "Script",
    "binding_refusal",
    "bindings_of",
    "canonical_identifier",
    "code_bindings_of",
    "digest_binding",
    "key_binding",
    "parse_scope",
    "path_binding",
    "scope_warnings",
    "script_matches",
]

MAX_IDENTIFIER_LENGTH = 512
MAX_IDENTIFIERS = 256
MAX_SCOPE_LENGTH = 8192

_VFS_PREFIX = "vfs:"
_UFS_PREFIX = "ufs:"
_SHA_PREFIX = "sha256:"
_VFS_KEY = re.compile(r"vfs:ikey\?(-?[0-9]+)\Z", re.ASCII)
_DIGEST = re.compile(r"[0-9a-f]{64}\Z", re.ASCII)
_ANY_CASE_DIGEST = re.compile(r"[0-9a-fA-F]{64}\Z", re.ASCII)
_DIGEST_FIX = ("write 'sha256:' and the 64 lower-case hex digits of the code's SHA-256, "
               "as 'sha256sum FILE' or Script.for_file(path).digest gives them")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# 10**503 needs fewer bits than this: any larger key cannot fit in 512 characters.
_MAX_KEY_BITS = 1700


def _shown(identifier: str) -> str:
    identifier = redact(identifier)
    text = identifier if len(identifier) <= 40 else identifier[:37] + "..."
    return ascii(text)


def _vfs(key: int) -> str:
    return f"vfs:ikey?{key}"


def _vfs_binding(key: int) -> str | None:
    """``vfs:ikey?<key>``, or ``None`` when the key is too large to be an identifier."""
    if key.bit_length() > _MAX_KEY_BITS:
        # Too long anyway, and str() of a huge int raises ValueError (int_max_str_digits).
        return None
    identifier = _vfs(key)
    return identifier if len(identifier) <= MAX_IDENTIFIER_LENGTH else None


def _canonical_vfs(identifier: str) -> str:
    m = _VFS_KEY.match(identifier)
    if m is None:
        raise ScopeError(
            f"scope identifier {_shown(identifier)} is not a script key binding: write "
            "'vfs:ikey?<integer>', e.g. 'vfs:ikey?42' (ASCII digits, optional minus)",
            identifier=identifier,
        )
    return _vfs(int(m.group(1)))


def _canonical_ufs(identifier: str) -> str:
    escaped = identifier[len(_UFS_PREFIX):]
    if not escaped:
        raise ScopeError(
            "scope identifier 'ufs:' has no path: write 'ufs:' + escape(path), "
            "e.g. 'ufs:/jobs/nightly.js'",
            identifier=identifier,
        )
    path = strict_unescape(escaped)
    if path is None:
        raise ScopeError(
            f"scope identifier {_shown(identifier)} holds a malformed escape: every '%' "
            "must start '%XX' or '%uXXXX' (hex digits); escape the path with "
            "authtoken.escape(path)",
            identifier=identifier,
        )
    return _UFS_PREFIX + escape(posixpath.normpath(path))


def _check_code(identifier: str) -> str:
    digits = identifier[len(_SHA_PREFIX):]
    if _DIGEST.match(digits):
        return identifier
    if _ANY_CASE_DIGEST.match(digits):
        problem = "has upper-case hex digits; write them in lower case"
    elif not digits:
        problem = "has no digest"
    elif len(digits) != 64:
        problem = f"has {len(digits)} characters after 'sha256:', not 64"
    else:
        problem = "holds characters that are not hex digits"
    raise ScopeError(
        f"code binding {_shown(identifier)} {problem}: {_DIGEST_FIX}",
        identifier=identifier,
    )


def _check_characters(identifier: str) -> None:
    if not identifier:
        raise ScopeError("a scope identifier is empty: give 1 to 512 characters")
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ScopeError(
            f"scope identifier {_shown(identifier)} is {len(identifier)} characters "
            f"long; the limit is {MAX_IDENTIFIER_LENGTH}",
            identifier=identifier,
        )
    if identifier.isascii() and identifier.isprintable() and " " not in identifier:
        return
    for ch in identifier:
        if ch.isspace() or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise ScopeError(
                f"scope identifier {_shown(identifier)} contains "
                f"U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}); identifiers "
                "cannot hold whitespace, control, format or surrogate characters "
                "(escape script paths with authtoken.escape)",
                identifier=identifier,
            )


def canonical_identifier(identifier: str) -> str:
    """Return the canonical form of one ``str`` identifier, or raise ``ScopeError``."""
    _check_characters(identifier)
    head = identifier[:4]
    if head == _VFS_PREFIX:
        return _canonical_vfs(identifier)
    if head == _UFS_PREFIX:
        canonical = _canonical_ufs(identifier)
        if len(canonical) > MAX_IDENTIFIER_LENGTH:
            raise ScopeError(
                f"scope identifier {_shown(identifier)} is {len(canonical)} characters "
                f"long once canonical; the limit is {MAX_IDENTIFIER_LENGTH}",
                identifier=identifier,
            )
        return canonical
    if identifier[:7] == _SHA_PREFIX:
        return _check_code(identifier)
    # Anything else -- 'VFS:ikey?1' and 'SHA256:...' included, since matching is
    # case-sensitive -- is opaque: it binds nothing (scope_warnings tells the writer so).
    return identifier


def _item(item: object) -> str:
    if isinstance(item, bool) or not isinstance(item, (str, int)):
        raise ArgumentTypeError(
            f"scope items must be str identifiers or int script keys, not "
            f"{type(item).__name__}"
        )
    if isinstance(item, int):
        binding = _vfs_binding(item)
        if binding is None:
            raise ScopeError("a script key is too large to be an identifier")
        return binding
    if item and any(ch.isspace() for ch in item):
        raise ScopeError(
            f"scope item {_shown(item)} holds whitespace; each item of a list is one "
            "identifier (pass a single str to separate identifiers by whitespace)",
            identifier=item,
        )
    return canonical_identifier(item)


def parse_scope(scope: object) -> tuple[str, ...]:
    """Return the canonical identifiers of ``scope``.

    ``scope`` is a whitespace-separated ``str``, an ``int`` script key, or an iterable of
    ``str``/``int`` items.  Raises ``ScopeError`` for a grammar error and a
    ``TypeError`` (``ArgumentTypeError``) for a value of the wrong type.
    """
    if isinstance(scope, str):
        items: Iterable[object] = scope.split()
    elif isinstance(scope, (bool, bytes, bytearray, memoryview)):
        raise ArgumentTypeError(
            f"scope must be a str, an int script key or a list of them, not "
            f"{type(scope).__name__}"
        )
    elif isinstance(scope, int):
        items = (scope,)
    elif isinstance(scope, Iterable) and not isinstance(scope, dict):
        items = scope
    else:
        raise ArgumentTypeError(
            f"scope must be a str, an int script key or a list of them, not "
            f"{type(scope).__name__}"
        )
    seen: dict[str, None] = {}
    length = -1
    for item in items:
        identifier = _item(item)
        if identifier in seen:
            continue
        seen[identifier] = None
        length += len(identifier) + 1
        if len(seen) > MAX_IDENTIFIERS:
            raise ScopeError(
                f"a scope holds at most {MAX_IDENTIFIERS} distinct identifiers; "
                "split the work across several tokens"
            )
        if length > MAX_SCOPE_LENGTH:
            raise ScopeError(
                f"a scope holds at most {MAX_SCOPE_LENGTH} characters once joined by "
                "spaces; shorten it or split it across several tokens"
            )
    if not seen:
        raise ScopeError(
            "a scope needs at least one identifier, e.g. 'reports:read' or 'vfs:ikey?42'"
        )
    return tuple(seen)


def bindings_of(scopes: Iterable[str]) -> tuple[str, ...]:
    """The script bindings (``vfs:``/``ufs:`` identifiers) among canonical ``scopes``."""
    return tuple(s for s in scopes if s[:4] in (_VFS_PREFIX, _UFS_PREFIX))


def code_bindings_of(scopes: Iterable[str]) -> tuple[str, ...]:
    """The code bindings (``sha256:`` identifiers) among canonical ``scopes``."""
    return tuple(s for s in scopes if s[:7] == _SHA_PREFIX)


def _check_digest(digest: object, what: str) -> str:
    if not isinstance(digest, str):
        raise ArgumentTypeError(f"{what} must be a str, not {type(digest).__name__}")
    if _DIGEST.match(digest):
        return digest
    if _ANY_CASE_DIGEST.match(digest):
        problem = "has upper-case hex digits; write them in lower case (digest.lower())"
    else:
        problem = (f"is not 64 hex digits ({len(digest)} characters); give the "
                   "hexdigest() of hashlib.sha256 over the code, or use Script.for_file")
    raise InvalidArgument(f"{what} {problem}")


_CHUNK = 1 << 20


def _file_digest(path: str) -> str:
    """The SHA-256 of the regular file at ``path``, read in chunks; ``InvalidArgument``
    naming the path when it cannot be read or is not a regular file."""
    shown = ascii(redact(path))
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidArgument(f"cannot read the script file {shown}: {reason}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgument(
                f"the script file {shown} is not a regular file (a folder, device or "
                "pipe); give the path of the file the script runs"
            )
        digest = hashlib.sha256()
        try:
            while chunk := os.read(fd, _CHUNK):
                digest.update(chunk)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise InvalidArgument(
                f"cannot read the script file {shown}: {reason}"
            ) from None
        return digest.hexdigest()
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Script:
    """The script that is logging in: its integer ``key``, its ``path``, the SHA-256
    ``digest`` of the code it runs (64 lower-case hex digits), or any of them together.

    Raises ``InvalidArgument`` when none is given or the digest is malformed, and
    ``TypeError`` for wrong types.  ``Script.for_file`` computes the digest of a file.
    """

    key: int | None = None
    path: str | None = None
    digest: str | None = field(default=None, kw_only=True)
    _identifiers: frozenset[str] = field(
        init=False, repr=False, compare=False, hash=False, default=frozenset()
    )

    def __post_init__(self) -> None:
        if self.key is None and self.path is None and self.digest is None:
            raise ArgumentTypeError("Script needs a key, a path or a digest")
        if self.key is not None and (
            isinstance(self.key, bool) or not isinstance(self.key, int)
        ):
            raise ArgumentTypeError(
                f"Script.key must be an int, not {type(self.key).__name__}"
            )
        if self.path is not None and not isinstance(self.path, str):
            raise ArgumentTypeError(
                f"Script.path must be a str, not {type(self.path).__name__}"
            )
        if self.path is not None and (not self.path or "\x00" in self.path):
            raise InvalidArgument(
                "Script.path must be a non-empty path without NUL characters; "
                "leave it None for a script known only by its key"
            )
        found = set()
        if self.digest is not None:
            found.add(_SHA_PREFIX + _check_digest(self.digest, "Script.digest"))
        binding = None if self.key is None else _vfs_binding(self.key)
        if binding is not None:
            found.add(binding)
        if self.path:
            found.add(_UFS_PREFIX + escape(posixpath.normpath(self.path)))
        # Computed once: every login of this script compares against it.
        object.__setattr__(self, "_identifiers", frozenset(found))

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], *, key: int | None = None) -> Script:
        """The script that runs the file at ``path``: its ``path`` (as given) and the
        ``digest`` of the file's bytes as they are now, read in chunks of any size.

        A symbolic link is followed: the digest is of the file it points to, the path
        the one given.  Raises ``InvalidArgument`` naming the path when the file is
        missing, unreadable or not a regular file (a folder, a device, a pipe), and
        ``TypeError`` for a ``path`` that is not a ``str`` or ``os.PathLike[str]``.
        """
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str):
            raise ArgumentTypeError(
                f"Script.for_file needs a str path, not {type(path).__name__}"
            )
        if not path or "\x00" in path:
            raise InvalidArgument(
                "Script.for_file needs a non-empty path without NUL characters"
            )
        return cls(key=key, path=path, digest=_file_digest(path))

    def __repr__(self) -> str:
        # a token string pasted as the path must not come back in a log line
        shown = f"Script(key={self.key!r}, path={self.path!r}"
        if self.digest is not None:
            shown += f", digest={self.digest!r}"
        return redact(shown + ")")

    def identifiers(self) -> frozenset[str]:
        """The canonical binding identifiers this script satisfies."""
        return self._identifiers


def script_matches(bindings: tuple[str, ...], script: Script | None) -> bool:
    """Whether ``script`` may use a token with these canonical ``bindings``.

    No binding: any script, or none.  Script bindings among them (``vfs:``/``ufs:``):
    the script must satisfy one -- ``vfs:ikey?K`` its key ``K``, ``ufs:P`` its path
    normalised and escaped as ``P`` is.  Code bindings among them (``sha256:``): the
    script's ``digest`` must be one of them, *as well*.  Matching is exact: no
    prefixes, no globbing, case-sensitive.  The same decision as ``binding_refusal``,
    which every login makes.
    """
    return binding_refusal(bindings, script) is None


def binding_refusal(scopes: tuple[str, ...], script: Script | None) -> str | None:
    """``None`` when ``script`` may use a token with canonical ``scopes`` (see
    ``script_matches``), else what the ``ScriptNotAuthorized`` refusal says: which rule
    failed, and what to change.  The one home of the rule: every login decides with it,
    against the identifiers the ``Script`` computed once."""
    held = frozenset() if script is None else script.identifiers()
    scripts = bindings_of(scopes)
    if scripts and held.isdisjoint(scripts):
        return ("the token is bound to other scripts" if script is not None
                else "the token is bound to scripts: log in with the Script using it")
    code = code_bindings_of(scopes)
    if code and held.isdisjoint(code):
        if script is None or script.digest is None:
            return ("the token is pinned to code: log in with Script.for_file(path) or "
                    "a Script with the digest of the code it runs")
        return ("the token is pinned to other code: the script's digest is none of "
                "its sha256: bindings (was the file changed since the token was made?)")
    return None


# -- helping people write what they mean ---------------------------------------------------
def key_binding(key: int) -> str:
    """The identifier that binds a token to the script with integer ``key``.

    Raises ``TypeError`` for a non-``int`` (or ``bool``) and ``ScopeError`` for a key
    too large to be an identifier.
    """
    if isinstance(key, bool) or not isinstance(key, int):
        raise ArgumentTypeError(f"a script key is an int, not {type(key).__name__}")
    binding = _vfs_binding(key)
    if binding is None:
        raise ScopeError("a script key is too large to be an identifier")
    return binding


def path_binding(path: str) -> str:
    """The identifier that binds a token to the script at ``path``, escaped for you.

    ``path`` is the plain path as the script runner sees it -- spaces, ``%`` and
    non-ASCII characters included (``"/jobs/my job.py"`` gives
    ``"ufs:/jobs/my%20job.py"``).  Raises ``InvalidArgument`` for an empty path or one
    holding NUL, ``TypeError`` for a non-``str``, and ``ScopeError`` for a path too long
    to be an identifier.
    """
    if not isinstance(path, str):
        raise ArgumentTypeError(f"a script path is a str, not {type(path).__name__}")
    if not path or "\x00" in path:
        raise InvalidArgument("a script path must be non-empty and hold no NUL character")
    return canonical_identifier(_UFS_PREFIX + escape(posixpath.normpath(path)))


def digest_binding(digest: str) -> str:
    """The identifier that pins a token to the code whose SHA-256 is ``digest``
    (64 lower-case hex digits, as ``hashlib.sha256(code).hexdigest()`` and
    ``Script.for_file(path).digest`` give them): ``"sha256:" + digest``.

    Raises ``InvalidArgument`` for a digest of another length, case or alphabet and
    ``TypeError`` for a non-``str``.
    """
    return _SHA_PREFIX + _check_digest(digest, "a code digest")


def _looks_like_scope(identifier: str) -> bool:
    # 'reports:read', 'vfs:ikey?1', 'urn:x', 'authtoken:admin': a scheme-like head.
    head, sep, _ = identifier.partition(":")
    return bool(sep) and bool(head) and "/" not in head and "." not in head


def scope_warnings(scope: str) -> tuple[str, ...]:
    """Advice on a scope *text* that is valid but probably not what its writer meant.

    Three slips are caught, each one warning that says what the scope does and how to
    write what was likely meant:

    - an identifier holding a comma (``"reports:read,reports:write"`` is one opaque
      scope: scopes are separated by whitespace);
    - a binding written in the wrong case (``"VFS:ikey?1"`` and ``"SHA256:..."`` are
      opaque and bind nothing);
    - an identifier following a ``ufs:`` one the way the rest of a path with a space
      would (``"ufs:/jobs/my job.py"`` binds ``/jobs/my`` plus an opaque ``job.py``).

    Never raises for a ``str``; grammar errors are :func:`parse_scope`'s to report.
    Token-shaped text in the scope is masked in the warnings.
    """
    if not isinstance(scope, str):
        raise ArgumentTypeError(f"scope must be a str here, not {type(scope).__name__}")
    warnings: list[str] = []
    previous: str | None = None
    for identifier in scope.split():
        head = identifier[:4]
        code_head = identifier[:7]
        if head.lower() in (_VFS_PREFIX, _UFS_PREFIX) and head not in (
            _VFS_PREFIX, _UFS_PREFIX
        ):
            warnings.append(
                f"scope {_shown(identifier)} is an opaque scope, not a script binding: "
                f"bindings are lower case ({_shown(head.lower() + identifier[4:])})"
            )
        elif code_head.lower() == _SHA_PREFIX and code_head != _SHA_PREFIX:
            warnings.append(
                f"scope {_shown(identifier)} is an opaque scope, not a code binding: "
                "code bindings are lower case ('sha256:' and 64 lower-case hex digits)"
            )
        elif "," in identifier and head not in (_VFS_PREFIX, _UFS_PREFIX):
            parts = " ".join(part for part in identifier.split(",") if part)
            warnings.append(
                f"scope {_shown(identifier)} holds a comma, so it is one opaque scope: "
                f"scopes are separated by spaces (write {_shown(parts)} for several)"
            )
        if (
            previous is not None
            and previous[:4] == _UFS_PREFIX
            and not _looks_like_scope(identifier)
        ):
            joined = previous + "%20" + escape(identifier)
            warnings.append(
                f"scope {_shown(identifier)} follows {_shown(previous)} as the rest of "
                "a path with a space would: a space separates scopes, so the token is "
                f"bound to {_shown(previous)} and also holds {_shown(identifier)}; bind "
                f"the script by its path instead, or write {_shown(joined)}"
            )
        previous = identifier
    return tuple(warnings)
