"""What ``authtoken exec`` keeps from its job beyond the environment: its own ``/proc``
(the job runs as an unprivileged user here, as a cron job would), systemd's
credentials folder, a token file that is also standard input; and how it treats the
signals its caller ignored or sent it alone at a terminal.  Real processes, a real
SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import SECRET_KEY
from support.cli_process import COMMAND, TIMEOUT, Store, base_environment, python

from authtoken import AuthToken

pytestmark = pytest.mark.slow

JOB = "/opt/jobs/export.py"
NOBODY = 65534


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def standing(store: Store) -> tuple[str, Path]:
    string = store.authorize()
    return string, store.token_file(string)


def assert_revoked(store: Store) -> AuthToken:
    (run,) = store.run_tokens()
    assert run.revoked_at is not None
    return run


def wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    """Until ``path`` holds something (the child is running), or fail if exec ended."""
    deadline = time.monotonic() + TIMEOUT
    while not (path.exists() and path.read_text()):
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"exec ended early: {process.returncode} {err!r}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the child never started")
        time.sleep(0.02)


# -- exec's own /proc ------------------------------------------------------------------
# The job, in sh (this interpreter may lie where nobody can run it): what it could read
# of its parent's /proc, and its own environment.
PEEK = """
for name in environ mem; do
    printf '%s: ' "$name"; cat "/proc/$PPID/$name" 2>&1 >/dev/null | tr -d '\n'; echo
done
printf 'fd: '; ls "/proc/$PPID/fd" 2>&1 >/dev/null | tr -d '\n'; echo
env > own.env
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and prctl")
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and util-linux setpriv to run exec as nobody")
def test_the_job_cannot_read_exec_s_proc() -> None:
    """exec runs as an unprivileged user (as a cron job does), with the standing token
    and the secret keys in its environment; its job, the same user, finds exec's
    environ, mem and fd refused -- and still works, with its own environment."""
    # Not under pytest's own folder, which only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="authtoken-exec-"))
    try:
        _peek_as_nobody(Store(folder))
    finally:
        shutil.rmtree(folder)


def _peek_as_nobody(store: Store) -> None:
    folder = store.folder
    string, path = standing(store)
    for entry in (folder, *folder.iterdir()):
        os.chown(entry, NOBODY, NOBODY)
    result = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         *COMMAND, "--database", store.url, "exec", "--token-file", str(path),
         "--script-path", JOB, "--", "sh", "-c", PEEK],
        input=b"", capture_output=True, cwd=folder, timeout=TIMEOUT,
        env=base_environment({"AUTHTOKEN_TOKEN": string}), check=False)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split(": ", 1) for line in result.stdout.decode().splitlines())
    assert set(seen) == {"environ", "mem", "fd"}
    for name, error in seen.items():
        assert "Permission denied" in error, (name, error)
    own = (folder / "own.env").read_text()
    assert string not in own and string[4:60] not in own
    assert "AUTHTOKEN_TOKEN=atk_" in own  # the run token: the job's own
    assert f"AUTHTOKEN_SECRET_KEYS={SECRET_KEY}" in own
    assert_revoked(store)


# -- what else the job does not inherit ------------------------------------------------------
def test_systemd_s_credentials_folder_is_not_passed_on(store: Store) -> None:
    """``CREDENTIALS_DIRECTORY`` points at the standing token's file: the job does not
    get it; other variables pass."""
    _, path = standing(store)
    dump = store.folder / "env.json"
    result = store.run(
        "exec", "--token-file", str(path), "--script-path", JOB, "--",
        *python(f"import json, os; json.dump(dict(os.environ), open({str(dump)!r}, 'w'))"),
        env={"CREDENTIALS_DIRECTORY": str(store.folder), "KEEP_ME": "yes"})
    assert (result.returncode, result.stderr) == (0, "")
    env = json.loads(dump.read_text())
    assert "CREDENTIALS_DIRECTORY" not in env
    assert env["KEEP_ME"] == "yes"


