"""A delegated job's run over a real SQLite store: the run token is bound to the job's
script even when the standing token is not, and a revocation the store refuses after
the body never replaces the body's outcome -- it is retried, logged by key, and done
at the next run or when the engines close."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from authtoken import (
    AuthToken,
    Principal,
    RepositoryError,
    Script,
    ScriptNotAuthorized,
    Security,
    Session,
    SQLRepository,
    open_security,
)
from authtoken.integrations._jobs import DelegatedJob, close_engines, revoke_pending

KEYS = "job-runs-test-key"


class FlakyRepository(SQLRepository):
    """A real SQLite repository whose next ``failures`` revocations fail as an
    unreachable store's would."""

    failures = 0

    def revoke(self, key: str, at: int) -> int | None:
        if self.failures:
            self.failures -= 1
            raise RepositoryError("the token store is unreachable")
        return super().revoke(key, at)


class Recording(Security):
    """The jobs' engine, noting the token strings that log in: the run token's string
    as a body that hands it to a process would hold it."""

    def __init__(self, repository: SQLRepository) -> None:
        super().__init__(repository, secret_keys=KEYS)
        self.strings: list[str] = []

    def login_by_auth_token(self, token_string: str | bytes, *,
                            script: Script | None = None) -> Principal:
        self.strings.append(str(token_string))
        return super().login_by_auth_token(token_string, script=script)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tokens.db'}"


@pytest.fixture
def repository(url: str) -> Iterator[FlakyRepository]:
    yield FlakyRepository(url)
    close_engines()


@pytest.fixture
def engine(repository: FlakyRepository) -> Recording:
    return Recording(repository)


@pytest.fixture
def store(url: str) -> Iterator[Security]:
    """The test's own engine over the same file."""
    with open_security(url, secret_keys=KEYS) as security:
        yield security


def standing_token(store: Security, scope: str = "reports:read") -> str:
    return store.authorize_token(AuthToken(scope, expires="7d"), user="alice")


def job_of(engine: Security, standing: str, script: Script) -> DelegatedJob:
    return DelegatedJob(script=script, scope="reports:read", token=lambda: standing,
                        security=lambda: engine)


def live_runs(store: Security) -> list[str]:
    return [t.key or "" for t in store.list_auth_tokens(user="alice") if t.run_id]


# -- the run token is the job's script's ---------------------------------------------
@pytest.mark.parametrize("script", [Script(key=7), Script(path="/jobs/export.py"),
                                    Script(key=7, path="/jobs/export.py")], ids=repr)
def test_an_unbound_standing_token_gives_a_run_token_bound_to_the_script(
        engine: Recording, store: Security, script: Script) -> None:
    """The run token of an unbound standing token holds the script's key and path
    bindings: it logs in for the job's script, and is refused for another script and
    for none."""
    job = job_of(engine, standing_token(store), script)
    others = [None, Script(key=8), Script(path="/jobs/other.py")]

    def body(session: Session) -> tuple[str, ...]:
        run_token = engine.strings[-1]
        for other in others:
            with pytest.raises(ScriptNotAuthorized):
                store.login_by_auth_token(run_token, script=other)
        return store.login_by_auth_token(run_token, script=script).scopes

    scopes = job.run("bound", body, (), {})
    bindings = {f"vfs:ikey?{script.key}", f"ufs:{script.path}"}
    assert scopes[0] == "reports:read"
    assert set(scopes[1:]) == {b for b in bindings if "None" not in b}
    assert live_runs(store) == []


def test_a_pinned_script_pins_the_run_token(engine: Recording, store: Security,
                                            tmp_path: Path) -> None:
    """For a script known by its code, the run token of an unpinned standing token is
    pinned to that code too: the same path running changed code is refused."""
    code = tmp_path / "export.py"
    code.write_text("print('export')\n")
    script = Script.for_file(code)
    job = job_of(engine, standing_token(store), script)
    changed = Script(path=str(code), digest=hashlib.sha256(b"print('other')\n").hexdigest())

    def body(session: Session) -> tuple[str, ...]:
        with pytest.raises(ScriptNotAuthorized, match="pinned to other code"):
            store.login_by_auth_token(engine.strings[-1], script=changed)
        assert session.principal is not None
        return session.principal.scopes

    scopes = job.run("pinned", body, (), {})
    assert f"sha256:{script.digest}" in scopes and f"ufs:{code}" in scopes


def test_a_bound_standing_token_keeps_its_own_bindings(engine: Recording,
                                                       store: Security) -> None:
    """A standing token bound to the script by key gives a run token bound by that key
    alone, as before: nothing of the script's is added beside it."""
    job = job_of(engine, standing_token(store, "reports:read vfs:ikey?7"),
                 Script(key=7, path="/jobs/export.py"))

    def body(session: Session) -> tuple[str, ...]:
        assert session.principal is not None
        return session.principal.scopes

    assert job.run("kept", body, (), {}) == ("reports:read", "vfs:ikey?7")


# -- a revocation the store refuses ----------------------------------------------------
def test_a_failed_revocation_keeps_the_bodys_result(
        engine: Recording, repository: FlakyRepository, store: Security,
        caplog: pytest.LogCaptureFixture) -> None:
    """The store refusing every quick try after the body returned: the run still
    returns the body's result, the body ran once, a warning names the run token's key
    (never a string); the next run of any job revokes it."""
    standing = standing_token(store)
    job = job_of(engine, standing, Script(key=7))
    ran: list[str] = []
    repository.failures = 3
    with caplog.at_level(logging.WARNING, logger="authtoken.integrations"):
        assert job.run("first", lambda session: ran.append("first") or "done", (), {}) \
            == "done"
    [live] = live_runs(store)
    assert ran == ["first"]
    assert live in caplog.text and "could not revoke" in caplog.text
    assert all(s not in caplog.text for s in engine.strings)
    other = job_of(engine, standing, Script(key=9))
    other.run("second", lambda session: ran.append("second"), (), {})
    assert ran == ["first", "second"] and live_runs(store) == []
    assert store.get_auth_token(live).revoked


def test_a_failed_revocation_keeps_the_bodys_exception(
        engine: Recording, repository: FlakyRepository, store: Security) -> None:
    """A body that raised, then a store refusing the revocation: the body's own
    exception comes out; close_engines revokes the run token."""
    job = job_of(engine, standing_token(store), Script(key=7))

    def body(session: Session) -> None:
        raise LookupError("the report is gone")

    repository.failures = 3
    with pytest.raises(LookupError, match="report is gone"):
        job.run("raised", body, (), {})
    assert len(live_runs(store)) == 1
    close_engines()
    assert live_runs(store) == [] and revoke_pending() == 0


def test_a_store_that_stays_down_keeps_the_key(engine: Recording,
                                               repository: FlakyRepository,
                                               store: Security) -> None:
    """While the store still refuses, a retry keeps the key and raises nothing; once it
    answers, nothing is left; a store that fails once is covered by the quick retries."""
    job = job_of(engine, standing_token(store), Script(key=7))
    repository.failures = 4
    job.run("down", lambda session: None, (), {})
    assert revoke_pending() == 1 and len(live_runs(store)) == 1
    assert revoke_pending() == 0 and live_runs(store) == []
    repository.failures = 1
    job.run("blip", lambda session: None, (), {})
    assert repository.failures == 0 and revoke_pending() == 0 and live_runs(store) == []
