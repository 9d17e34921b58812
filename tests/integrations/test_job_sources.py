"""What the scheduler integrations share: token sources (files checked as ssh checks a
key, variables, callables) and the checks a declaration makes, for both decorators;
every refusal says what to fix and never holds a token string."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from authtoken import AuthToken, ScopeError, Security, open_security
from authtoken._tokenfile import MAX_TOKEN_FILE
from authtoken.integrations._jobs import DelegatedJob, engine_for
from authtoken.integrations.apscheduler import (
    TokenSourceError,
    close_engines,
    from_env,
    run_as,
    token_file,
)
from authtoken.integrations.celery import delegated_task


@pytest.fixture
def standing(tmp_path: Path) -> Iterator[str]:
    with open_security(f"sqlite:///{tmp_path / 't.db'}", secret_keys="k") as security:
        yield security.authorize_token(AuthToken("reports:read"), user="alice")


def read(source: Any) -> str:
    job = DelegatedJob(script=1, scope="x", token=source)
    from authtoken.integrations._jobs import _read_source  # the one reader both use

    return _read_source(job.source)


def refused(source: Any, secret: str) -> TokenSourceError:
    with pytest.raises(TokenSourceError) as caught:
        read(source)
    error = caught.value
    assert secret not in str(error) + repr(error) + error.source
    assert error.__cause__ is None and secret not in repr(error.__context__)
    return error


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_token_file_is_read_stripped(tmp_path: Path, standing: str) -> None:
    """A 0600 file (or a link to one, or a Path) gives its token, whitespace stripped."""
    path = write(tmp_path / "t", f"  {standing}\n")
    assert read(token_file(path)) == standing == read(path)
    (tmp_path / "link").symlink_to(path)
    assert read(token_file(str(tmp_path / "link"))) == standing
    assert repr(token_file(path)) == f"token_file({str(path)!r})"


@pytest.mark.parametrize(("mode", "why"), [(0o644, "chmod 600"), (0o640, "chmod 600"),
                                           (0o602, "chmod 600")])
def test_a_token_file_others_may_touch_is_refused(tmp_path: Path, standing: str,
                                                  mode: int, why: str) -> None:
    """A file group or others may read or write is refused, as ssh refuses a key."""
    error = refused(token_file(write(tmp_path / "t", standing, mode)), standing)
    assert why in str(error) and f"{mode:04o}" in str(error)


def test_bad_token_files(tmp_path: Path, standing: str) -> None:
    """Missing, a folder, empty, non-ASCII and huge files are each refused with their
    reason; a file of exactly the limit is read."""
    assert "does not exist" in str(refused(token_file(tmp_path / "nope"), standing))
    assert "is a folder" in str(refused(token_file(tmp_path), standing))
    assert "is empty" in str(refused(token_file(write(tmp_path / "e", " \n")), standing))
    huge = write(tmp_path / "h", standing + "x" * 70_000)
    assert "more than 4096" in str(refused(token_file(huge), standing))
    fits = tmp_path / "fits"
    fits.write_bytes((standing + "\r\n").encode().ljust(MAX_TOKEN_FILE, b" "))
    fits.chmod(0o600)
    assert read(token_file(fits)) == standing
    fits.write_bytes(fits.read_bytes() + b" ")
    assert "more than 4096" in str(refused(token_file(fits), standing))
    accented = tmp_path / "accented"
    accented.write_bytes(standing.encode() + "\u00e9".encode())
    accented.chmod(0o600)
    assert "not ASCII" in str(refused(token_file(accented), standing))


def _acl(path: Path, spec: str) -> None:
    """Set the POSIX access ACL ``spec`` on ``path`` as an administrator would, with
    ``setfacl``; skip where there is no ``setfacl`` or the file system keeps no ACL."""
    setfacl = shutil.which("setfacl")
    if setfacl is None:
        pytest.skip("setfacl is missing: install the 'acl' package to test ACLs")
    done = subprocess.run([setfacl, "--set", spec, str(path)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"this file system keeps no POSIX ACL: {done.stderr.strip()}")


def test_a_systemd_credential_with_an_acl_for_the_worker_is_read(tmp_path: Path,
                                                                 standing: str) -> None:
    """systemd's credential for ``User=``: mode 0400 plus a read entry for the worker's
    user, shown as 0440, is read; the same file readable by its group or another user
    is refused with the chmod that fixes it."""
    path = write(tmp_path / "export-token", standing + "\n", 0o400)
    me = os.geteuid()
    _acl(path, f"u::r,u:{me}:r,g::-,m::r,o::-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o440
    assert read(token_file(path)) == standing
    _acl(path, f"u::r,u:{me}:r,g::r,m::r,o::-")
    assert "chmod 600" in str(refused(token_file(path), standing))
    _acl(path, f"u::r,u:{me + 4242}:r,g::-,m::r,o::-")
    assert "has mode 0440" in str(refused(token_file(path), standing))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_token_file(tmp_path: Path, standing: str) -> None:
    """A file the worker's user cannot read says so."""
    path = write(tmp_path / "t", standing, 0o000)
    assert "cannot be read" in str(refused(token_file(path), standing))


