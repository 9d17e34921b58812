"""The SQLite path without SQLAlchemy: a process that only logs in never imports it.

``SQLRepository`` on a plain ``sqlite:///path`` serves logins, reads by key and usage
batches through ``sqlite3`` alone and builds its SQLAlchemy store only when a call needs
one.  These tests hold it to that, and to behaving exactly like the store it stands in
for: the same schema checks, the same statements, the same refusals after close.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from authtoken import AuthToken, RepositoryError, Security, SQLRepository
from authtoken._migrate import HEAD, VERSION_TABLE
from authtoken._sql._lean import plain_sqlite_path
from authtoken._sql._schema import TOKENS
from authtoken._sql._statements import COLUMNS

HEAVY = ("sqlalchemy", "sqlmodel", "alembic")


def test_the_statements_name_the_tables_columns() -> None:
    assert tuple(c.name for c in TOKENS.columns) == COLUMNS


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///tokens.db", "tokens.db"),
    ("sqlite:////var/lib/authtoken/tokens.db", "/var/lib/authtoken/tokens.db"),
    ("sqlite+pysqlite:///t.db", "t.db"),
    ("sqlite:///:memory:", None), ("sqlite://", None), ("sqlite:///t.db?mode=ro", None),
    ("sqlite:///t%20x.db", None), ("sqlite:///a\x00b", None), ("sqlite+foo:///t.db", None),
    ("postgresql://u@h/db", None), ("memory://", None), (b"sqlite:///t.db", None),
])
def test_only_plain_file_urls_take_the_lean_path(url: object, path: str | None) -> None:
    """Anything the lean path would have to interpret goes to SQLAlchemy, as before."""
    assert plain_sqlite_path(url) == path


def _run(code: str, tmp_path: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path,
                          env={"AUTHTOKEN_SECRET_KEYS": "k" * 40, "PATH": ""})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_a_login_and_its_usage_import_no_sqlalchemy(tmp_path: Path) -> None:
    """Log in, record the usage, close: on an existing database, without SQLAlchemy."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    with Security(SQLRepository(url), secret_keys="k" * 40) as security:
        string = security.authorize_token(AuthToken("reports:read"), user=7)
    (tmp_path / "token").write_text(string)
    result = _run(f"""
import json, sys
from authtoken import open_security
with open_security({url!r}) as security:
    principal = security.login_by_auth_token(open("token").read())
    token = security.get_auth_token(principal.token_key)
print(json.dumps({{"user": principal.user, "uses": token.use_count,
                  "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
""", tmp_path)
    assert result == {"user": 7, "uses": 1, "heavy": []}
    with Security(SQLRepository(url), secret_keys="k" * 40) as security:
        assert security.restore_auth_token(string).use_count == 1


def test_the_command_line_login_imports_no_sqlalchemy(tmp_path: Path) -> None:
    """``authtoken login`` itself: the cold start the command line is judged by."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    with Security(SQLRepository(url), secret_keys="k" * 40) as security:
        string = security.authorize_token(AuthToken("reports:read"), user=7)
    (tmp_path / "token").write_text(string)
    result = _run(f"""