@pytest.mark.parametrize("name", ["/dev/stdin", "/proc/self/fd/0", "same path"])
def test_a_token_file_that_is_standard_input_leaves_the_child_dev_null(
        store: Store, name: str) -> None:
    """``--token-file /dev/stdin < F`` (or F itself while F is standard input): the
    token came on standard input after all, so the child reads /dev/null, not F."""
    string, path = standing(store)
    report = store.folder / "stdin.json"
    code = ("import json, os, sys; json.dump([os.readlink('/proc/self/fd/0'), "
            f"sys.stdin.read()], open({str(report)!r}, 'w'))")
    given = str(path) if name == "same path" else name
    with path.open("rb") as stdin:
        result = subprocess.run(
            [*COMMAND, "--database", store.url, "exec", "--token-file", given,
             "--script-path", JOB, "--", *python(code)],
            stdin=stdin, capture_output=True, env=base_environment(), cwd=store.folder,
            timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text()) == ["/dev/null", ""]
    assert string.encode() not in result.stdout + result.stderr
    assert_revoked(store)


# -- signals the caller ignored ---------------------------------------------------------
STATUS = r"""
import pathlib, sys, time
lines = pathlib.Path("/proc/self/status").read_text().splitlines()
(ignored,) = [line.split()[1] for line in lines if line.startswith("SigIgn:")]
pathlib.Path(sys.argv[1]).write_text(ignored)
time.sleep(300)
"""


def _ignoring(*signums: int) -> Callable[[], None]:
    def ignore() -> None:
        for signum in signums:
            signal.signal(signum, signal.SIG_IGN)
    return ignore


def test_signals_the_caller_ignored_stay_ignored_for_the_job(store: Store) -> None:
    """Under nohup (SIGHUP ignored) or as a shell's background job (SIGINT too): the job
    inherits the ignores, and a hangup -- to exec and to the job -- ends neither; the
    SIGTERM sent after it does, passed on (143, not 129)."""
    _, path = standing(store)
    ready = store.folder / "ignored"
    process = subprocess.Popen(
        [*COMMAND, "--database", store.url, "exec", "--token-file", str(path),
         "--script-path", JOB, "--", *python(STATUS), str(ready)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=base_environment(), cwd=store.folder, start_new_session=True,
        preexec_fn=_ignoring(signal.SIGHUP, signal.SIGINT))
    wait_for(ready, process)
    ignored = int(ready.read_text(), 16)
    assert ignored & (1 << (signal.SIGHUP - 1)), hex(ignored)
    assert ignored & (1 << (signal.SIGINT - 1)), hex(ignored)
    children = [int(p) for p in Path(f"/proc/{process.pid}/task/{process.pid}/children")
                .read_text().split()]
    assert len(children) == 1
    os.kill(children[0], signal.SIGHUP)  # a hangup reaches the whole session
    process.send_signal(signal.SIGHUP)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert (out, err) == (b"", b"")
    assert_revoked(store)


# -- a terminal, and a signal sent to exec alone ----------------------------------------------
@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs util-linux setsid")
def test_a_sigint_sent_to_exec_alone_at_a_terminal_is_passed_on(store: Store) -> None:
    """exec in the foreground of a terminal, and ``kill -INT`` aimed at exec alone (a
    supervisor, ``timeout --foreground -s INT``): the terminal sent the job nothing, so
    exec passes it on and the job ends of it (130)."""
    _, path = standing(store)
    ready = store.folder / "ready"
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            ["setsid", "-c", *COMMAND, "--database", store.url, "exec", "--token-file",
             str(path), "--script-path", JOB, "--", "sh", "-c",
             f"echo $$ > {ready}; exec sleep 300"],
            stdin=terminal, stdout=terminal, stderr=terminal, cwd=store.folder,
            env=base_environment())
        wait_for(ready, process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=TIMEOUT) == 128 + signal.SIGINT
    finally:
        os.close(terminal)
        os.close(controller)
    assert_revoked(store)
