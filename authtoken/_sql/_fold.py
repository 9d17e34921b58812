"""The fold on SQLite: read staged rows without the write lock, file them token by token.

A SQLite file has one write lock.  A fold that read, summed and filed ten thousand
staged rows in one transaction held it for a page write per distinct token and per
event -- on a busy machine a tenth of a second and more, while a revocation waited.  So
on SQLite a fold reads its rows in a read transaction (readers never wait in WAL mode),
sums them there, and files them in *parts*: each part is every taken row of a few
hundred tokens (``FOLD_WRITES`` writes at most), filed in a short write transaction of
its own.  A token's rows all go in one part, so a part sums them as fully as one large
transaction did.  Before each part the fold lets a waiting revocation go first
(``_urgent``).

Each part deletes its rows by id in the transaction that files them, and files nothing
unless every one of them is still staged: a row another fold filed meanwhile makes the
part roll back, and this fold stops there (whatever it has not filed stays staged, for
the next fold).  An id names one staged row for good: the table is ``AUTOINCREMENT``
on SQLite (revision 0007), so no id is handed out twice, even once the table empties.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.engine import Connection

from ._dialect import Dialect
from ._staging import FOLD_WRITES, file_rows

__all__ = ["Part", "Taken", "file_part", "parts", "read_staged"]

_READ: Final = (
    "SELECT id, at, action, outcome, actor, token_key, user_ref, script_key, script_path, "
    'reason, "count", uses FROM authtoken_staged ORDER BY id LIMIT ?'
)
_DROP: Final = "DELETE FROM authtoken_staged WHERE id = ?"


@dataclass(frozen=True)
class Part:
    """Staged rows filed together: their ``ids`` (every one must still be staged), and
    what they file (``file_rows``)."""

    ids: list[int]
    usage: list[dict[str, Any]]
    audit: list[tuple[Any, ...]]


def read_staged(conn: Connection, limit: int) -> list[tuple[Any, ...]]:
    """The oldest ``limit`` staged rows, in ``conn``'s transaction (a read will do)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return list(raw.execute(_READ, (limit,)).fetchall())


def parts(rows: Sequence[Sequence[Any]], writes: int = FOLD_WRITES) -> Iterator[Part]:
    """``rows`` (``read_staged``'s) in parts of whole tokens, each about ``writes``
    writes at most (a token with more events than that is a part of its own); events
    of no token (a revoke-all) come first."""
    groups: dict[str | None, list[Sequence[Any]]] = {None: []}
    for row in rows:
        groups.setdefault(row[5], []).append(row)
    batch: list[Sequence[Any]] = []
    cost = 0
    for key, group in groups.items():
        # A token's usage is one write; its events at most one each (summed by kind).
        weight = (key is not None) + sum(row[2] is not None for row in group)
        if batch and cost + weight > writes:
            yield _part(batch)
            batch, cost = [], 0
        batch.extend(group)
        cost += weight
    if batch:
        yield _part(batch)


def _part(rows: list[Sequence[Any]]) -> Part:
    usage, audit = file_rows(rows)
    return Part([row[0] for row in rows], usage, audit)


class Taken(Exception):
    """Another fold filed some of a part's rows first: roll the part back."""


def file_part(conn: Connection, part: Part, dialect: Dialect, *, last: bool = True) -> None:
    """File ``part`` in ``conn``'s write transaction; raises ``Taken`` if any of its rows
    is no longer staged (the caller's transaction then rolls back).  Only the ``last``
    part of the rows read together checkpoints the write-ahead log as its commit ends
    (copies it into the file, and syncs it): once per ``read_staged``, not per part."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    if not last:
        raw.execute("PRAGMA wal_autocheckpoint = 0")  # the next write sets it again
    dropped = raw.executemany(_DROP, [(i,) for i in part.ids]).rowcount
    if dropped != len(part.ids):
        raise Taken
    if part.usage:
        dialect.add_usage(conn, part.usage)
    if part.audit:
        dialect.insert_events(conn, part.audit)
