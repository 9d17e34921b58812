"""The storage interface (``Repository``) and its in-memory implementation.

Theory of operation
-------------------
A repository stores ``TokenRecord`` values -- a token without its string, the secret
only as a digest -- and answers the few questions the engine asks.  Everything that
must be atomic is one method: inserting a child checks that its parent is still live,
revoking walks the whole tree of descendants, an update succeeds only if nobody changed
the row since it was read (``version``).  The engine never holds a lock across calls.

``login_row`` is the hot path: one read by key, no write, returning only what a login
needs with timestamps as integer microseconds, so a backend can answer it straight from
a prepared statement.  Usage (``last_used_at``, ``use_count``) arrives in batches
through ``record_usage`` -- increments, never absolute values, so concurrent writers
add up.  Increments are not idempotent, so each batch carries a ``BatchId``: a batch
whose commit reached the database but whose answer was lost is written again by its
writer, and the repository recognises it and skips it rather than count it twice.
"""

from __future__ import annotations

import builtins
import secrets
import threading
from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, NamedTuple, Protocol, runtime_checkable

from ._errors import InvalidArgument, TokenRevoked
from ._expiry import from_micros, to_micros
from ._scopes import Script
from ._token import TokenRecord, UserKey

__all__ = ["LINK_STATES", "MEMORY_EVENTS", "SUMMARY_MICROS", "AuditEvent", "BatchId",
           "EventRow", "LoginRow", "MemoryRepository", "Repository", "TokenCap",
           "UpstreamLink", "UpstreamLinks", "Usage", "UseLimits", "add_use", "new_writer",
           "with_usage"]

#: The newest audit events a ``MemoryRepository`` keeps; older ones are dropped.
MEMORY_EVENTS: Final = 100_000
#: Login events of one kind are summed per minute (of their time) -- by the buffer per
#: batch, by a SQL store's fold across batches: a summary never hides when the
#: attempts were by more than that.
SUMMARY_MICROS: Final = 60_000_000
#: The states of an upstream link: usable, or waiting for its owner to link again.
LINK_STATES: Final = ("ok", "needs_relink")


class LoginRow(NamedTuple):
    """What a login needs of a stored token; timestamps in microseconds since 1970."""

    secret_hash: bytes
    user: UserKey
    scope: str
    data: str | None
    expires: int | None
    revoked_at: int | None
    max_uses: int | None = None  # a login spends one of them (``UseLimits``)
    parent_key: str | None = None
    run_id: str | None = None
    ancestors: str | None = None  # the keys from the root to the parent, space-joined


class Usage(NamedTuple):
    """Logins not yet written: how many, and the latest (microseconds since 1970)."""

    logins: int
    last_used: int


class BatchId(NamedTuple):
    """Who wrote a usage batch, and its number.

    ``writer``: a random name (at most 32 characters) for one buffer of one process;
    ``number``: 1 for its first batch, then higher for each new batch.  A writer writes
    its batches in order, and a failed batch again, with the same number and the same
    contents, before any later one.  So a repository needs to keep only the highest
    number written per writer: a batch numbered at or below it was written already.
    """

    writer: str
    number: int


def new_writer() -> str:
    """A fresh writer name for ``BatchId``: 16 random hex digits."""
    return secrets.token_hex(8)


