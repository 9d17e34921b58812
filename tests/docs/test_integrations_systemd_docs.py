"""``docs/integrations/systemd-cron.md`` runs as written: its ``ExecStart=`` line and its
crontab line are run as systemd and cron would run them (a credentials folder as
systemd makes it; a token file in the user's home), with the page's job program."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support.cli_process import COMMAND, TIMEOUT, Store, base_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "integrations" / "systemd-cron.md"
JOB = "/opt/jobs/export.py"


def blocks(language: str) -> list[str]:
    """The page's fenced blocks in ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.DOTALL)


def unit_file() -> str:
    (service,) = [b for b in blocks("ini") if b.startswith("[Unit]") and "[Service]" in b]
    return service


def drop_in() -> str:
    """The drop-in that runs the job as another user."""
    (service,) = [b for b in blocks("ini") if b.startswith("[Service]")]
    return service


def setting(unit: str, name: str) -> str:
    *_, value = re.findall(rf"^{name}=(.*)$", unit, re.MULTILINE)
    return value


def job_program() -> str:
    text = PAGE.read_text()
    found = re.search(r"<!-- job: /opt/jobs/export.py -->\n```python\n(.*?)```", text,
                      re.DOTALL)
    assert found is not None
    return found.group(1)


def as_here(words: list[str], job_file: Path) -> list[str]:
    """The page's command with this machine's programs: our ``authtoken``, this
    Python, and the job program written out (its ``--script-path`` kept as the page
    has it, since the token is bound to that path)."""
    assert words[0] == "/usr/bin/authtoken"
    assert words[-2:] == ["/usr/bin/python3", JOB]
    return [*COMMAND, *words[1:-2], sys.executable, str(job_file)]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def check_run(store: Store, done: subprocess.CompletedProcess[bytes], string: str) -> None:
    """The job ran as alice with a run token, printed its chain, and the run token is
    revoked."""
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert err == ""
    assert string not in out
    lines = out.splitlines()
    assert lines[0].startswith("exporting reports for alice, run ")
    (run,) = store.run_tokens()
    assert run.revoked_at is not None
    assert lines == [f"exporting reports for alice, run {run.run_id}",
                     f"acting for: {string[4:20]} -> {run.key}"]


def test_the_unit_file_is_complete_and_consistent() -> None:
    """A [Unit] and a [Service] whose ExecStart reads the credential LoadCredential
    loads, with the database in Environment=; a timer that is installable."""
    unit = unit_file()
    assert unit.startswith("[Unit]\n")
    name, source = setting(unit, "LoadCredential").split(":", 1)
    assert (name, source) == ("authtoken", "/etc/authtoken/nightly-export.token")
    assert f"--token-file ${{CREDENTIALS_DIRECTORY}}/{name} " in setting(unit, "ExecStart")
    assert setting(unit, "Environment").startswith("AUTHTOKEN_DATABASE_URL=")
    assert setting(unit, "KillMode") == "mixed"
    (timer,) = [b for b in blocks("ini") if "[Timer]" in b]
    assert "OnCalendar=" in timer and "[Install]\nWantedBy=timers.target" in timer


def test_exec_start_runs_as_systemd_runs_it(store: Store, tmp_path: Path) -> None:
    """The ExecStart line, ``${CREDENTIALS_DIRECTORY}`` expanded to a folder holding
    the credential as systemd leaves it (file 0400, folder 0500), the Environment= of
    the unit (our database), the job program of the page: the job runs as alice."""
    string = store.authorize("reports:read ufs:/opt/jobs/export.py")
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "authtoken").write_text(string + "\n")
    (credentials / "authtoken").chmod(0o400)
    credentials.chmod(0o500)
    job = tmp_path / "export.py"
    job.write_text(job_program())
    unit = unit_file()
    line = setting(unit, "ExecStart").replace("${CREDENTIALS_DIRECTORY}", str(credentials))
    variable = setting(unit, "Environment").split("=", 1)[0]
    environment = base_environment({variable: store.url,
                                    "CREDENTIALS_DIRECTORY": str(credentials)})
    done = subprocess.run(as_here(shlex.split(line), job), env=environment,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                          check=False)
    credentials.chmod(0o700)
    check_run(store, done, string)


def test_the_crontab_line_runs_as_cron_runs_it(store: Store, tmp_path: Path) -> None:
    """The crontab's variable line and its command through ``sh -c``, as cron runs it,
    with HOME a home holding the 0600 token file at the page's path."""
    string = store.authorize("reports:read ufs:/opt/jobs/export.py")
    (crontab,) = blocks("crontab")
    lines = [x for x in crontab.splitlines() if x.strip() and not x.startswith("#")]
    assignment, entry = lines
    variable = assignment.split("=", 1)[0]
    command = entry.split(None, 5)[5]  # the five time fields go
    home = tmp_path / "home"
    token_file = home / ".config" / "authtoken" / "nightly-export.token"
    assert f"--token-file $HOME/{token_file.relative_to(home)} " in command
    token_file.parent.mkdir(parents=True)
    token_file.write_text(string + "\n")
    token_file.chmod(0o600)
    job = tmp_path / "export.py"
    job.write_text(job_program())
    words = shlex.split(command)
    here = " ".join(shlex.quote(w) if "$HOME" not in w else w
                    for w in as_here(words, job))
    environment = base_environment({variable: store.url, "HOME": str(home)})
    done = subprocess.run(["/bin/sh", "-c", here], env=environment,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                          check=False)
    check_run(store, done, string)


