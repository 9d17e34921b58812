"""``authtoken exec``, run as cron and systemd run it: the real console script over a
SQLite file, a real child process.  The child gets a run token and never the standing
one; the run token is revoked however the child ends; signals are passed on; a refused
login runs nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.cli_process import COMMAND, TIMEOUT, Store, base_environment, one_line, python

from authtoken import AuthToken, Script, ScriptRunner
from authtoken.testing import FakeClock

pytestmark = pytest.mark.slow

JOB = "/opt/jobs/export.py"

# The child: what it was given, and what it can do with it.
CHILD = r"""
import json, os, subprocess, sys
fds = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
       if os.path.exists(f"/proc/self/fd/{fd}")}
report = {"env": dict(os.environ), "argv": sys.argv, "fds": fds,
          "stdin": sys.stdin.read(), "stdin_is": os.readlink("/proc/self/fd/0")}
from authtoken import Script, ScriptRunner, open_security
with open_security() as security:
    session = ScriptRunner(security, Script(path=sys.argv[2])).login_by_auth_token(
        os.environ["AUTHTOKEN_TOKEN"])
    principal = session.principal
    report.update(user=principal.user, chain=list(principal.chain),
                  run_id=principal.run_id, parent=principal.parent_key)
report["login"] = subprocess.run(
    [*json.loads(sys.argv[3]), "--json", "login", "--script-path", sys.argv[2]],
    stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
sys.exit(int(sys.argv[4]))
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A fresh SQLite file in a folder of its own, with the child program in it."""
    (tmp_path / "child.py").write_text(CHILD)
    return Store(tmp_path)


def child(store: Store, status: int = 0) -> list[str]:
    """The child that reports to ``report.json`` and exits with ``status``."""
    return [sys.executable, str(store.folder / "child.py"), str(store.folder / "report.json"),
            JOB, json.dumps(COMMAND), str(status)]


def report(store: Store) -> dict[str, object]:
    data = json.loads((store.folder / "report.json").read_text())
    assert isinstance(data, dict)
    return data


def standing(store: Store, **options: object) -> tuple[str, Path]:
    """A standing token for the job and its 0600 file."""
    string = store.authorize(**options)
    return string, store.token_file(string)


def assert_all_revoked(store: Store, count: int = 1) -> list[AuthToken]:
    """``count`` run tokens were made, and every one is revoked."""
    runs = store.run_tokens()
    assert len(runs) == count
    assert all(t.revoked_at is not None for t in runs), runs
    return runs


# -- what the child gets ------------------------------------------------------------------
def test_the_child_gets_the_run_token_and_never_the_standing_one(store: Store) -> None:
    """The child's environment, argv and open files hold no trace of the standing
    token; its AUTHTOKEN_TOKEN logs in as the user for the same script, a child of the
    standing token made for this run; AUTHTOKEN_PRINCIPAL is exactly what ``login
    --json`` prints for it; the run token is revoked after exit 0."""
    string, path = standing(store)
    result = store.run("exec", "--token-file", str(path), "--script-path", JOB, "--",
                       *child(store), env={"AUTHTOKEN_TOKEN": string})
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    seen = report(store)
    env = seen["env"]
    assert isinstance(env, dict)
    everything = json.dumps([env, seen["argv"], seen["fds"], seen["stdin"]])
    assert string not in everything and string[4:60] not in everything
    assert str(path) not in json.dumps(seen["fds"])
    assert set(seen["fds"]) <= {"0", "1", "2", "3"}  # 3: the listing's own
    run_string = env["AUTHTOKEN_TOKEN"]
    assert isinstance(run_string, str) and run_string.startswith("atk_")
    assert run_string != string
    run_key, standing_key = run_string[4:20], string[4:20]
    assert seen["user"] == "alice"
    assert seen["chain"] == [standing_key, run_key]
    assert seen["parent"] == standing_key
    assert seen["run_id"] == env["AUTHTOKEN_RUN_ID"]
    assert env["AUTHTOKEN_DATABASE_URL"] == store.url
    principal = json.loads(env["AUTHTOKEN_PRINCIPAL"])
    assert principal["token_key"] == run_key
    assert principal["scopes"] == ["reports:read", "ufs:/opt/jobs/export.py"]
    assert env["AUTHTOKEN_PRINCIPAL"] + "\n" == seen["login"]
    (run,) = assert_all_revoked(store)
    assert (run.key, run.run_id, run.parent_key) == (run_key, seen["run_id"], standing_key)
    with store.security() as security:
        assert security.login_by_auth_token(string, script=Script(path=JOB)).user == "alice"


def test_each_run_gets_a_fresh_uuid_unless_one_is_given(store: Store) -> None:
    """Two runs, two UUID4 run ids; ``--run-id`` is stored as given."""
    _, path = standing(store)
    for _ in range(2):
        assert store.run("exec", "--token-file", str(path), "--script-path", JOB, "--",
                         "true").returncode == 0
    ids = [t.run_id for t in assert_all_revoked(store, 2)]
    assert ids[0] != ids[1]
    assert all(len(i or "") == 36 and (i or "")[14] == "4" for i in ids)
    assert store.run("exec", "--token-file", str(path), "--script-path", JOB,
                     "--run-id", "nightly 2026-12-04", "--", "true").returncode == 0
    assert [t.run_id for t in store.run_tokens("nightly 2026-12-04")] == ["nightly 2026-12-04"]


def test_run_expires_and_max_uses_shape_the_run_token(store: Store) -> None:
    """``--run-expires 10m --max-uses 1``: the child may log in once (exec spends none
    of its uses), and the token lives ten minutes."""
    _, path = standing(store)
    code = (
        "import os, sys\n"
        "from authtoken import Script, ScriptRunner, TokenExhausted, open_security\n"
        "with open_security() as s:\n"
        "    runner = ScriptRunner(s, Script(path=sys.argv[1]))\n"
        "    runner.login_by_auth_token(os.environ['AUTHTOKEN_TOKEN'])\n"
        "    try:\n"
        "        runner.login_by_auth_token(os.environ['AUTHTOKEN_TOKEN'])\n"
        "    except TokenExhausted:\n"
        "        sys.exit(5)\n"
    )
    result = store.run("exec", "--token-file", str(path), "--script-path", JOB,
                       "--run-expires", "10m", "--max-uses", "1", "--",
                       *python(code), JOB)
    assert result.returncode == 5, result.stderr
    (run,) = assert_all_revoked(store)
    assert run.max_uses == 1 and run.use_count == 1
    assert run.expires is not None
    assert run.expires - run.created_at == timedelta(minutes=10)


def test_a_run_expiry_past_the_standing_token_is_refused_and_runs_nothing(
        store: Store) -> None:
    """The run token may not outlive the standing one; an unreadable expiry is refused
    too; neither runs the command."""
    _, path = standing(store, expires="1d")
    marker = store.folder / "ran"
    for expires, error in (("2d", "PermissionDenied"), ("soon", "InvalidArgument")):
        result = store.run("exec", "--token-file", str(path), "--script-path", JOB,
                           "--run-expires", expires, "--", "touch", str(marker))
        assert result.returncode == 1
        assert one_line(result.stderr).startswith(f"{error}: ")
        assert not marker.exists()
    assert store.run_tokens() == []


def test_a_variable_holding_the_standing_token_is_left_out(store: Store) -> None:
    """Whatever the variable's name: dropped with a warning naming it, the string not
    shown."""
    string, path = standing(store)
    dump = store.folder / "env.json"
    result = store.run(
        "exec", "--token-file", str(path), "--script-path", JOB, "--",
        *python(f"import json, os; json.dump(dict(os.environ), open({str(dump)!r}, 'w'))"),
        env={"MY_COPY": f"Bearer {string}", "KEEP_ME": "yes"})
    assert result.returncode == 0, result.stderr
    assert one_line(result.stderr) == ("authtoken: warning: MY_COPY held the standing "
                                       "token: left out of the command's environment")
    env = json.loads(dump.read_text())
    assert "MY_COPY" not in env and env["KEEP_ME"] == "yes"
    assert string not in json.dumps(env)


# -- standard input and output ----------------------------------------------------------
def test_a_token_piped_on_stdin_leaves_the_child_dev_null(store: Store) -> None:
    """What was piped was the token: the child reads nothing, from /dev/null."""
    string = store.authorize()
    result = store.run("exec", "--script-path", JOB, "--", *child(store), stdin=string)
    assert result.returncode == 0, result.stderr
    seen = report(store)
    assert (seen["stdin"], seen["stdin_is"]) == ("", "/dev/null")
    assert string not in json.dumps(seen)


def test_with_a_token_file_the_child_reads_exec_s_stdin(store: Store) -> None:
    """``--token-file`` leaves standard input to the command."""
    _, path = standing(store)
    result = store.run("exec", "--token-file", str(path), "--script-path", JOB, "--",
                       *child(store), stdin="rows to export\n")
    assert result.returncode == 0, result.stderr
    assert report(store)["stdin"] == "rows to export\n"


def test_exec_prints_nothing_of_its_own_even_with_json(store: Store) -> None:
    """Standard output is the command's alone."""
    _, path = standing(store)
    result = store.run("--json", "exec", "--token-file", str(path), "--script-path", JOB,
                       "--", "echo", "--json", "out")
    assert (result.returncode, result.stdout, result.stderr) == (0, "--json out\n", "")


# -- however the child ends ----------------------------------------------------------------
def test_the_child_s_exit_status_is_passed_through_and_the_run_token_revoked(
        store: Store) -> None:
    """Exit 3: exec exits 3, the run token revoked."""
    _, path = standing(store)
    result = store.run("exec", "--token-file", str(path), "--script-path", JOB, "--",
                       *child(store, status=3))
    assert result.returncode == 3, result.stderr
    assert report(store)["user"] == "alice"
    assert_all_revoked(store)


def test_a_child_killed_by_a_signal_is_128_plus_n(store: Store) -> None:
    """SIGKILL ends the child: 137, the run token revoked."""
    _, path = standing(store)
    result = store.run("exec", "--token-file", str(path), "--script-path", JOB, "--",
                       "sh", "-c", "kill -KILL $$")
    assert result.returncode == 128 + signal.SIGKILL
    assert result.stderr == ""
    assert_all_revoked(store)


@pytest.mark.parametrize(("target", "status"), [
    ("no-such-command-anywhere", 127), ("./not-executable", 126), ("/", 126),
    ("./bad-interpreter", 126)])
def test_a_command_that_cannot_run_is_127_or_126(store: Store, target: str,
                                                  status: int) -> None:
    """Not found: 127; not executable, a folder, or a script whose '#!' names no
    program: 126 -- as a shell says; one line on stderr naming it; the run token
    revoked."""
    (store.folder / "not-executable").write_text("#!/bin/sh\necho hi\n")
    (store.folder / "bad-interpreter").write_text("#!/nonexistent/interp\necho hi\n")
    (store.folder / "bad-interpreter").chmod(0o755)
    _, path = standing(store)
    result = store.run("exec", "--token-file", str(path), "--script-path", JOB, "--",
                       target, "arg")
    assert result.returncode == status
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith("CommandNotFound: " if status == 127 else "CommandNotExecutable: ")
    assert repr(target) in line
    if target == "./bad-interpreter":
        assert "bad interpreter" in line
    assert_all_revoked(store)


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    """Until ``path`` exists (the child is running), or fail if exec ended first."""
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"exec ended early: {process.returncode} {err!r}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the child never started")
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                    signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                                    signal.SIGALRM],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signal_to_exec_is_passed_on_and_ends_the_child(store: Store,
                                                          signum: int) -> None:
    """Sent to exec alone (its own session, no terminal): the child gets it and dies
    of it; exec exits 128+N and the run token is revoked."""
    _, path = standing(store)
    ready = store.folder / "ready"
    process = store.start("exec", "--token-file", str(path), "--script-path", JOB, "--",
                          "sh", "-c", f"echo $$ > {ready}; exec sleep 300")
    _wait_for(ready, process)
    child_pid = int(ready.read_text() or "0")
    process.send_signal(signum)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signum, err
    assert (out, err) == (b"", b"")
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
    assert_all_revoked(store)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGWINCH],
                         ids=lambda s: signal.Signals(s).name)
