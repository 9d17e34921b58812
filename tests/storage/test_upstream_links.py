"""The ``UpstreamLinks`` contract, the same on every backend (memory, SQLite, PostgreSQL).

The broker keeps a user's upstream accounts here; what matters is that the refresh lease
is atomic (one holder at a time, until it expires) and that only the holder writes.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from authtoken import Repository, RepositoryError, SQLRepository
from authtoken._migrate import HEAD, upgrade
from authtoken._repository import UpstreamLink, UpstreamLinks

SEALED_R = b"\x01sealed-refresh"
SEALED_A = b"\x01sealed-access"


def links(repository: Repository) -> UpstreamLinks:
    """The repository as ``UpstreamLinks`` (every backend of the suite is one)."""
    assert isinstance(repository, UpstreamLinks)
    return repository


def a_link(user: int | str = "alice", name: str = "space", **changes: object) -> UpstreamLink:
    """A link as the broker writes it after linking."""
    link = UpstreamLink(user=user, name=name, refresh_token=SEALED_R, access_token=SEALED_A,
                        access_expires=2_000, refresh_at=1_800, refresh_expires=9_000)
    return replace(link, **changes)  # type: ignore[arg-type]


def test_put_get_list_delete(repository: Repository) -> None:
    """A link is stored, read back whole, listed by name per user, and deleted."""
    repo = links(repository)
    assert repo.get_link("alice", "space") is None
    stored = repo.put_link(a_link(), 100)
    assert stored == a_link(version=1, updated_at=100)
    assert repo.get_link("alice", "space") == stored
    repo.put_link(a_link(name="archive"), 101)
    repo.put_link(a_link(user=42), 102)
    repo.put_link(a_link(user="42", name="other"), 103)
    assert [link.name for link in repo.list_links("alice")] == ["archive", "space"]
    assert [link.name for link in repo.list_links(42)] == ["space"]   # not "42"'s
    assert [link.name for link in repo.list_links("42")] == ["other"]
    assert repo.list_links("nobody") == []
    assert repo.delete_link("alice", "space") is True
    assert repo.delete_link("alice", "space") is False
    assert repo.get_link("alice", "space") is None
    assert repo.get_link("alice", "archive") is not None


def test_putting_again_replaces_and_heals(repository: Repository) -> None:
    """Linking again replaces the tokens, clears a lease and a ``needs_relink`` state."""
    repo = links(repository)
    repo.put_link(a_link(), 100)
    assert repo.take_lease("alice", "space", "h1", 100, 500) is not None
    assert repo.mark_needs_relink("alice", "space", "h1", 110) is True
    dead = repo.get_link("alice", "space")
    assert dead is not None and dead.state == "needs_relink"
    assert dead.refresh_token is None and dead.access_token is None
    repo.take_lease("alice", "space", "h2", 120, 500)
    healed = repo.put_link(a_link(refresh_token=b"new"), 130)
    assert healed.state == "ok" and healed.refresh_token == b"new"
    assert healed.lease_holder is None and healed.version > dead.version
    # the holder that lost its lease to the relink writes nothing
    assert repo.finish_refresh(a_link(refresh_token=b"stale"), "h2", 140) is None
    assert repo.get_link("alice", "space") == healed


def test_the_lease_is_held_until_it_expires(repository: Repository) -> None:
    """A lease is refused to others while it lasts, and free once it has expired."""
    repo = links(repository)
    assert repo.take_lease("alice", "space", "h1", 100, 500) is None  # no link
    repo.put_link(a_link(), 100)
    taken = repo.take_lease("alice", "space", "h1", 100, 500)
    assert taken is not None and (taken.lease_holder, taken.lease_expires) == ("h1", 500)
    held = repo.take_lease("alice", "space", "h2", 499, 900)
    assert held is not None and held.lease_holder == "h1"
    assert repo.release_lease("alice", "space", "h2") is False  # not h2's to release
    retaken = repo.take_lease("alice", "space", "h2", 500, 900)  # expired at 500
    assert retaken is not None and retaken.lease_holder == "h2"
    assert repo.release_lease("alice", "space", "h1") is False
    assert repo.release_lease("alice", "space", "h2") is True
    free = repo.get_link("alice", "space")
    assert free is not None and free.lease_holder is None and free.lease_expires is None
    assert free.refresh_token == SEALED_R  # a release changes nothing else


def test_only_the_holder_finishes_a_refresh(repository: Repository) -> None:
    """``finish_refresh`` writes only for the lease's holder, and clears the lease."""
    repo = links(repository)
    repo.put_link(a_link(), 100)
    fresh = a_link(refresh_token=b"r2", access_token=b"a2", access_expires=3_000,
                   refresh_at=2_800, refresh_expires=None)
    assert repo.finish_refresh(fresh, "h1", 200) is None  # nobody holds the lease
    repo.take_lease("alice", "space", "h1", 100, 500)
    assert repo.finish_refresh(fresh, "h2", 200) is None
    done = repo.finish_refresh(fresh, "h1", 200)
    assert done is not None
    assert (done.refresh_token, done.access_token, done.access_expires, done.refresh_at,
            done.refresh_expires, done.state) == (b"r2", b"a2", 3_000, 2_800, None, "ok")
    assert done.lease_holder is None and done.updated_at == 200
    assert repo.finish_refresh(fresh, "h1", 300) is None  # once


