"""The Repository protocol, one test class run against every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from authtoken import InvalidArgument, Repository, TokenRevoked
from authtoken._expiry import to_micros
from authtoken._repository import BatchId, Usage
from authtoken._token import TokenRecord

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def record(key: str, *, user: int | str = 1, parent: str | None = None,
           created: datetime = T0, **changes: object) -> TokenRecord:
    base = TokenRecord(
        key=key, user=user, scope="a b", data="d\x00ata é", description="desc",
        expires=T0 + timedelta(days=1), created_at=created, updated_at=created,
        revoked_at=None, last_used_at=None, use_count=0, parent_key=parent,
        secret_hash=bytes(range(32)), version=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class TestRepositoryProtocol:
    """Every backend keeps the same promises."""

    def test_is_a_repository(self, repository: Repository) -> None:
        """The backend satisfies the Repository protocol."""
        assert isinstance(repository, Repository)

    def test_round_trip(self, repository: Repository) -> None:
        """What is inserted is read back exactly, NUL and non-ASCII data included."""
        rec = record("k1", user="ünï")
        repository.insert(rec)
        assert repository.get("k1") == rec
        row = repository.login_row("k1")
        assert row is not None
        assert row.secret_hash == rec.secret_hash and row.user == "ünï"
        assert row.data == rec.data and row.expires == to_micros(T0 + timedelta(days=1))
        assert row.revoked_at is None
        assert repository.get("nope") is None and repository.login_row("nope") is None

    def test_never_expiring_and_empty_data(self, repository: Repository) -> None:
        """None expiry and None data survive storage."""
        repository.insert(record("k1", expires=None, data=None, description=""))
        got = repository.get("k1")
        assert got is not None and got.expires is None and got.data is None
        assert got.description == ""

    def test_duplicate_key_refused(self, repository: Repository) -> None:
        """Inserting a key twice is refused and keeps the first row."""
        repository.insert(record("k1"))
        with pytest.raises(InvalidArgument):
            repository.insert(record("k1", scope="other"))
        got = repository.get("k1")
        assert got is not None and got.scope == "a b"

    def test_child_of_revoked_parent_refused(self, repository: Repository) -> None:
        """A child under a revoked or missing parent is not stored."""
        repository.insert(record("p"))
        repository.revoke("p", to_micros(T0))
        with pytest.raises(TokenRevoked):
            repository.insert(record("c", parent="p"))
        with pytest.raises(TokenRevoked):
            repository.insert(record("c", parent="missing"))
        assert repository.get("c") is None

    def test_update_checks_version(self, repository: Repository) -> None:
        """An update with a stale version changes nothing and returns None."""
        repository.insert(record("k1"))
        new = repository.update(record("k1", scope="x", description="new"))
        assert new is not None and new.version == 2 and new.scope == "x"
        assert repository.update(record("k1", scope="stale")) is None
        got = repository.get("k1")
        assert got is not None and got.scope == "x" and got.description == "new"

    def test_update_of_revoked_raises(self, repository: Repository) -> None:
        """Updating a revoked token raises TokenRevoked."""
        repository.insert(record("k1"))
        repository.revoke("k1", to_micros(T0))
        current = repository.get("k1")
        assert current is not None
        with pytest.raises(TokenRevoked):
            repository.update(replace(current, scope="x"))

    def test_revoke_tree(self, repository: Repository) -> None:
        """Revoking walks every descendant once and counts what changed."""
        repository.insert(record("root"))
        repository.insert(record("c1", parent="root"))
        repository.insert(record("c2", parent="root"))
        repository.insert(record("g1", parent="c1"))
        repository.insert(record("other"))
        assert repository.revoke("c1", to_micros(T0)) == 2
        assert repository.revoke("root", to_micros(T0) + 5) == 2
        assert repository.revoke("root", to_micros(T0) + 9) == 0
        assert repository.revoke("missing", 0) is None
        for key in ("root", "c1", "c2", "g1"):
            row = repository.login_row(key)
            assert row is not None and row.revoked_at is not None
        root = repository.get("root")
        assert root is not None and root.revoked_at == T0 + timedelta(microseconds=5)
        other = repository.login_row("other")
        assert other is not None and other.revoked_at is None

    def test_revoke_user(self, repository: Repository) -> None:
        """revoke_user reaches other users' tokens only through parent links."""
        repository.insert(record("a1", user=1))
        repository.insert(record("a2", user=1))
        repository.insert(record("b1", user="1"))
        assert repository.revoke_user(1, 0) == 2
        assert repository.revoke_user(1, 0) == 0
        assert [r.key for r in repository.list(None, False)] == ["b1"]

    def test_list_order_and_filters(self, repository: Repository) -> None:
        """Newest first; ties broken by insertion order; revoked only on request."""
        repository.insert(record("old", created=T0))
        repository.insert(record("tie1", created=T0 + timedelta(seconds=1)))
        repository.insert(record("tie2", created=T0 + timedelta(seconds=1)))
        repository.insert(record("u2", user=2, created=T0 + timedelta(seconds=2)))
        repository.revoke("old", 0)
        assert [r.key for r in repository.list(1, False)] == ["tie2", "tie1"]
        assert [r.key for r in repository.list(1, True)] == ["tie2", "tie1", "old"]
        assert [r.key for r in repository.list(None, True)] == ["u2", "tie2", "tie1", "old"]

    def test_usage_adds_up(self, repository: Repository) -> None:
        """Usage batches add counts and keep the latest time."""
        repository.insert(record("k1"))
        t1, t2 = to_micros(T0 + timedelta(hours=1)), to_micros(T0 + timedelta(hours=2))
        repository.record_usage({"k1": Usage(3, t2), "missing": Usage(1, t1)})
        repository.record_usage({"k1": Usage(2, t1)})
        got = repository.get("k1")
        assert got is not None and got.use_count == 5
        assert got.last_used_at == T0 + timedelta(hours=2)
        assert got.version == 1  # usage is not a change of the token

    def test_a_batch_written_again_is_skipped(self, repository: Repository) -> None:
        """A batch retried under its id (its first answer lost) counts once, events too."""
        repository.insert(record("k1"))
        at = to_micros(T0)
        event = (at, "login", "ok", None, "k1", 1, None, None, 1)
        first, second = BatchId("w" * 16, 1), BatchId("w" * 16, 2)
        for _ in range(2):
            repository.record_usage({"k1": Usage(3, at)}, [event], batch=first)
        repository.record_usage({"k1": Usage(2, at)}, [event], batch=second)
        repository.record_usage({"k1": Usage(5, at)}, [event], batch=first)  # older: skipped
        repository.record_usage({"k1": Usage(1, at)}, [event], batch=BatchId("x" * 16, 1))
        repository.record_usage({"k1": Usage(1, at)}, [event])  # no id: always written
        got = repository.get("k1")
        assert got is not None and got.use_count == 3 + 2 + 1 + 1
        events = repository.events(user=None, token_key="k1", since=None, limit=100)
        assert len(events) == 4