def test_an_open_token_file_is_refused_as_the_page_says(store: Store,
                                                        tmp_path: Path) -> None:
    """The page's promise for a file group may read: exit 1, the chmod named, the
    job never run."""
    string = store.authorize("reports:read ufs:/opt/jobs/export.py")
    path = store.token_file(string, mode=0o640)
    marker = tmp_path / "ran"
    done = store.run("exec", "--token-file", str(path), "--script-path", JOB, "--",
                     "touch", str(marker))
    assert done.returncode == 1
    assert f"chmod 600 {path}" in done.stderr
    assert "chmod 600 F" in PAGE.read_text()
    assert not marker.exists()
    assert os.path.exists(path)


# The job of the drop-in, in sh (this Python may lie where another user cannot run it):
# who it runs as, and what it could read of the credential and of exec.
PEEK = """
echo "uid: $(id -u)"
printf 'credential: '; cat "$1" 2>&1 >/dev/null | tr -d '\\n'; echo
printf 'exec: '; cat "/proc/$PPID/environ" 2>&1 >/dev/null | tr -d '\\n'; echo
echo "CREDENTIALS_DIRECTORY: ${CREDENTIALS_DIRECTORY:-unset}"
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and util-linux setpriv, as the drop-in does")
def test_the_drop_in_runs_the_job_as_another_user(store: Store) -> None:
    """The drop-in clears User= and ExecStart= and runs the job behind setpriv; run as
    systemd would (as root, the credential root's 0400), with nobody for exporter: the
    job runs as nobody, cannot read the credential nor exec's environment, and is not
    told where the credential lies."""
    unit = drop_in()
    assert re.findall(r"^(User|ExecStart)=$", unit, re.MULTILINE) == ["User", "ExecStart"]
    assert (shlex.split(setting(unit, "ExecStart"))[:8]
            == shlex.split(setting(unit_file(), "ExecStart"))[:8])
    string = store.authorize("reports:read ufs:/opt/jobs/export.py")
    # Not under pytest's folder, which nobody may enter: the job could reach the file.
    credentials = Path(tempfile.mkdtemp(prefix="credentials-"))
    try:
        _run_drop_in(store, unit, credentials, string)
    finally:
        shutil.rmtree(credentials)


def _run_drop_in(store: Store, unit: str, credentials: Path, string: str) -> None:
    credential = credentials / "authtoken"
    credential.write_text(string + "\n")
    credential.chmod(0o400)
    credentials.chmod(0o755)  # the worst case: the job could find the file
    line = setting(unit, "ExecStart").replace("${CREDENTIALS_DIRECTORY}", str(credentials))
    nobody = pwd.getpwnam("nobody")
    words = shlex.split(line.replace("--reuid=exporter", "--reuid=nobody")
                        .replace("--regid=exporter", f"--regid={nobody.pw_gid}"))
    split = words.index("--")
    assert words[split + 1] == "/usr/bin/setpriv"
    assert words[-2:] == ["/usr/bin/python3", JOB]
    command = [*COMMAND, *words[1:split + 1], shutil.which("setpriv") or "setpriv",
               *words[split + 2:-2], "sh", "-c", PEEK, "peek", str(credential)]
    done = subprocess.run(
        command, env=base_environment({"AUTHTOKEN_DATABASE_URL": store.url,
                                       "AUTHTOKEN_TOKEN": string,
                                       "CREDENTIALS_DIRECTORY": str(credentials)}),
        stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT, check=False)
    credentials.chmod(0o700)
    assert done.returncode == 0, done.stderr
    seen = dict(x.split(": ", 1) for x in done.stdout.decode().splitlines())
    assert seen["uid"] == str(nobody.pw_uid)
    assert "Permission denied" in seen["credential"]
    assert "Permission denied" in seen["exec"]
    assert seen["CREDENTIALS_DIRECTORY"] == "unset"
    assert string not in done.stdout.decode() + done.stderr.decode()
    (run,) = store.run_tokens()
    assert run.revoked_at is not None


def test_the_page_says_what_exec_cannot_keep_from_the_job() -> None:
    """The page does not promise that the job never sees the standing token: it says a
    job of the same user can read the token file, and that a job not trusted with the
    store must run as another user."""
    text = " ".join(PAGE.read_text().split())
    assert "never sees the standing token" not in text
    assert "a job that runs as the same user as the token file can read that file" in text
    assert "A job you would not trust with the store must run as another user" in text