def test_only_the_holder_marks_needs_relink(repository: Repository) -> None:
    """``mark_needs_relink`` needs the lease; it drops the tokens and the lease."""
    repo = links(repository)
    repo.put_link(a_link(), 100)
    assert repo.mark_needs_relink("alice", "space", "h1", 110) is False
    repo.take_lease("alice", "space", "h1", 100, 500)
    assert repo.mark_needs_relink("alice", "space", "h2", 110) is False
    assert repo.mark_needs_relink("alice", "space", "h1", 110) is True
    link = repo.get_link("alice", "space")
    assert link is not None and link.state == "needs_relink" and link.lease_holder is None
    assert link.access_expires is None and link.refresh_at is None


def test_versions_grow_with_every_write(repository: Repository) -> None:
    """Every write of a link gives it a higher version."""
    repo = links(repository)
    seen = [repo.put_link(a_link(), 1).version]
    taken = repo.take_lease("alice", "space", "h", 1, 5)
    assert taken is not None
    seen.append(taken.version)
    done = repo.finish_refresh(a_link(), "h", 2)
    assert done is not None
    seen.append(done.version)
    seen.append(repo.put_link(a_link(), 3).version)
    assert seen == sorted(set(seen))


def test_one_lease_among_racing_threads(repository: Repository) -> None:
    """Of 16 threads that ask for the lease at once, exactly one gets it."""
    repo = links(repository)
    repo.put_link(a_link(), 100)
    start = threading.Barrier(16)
    won: list[str] = []

    def take(i: int) -> None:
        start.wait()
        link = repo.take_lease("alice", "space", f"h{i}", 100, 500)
        if link is not None and link.lease_holder == f"h{i}":
            won.append(f"h{i}")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    link = repo.get_link("alice", "space")
    assert link is not None and link.lease_holder == won[0]


def test_a_link_repr_holds_no_blob(repository: Repository) -> None:
    """The sealed tokens are left out of a link's repr."""
    stored = links(repository).put_link(a_link(), 100)
    assert "sealed" not in repr(stored) and "alice" in repr(stored)



@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0006_adds_the_table_to_a_0005_database(backend: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    """A 0005 database is refused until upgraded; then 0006 has added the links' table."""
    url = (f"sqlite:///{tmp_path}/links.db" if backend == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    repo = SQLRepository(url)
    try:
        with repo.engine.begin() as conn:
            upgrade(conn, "0005")
            assert not sa.inspect(conn).has_table("authtoken_upstream_link")
    finally:
        repo.close()
    repo = SQLRepository(url)
    try:
        with pytest.raises(RepositoryError, match="authtoken db upgrade"):
            repo.get_link("alice", "space")
        assert repo.upgrade_schema() == ("0005", HEAD)
        assert repo.put_link(a_link(), 1).version == 1
        assert repo.get_link("alice", "space") is not None
    finally:
        repo.close()
