"""Schema migrations: created on first use, upgraded on request, newer schemas refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from authtoken import AuthToken, RepositoryError, Security, SQLRepository
from authtoken._cli import main
from authtoken._migrate import HEAD, VERSION_TABLE
from authtoken._sql import METADATA


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
