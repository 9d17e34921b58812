"""The audit buffer: usage counts and audit events waiting to be written, in batches.

Theory of operation
-------------------
A login writes nothing itself.  What it leaves behind -- one more use of its token and
its audit event -- is counted here, in memory, and written in batches, in one
repository transaction (``Repository.record_usage``): every ``flush_every_logins``
login attempts, every ``flush_every_micros`` of clock time, on ``Security.flush()`` /
``close()``, when a forgotten ``Security`` is collected and at interpreter exit.

A batch that cannot be written is kept whole and written again, under the same
``BatchId``, before anything newer, never dropped; the id lets storage skip a batch
whose commit landed but whose answer was lost, so a retry never counts twice.  While a
batch waits, at most ``max_buffered_events`` events are held beside it; beyond, new
events are only counted (and the count logged).  Usage counts are never dropped.

Login events are summed so that neither a busy token nor garbage floods the store: per
batch, the login events of one kind -- token, script, outcome and reason -- in one
minute (``SUMMARY_MICROS``) are one summary event (``times``, the time of the last), as
are failed API authentications per caller and reason and upstream issuances per
session and link; the first ``SAMPLED_INVALID`` refusals of unknown or forged strings
are kept and the others counted per action and script.  A busy scheduler's batch of
10,000 logins of a thousand tokens is so a thousand events, not ten thousand.

A ``Security`` owns one buffer (``Security(..., audit=AuditBuffer(...))``; the default
builds one).  Everything here is thread-safe; nothing here reads a clock: times arrive
as microseconds since 1970.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Final, NamedTuple

from ._errors import ArgumentTypeError, InvalidArgument, RepositoryError
from ._repository import SUMMARY_MICROS, BatchId, EventRow, Repository, Usage, new_writer
from ._scopes import Script
from ._token import UserKey, check_user

__all__ = [
    "FLUSH_EVERY_LOGINS",
    "FLUSH_EVERY_MICROS",
    "MAX_BUFFERED_EVENTS",
    "SAMPLED_INVALID",
    "AuditBuffer",
    "Batch",
    "change_event",
    "flush_forgotten",
]

FLUSH_EVERY_LOGINS: Final = 10_000
FLUSH_EVERY_MICROS: Final = 1_000_000
SAMPLED_INVALID: Final = 10
MAX_BUFFERED_EVENTS: Final = 100_000
log = logging.getLogger("authtoken")


class Batch(NamedTuple):
    """Usage and events taken from the buffer to be written together, under ``id``."""

    id: BatchId
    usage: dict[str, Usage]
    events: list[EventRow]


@dataclass(slots=True)
class _Uses:
    """Logins of one token not yet written: how many, and the latest (µs)."""

    logins: int
    last_at: int


@dataclass(slots=True)
class _Sample:
    """Events of one kind and minute this batch: how many, the latest (µs), whose."""

    count: int
    last_at: int
    user: UserKey | None


@dataclass(slots=True)
class _Tally:
    """Refusals of unknown or forged strings beyond the sampled ones, of one kind."""

    count: int
    last_at: int


# The kind of a summed event: (action, token key, script, reason, actor, minute).  A
# plain tuple, built once per login and only ever unpacked whole: a NamedTuple would
# cost the login path a Python-level constructor call.
_Kind = tuple[str, "str | None", "Script | None", "str | None", "str | None", int]


class AuditBuffer:
    """Usage counts and audit events waiting to be written, in one batch.

    ``AuditBuffer(*, flush_every_logins=10_000, flush_every_micros=1_000_000,
    max_buffered_events=100_000, login_events=True)``: a batch is due after that many
    login attempts (or buffered events), or that long after the oldest waiting entry; at
    most that many events are held while storage cannot take them.  See the module
    notes.  ``login_events=False`` counts usage but keeps no login event: the login path
    as it was before the audit trail, for ``benchmarks/login.py`` to measure what the
    trail costs -- not for production, where the trail must see every login.
    """

    __slots__ = (
        "_attempts",
        "_dropped",
        "_events",
        "_extra",
        "_first",
        "_flush_lock",
        "_kept",
        "_lock",
        "_login_events",
        "_logins",
        "_max_events",
        "_micros",
        "_number",
        "_pid",
        "_room",
        "_sampled",
        "_samples",
        "_usage",
        "_writer",
    )

    def __init__(self, *, flush_every_logins: int = FLUSH_EVERY_LOGINS,
                 flush_every_micros: int = FLUSH_EVERY_MICROS,
                 max_buffered_events: int = MAX_BUFFERED_EVENTS,
                 login_events: bool = True) -> None:
        self._logins, self._micros = flush_every_logins, flush_every_micros
        self._max_events = max_buffered_events
        self._login_events = login_events
        self._usage: dict[str, _Uses] = {}
        self._events: list[EventRow] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._attempts = 0  # login attempts naming a token, this batch
        self._first: int | None = None  # when the oldest waiting entry was added
        self._samples: dict[_Kind, _Sample] = {}
        self._dropped = 0  # events not kept: the buffer was full
        self._sampled = 0  # refusals of unknown strings kept one by one, this batch
        self._extra: dict[tuple[str, Script | None], _Tally] = {}  # (action, script)
        self._kept: Batch | None = None  # a batch whose write failed: next to write
        self._room = max_buffered_events  # events the buffer takes, beside the kept batch
        self._writer, self._number, self._pid = new_writer(), 0, os.getpid()

    def __repr__(self) -> str:
        held = len(self._events) + len(self._samples) + len(self._extra)
        return f"AuditBuffer(<{held} events, {len(self._usage)} tokens used>)"

    # -- counting (the login path) ---------------------------------------------------------
    def _due(self, at: int) -> bool:
        # caller holds _lock
        if self._first is None:
            self._first = at
        return (self._attempts >= self._logins
                or len(self._events) + len(self._samples) >= self._logins
                or at - self._first >= self._micros)

    def _count_use(self, key: str, at: int) -> None:
        # caller holds _lock
        uses = self._usage.get(key)
        if uses is None:
            self._usage[key] = _Uses(1, at)
        else:
            uses.logins += 1
            if at > uses.last_at:
                uses.last_at = at

    def login(self, key: str, at: int, user: UserKey, script: Script | None,
              reason: str | None = None, *, counted: bool = True) -> bool:
        """Count one login attempt with token ``key`` -- successful when ``reason`` is
        ``None``, else refused for ``reason`` -- and its event; ``True`` when a batch is
        due.  ``counted=False``: the use is in storage already (a token with
        ``max_uses`` spends it there), only the event is buffered."""
        with self._lock:
            if reason is None and counted:
                self._count_use(key, at)
            self._attempts += 1
            if self._login_events:
                self._sum(("login", key, script, reason, None, at // SUMMARY_MICROS), at,
                          user)
            return self._due(at)

    def _sum(self, kind: _Kind, at: int, user: UserKey | None) -> None:
        """Count one event of ``kind`` in its summary."""
        # caller holds _lock
        sample = self._samples.get(kind)
        if sample is not None:
            sample.count += 1
            if at > sample.last_at:
                sample.last_at = at
        elif len(self._events) + len(self._samples) < self._room:
            self._samples[kind] = _Sample(1, at, user)
        else:
            self._dropped += 1

    def _keep(self, event: EventRow) -> None:
        # caller holds _lock
        if len(self._events) + len(self._samples) < self._room:
            self._events.append(event)
        else:
            self._dropped += 1

    def event(self, event: EventRow) -> bool:
        """Keep one audit event; ``True`` when a batch is due."""
        with self._lock:
            self._keep(event)
            return self._due(event.at)

    def upstream(self, at: int, key: str, user: UserKey, script: Script | None,
                 name: str, reason: str | None = None) -> bool:
        """An upstream access token given to the session of token ``key`` for link
        ``name`` (the event's actor is ``upstream:<name>``), or refused for ``reason``;
        summed like logins, ``True`` when a batch is due."""
        with self._lock:
            self._attempts += 1
            self._sum(("upstream", key, script, reason, f"upstream:{name}"[:300],
                       at // SUMMARY_MICROS), at, user)
            return self._due(at)

    def failure(self, at: int, actor: str | None, reason: str) -> bool:
        """A failed authentication of an API caller, summed per caller and reason."""
        with self._lock:
            self._sum(("authenticate", None, None, reason, actor, at // SUMMARY_MICROS),
                      at, None)
            return self._due(at)

    def invalid(self, at: int, script: Script | None, action: str) -> bool:
        """Count a refusal of an unknown or forged token string (sampled)."""
        with self._lock:
            if self._sampled < SAMPLED_INVALID:
                self._sampled += 1
                self._keep(EventRow(at, action, "refused", None, None, None, script,
                                    "InvalidToken", 1))
            else:
                tally = self._extra.get((action, script))
                if tally is None:
                    if len(self._extra) >= SAMPLED_INVALID:  # many scripts: count them all
                        tally = self._extra.setdefault((action, None), _Tally(0, at))
                    else:
                        tally = self._extra[action, script] = _Tally(0, at)
                tally.count += 1
                tally.last_at = max(tally.last_at, at)
            return self._due(at)

    def pending(self, key: str) -> Usage | None:
        """Logins of ``key`` counted here and not yet written (``None``: none)."""
        with self._lock:
            uses = self._usage.get(key)
            kept = self._kept
        old = None if kept is None else kept.usage.get(key)
        if old is None:
            return None if uses is None else Usage(uses.logins, uses.last_at)
        if uses is None:
            return old
        return Usage(uses.logins + old.logins, max(uses.last_at, old.last_used))

    @property
    def held_events(self) -> int:
        """How many events wait to be written (a summary is one), a kept batch's
        included."""
        with self._lock:
            kept = self._kept
            return (len(self._events) + len(self._samples) + len(self._extra)
                    + (0 if kept is None else len(kept.events)))

    # -- writing ---------------------------------------------------------------------------
    def flush(self, repository: Repository, *, wait: bool) -> None:
        """Write what is buffered: a batch kept from a failed write first, under its own
        id, then a new batch of the rest.  On failure the batch is kept and the error
        raised.  ``wait=False`` returns at once while another thread is writing."""
        if not self._flush_lock.acquire(blocking=wait):
            return  # another thread is writing; it will take ours next time
        try:
            kept = self._kept
            if kept is not None and not self._write(repository, kept):
                return
            batch = self._take()
            if batch is not None:
                self._write(repository, batch)
        finally:
            self._flush_lock.release()

    def _take(self) -> Batch | None:
        """Empty the buffer into a new batch with the next id (``None``: nothing)."""
        # caller holds _flush_lock
        if self._pid != os.getpid():  # a forked child: its batches are not the parent's
            self._writer, self._number, self._pid = new_writer(), 0, os.getpid()
        with self._lock:
            usage = self._usage
            # Summaries first: a change's event is written as soon as it is kept, so every
            # attempt a summary stands for came before the events kept beside it.
            events = [
                EventRow(sample.last_at, action, "ok" if reason is None else "refused",
                         actor, key, sample.user, script, reason, sample.count)
                for (action, key, script, reason, actor, _), sample in self._samples.items()
            ]
            events.extend(self._events)
            dropped, self._dropped = self._dropped, 0
            events.extend(
                EventRow(tally.last_at, action, "refused", None, None, None, script,
                         "InvalidToken", tally.count)
                for (action, script), tally in self._extra.items()
            )
            self._usage, self._events, self._samples, self._extra = {}, [], {}, {}
            self._attempts = self._sampled = 0
            self._first = None
        if dropped:
            log.warning("authtoken: %d audit events were not kept: storage could not "
                        "take them and the buffer was full", dropped)
        if not usage and not events:
            return None
        self._number += 1
        return Batch(BatchId(self._writer, self._number),
                     {k: Usage(u.logins, u.last_at) for k, u in usage.items()}, events)

    def _write(self, repository: Repository, batch: Batch) -> bool:
        """Write ``batch``; ``True`` if written, ``False`` if kept (and logged)."""
        # caller holds _flush_lock
        try:
            if _takes_batch_ids(repository):
                repository.record_usage(batch.usage, batch.events, batch=batch.id)
            else:  # a repository written before batch ids: as before, without one
                repository.record_usage(batch.usage, batch.events)
        except RepositoryError:
            self._keep_batch(batch)  # storage is down, or its answer was lost: all waits
            raise
        except Exception:
            # Not storage being down but something in the batch it cannot take: keep
            # the counts, drop the events rather than fail every batch after.
            self._keep_batch(batch._replace(events=[]))
            log.exception("authtoken: %d audit events could not be written and were "
                          "dropped", len(batch.events))
            return False
        except BaseException:
            self._keep_batch(batch)
            raise
        if self._kept is not None:
            with self._lock:
                self._kept, self._room = None, self._max_events
        return True

    def _keep_batch(self, batch: Batch) -> None:
        """Keep ``batch`` to be written again, whole and under its id, before anything
        newer: merged into newer counts, a batch whose commit landed unseen could not
        be recognised when written again."""
        with self._lock:
            if not batch.usage and not batch.events:  # nothing left worth keeping
                self._kept, self._room = None, self._max_events
                return
            if self._kept is None:  # a first failure: the next batch is due as before
                self._attempts += sum(u.logins for u in batch.usage.values())
                if self._first is None:
                    self._first = min([e.at for e in batch.events]
                                      + [u.last_used for u in batch.usage.values()])
            self._kept = batch
            self._room = self._max_events - len(batch.events)


def change_event(at: int, action: str, error: BaseException | None, *,
                 actor: str | None, token_key: str | None, user: object) -> EventRow:
    """The event of a change (authorize, update, revoke, revoke-all) or of its refusal
    by ``error``, at ``at`` (µs).  A ``user`` that is not one (the refusal was for a bad
    user) is left out; the actor is cut to 300 characters."""
    try:
        named = None if user is None else check_user(user)
    except (ArgumentTypeError, InvalidArgument):
        named = None  # a refusal for a bad user: the trail keeps the rest
    return EventRow(
        at=at, action=action, outcome="ok" if error is None else "refused",
        actor=None if actor is None else str(actor)[:300], token_key=token_key,
        user=named, script=None, reason=None if error is None else type(error).__name__,
        times=1,
    )


def _takes_batch_ids(repository: Repository) -> bool:
    """Whether ``repository.record_usage`` takes ``batch`` (checked per batch, not login)."""
    import inspect  # only when a batch is written: ``import authtoken`` stays light

    try:
        parameters = inspect.signature(repository.record_usage).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the current protocol
        return True
    return any(p.name == "batch" or p.kind is p.VAR_KEYWORD for p in parameters)


def _flush_quietly_now(buffer: AuditBuffer, repository: Repository) -> None:
    try:
        buffer.flush(repository, wait=True)
    except Exception:  # noqa: S110 - a forgotten Security: nobody is left to tell
        pass


def flush_forgotten(buffer: AuditBuffer, repository: Repository) -> None:
    """Write what the buffer of a ``Security`` that was never closed still holds.

    Runs when the ``Security`` is garbage-collected or at interpreter exit.  The garbage
    collector may run this in the middle of any code of the collecting thread -- even in
    the middle of a schema migration -- so the write happens in a thread of its own (not
    a daemon: the interpreter waits for it at exit).  Where no thread can be started any
    more, it happens here.
    """
    if threading.current_thread() is threading.main_thread() \
            and not threading.main_thread().is_alive():  # atexit: nothing to re-enter
        _flush_quietly_now(buffer, repository)
        return
    try:
        threading.Thread(target=_flush_quietly_now, args=(buffer, repository),
                         name="authtoken-flush", daemon=False).start()
    except RuntimeError:  # the interpreter is shutting down
        _flush_quietly_now(buffer, repository)