class EventRow(NamedTuple):
    """An audit event as the engine buffers it and hands it to ``record_usage``.

    A tuple, cheap on the login path, read by name; ``at`` in microseconds since 1970,
    ``times`` is ``AuditEvent.count`` (``count`` is a method of every tuple), the other
    fields are those of ``AuditEvent``.
    """

    at: int
    action: str
    outcome: str
    actor: str | None
    token_key: str | None
    user: UserKey | None
    script: Script | None
    reason: str | None
    times: int


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the audit trail.  Never holds a token string or secret.

    ``action``: authorize, update, renew, revoke, revoke_all, login, authenticate or
    upstream (an access token the broker gave a session; ``actor`` ``upstream:<link>``);
    ``outcome``: ok or refused; ``reason``: the error's class name; ``user``: whose
    token the event is about (for filtering); ``count``: how many like events this one
    stands for (login, authenticate and upstream events are summed per kind and minute;
    refusals of unknown or forged strings are counted and sampled);
    ``run_id``: the run of a job the token was made for (``Session.run_token``).
    """

    at: datetime
    action: str
    outcome: str
    actor: str | None = None
    token_key: str | None = None
    user: UserKey | None = None
    script: Script | None = None
    reason: str | None = None
    count: int = 1
    run_id: str | None = None


def add_use(table: dict[str, list[int]], key: str, logins: int, at: int) -> None:
    """Add ``logins`` uses of ``key``, the latest at ``at`` (µs), to ``table``'s
    ``[logins, latest]`` entry for it."""
    use = table.get(key)
    if use is None:
        table[key] = [logins, at]
    else:
        use[0] += logins
        if at > use[1]:
            use[1] = at


def with_usage(record: TokenRecord, logins: int, last: int | None) -> TokenRecord:
    """``record`` with usage not yet in it: ``logins`` more uses, the latest at ``last``
    (µs; ``None``: no usage, ``record`` itself)."""
    if last is None:
        return record
    when = from_micros(last)
    return replace(
        record, use_count=record.use_count + logins,
        last_used_at=when if record.last_used_at is None or when > record.last_used_at
        else record.last_used_at,
    )


def audit_event(row: EventRow, run_id: str | None = None) -> AuditEvent:
    """The ``AuditEvent`` of a buffered event (about a token of run ``run_id``)."""
    return AuditEvent(at=from_micros(row.at), action=row.action, outcome=row.outcome,
                      actor=row.actor, token_key=row.token_key, user=row.user,
                      script=row.script, reason=row.reason, count=row.times,
                      run_id=run_id)


@runtime_checkable
class Repository(Protocol):
    """Where tokens live.  Every method is atomic; failures raise ``RepositoryError``."""

    def insert(self, record: TokenRecord) -> None:
        """Store a new token.

        If ``record.parent_key`` is set, the parent must exist and not be revoked,
        checked in the same transaction (else ``TokenRevoked``); nothing is stored on
        failure.  A duplicate key raises ``InvalidArgument``.
        """

    def get(self, key: str) -> TokenRecord | None:
        """The token with ``key``, or ``None``."""

    def login_row(self, key: str) -> LoginRow | None:
        """The login view of the token with ``key``, read fresh from storage."""

    def update(self, record: TokenRecord) -> TokenRecord | None:
        """Persist scope, data, description, expires and updated_at of ``record``.

        Succeeds only if the stored version equals ``record.version`` and the token is
        not revoked; returns the stored record (with the next version), or ``None`` if
        the version no longer matches.  Raises ``TokenRevoked`` if it was revoked.
        """

    def revoke(self, key: str, at: int) -> int | None:
        """Revoke ``key`` and every descendant not yet revoked, at ``at`` (µs).

        Returns how many rows changed, or ``None`` if there is no token ``key``.
        """

    def revoke_user(self, user: UserKey, at: int) -> int:
        """Revoke every live token of ``user`` and their descendants; return the count."""

    def list(self, user: UserKey | None, include_revoked: bool) -> list[TokenRecord]:
        """Tokens of ``user`` (all users if ``None``), newest first."""

    def record_usage(self, usage: Mapping[str, Usage],
                     events: Sequence[EventRow] = (), batch: BatchId | None = None) -> None:
        """Add logins to ``use_count``, advance ``last_used_at`` and append audit events,
        in one transaction; all or nothing.

        With ``batch``, the same transaction records the batch as written, and a batch
        its writer wrote already (a number at or below its highest) changes nothing: a
        retry after a lost answer is safe.  ``None``: no such check.
        """

    def events(self, *, user: UserKey | None, token_key: str | None,
               since: datetime | None, limit: int) -> builtins.list[AuditEvent]:
        """Audit events, newest first, filtered by user, token and time (``at >= since``)."""

    def close(self) -> None:
        """Release connections; the repository may not be used afterwards."""


@runtime_checkable
class UseLimits(Protocol):
    """A repository that keeps tokens with ``max_uses``: it spends their uses."""

    def spend_use(self, key: str, at: int) -> bool:
        """Spend one use of the token ``key`` at ``at`` (µs), atomically across every
        process: add one to ``use_count`` and advance ``last_used_at`` if the token is
        not revoked and ``use_count < max_uses``.  Whether it did."""


@runtime_checkable
class TokenCap(Protocol):
    """A repository that can cap how many live tokens a user holds, atomically."""

    def insert_within(self, record: TokenRecord, limit: int, now: int) -> int:
        """Insert ``record`` as ``insert`` does, unless its user already holds ``limit``
        live tokens (neither revoked nor expired at ``now``, µs); return how many live
        tokens the user held before (at least ``limit``: nothing inserted)."""


@dataclass(frozen=True, slots=True)
class UpstreamLink:
    """A user's account at an upstream issuer, as the broker keeps it (``UpstreamLinks``).

    ``refresh_token`` and ``access_token`` are *sealed* blobs (``authtoken._sealing``),
    never tokens; times are microseconds since 1970: ``access_expires`` (the access token
    is no longer valid), ``refresh_at`` (it is due for refresh), ``refresh_expires``
    (the refresh token's end, when the issuer says).  ``lease_holder`` holds the refresh
    lease until ``lease_expires``; ``version`` grows with every write.
    """

    user: UserKey
    name: str
    state: str = "ok"
    refresh_token: bytes | None = field(default=None, repr=False)
    access_token: bytes | None = field(default=None, repr=False)
    access_expires: int | None = None
    refresh_at: int | None = None
    refresh_expires: int | None = None
    lease_holder: str | None = None
    lease_expires: int | None = None
    version: int = 1
    updated_at: int = 0


@runtime_checkable
class UpstreamLinks(Protocol):
    """A repository that keeps upstream links for the broker (``authtoken.broker``).

    One row per (user, name); 42 and ``"42"`` are two users.  The refresh *lease* makes
    a refresh one at a time across every process sharing the store: a process refreshes
    only while it holds the lease, and its results are written only if it still does
    (compare-and-set on the holder).  The lease expires, so a process killed while
    holding it blocks nobody for longer than the lease.  Every method is atomic.
    """

    def put_link(self, link: UpstreamLink, at: int) -> UpstreamLink:
        """Insert the link, or replace the one of the same user and name: its state,
        tokens and times from ``link``, the lease cleared, ``updated_at`` ``at``.  The
        stored row."""

    def get_link(self, user: UserKey, name: str) -> UpstreamLink | None:
        """The link, or ``None``."""

    def list_links(self, user: UserKey) -> list[UpstreamLink]:
        """The user's links, by name."""

    def delete_link(self, user: UserKey, name: str) -> bool:
        """Remove the link; whether there was one."""

    def take_lease(self, user: UserKey, name: str, holder: str, now: int,
                   until: int) -> UpstreamLink | None:
        """Give ``holder`` the refresh lease until ``until`` unless another holds one that
        has not expired at ``now``; the link as stored afterwards (its ``lease_holder``
        says who holds it), ``None`` if there is no link."""

    def finish_refresh(self, link: UpstreamLink, holder: str, at: int) -> UpstreamLink | None:
        """If ``holder`` still holds the lease of ``link``'s row: write ``link``'s tokens
        and times, state ``ok``, clear the lease; the stored row.  ``None`` (nothing
        written) when the lease was lost -- expired and taken, or the link replaced."""

    def mark_needs_relink(self, user: UserKey, name: str, holder: str, at: int) -> bool:
        """If ``holder`` holds the lease: state ``needs_relink``, tokens dropped, lease
        cleared.  Whether it did."""

    def release_lease(self, user: UserKey, name: str, holder: str) -> bool:
        """Clear the lease if ``holder`` holds it, changing nothing else.  Whether it did."""


def _link_key(user: UserKey, name: str) -> tuple[str, str]:
    return (f"i:{user}" if isinstance(user, int) else f"s:{user}", name)


def _at(event: EventRow) -> int:
    return event.at


class MemoryRepository:
    """A ``Repository`` in this process's memory: for tests and throwaway runs.

    Its audit trail keeps the newest ``max_events`` events (default ``MEMORY_EVENTS``)
    and drops older ones, so that a long run's memory stays bounded; usage counts are
    never dropped.  The events are kept in order of time (the newest by time are the
    ones kept), so that a read of the newest ``limit`` that pass its filters stops once
    it has them.
    """

    def __init__(self, *, max_events: int = MEMORY_EVENTS) -> None:
        if isinstance(max_events, bool) or not isinstance(max_events, int) \
                or max_events < 1:
            raise InvalidArgument("max_events is a whole number of events, 1 or more")
        self._rows: dict[str, TokenRecord] = {}
        self._order: dict[str, int] = {}
        self._lock = threading.Lock()
        self._max_events = max_events
        # Oldest first by ``at``; among equal times in the order recorded.
        self._events: builtins.list[EventRow] = []
        # Usage not yet folded into the records: key -> [logins, latest µs].  A batch
        # adds to these lists in place; reads add them to the records they return.
        self._usage: dict[str, list[int]] = {}
        self._batches: dict[str, int] = {}  # writer -> highest batch number written
        self._links: dict[tuple[str, str], UpstreamLink] = {}

    def __repr__(self) -> str:
        return f"MemoryRepository(<{len(self._rows)} tokens>)"

    def events(self, *, user: UserKey | None, token_key: str | None,
               since: datetime | None, limit: int) -> builtins.list[AuditEvent]:
        after = None if since is None else to_micros(since)
        found: builtins.list[EventRow] = []
        with self._lock:
            # newest first; among equal times the later recorded first
            for e in reversed(self._events):
                if len(found) >= limit or (after is not None and e.at < after):
                    break
                if (user is None or (e.user == user and type(e.user) is type(user))) \
                        and (token_key is None or e.token_key == token_key):
                    found.append(e)
            rows = self._rows
            return [audit_event(e, self._run_of(rows, e.token_key)) for e in found]

    @staticmethod
    def _run_of(rows: Mapping[str, TokenRecord], key: str | None) -> str | None:
        row = None if key is None else rows.get(key)
        return None if row is None else row.run_id

    def insert(self, record: TokenRecord) -> None:
        with self._lock:
            self._insert(record)

    def insert_within(self, record: TokenRecord, limit: int, now: int) -> int:
        when = from_micros(now)
        with self._lock:
            live = sum(
                1 for r in self._rows.values()
                if r.user == record.user and type(r.user) is type(record.user)
                and r.revoked_at is None and (r.expires is None or r.expires > when)
            )
            if live < limit:
                self._insert(record)
            return live

    def spend_use(self, key: str, at: int) -> bool:
        with self._lock:
            row = self._rows.get(key)
            if row is None or row.revoked_at is not None or row.max_uses is None:
                return False
            use = self._usage.get(key)
            if row.use_count + (0 if use is None else use[0]) >= row.max_uses:
                return False
            when = from_micros(at)
            self._rows[key] = replace(
                row, use_count=row.use_count + 1,
                last_used_at=when if row.last_used_at is None or when > row.last_used_at
                else row.last_used_at,
            )
            return True

    def _insert(self, record: TokenRecord) -> None:
        """``insert`` (the caller holds the lock)."""
        if record.key in self._rows:
            raise InvalidArgument(f"a token with key {record.key!r} already exists")
        if record.parent_key is not None:
            parent = self._rows.get(record.parent_key)
            if parent is None or parent.revoked_at is not None:
                raise TokenRevoked(
                    "the parent token was revoked: it can no longer delegate",
                    token_key=record.parent_key,
                    revoked_at=parent.revoked_at if parent else None,
                )
        self._rows[record.key] = replace(record)
        self._order[record.key] = len(self._order)

    def _used(self, row: TokenRecord) -> TokenRecord:
        """``row`` with its usage (caller holds the lock)."""
        use = self._usage.get(row.key)
        return replace(row) if use is None else with_usage(row, use[0], use[1])

    def get(self, key: str) -> TokenRecord | None:
        with self._lock:
            row = self._rows.get(key)
            return None if row is None else self._used(row)

    def login_row(self, key: str) -> LoginRow | None:
        row = self._rows.get(key)  # one dict read is atomic; the record is replaced, not mutated
        if row is None:
            return None
        return LoginRow(
            row.secret_hash,
            row.user,
            row.scope,
            row.data,
            None if row.expires is None else to_micros(row.expires),
            None if row.revoked_at is None else to_micros(row.revoked_at),
            row.max_uses,
            row.parent_key,
            row.run_id,
            " ".join(row.ancestors) or None,
        )

    def update(self, record: TokenRecord) -> TokenRecord | None:
        with self._lock:
            row = self._rows.get(record.key)
            if row is None or row.version != record.version:
                return None
            if row.revoked_at is not None:
                raise TokenRevoked(
                    "the token is revoked and cannot be updated",
                    token_key=record.key, revoked_at=row.revoked_at,
                )
            new = replace(
                row,
                scope=record.scope,
                data=record.data,
                description=record.description,
                expires=record.expires,
                updated_at=record.updated_at,
                max_uses=record.max_uses,
                max_lifetime=record.max_lifetime,
                lifetime=record.lifetime,
                version=row.version + 1,
            )
            self._rows[record.key] = new
            return self._used(new)

    def _revoke_tree(self, roots: Sequence[str], at: int) -> int:
        children: dict[str, list[str]] = {}
        for row in self._rows.values():
            if row.parent_key is not None:
                children.setdefault(row.parent_key, []).append(row.key)
        when = from_micros(at)
        seen: set[str] = set()
        stack = list(roots)
        changed = 0
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            row = self._rows[key]
            if row.revoked_at is None:
                self._rows[key] = replace(row, revoked_at=when, version=row.version + 1)
                changed += 1
            stack.extend(children.get(key, ()))
        return changed

    def revoke(self, key: str, at: int) -> int | None:
        with self._lock:
            if key not in self._rows:
                return None
            return self._revoke_tree([key], at)

    def revoke_user(self, user: UserKey, at: int) -> int:
        with self._lock:
            roots = [
                r.key for r in self._rows.values()
                if r.user == user and type(r.user) is type(user) and r.revoked_at is None
            ]
            return self._revoke_tree(roots, at)

    def list(self, user: UserKey | None, include_revoked: bool) -> list[TokenRecord]:
        with self._lock:
            rows = [
                self._used(r) for r in self._rows.values()
                if (user is None or (r.user == user and type(r.user) is type(user)))
                and (include_revoked or r.revoked_at is None)
            ]
        rows.sort(key=lambda r: (r.created_at, self._order[r.key]), reverse=True)
        return rows

    def record_usage(self, usage: Mapping[str, Usage],
                     events: Sequence[EventRow] = (), batch: BatchId | None = None) -> None:
        # Named, however given, and in order of time (a stable sort: equal times stay in
        # the order recorded) -- all of them before anything changes.
        new = sorted((EventRow._make(e) for e in events), key=_at)
        with self._lock:
            if batch is not None:
                if self._batches.get(batch.writer, 0) >= batch.number:
                    return  # written already: its answer was lost
                self._batches[batch.writer] = batch.number
            held = self._events
            for event in new:  # mostly newer than all held: appended
                if not held or event.at >= held[-1].at:
                    held.append(event)
                else:  # after any of an equal time
                    insort(held, event, key=_at)
            if len(held) > self._max_events:
                del held[:len(held) - self._max_events]
            rows, used = self._rows, self._usage
            for key, (count, last) in usage.items():
                if key in rows:
                    add_use(used, key, count, last)

    def prune_events(self, before: int) -> int:
        """Drop the audit events recorded before ``before`` (µs); return how many."""
        with self._lock:
            dropped = bisect_left(self._events, before, key=_at)
            del self._events[:dropped]
        return dropped

    # -- upstream links (``UpstreamLinks``) ------------------------------------------------
    def put_link(self, link: UpstreamLink, at: int) -> UpstreamLink:
        with self._lock:
            old = self._links.get(_link_key(link.user, link.name))
            stored = replace(link, lease_holder=None, lease_expires=None, updated_at=at,
                             version=1 if old is None else old.version + 1)
            self._links[_link_key(link.user, link.name)] = stored
            return stored

    def get_link(self, user: UserKey, name: str) -> UpstreamLink | None:
        return self._links.get(_link_key(user, name))

    def list_links(self, user: UserKey) -> builtins.list[UpstreamLink]:
        with self._lock:
            ref = _link_key(user, "")[0]
            return sorted((v for k, v in self._links.items() if k[0] == ref),
                          key=lambda link: link.name)

    def delete_link(self, user: UserKey, name: str) -> bool:
        with self._lock:
            return self._links.pop(_link_key(user, name), None) is not None

    def take_lease(self, user: UserKey, name: str, holder: str, now: int,
                   until: int) -> UpstreamLink | None:
        with self._lock:
            link = self._links.get(_link_key(user, name))
            if link is None:
                return None
            if link.lease_holder is None or link.lease_expires is None \
                    or link.lease_expires <= now:
                link = self._links[_link_key(user, name)] = replace(
                    link, lease_holder=holder, lease_expires=until, version=link.version + 1)
            return link

    def _held(self, user: UserKey, name: str, holder: str) -> UpstreamLink | None:
        """The link if ``holder`` holds its lease (the caller holds the lock)."""
        link = self._links.get(_link_key(user, name))
        return link if link is not None and link.lease_holder == holder else None

    def finish_refresh(self, link: UpstreamLink, holder: str, at: int) -> UpstreamLink | None:
        with self._lock:
            held = self._held(link.user, link.name, holder)
            if held is None:
                return None
            stored = self._links[_link_key(link.user, link.name)] = replace(
                held, state="ok", refresh_token=link.refresh_token,
                access_token=link.access_token, access_expires=link.access_expires,
                refresh_at=link.refresh_at, refresh_expires=link.refresh_expires,
                lease_holder=None, lease_expires=None, version=held.version + 1,
                updated_at=at)
            return stored

    def mark_needs_relink(self, user: UserKey, name: str, holder: str, at: int) -> bool:
        with self._lock:
            held = self._held(user, name, holder)
            if held is None:
                return False
            self._links[_link_key(user, name)] = replace(
                held, state="needs_relink", refresh_token=None, access_token=None,
                access_expires=None, refresh_at=None, refresh_expires=None,
                lease_holder=None, lease_expires=None, version=held.version + 1,
                updated_at=at)
            return True

    def release_lease(self, user: UserKey, name: str, holder: str) -> bool:
        with self._lock:
            held = self._held(user, name, holder)
            if held is None:
                return False
            self._links[_link_key(user, name)] = replace(
                held, lease_holder=None, lease_expires=None, version=held.version + 1)
            return True

    def close(self) -> None:
        """Nothing to release; the tokens stay readable."""
