"""Schema migrations: created on first use, upgraded on request, newer schemas refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from authtoken import (
    AuthToken,
    InvalidArgument,
    RepositoryError,
    Security,
    Session,
    SQLRepository,
    TokenExhausted,
    TokenRevoked,
)
from authtoken._cli import main
from authtoken._expiry import to_micros
from authtoken._migrate import HEAD, VERSION_TABLE
from authtoken._sql import METADATA
from authtoken.testing import FakeClock

_T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_first_use_creates_the_schema_by_migration(url: str) -> None:
    """An empty database gets the newest revision, identical to the table classes."""
    repo = SQLRepository(url)
    with Security(repo, secret_keys="k") as security:
        security.authorize_token(AuthToken("a"), user=1)
        assert repo.schema_revision() == HEAD
        with repo.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            diff = compare_metadata(context, METADATA)
        # the version table is Alembic's own, not part of the model
        assert [d for d in diff if d[0] != "remove_table" or d[1].name != VERSION_TABLE] == []


def test_upgrade_is_idempotent(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """'authtoken db upgrade' migrates an empty database, then has nothing to do."""
    if url.startswith("sqlite"):
        # 'db current' only reads: a missing SQLite file is reported, not created
        path = Path(url.removeprefix("sqlite:///"))
        assert main(["--database", url, "db", "current"]) == 1
        assert "no database at" in capsys.readouterr().err
        assert not path.exists()
        path.touch()  # an empty file is an empty database
    assert main(["--database", url, "db", "current"]) == 0
    assert "none (empty database)" in capsys.readouterr().out
    assert main(["--database", url, "db", "upgrade"]) == 0
    assert f"from empty to {HEAD}" in capsys.readouterr().out
    assert main(["--database", url, "db", "upgrade", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"before": HEAD, "after": HEAD}


def _set_revision(url: str, revision: str) -> None:
    repo = SQLRepository(url)
    repo.upgrade_schema()
    with repo.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": revision})
    repo.close()


def test_newer_schema_is_refused(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A database migrated by a later authtoken is refused with what to do."""
    _set_revision(url, "9999")
    security = Security(SQLRepository(url), secret_keys="k")
    with pytest.raises(RepositoryError, match="newer than this authtoken") as info:
        security.authorize_token(AuthToken("a"), user=1)
    assert "pip install -U authtoken" in str(info.value)
    with pytest.raises(RepositoryError, match="newer"):
        security.list_auth_tokens()
    security.close()  # nothing to write: a storage failure is not an audit event
    assert main(["--database", url, "db", "upgrade"]) == 1
    assert "RepositoryError" in capsys.readouterr().err


def test_foreign_table_is_refused(tmp_path: Path) -> None:
    """A token table that authtoken's migrations did not create is not written to."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE authtoken_token (id INTEGER)"))
    engine.dispose()
    with Security(SQLRepository(url), secret_keys="k") as security:
        with pytest.raises(RepositoryError, match="no schema version"):
            security.list_auth_tokens()


def test_db_command_refuses_memory(capsys: pytest.CaptureFixture[str]) -> None:
    """memory:// has no schema; the db command says so."""
    assert main(["--database", "memory://", "db", "upgrade"]) == 1
    assert "InvalidArgument" in capsys.readouterr().err


