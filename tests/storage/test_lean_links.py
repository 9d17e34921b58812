"""The broker's read of a link without SQLAlchemy (``_lean_links``).

``SQLRepository.get_link`` on a plain ``sqlite:///path`` reads through the lean
``sqlite3`` connection of the login path, and on PostgreSQL through the login path's
connection per thread; every write stays with SQLAlchemy.  These tests hold that read
to the store's: the same row for every state a link can be in, another connection's
writes seen by the very next read, no SQLAlchemy import on SQLite, the same refusals (a
closed repository), and on PostgreSQL a reconnection when the connection died idle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from authtoken import RepositoryError, SQLRepository
from authtoken._repository import UpstreamLink
from authtoken._sql._lean_links import LINK_COLUMNS
from authtoken._sql._schema import LINKS

HEAVY = ("sqlalchemy", "sqlmodel", "alembic")
SEALED_R = b"\x01sealed-refresh\x00\xff"
SEALED_A = b"\x01sealed-access\x00\xff"


def a_link(user: int | str = "alice", name: str = "space", **changes: object) -> UpstreamLink:
    link = UpstreamLink(user=user, name=name, refresh_token=SEALED_R, access_token=SEALED_A,
                        access_expires=2_000, refresh_at=1_800, refresh_expires=9_000)
    return replace(link, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest,
         tmp_path: Path) -> Iterator[tuple[SQLRepository, SQLRepository]]:
    """One database twice: a repository whose links are read lean, and one that reads
    them through SQLAlchemy (``SQLLinks``, as every write goes).  On SQLite the second
    has ``engine_options``, which the lean path does not interpret."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'links.db'}"
        lean, heavy = SQLRepository(url), SQLRepository(url, engine_options={})
    else:
        url = request.getfixturevalue("pg_url")
        lean, heavy = SQLRepository(url), SQLRepository(url)
        heavy.get_link = heavy._links().get_link  # type: ignore[method-assign]
    try:
        yield lean, heavy
    finally:
        lean.close()
        heavy.close()


def test_the_statement_names_the_tables_columns() -> None:
    assert tuple(c.name for c in LINKS.columns) == LINK_COLUMNS


def test_the_lean_read_is_the_stores_read_in_every_state(
        pair: tuple[SQLRepository, SQLRepository]) -> None:
    """ok, leased, refreshed, needs_relink, no tokens, 42 and "42": the same row."""
    lean, heavy = pair
    assert lean.get_link("alice", "space") is None
    heavy.put_link(a_link(), 100)
    heavy.put_link(a_link(user=42, refresh_expires=None), 101)
    heavy.put_link(a_link(user="42", name="other", refresh_token=None), 102)
    for user, name in (("alice", "space"), (42, "space"), ("42", "other")):
        assert lean.get_link(user, name) == heavy.get_link(user, name) is not None
    assert lean.get_link("42", "space") is None  # the integer's link, not the string's
    assert lean.get_link(42, "other") is None
    assert heavy.take_lease("alice", "space", "holder-1", 200, 900) is not None
    leased = lean.get_link("alice", "space")
    assert leased is not None and (leased.lease_holder, leased.lease_expires) == ("holder-1", 900)
    assert leased == heavy.get_link("alice", "space")
    done = heavy.finish_refresh(a_link(access_token=b"\x01new"), "holder-1", 300)
    assert done is not None and lean.get_link("alice", "space") == done
    assert heavy.take_lease("alice", "space", "holder-2", 400, 900) is not None
    assert heavy.mark_needs_relink("alice", "space", "holder-2", 500)
    relink = lean.get_link("alice", "space")
    assert relink == heavy.get_link("alice", "space")
    assert relink is not None and relink.state == "needs_relink"
    assert relink.access_token is None and relink.refresh_token is None


def test_another_connections_writes_are_seen_by_the_next_read(
        pair: tuple[SQLRepository, SQLRepository]) -> None:
    """No snapshot is kept between reads: a relink or an unlink elsewhere shows at once."""
    lean, heavy = pair
    heavy.put_link(a_link(), 100)
    first = lean.get_link("alice", "space")
    assert first is not None and first.access_token == SEALED_A
    heavy.put_link(a_link(access_token=b"\x01relinked"), 200)
    again = lean.get_link("alice", "space")
    assert again is not None and again.access_token == b"\x01relinked"
    assert again.version == first.version + 1
    assert heavy.delete_link("alice", "space")
    assert lean.get_link("alice", "space") is None


def test_a_link_is_read_without_importing_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    repo = SQLRepository(url)
    try:
        repo.put_link(a_link(), 100)
    finally:
        repo.close()
    done = subprocess.run([sys.executable, "-c", f"""
import json, sys
from authtoken import SQLRepository
repo = SQLRepository({url!r})
link = repo.get_link("alice", "space")
repo.close()
print(json.dumps({{"access": link.access_token.hex(), "state": link.state,
                  "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"access": SEALED_A.hex(), "state": "ok", "heavy": []}


def test_a_closed_repository_refuses_the_read(tmp_path: Path) -> None:
    repo = SQLRepository(f"sqlite:///{tmp_path / 't.db'}")
    repo.put_link(a_link(), 100)
    repo.close()
    with pytest.raises(RepositoryError, match="closed"):
        repo.get_link("alice", "space")


def test_a_new_file_gets_its_schema_on_the_first_read(tmp_path: Path) -> None:
    """The read checks the schema as every lean read does: a new file is created."""
    repo = SQLRepository(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert repo.get_link("alice", "space") is None
        repo.put_link(a_link(), 100)
        assert repo.get_link("alice", "space") is not None
    finally:
        repo.close()


@pytest.mark.slow
def test_postgresql_reads_on_the_login_connection_and_reconnects(pg_url: str) -> None:
    """The read uses this thread's login connection; when that died idle (a restart, a
    failover), the next read reconnects once and answers."""
    import psycopg

    from authtoken._sql._pg_login import PgReads

    repo = SQLRepository(pg_url)
    try:
        repo.put_link(a_link(), 100)
        assert repo.get_link("alice", "space") is not None
        reads = repo._store()._reads
        assert isinstance(reads, PgReads)
        state = reads.current()
        assert state is not None  # the read made this thread's connection
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (state.conn.info.backend_pid,))
        again = repo.get_link("alice", "space")
        assert again is not None and again.access_token == SEALED_A
        assert reads.current() is not state
    finally:
        repo.close()


@pytest.mark.slow
def test_postgresql_prepares_the_read_again_when_it_vanished(pg_url: str) -> None:
    """A pooler's DISCARD, say: one retry on a new connection prepares it afresh."""
    from authtoken._sql._pg_login import PgReads

    repo = SQLRepository(pg_url)
    try:
        repo.put_link(a_link(user=42), 100)
        assert repo.get_link(42, "space") is not None
        reads = repo._store()._reads
        assert isinstance(reads, PgReads)
        state = reads.current()
        assert state is not None
        state.conn.execute("DEALLOCATE authtoken_upstream_link")
        again = repo.get_link(42, "space")
        assert again is not None and again.user == 42 and again.refresh_token == SEALED_R
        assert reads.current() is not state
    finally:
        repo.close()