def test_a_child_that_handles_the_signal_decides_the_status(store: Store,
                                                            signum: int) -> None:
    """The child catches the forwarded SIGTERM (or SIGWINCH, which exec would ignore
    itself), cleans up and exits 0: so does exec -- proof that exec passed it on rather
    than died of it."""
    _, path = standing(store)
    ready, caught = store.folder / "ready", store.folder / "caught"
    code = (
        "import pathlib, signal, sys, time\n"
        f"def done(n, f):\n    pathlib.Path({str(caught)!r}).write_text(str(n)); sys.exit(0)\n"
        f"signal.signal({int(signum)}, done)\n"
        f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
        "time.sleep(300)\n"
    )
    process = store.start("exec", "--token-file", str(path), "--script-path", JOB, "--",
                          *python(code))
    _wait_for(ready, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert caught.read_text() == str(int(signum))
    assert_all_revoked(store)


# -- refused logins run nothing ---------------------------------------------------------------
@pytest.mark.parametrize("why", ["revoked", "expired", "wrong script", "exhausted",
                                 "garbage"])
def test_a_refused_login_runs_nothing_and_exits_1(store: Store, why: str) -> None:
    """Revoked, expired, for another script, used up, or no token at all: exit 1, the
    error's class on one line, no run token, and the child never ran."""
    script = JOB
    if why == "expired":
        then = datetime.now(timezone.utc) - timedelta(days=3)
        with store.security(clock=FakeClock(then)) as security:
            string = security.authorize_token(
                AuthToken("reports:read", expires="1d"), user="alice")
    elif why == "exhausted":
        string = store.authorize(max_uses=1)
        with store.security() as security:
            ScriptRunner(security, Script(path=JOB)).login_by_auth_token(string)
    else:
        string = store.authorize()
    if why == "revoked":
        with store.security() as security:
            security.revoke_auth_token(string)
    if why == "wrong script":
        script = "/opt/jobs/other.py"
    path = store.token_file("atk_not.a.token" if why == "garbage" else string)
    marker = store.folder / "ran"
    result = store.run("exec", "--token-file", str(path), "--script-path", script, "--",
                       "touch", str(marker))
    assert result.returncode == 1
    expected = {"revoked": "TokenRevoked", "expired": "TokenExpired",
                "wrong script": "ScriptNotAuthorized", "exhausted": "TokenExhausted",
                "garbage": "InvalidToken"}[why]
    assert one_line(result.stderr).startswith(f"{expected}: ")
    assert string not in result.stderr
    assert not marker.exists()
    assert store.run_tokens() == []


# -- the command line ----------------------------------------------------------------------------
@pytest.mark.parametrize("tail", [[], ["--"], ["touch", "ran"]])
def test_no_command_after_dashes_is_a_usage_error(store: Store, tail: list[str]) -> None:
    """No command, an empty one, or one without '--' before it: exit 2, nothing run, and
    the token not even read."""
    _, path = standing(store)
    result = store.run("exec", "--token-file", str(path), "--script-path", JOB, *tail)
    assert result.returncode == 2
    assert "authtoken exec: error: " in result.stderr
    assert "'--'" in result.stderr
    assert not (store.folder / "ran").exists()
    assert store.run_tokens() == []


def test_a_token_string_as_an_argument_is_refused_unechoed(store: Store) -> None:
    """Anywhere on the line, the command's own arguments included: exit 2, not shown,
    nothing run."""
    string, path = standing(store)
    for line in (["exec", "--token-file", str(path), "--", "echo", string],
                 ["exec", "--run-id", string, "--", "true"],
                 ["exec", f"--token-file={string}", "--", "true"]):
        result = store.run(*line)
        assert result.returncode == 2
        assert result.stdout == ""
        assert string not in result.stderr and string[4:40] not in result.stderr
    assert store.run_tokens() == []


@pytest.mark.parametrize("option", [["--max-uses", "0"], ["--max-uses", "x"],
                                    ["--script-key", "k"],
                                    ["--script-path", "/a", "--script-file", "/b"]])
def test_bad_options_are_usage_errors(store: Store, option: list[str]) -> None:
    """A use limit that is no whole number ≥ 1, a script key that is no integer, or
    two scripts at once: exit 2."""
    _, path = standing(store)
    result = store.run("exec", "--token-file", str(path), *option, "--", "true")
    assert result.returncode == 2
    assert store.run_tokens() == []


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs util-linux setsid")
@pytest.mark.parametrize(("key", "signum"), [(b"\x03", signal.SIGINT),
                                             (b"\x1c", signal.SIGQUIT)],
                         ids=["ctrl-c", "ctrl-backslash"])
def test_ctrl_c_at_a_terminal_reaches_the_child_once(store: Store, key: bytes,
                                                     signum: int) -> None:
    """In the foreground of a terminal, Ctrl+C (SIGINT) or Ctrl+\\ (SIGQUIT) reaches
    exec and its child alike: exec does not send the child the signal a second time."""
    _, path = standing(store)
    ready, counted = store.folder / "ready", store.folder / "counted"
    # Every delivery writes a byte to the wakeup fd, even those Python's own handler
    # would fold into one call.
    code = (
        "import os, pathlib, signal, socket, time\n"
        "reader, writer = socket.socketpair()\n"
        "reader.setblocking(False); writer.setblocking(False)\n"
        "signal.set_wakeup_fd(writer.fileno())\n"
        f"signal.signal({int(signum)}, lambda n, f: None)\n"
        f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
        "time.sleep(1.5)\n"  # room for a second one to arrive
        "seen = 0\n"
        "try:\n    seen = len(reader.recv(100))\nexcept BlockingIOError:\n    pass\n"
        f"pathlib.Path({str(counted)!r}).write_text(str(seen))\n"
    )
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            ["setsid", "-c", *COMMAND, "--database", store.url, "exec", "--token-file",
             str(path), "--script-path", JOB, "--", *python(code)],
            stdin=terminal, stdout=terminal, stderr=terminal, cwd=store.folder,
            env=base_environment())
        _wait_for(ready, process)
        os.write(controller, key)
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        os.close(terminal)
        os.close(controller)
    assert counted.read_text() == "1"
    assert_all_revoked(store)