def test_password_not_in_failure(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong password fails with RepositoryError that shows neither password."""
    from support.pgcluster import PASSWORD

    wrong = pg_url.replace(PASSWORD, "Wrong-Pa55word-xyz")
    with Security(SQLRepository(wrong), secret_keys="k") as security:
        with pytest.raises(RepositoryError) as info:
            security.list_auth_tokens()
    text = str(info.value) + repr(info.value)
    assert "Wrong-Pa55word-xyz" not in text and PASSWORD not in text
    assert "password authentication failed" in text
    assert main(["--database", wrong, "list"]) == 1
    captured = capsys.readouterr()
    assert "Wrong-Pa55word-xyz" not in captured.err + captured.out


def test_older_schema_waits_for_upgrade(url: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A schema older than the code is refused until 'authtoken db upgrade' runs."""
    from authtoken import _migrate

    _set_revision(url, "0000")
    monkeypatch.setattr(_migrate, "REVISIONS", ("0000", HEAD))
    with Security(SQLRepository(url), secret_keys="k") as security:
        with pytest.raises(RepositoryError, match="authtoken db upgrade"):
            security.list_auth_tokens()
    monkeypatch.setattr(_migrate, "upgrade", lambda conn, revision="head": conn.execute(
        sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": HEAD}))
    assert main(["--database", url, "db", "upgrade"]) == 0
    assert f"from 0000 to {HEAD}" in capsys.readouterr().out
    with Security(SQLRepository(url), secret_keys="k") as security:
        assert security.list_auth_tokens() == []


# -- 0005: tokens for jobs, on a database that holds data --------------------------------
OLD_KEYS = "old-secret-key"
_NEW_COLUMNS = ("max_uses", "max_lifetime", "lifetime", "run_id", "ancestors")


def _old_token(codec: object, key: str, *, user: int | str, parent: str | None = None,
               revoked: bool = False, use_count: int = 0) -> tuple[str, dict[str, object]]:
    """A token string and the row revision 0004 stored for it (no column of 0005)."""
    from authtoken._codec import TokenCodec
    from authtoken._sql._rows import token_values
    from authtoken._token import TokenRecord

    assert isinstance(codec, TokenCodec)
    string, digest = codec.issue(key)
    record = TokenRecord(
        key=key, user=user, scope="reports:read jobs:run", data=f"data of {key} \x00 é",
        description=f"token {key}", expires=_T0 + timedelta(days=10),
        created_at=_T0 - timedelta(days=1), updated_at=_T0 - timedelta(hours=20),
        revoked_at=_T0 - timedelta(hours=2) if revoked else None,
        last_used_at=_T0 - timedelta(hours=3) if use_count else None, use_count=use_count,
        parent_key=parent, secret_hash=digest, version=2,
    )
    values = token_values(record)
    for name in _NEW_COLUMNS:
        del values[name]
    return string, values


def _insert(conn: sa.Connection, table: str, rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    names = ", ".join('"' + c + '"' for c in columns)  # "count" is a keyword
    params = ", ".join(":" + c for c in columns)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({params})"), rows)


def _database_at_0004(url: str) -> dict[str, str]:
    """A database migrated to 0004 holding what that version wrote: tokens (a root, its
    child and grandchild, a revoked one, an int user's), staged usage and audit events.
    Returns the token strings by name."""
    from authtoken._codec import TokenCodec
    from authtoken._migrate import upgrade
    from authtoken._repository import EventRow, Usage
    from authtoken._sql._rows import audit_rows
    from authtoken._sql._staging import staged_rows

    codec = TokenCodec(OLD_KEYS)
    strings, rows = {}, []
    for name, key, kwargs in [
        ("root", "rootrootrootroot", {"user": "alice", "use_count": 4}),
        ("child", "childchildchildc", {"user": "alice", "parent": "rootrootrootroot"}),
        ("grandchild", "grandchildgrandc", {"user": "alice", "parent": "childchildchildc"}),
        ("revoked", "revokedrevokedre", {"user": "alice", "revoked": True}),
        ("numbered", "numberednumbered", {"user": 42}),
    ]:
        strings[name], row = _old_token(codec, key, **kwargs)  # type: ignore[arg-type]
        rows.append(row)
    at = to_micros(_T0 - timedelta(hours=1))
    logins = [EventRow(at, "login", "ok", None, "rootrootrootroot", "alice", None, None, 1),
              EventRow(at, "login", "ok", None, "childchildchildc", "alice", None, None, 1)]
    staged = staged_rows({"rootrootrootroot": Usage(2, at), "childchildchildc": Usage(1, at)},
                         logins)
    filed = audit_rows([EventRow(to_micros(_T0 - timedelta(days=1)), "authorize", "ok",
                                 "user:alice", row["key"], "alice", None, None, 1)
                        for row in rows[:4]])
    repo = SQLRepository(url)
    try:
        with repo.engine.begin() as conn:
            upgrade(conn, "0004")
            _insert(conn, "authtoken_token", rows)
            audit = ("at", "action", "outcome", "actor", "token_key", "user_ref",
                     "script_key", "script_path", "reason", "count")
            _insert(conn, "authtoken_audit", [dict(zip(audit, r, strict=True)) for r in filed])
            _insert(conn, "authtoken_staged",
                    [dict(zip((*audit, "uses"), r, strict=True)) for r in staged])
    finally:
        repo.close()
    return strings


def _columns(url: str) -> set[str]:
    repo = SQLRepository(url)
    try:
        with repo.engine.connect() as conn:
            return {c["name"] for c in sa.inspect(conn).get_columns("authtoken_token")}
    finally:
        repo.close()


def test_0004_with_data_is_refused_until_upgraded(url: str) -> None:
    """A real 0004 database is refused by this code until 'authtoken db upgrade'."""
    strings = _database_at_0004(url)
    assert not set(_NEW_COLUMNS) & _columns(url)
    with Security(SQLRepository(url), secret_keys=OLD_KEYS) as security:
        with pytest.raises(RepositoryError, match="authtoken db upgrade"):
            security.login_by_auth_token(strings["root"])
    repo = SQLRepository(url)
    try:
        assert repo.schema_revision() == "0004"
    finally:
        repo.close()


@pytest.mark.parametrize("how", ["cli", "api"])
def test_upgrade_from_0004_keeps_the_data(url: str, how: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Migration 0005 keeps every token, count and event; the new columns are NULL."""
    strings = _database_at_0004(url)
    if how == "cli":
        assert main(["--database", url, "db", "upgrade"]) == 0
        assert f"from 0004 to {HEAD}" in capsys.readouterr().out
    else:
        repo = SQLRepository(url)
        try:
            assert repo.upgrade_schema() == ("0004", HEAD)
        finally:
            repo.close()
    assert set(_NEW_COLUMNS) <= _columns(url)
    repo = SQLRepository(url)
    try:
        assert repo.schema_revision() == HEAD
        with repo.engine.connect() as conn:
            rows = {r.key: r for r in conn.execute(sa.text(
                "SELECT key, max_uses, max_lifetime, lifetime, run_id, ancestors "
                "FROM authtoken_token"))}
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            diff = compare_metadata(context, METADATA)
    finally:
        repo.close()
    # the schema 0005 leaves is the schema a new database gets
    assert [d for d in diff if d[0] != "remove_table" or d[1].name != VERSION_TABLE] == []
    assert len(rows) == 5
    for row in rows.values():
        assert (row.max_uses, row.max_lifetime, row.lifetime, row.run_id) == (None,) * 4
    assert rows["rootrootrootroot"].ancestors is None
    assert rows["childchildchildc"].ancestors == "rootrootrootroot"
    assert rows["revokedrevokedre"].ancestors is None

    clock = FakeClock(_T0)
    with Security(SQLRepository(url), secret_keys=OLD_KEYS, clock=clock) as security:
        root = security.get_auth_token("rootrootrootroot")
        assert root.user == "alice" and root.scope == "reports:read jobs:run"
        assert root.data == "data of rootrootrootroot \x00 é"
        assert root.description == "token rootrootrootroot"
        assert root.created_at == _T0 - timedelta(days=1)
        assert root.expires == _T0 + timedelta(days=10)
        assert root.use_count == 6  # 4 filed, 2 staged
        assert root.last_used_at == _T0 - timedelta(hours=1)
        assert (root.max_uses, root.max_lifetime, root.run_id) == (None, None, None)
        assert security.get_auth_token("childchildchildc").use_count == 1
        assert security.get_auth_token("numberednumbered").user == 42
        assert security.get_auth_token("revokedrevokedre").revoked_at == _T0 - timedelta(hours=2)
        assert [t.key for t in security.list_auth_tokens(user="alice")] \
            == ["grandchildgrandc", "childchildchildc", "rootrootrootroot"]

        events = security.audit_events(token_key="rootrootrootroot")
        assert sorted((e.action, e.outcome, e.count) for e in events) \
            == [("authorize", "ok", 1), ("login", "ok", 1)]
        assert all(e.run_id is None for e in events)

        # old tokens still log in, and know whose they are
        principal = security.login_by_auth_token(strings["root"])
        assert principal.user == "alice" and principal.chain == ("rootrootrootroot",)
        assert principal.run_id is None and principal.parent_key is None
        child = security.login_by_auth_token(strings["child"])
        assert child.chain == ("rootrootrootroot", "childchildchildc")
        assert security.login_by_auth_token(strings["numbered"]).user == 42
        with pytest.raises(TokenRevoked):
            security.login_by_auth_token(strings["revoked"])
        security.flush()
        assert security.get_auth_token("rootrootrootroot").use_count == 7
        with pytest.raises(InvalidArgument, match="not renewable"):
            security.renew_auth_token(strings["root"])

        # and delegate tokens for jobs
        session = Session(security)
        session.login_by_auth_token(strings["child"])
        with session.run_token("after-upgrade", max_uses=1) as run:
            assert security.login_by_auth_token(run.token).chain \
                == ("rootrootrootroot", "childchildchildc", run.key)
            with pytest.raises(TokenExhausted):
                security.login_by_auth_token(run.token)
        security.revoke_auth_token(strings["root"])  # the old tree dies whole
        for name in ("child", "grandchild"):
            with pytest.raises(TokenRevoked):
                security.login_by_auth_token(strings[name])


def test_upgrade_from_0004_gives_a_grandchild_its_whole_chain(url: str) -> None:
    """A grandchild of the earlier schema knows its root after the upgrade, as one
    authorized since does: chain (root, child, grandchild), and a session of its root
    counts it among its descendants."""
    strings = _database_at_0004(url)
    assert main(["--database", url, "db", "upgrade"]) == 0
    with Security(SQLRepository(url), secret_keys=OLD_KEYS, clock=FakeClock(_T0)) as security:
        principal = security.login_by_auth_token(strings["grandchild"])
        assert principal.parent_key == "childchildchildc"
        assert principal.chain == ("rootrootrootroot", "childchildchildc", "grandchildgrandc")
        session = Session(security)
        session.login_by_auth_token(strings["root"])
        # a descendant: refused as not renewable, not as someone else's token
        with pytest.raises(InvalidArgument, match="not renewable"):
            session.renew_auth_token(strings["grandchild"])


def test_0007_never_hands_a_staged_id_out_twice(tmp_path: Path) -> None:
    """SQLite: 0007 rebuilds the staging table with AUTOINCREMENT -- the very table the
    table classes declare -- keeping its rows whole; once the table empties a new row
    still gets an id above all of them (a fold deletes by id what it read before: see
    authtoken/_sql/_fold.py); the downgrade gives back the 0006 table, rows whole."""
    from alembic import command
    from alembic.config import Config

    from authtoken._migrate import upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    _database_at_0004(url)
    staged = sa.text("SELECT * FROM authtoken_staged ORDER BY id")
    ddl = sa.text("SELECT sql FROM sqlite_master WHERE name = 'authtoken_staged'")
    repo = SQLRepository(url)
    try:
        with repo.engine.begin() as conn:
            upgrade(conn, "0006")
            before, ddl_0006 = conn.execute(staged).all(), conn.execute(ddl).scalar_one()
            upgrade(conn, "0007")
            after, ddl_0007 = conn.execute(staged).all(), conn.execute(ddl).scalar_one()
            config = Config()
            config.set_main_option("script_location", "authtoken:_migrations")
            config.attributes["connection"] = conn
            command.downgrade(config, "0006")
            back, ddl_back = conn.execute(staged).all(), conn.execute(ddl).scalar_one()
            upgrade(conn, "0007")
            conn.execute(sa.text("DELETE FROM authtoken_staged"))
            conn.execute(sa.text('INSERT INTO authtoken_staged (at, "count", uses) '
                                 "VALUES (1, 1, 0)"))
            (new,) = conn.execute(sa.text("SELECT id FROM authtoken_staged")).one()
    finally:
        repo.close()
    fresh = tmp_path / "fresh.db"
    declared = sa.create_engine(f"sqlite:///{fresh}")
    METADATA.create_all(declared)
    with declared.connect() as conn:
        ddl_declared = conn.execute(ddl).scalar_one()
    declared.dispose()
    assert before and after == before and back == before
    assert "AUTOINCREMENT" in ddl_0007 and "AUTOINCREMENT" not in ddl_0006
    assert ddl_0007 == ddl_declared
    assert ddl_back == ddl_0006
    assert new > max(row[0] for row in before)
