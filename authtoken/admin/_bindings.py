"""Scopes as people write them: script bindings added for them, slips pointed out.

A script path with a space written straight into a scope (``ufs:/jobs/my job.py``)
silently becomes two identifiers, and the token can never log in from that script.  So
the API's ``bind_paths``/``bind_keys`` fields and the page's script fields take the plain
path or key (and the page's "pin to code" field the plain SHA-256 hex digest), and this
module turns each into its binding with the package's own
``path_binding``/``key_binding``/``digest_binding``; what the caller wrote as scope
text is checked with ``scope_warnings``.  Both faces call :func:`written_scope`, so
they bind and warn alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._scopes import digest_binding, key_binding, path_binding, scope_warnings

__all__ = ["WrittenScope", "written_scope"]

ScopeInput = str | int | list[str | int]


@dataclass(frozen=True, slots=True)
class WrittenScope:
    """What to give ``AuthToken`` as its scope, and the warnings to show the writer."""

    scope: ScopeInput
    warnings: tuple[str, ...]


def written_scope(scope: ScopeInput, paths: Sequence[str] = (),
                  keys: Sequence[int] = (), digests: Sequence[str] = ()) -> WrittenScope:
    """``scope`` plus one binding per script path, key and code digest (after it, in
    order), and the warnings about ``scope`` as written.

    Without paths, keys or digests the scope is handed on unchanged.  With them, a
    ``scope`` that is empty (``""`` or ``[]``) is allowed: the token is then for those
    scripts (or that code) only.  Raises ``InvalidArgument`` for an empty path or one
    holding NUL or a digest that is not 64 lower-case hex digits, and ``ScopeError`` for
    a binding too long to be an identifier; the rest of the scope is checked by
    ``AuthToken``, as always.
    """
    bindings = ([path_binding(path) for path in paths] + [key_binding(key) for key in keys]
                + [digest_binding(digest) for digest in digests])
    warnings = scope_warnings(_text(scope))
    if not bindings:
        return WrittenScope(scope, warnings)
    return WrittenScope([*_items(scope), *bindings], warnings)


def _text(scope: ScopeInput) -> str:
    """The identifiers the writer typed, as one text (a key is never a slip)."""
    if isinstance(scope, str):
        return scope
    if isinstance(scope, int):
        return ""
    return " ".join(item for item in scope if isinstance(item, str))


def _items(scope: ScopeInput) -> list[str | int]:
    if isinstance(scope, str):
        return list(scope.split())  # a text scope is separated by runs of whitespace
    if isinstance(scope, int):
        return [scope]
    return list(scope)
