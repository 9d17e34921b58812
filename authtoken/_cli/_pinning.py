"""Scripts and code on the command line: ``--script-file``, ``--bind-file``, and code
bindings shortened where people read them.

The script a command (``login``, ``check``) speaks of is made in one place,
:func:`script_of`: ``--script-key`` and ``--script-path`` as given, and
``--script-file F`` read now for its SHA-256 (``Script.for_file``), its path taken from
``--script-path`` when that is given (the path the job runs as may differ from where the
file lies here).  ``--bind-file F`` pins a token to the code in ``F`` as it is now:
``sha256:`` and the digest.  A file that cannot be read -- missing, a folder,
unreadable -- is ``InvalidArgument`` naming it, exit 1, and nothing is stored.

A digest is 64 hex digits that nobody reads: ``show`` and ``list`` print a code binding
as ``sha256:`` and its first 8 digits with an ellipsis (:func:`short_scope`); ``--json``
keeps the whole scope.
"""

from __future__ import annotations

import argparse
import re
from typing import Final

from .._scopes import Script, digest_binding

__all__ = ["file_bindings", "script_of", "short_scope"]

_CODE_BINDING: Final = re.compile(r"(?<!\S)sha256:([0-9a-f]{8})[0-9a-f]{56}(?!\S)")


def short_scope(scope: str) -> str:
    """``scope`` with each code binding shortened to ``sha256:`` + 8 digits + ``…``."""
    return _CODE_BINDING.sub(r"sha256:\1…", scope)


def script_of(args: argparse.Namespace) -> Script | None:
    """The script ``--script-key``, ``--script-path`` and ``--script-file`` describe;
    ``None`` when none was given.  Raises ``InvalidArgument`` naming a script file that
    cannot be read."""
    key: int | None = args.script_key
    path: str | None = args.script_path
    file: str | None = getattr(args, "script_file", None)
    if file is not None:
        digest = Script.for_file(file).digest
        return Script(key=key, path=file if path is None else path, digest=digest)
    if key is None and path is None:
        return None
    return Script(key=key, path=path)


def file_bindings(args: argparse.Namespace) -> list[str]:
    """The code bindings ``--bind-file`` gives: ``sha256:<digest>`` of each file as it
    is now.  Raises ``InvalidArgument`` naming a file that cannot be read."""
    bindings: list[str] = []
    for file in getattr(args, "bind_file", None) or ():
        digest = Script.for_file(file).digest
        assert digest is not None  # for_file always reads one
        bindings.append(digest_binding(digest))
    return bindings