def test_environment_sources(monkeypatch: pytest.MonkeyPatch, standing: str) -> None:
    """A set variable gives its token, taken out of the environment at the declaration
    and kept for every run; set again, it replaces the kept one; an unset or blank one
    is refused by name."""
    monkeypatch.setenv("JOB_TOKEN", standing + "\n")
    source = from_env("JOB_TOKEN")
    assert "JOB_TOKEN" not in os.environ
    assert read(source) == standing == read(source) == read(from_env("JOB_TOKEN"))
    monkeypatch.setenv("JOB_TOKEN", "  ")
    assert "JOB_TOKEN is not set" in str(refused(source, standing))
    assert "JOB_TOKEN is not set" in str(refused(from_env("JOB_TOKEN"), standing))
    assert "JOB_TOKEN is not set" in str(refused(from_env("NEVER_SET_JOB_TOKEN"), standing))


def test_callable_sources(standing: str) -> None:
    """A callable's token is used; one that raises (its message masked, not chained)
    or returns something other than a string is refused, naming it."""
    assert read(lambda: standing) == standing

    def vault() -> str:
        raise ConnectionError(f"vault is down; last answer {standing}")

    error = refused(vault, standing)
    assert "vault raised ConnectionError: vault is down" in str(error)
    assert "returned bytes" in str(refused(lambda: standing.encode(), standing))
    assert "returned NoneType" in str(refused(lambda: None, standing))
    assert "returned an empty string" in str(refused(lambda: "", standing))


def decorators() -> list[Callable[..., Any]]:
    app = Celery("declarations")
    return [run_as, lambda **kw: delegated_task(app, **kw, shared=False)]


GOOD = {"script": 42, "scope": "reports:read", "token": from_env("T")}


@pytest.mark.parametrize("decorate", decorators(), ids=["run_as", "delegated_task"])
@pytest.mark.parametrize(("change", "error", "says"), [
    ({"scope": ""}, ScopeError, "at least one identifier"),
    ({"scope": "vfs:nope"}, ScopeError, "vfs:"),
    ({"scope": 3.5}, TypeError, "scope must be"),
    ({"script": 3.5}, TypeError, "script is a Script"),
    ({"script": True}, TypeError, "script is a Script"),
    ({"script": ""}, ValueError, "non-empty path"),
    ({"token": "/run/credentials/export"}, TypeError, "token_file(path)"),
    ({"token": 7}, TypeError, "token is a token source"),
    ({"security": "sqlite:///x.db"}, TypeError, "zero-argument callable"),
    ({"security": Security.__new__(Security)}, TypeError, "not an open Security"),
    ({"run_expires": "soon"}, ValueError, "soon"),
    ({"run_expires": 5}, TypeError, "run_expires"),
])
def test_declarations_refused(decorate: Callable[..., Any], change: dict[str, Any],
                              error: type[Exception], says: str) -> None:
    """Each decorator refuses, when the job is declared, what could never run."""
    with pytest.raises(error) as caught:
        decorate(**{**GOOD, **change})
    assert says in str(caught.value)


@pytest.mark.parametrize("decorate", decorators(), ids=["run_as", "delegated_task"])
def test_a_token_string_is_never_taken(decorate: Callable[..., Any], standing: str) -> None:
    """A token string as the source, a file path or a variable name is refused without
    echoing it."""
    for attempt in (lambda: decorate(**{**GOOD, "token": standing}),
                    lambda: token_file(standing), lambda: from_env(standing)):
        with pytest.raises(ValueError) as caught:
            attempt()
        assert standing not in str(caught.value) + repr(caught.value)


async def coroutine(session: object) -> None: ...


def no_session() -> None: ...


def keyword_session(*, session: object) -> None: ...


@pytest.mark.parametrize("decorate", decorators(), ids=["run_as", "delegated_task"])
@pytest.mark.parametrize(("body", "says"), [
    (print, "decorates a function"), (object(), "decorates a function"),
    (type("Job", (), {}), "decorates a function"), (coroutine, "is async"),
    (no_session, "must take the job's Session"), (keyword_session, "must take the job's"),
])
def test_bodies_refused(decorate: Callable[..., Any], body: Any, says: str) -> None:
    """A body that is not a plain function taking the session first is refused."""
    with pytest.raises(TypeError, match=says):
        decorate(**GOOD)(body)


def test_one_engine_per_process_and_a_fresh_one_after_fork(tmp_path: Path) -> None:
    """The factory is called once per process; a forked child opens its own engine;
    close_engines lets the next run open it again."""
    calls: list[Security] = []

    def factory() -> Security:
        calls.append(open_security(f"sqlite:///{tmp_path / 't.db'}", secret_keys="k"))
        return calls[-1]

    first = engine_for(factory)
    assert engine_for(factory) is first and len(calls) == 1
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        fresh = engine_for(factory) is not first and len(calls) == 2
        os.write(writer, b"1" if fresh else b"0")
        os._exit(0)
    os.close(writer)
    assert os.read(reader, 1) == b"1"
    os.waitpid(child, 0)
    os.close(reader)
    close_engines()
    assert engine_for(factory) is not first and len(calls) == 2
    close_engines()


def test_a_factory_that_gives_no_security() -> None:
    """A factory returning something else is refused at the run that calls it."""
    with pytest.raises(TypeError, match="must return a Security"):
        engine_for(lambda: "sqlite:///x.db")  # type: ignore[arg-type,return-value]
