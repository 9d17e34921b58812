"""A Celery task that runs as the user who authorized its standing token.

Needs ``pip install "authtoken[celery]"``.  Run it with
``python docs/examples/celery_job.py``.  It shows:

- a task declared with ``delegated_task``: the script it runs as, the scope it needs,
  and the file where the worker finds the standing token (as systemd's
  ``LoadCredential=`` hands one over, in ``$CREDENTIALS_DIRECTORY``);
- a real ``celery worker`` (started here as a process) over a broker kept in files: the
  task's body gets a ``Session`` of a run token made for that run, revoked when it ends;
- the broker's messages and the stored results hold the task's arguments, no token;
- a revoked standing token: the task fails with ``TokenRevoked`` before its body.

Everything lives in a temporary folder with a throwaway key; no token string is printed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from celery import Celery

from authtoken import AuthToken, Script, Session, TokenRevoked, find_tokens, open_security
from authtoken.integrations.celery import delegated_task, token_file

CREDENTIALS = Path(os.environ.get("CREDENTIALS_DIRECTORY", "/run/credentials/reports.service"))

app = Celery("celery_job")


@delegated_task(app, script=Script(path="/jobs/export.py"), scope="reports:read",
                token=token_file(CREDENTIALS / "export-token"))
def export(session: Session, day: str) -> dict[str, object]:
    principal = session.principal
    assert principal is not None
    return {"user": principal.user, "day": day, "run_id": principal.run_id,
            "chain": len(principal.chain), "scopes": list(principal.scopes)}


def configure(folder: Path) -> None:
    """A broker and a result backend in files: nothing to install or run beside."""
    for name in ("broker", "processed", "results"):
        (folder / name).mkdir(exist_ok=True)
    app.conf.update(
        broker_url="filesystem://", result_backend=f"file://{folder / 'results'}",
        broker_transport_options={"data_folder_in": str(folder / "broker"),
                                  "data_folder_out": str(folder / "broker"),
                                  # consumed messages are kept, so main() can read them
                                  "store_processed": True,
                                  "processed_folder": str(folder / "processed"),
                                  "control_folder": str(folder / "control"),
                                  "polling_interval": 0.1},
        broker_connection_retry_on_startup=True)


if "EXAMPLE_FOLDER" in os.environ:  # the worker process
    configure(Path(os.environ["EXAMPLE_FOLDER"]))


def start_worker(folder: Path) -> subprocess.Popen[bytes]:
    """``celery -A celery_job worker``, as you would run it (here with its log in a file)."""
    env = {**os.environ, "EXAMPLE_FOLDER": str(folder), "CREDENTIALS_DIRECTORY": str(folder),
           "PYTHONPATH": str(Path(__file__).parent)}
    with open(folder / "worker.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_job", "worker", "--pool=solo",
             "--loglevel=INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        os.environ["AUTHTOKEN_DATABASE_URL"] = f"sqlite:///{folder / 'tokens.db'}"
        os.environ["AUTHTOKEN_SECRET_KEYS"] = secrets.token_urlsafe(32)  # throwaway
        configure(folder)
        security = open_security()

        print("alice authorizes a standing token for the export script")
        standing = AuthToken("reports:read ufs:/jobs/export.py", expires="30d",
                             description="export worker")
        string = security.authorize_token(standing, user="alice")
        credential = folder / "export-token"
        credential.touch(mode=0o600)
        credential.write_text(string + "\n")  # what LoadCredential= would hand the worker

        worker = start_worker(folder)
        try:
            result = export.delay("2030-01-01")
            seen = result.get(timeout=60)
            print(f"export ran as {seen['user']!r} for {seen['day']}, scopes {seen['scopes']}, "
                  f"a chain of {seen['chain']}")
            print(f"  run id is the task's id: {seen['run_id'] == result.id}")
            [run] = security.list_auth_tokens(run_id=result.id, include_revoked=True)
            print(f"  its run token: child of the standing token: "
                  f"{run.parent_key == standing.key}, revoked: {run.revoked}")

            held = b"".join(path.read_bytes() for path in sorted(folder.rglob("*"))
                            if path.is_file()
                            and path.parent.name in ("broker", "processed", "results"))
            print(f"the broker's messages and the results hold the day: {b'2030-01-01' in held}; "
                  f"token strings in them: {len(find_tokens(held.decode('latin-1')))}")

            print("alice revokes the standing token; the next task fails before its body")
            security.revoke_auth_token_by_key(standing.key or "")
            failed = export.delay("2030-01-02")
            try:
                failed.get(timeout=60)
            except TokenRevoked as exc:
                print(f"  {failed.state}: {exc!r}")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        log = (folder / "worker.log").read_text(errors="replace")
        print(f"the worker's log names the task: {'celery_job.export' in log}; "
              f"token strings in it: {len(find_tokens(log))}")
        security.close()
    print("done")


if __name__ == "__main__":
    # The worker knows the task as celery_job.export, so the client uses that module too.
    from celery_job import main as run

    run()