import contextlib, io, json, sys
sys.stdin = open("token")
from authtoken._cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["--database", {url!r}, "login"])
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
""", tmp_path)
    assert result == {"code": 0, "heavy": []}


def test_a_new_file_gets_its_schema_through_the_store(tmp_path: Path) -> None:
    """A file with no schema yet is created by migration, as ever, on the first call."""
    repo = SQLRepository(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert repo.login_row("a" * 16) is None
        assert repo.schema_revision() == HEAD
    finally:
        repo.close()


@pytest.mark.parametrize(("revision", "says"), [("9999", "newer than this authtoken"),
                                                 ("0001", "authtoken db upgrade")])
def test_a_schema_not_the_newest_is_refused_on_the_lean_path_too(
        tmp_path: Path, revision: str, says: str) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    repo = SQLRepository(url)
    repo.schema_revision()
    repo.upgrade_schema()
    with repo.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :v"),
                     {"v": revision})
    repo.close()
    fresh = SQLRepository(url)
    try:
        with pytest.raises(RepositoryError, match=says):
            fresh.login_row("a" * 16)
        with pytest.raises(RepositoryError, match=says):
            fresh.get("a" * 16)
    finally:
        fresh.close()


def test_a_closed_repository_refuses_the_lean_calls(tmp_path: Path) -> None:
    repo = SQLRepository(f"sqlite:///{tmp_path / 't.db'}")
    assert repo.get("a" * 16) is None
    repo.close()
    for call in (lambda: repo.login_row("a" * 16), lambda: repo.get("a" * 16),
                 lambda: repo.list(None, True)):
        with pytest.raises(RepositoryError, match="closed"):
            call()


def _last_user_closes(path: Path) -> None:
    """Another process opens the file, reads, and closes: if it believes it is the
    last user, SQLite deletes the write-ahead log and its index."""
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('SELECT COUNT(*) FROM authtoken_token').fetchall(); c.close()")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


def test_opening_the_file_again_keeps_this_process_locks(tmp_path: Path) -> None:
    """A second repository on a file this process already uses must not open and close
    the file itself: closing any descriptor of it drops this process's POSIX locks, and
    another process then deletes the write-ahead log from under the open connections
    ("file is not a database" at their next read)."""
    path = tmp_path / "t.db"
    first = Security(SQLRepository(f"sqlite:///{path}"), secret_keys="k" * 40)
    try:
        string = first.authorize_token(AuthToken("a"), user=1)
        first.login_by_auth_token(string)
        first.flush()
        assert (tmp_path / "t.db-shm").exists()
        second = SQLRepository(f"sqlite:///{path}")  # the constructor under test
        _last_user_closes(path)
        assert (tmp_path / "t.db-shm").exists()  # still in use, by this process
        assert first.restore_auth_token(string).use_count == 1
        second.close()
        # The hazard itself: a descriptor opened and closed here drops the locks.
        import os

        os.close(os.open(path, os.O_RDWR))
        _last_user_closes(path)
        assert not (tmp_path / "t.db-shm").exists()
    finally:
        first.close()


def test_an_urgent_begin_waits_for_the_lock_and_restores_the_busy_timeout(
        tmp_path: Path) -> None:
    """A revocation's BEGIN polls for the write lock instead of sleeping in SQLite's
    busy handler; it gets it once the holder lets go, gives up after the busy timeout,
    and leaves the connection's busy timeout as it found it."""
    import sqlite3
    import threading

    from authtoken._sql._lean import begin_urgent

    path = tmp_path / "t.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (x)")
    urgent = sqlite3.connect(path, isolation_level=None)
    urgent.execute("PRAGMA busy_timeout = 5000")
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    begin_urgent(urgent)  # waits for the holder's commit
    urgent.execute("INSERT INTO t VALUES (1)")
    urgent.execute("COMMIT")
    release.join()
    assert urgent.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    holder.execute("BEGIN IMMEDIATE")
    urgent.execute("PRAGMA busy_timeout = 50")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_urgent(urgent)  # held past its busy timeout: gives up
    assert urgent.execute("PRAGMA busy_timeout").fetchone() == (50,)
    holder.execute("COMMIT")
    holder.close()
    urgent.close()


def test_a_revocation_commit_leaves_the_checkpoint_to_bookkeeping(tmp_path: Path) -> None:
    """Copying the write-ahead log into the file is bookkeeping: a revocation's commit
    (``begin_urgent``) never does it, however long the log; the next batch's commit
    (``begin_write``) does, as SQLite does by default."""
    import sqlite3

    from authtoken._sql._lean import WAL_AUTOCHECKPOINT, begin_urgent, begin_write

    path = tmp_path / "t.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # a long log, not yet in the file
    writer.execute("CREATE TABLE t (x BLOB)")
    writer.execute("BEGIN")
    writer.executemany("INSERT INTO t VALUES (?)",
                       [(bytes(3000),) for _ in range(WAL_AUTOCHECKPOINT + 200)])
    writer.execute("COMMIT")
    small = path.stat().st_size
    assert small < 100_000  # the rows are in the log only

    urgent = sqlite3.connect(path, isolation_level=None)
    begin_urgent(urgent)
    urgent.execute("INSERT INTO t VALUES (x'00')")
    urgent.execute("COMMIT")
    assert path.stat().st_size == small  # the revocation did not checkpoint

    begin_write(urgent)  # the same pooled connection, now writing a batch
    urgent.execute("INSERT INTO t VALUES (x'01')")
    urgent.execute("COMMIT")
    assert path.stat().st_size > 3000 * WAL_AUTOCHECKPOINT  # checkpointed into the file
    writer.close()
    urgent.close()
