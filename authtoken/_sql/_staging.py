"""Usage and audit events on their way in: the staging table, and the fold that files them.

Theory of operation
-------------------
A batch of logins (``Repository.record_usage``) could update the row of every token it
used and insert an indexed audit row per event.  With many distinct tokens in use that
writes a page at a random place per token and per index entry -- tens of kilobytes per
login, and a write lock held long enough for a revocation to queue behind it.  Instead a
batch appends its rows to ``authtoken_staged``: one table with no index but its key, so
that a batch writes a few consecutive pages however many tokens it used.

The fold files staged rows, oldest first and ``FOLD_CHUNK`` at a time (in one
transaction on PostgreSQL; on SQLite, where one write lock covers the file, in parts of
whole tokens, ``_fold``): each token's logins are added to its ``use_count`` (and
``last_used_at`` advanced) with one update per token, and the login events of one
kind -- action, outcome, actor, token, user, script and reason -- in the same minute
become one audit event that carries their ``count`` and the time of the last.  The more
batches one fold takes, the cheaper each login: a token used a hundred times since the
last fold has its row written once.  A batch already stages the login events of one
kind in one minute as one row (``staged_rows``), so that a batch of many logins of a
thousand tokens appends about a thousand rows, not a row per event.  Other events
(authorize, update, revoke, revoke-all) are filed one by one, as recorded.

Reads never wait for a fold.  A read by key adds what is staged for the token, a list
adds the staged usage of the tokens it returns, and a read of the trail merges the staged
events with the filed ones.  So ``use_count`` and ``last_used_at`` are exact as soon as a
batch is written, and a fold changes no count a read returns -- only the grain of the
trail: a minute's summed login events are one event at the time of the last.

Durability: staged rows commit with their batch (and its ``BatchId``, so a batch written
again is not staged twice); a fold deletes the rows it files in the transaction that
files them.  A process killed at any moment loses no staged row and files none twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from .._repository import SUMMARY_MICROS, EventRow, Usage, add_use, with_usage
from ._rows import audit_rows

__all__ = [
    "FOLD_CHUNK", "FOLD_ROWS", "FOLD_SECONDS", "FOLD_WRITES", "KEEP_WRITERS_MICROS",
    "PRUNE_EVERY", "SUMMARY_MICROS", "WRITE_CHUNK", "event_rows", "file_rows", "fold_due",
    "staged_rows",
    "with_usage",
]

#: Rows per statement (or executemany) of a batch or a fold.
WRITE_CHUNK: Final = 1000
#: A writer's last batch number is kept this long after its last batch: a batch whose
#: answer was lost is written again at the next flush, or once the database is back.
KEEP_WRITERS_MICROS: Final = 30 * 24 * 3600 * 1_000_000
PRUNE_EVERY: Final = 1000  # a writer's 1st, 1001st, ... batch forgets old writers

#: Staged rows a fold takes at a time: one transaction on PostgreSQL, short enough not to
#: keep a revocation waiting; on SQLite, one read, then filed in parts (``FOLD_WRITES``).
FOLD_CHUNK: Final = 10_000
#: On SQLite, a fold files its rows in parts of whole tokens (``_fold``), each about
#: this many writes (a token's usage, an event) in a write transaction of its own.
FOLD_WRITES: Final = 500
#: A repository folds after its batch once about this many rows are staged, ...
FOLD_ROWS: Final = 20_000
#: ... or this long (seconds) after its last fold.
FOLD_SECONDS: Final = 2.0

_FOLDED: Final = frozenset({"login", "authenticate"})  # the actions summed per kind


def fold_due(usage: Mapping[str, Usage], staged: int, folded_at: float, now: float) -> bool:
    """Whether a batch just written should fold: a batch of logins (``usage``) -- a
    change's own event is written while its caller (a revocation, say) waits, and must
    not wait behind bookkeeping -- once ``staged`` rows wait or ``FOLD_SECONDS`` passed
    since ``folded_at`` (``time.monotonic()`` seconds, like ``now``)."""
    return bool(usage) and (staged >= FOLD_ROWS or now - folded_at >= FOLD_SECONDS)


def staged_rows(usage: Mapping[str, Usage], events: Sequence[EventRow],
                ) -> list[tuple[Any, ...]]:
    """The rows of ``STAGED_INSERT`` for one batch: ``event_rows``, with the login events
    of one kind in one minute summed in one row (two if some carry uses and some none),
    as the fold would file them (``file_rows``).  A batch that used a token ten times
    stages one row for it, not ten.
    """
    rows: list[tuple[Any, ...]] = []
    kinds: dict[tuple[Any, ...], int] = {}  # a kind of login event -> its row's index
    for row in event_rows(usage, events):
        at, action, *rest, count, uses = row
        if action not in _FOLDED:
            rows.append(row)
            continue
        # Rows that carry uses apart from those that carry none: a sum takes the time of
        # the last, which must not advance ``last_used_at`` past the last counted use.
        kind = (action, *rest, at // SUMMARY_MICROS, uses > 0)
        seen = kinds.get(kind)
        if seen is None:
            kinds[kind] = len(rows)
            rows.append(row)
        else:
            last, _action, *_rest, times, used = rows[seen]
            rows[seen] = (max(at, last), action, *rest, times + count, used + uses)
    return rows


def event_rows(usage: Mapping[str, Usage], events: Sequence[EventRow],
               ) -> list[tuple[Any, ...]]:
    """A row of ``STAGED_INSERT`` per event, and rows of usage no event covers.

    Each event is an audit row plus ``uses``: a successful login event carries the
    logins it stands for, so that usage costs no row of its own.  Logins no event
    stands for (events not recorded, or dropped while storage was down) get a row of
    usage only; so does a token whose latest login is later than its events say.
    """
    left = {key: use.logins for key, use in usage.items()}
    latest: dict[str, int] = {}
    rows = []
    for given, row in zip(events, audit_rows(events), strict=True):
        event = EventRow._make(given)  # named, however the caller built it
        uses = 0
        key = event.token_key
        if event.action == "login" and event.outcome == "ok" and key in left:
            assert key is not None
            uses = min(event.times, left[key])
            left[key] -= uses
            if event.at > latest.get(key, -1):
                latest[key] = event.at
        rows.append((*row, uses))
    for key, use in usage.items():
        if left[key] > 0 or latest.get(key, -1) < use.last_used:
            rows.append((use.last_used, None, None, None, key, None, None, None, None, 0,
                         left[key]))
    return rows


def file_rows(rows: Sequence[Sequence[Any]],
              ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """What taken rows file: usage per token (``Dialect.add_usage``'s chunks, in key
    order) and audit rows (``AUDIT_INSERT``'s, oldest first), login events summed per
    kind."""
    usage: dict[str, list[int]] = {}
    kinds: dict[tuple[Any, ...], list[int]] = {}
    audit: list[tuple[Any, ...]] = []
    for _id, at, action, outcome, actor, key, ref, skey, spath, reason, count, uses in rows:
        if key is not None and (uses > 0 or action is None):
            add_use(usage, key, uses, at)
        if action is None:
            continue
        if action in _FOLDED:
            kind = (action, outcome, actor, key, ref, skey, spath, reason,
                    at // SUMMARY_MICROS)
            seen = kinds.get(kind)
            if seen is None:
                kinds[kind] = [at, count]
            else:
                seen[0] = max(seen[0], at)
                seen[1] += count
        else:
            audit.append((at, action, outcome, actor, key, ref, skey, spath, reason, count))
    audit.extend((at, *kind[:-1], count) for kind, (at, count) in kinds.items())
    audit.sort(key=lambda row: row[0])
    params = [{"k": key, "n": n, "last": last} for key, (n, last) in sorted(usage.items())]
    return params, audit
