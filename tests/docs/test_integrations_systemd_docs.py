"""``docs/integrations/systemd-cron.md`` runs as written: its ``ExecStart=`` line and its
crontab line are run as systemd and cron would run them (a credentials folder as
systemd makes it; a token file in the user's home), with the page's job program."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
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
    (service,) = [b for b in blocks("ini") if "[Service]" in b]
    return service


def setting(unit: str, name: str) -> str:
    (value,) = re.findall(rf"^{name}=(.*)$", unit, re.MULTILINE)
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
