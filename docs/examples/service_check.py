"""A service in any language checks our tokens: RFC 7662 introspection, RFC 7009
revocation, and ``DelegationAuth`` to call it.

Needs ``pip install "authtoken[serve]"`` (Starlette and uvicorn for the admin
application, httpx to call it).  Run it with ``python docs/examples/service_check.py``.
It serves the admin application with uvicorn on a free port of 127.0.0.1, over a SQLite
file in a temporary folder with a throwaway key, and plays a reports service (written
in any language: it only sends form posts) that checks the token a job presents, and
alice, who revokes it.  It never prints a token string.
"""

from __future__ import annotations

import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette

from authtoken import AuthToken, InvalidArgument, open_security
from authtoken.admin import DelegationTokenAuth, create_app
from authtoken.httpx import DelegationAuth


def serve(app: Starlette) -> tuple[uvicorn.Server, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'tokens.db'}"
        with open_security(url, secret_keys=[secrets.token_urlsafe(32)]) as security:
            # The reports service's own credential, to call the admin application.
            service_token = security.authorize_token(
                AuthToken("reports:introspect", expires="never",
                          description="reports service"), user="reports-service")
            # alice's token for her nightly job (script 7), and her own console token.
            job_token = security.authorize_token(
                AuthToken("reports:read vfs:ikey?7", expires="30d", max_uses=100),
                user="alice")
            alice_token = security.authorize_token(AuthToken("reports:read"), user="alice")
            server, base = serve(create_app(
                security, authenticate=DelegationTokenAuth(security)))
            try:
                run(base, service_token, job_token, alice_token)
            finally:
                server.should_exit = True
            security.flush()
            job = security.restore_auth_token(job_token)
            print(f"the job token was used {job.use_count} time(s) of {job.max_uses}")
    print("done")


def run(base: str, service_token: str, job_token: str, alice_token: str) -> None:
    # The service checks the token a job presented, for the script the job runs as.
    with httpx.Client(base_url=base, auth=DelegationAuth(service_token)) as service:
        answer = service.post("/introspect", data={"token": job_token, "script_key": "7"})
        claims = answer.json()
        print(f"introspect for script 7: {answer.status_code} active={claims['active']} "
              f"sub={claims['sub']} scope={claims['scope']!r}")
        print("  members:", ", ".join(sorted(claims)))
        print("  cache-control:", answer.headers["cache-control"],
              "/ pragma:", answer.headers["pragma"])

        other = service.post("/introspect", data={"token": job_token, "script_key": "8"})
        print("introspect for script 8:", other.status_code, other.json())
        last = "y" if job_token.endswith("x") else "x"  # one character changed
        forged = service.post("/introspect", data={"token": job_token[:-1] + last})
        print("a forged string:", forged.status_code, forged.json())

        refused = service.post("/revoke", data={"token": job_token})
        print("the service revokes alice's token:", refused.status_code,
              refused.json()["title"])

    anonymous = httpx.post(f"{base}/introspect", data={"token": job_token})
    print("no credential:", anonymous.status_code, anonymous.headers["www-authenticate"])

    # alice revokes her job's token by its string (RFC 7009), with her own token.
    with httpx.Client(base_url=base, auth=DelegationAuth(alice_token)) as alice:
        revoked = alice.post("/revoke", data={"token": job_token})
        print(f"alice revokes it: {revoked.status_code}, body {revoked.content!r}")
        after = alice.post("/introspect", data={"token": job_token, "script_key": "7"})
        print("introspect after revocation:", after.status_code, after.json())

    # DelegationAuth sends a token over https, or over http only to this machine.
    auth = DelegationAuth(alice_token)
    print("the auth shows only the key:", repr(auth) == f"DelegationAuth(key={auth.key!r})")
    try:
        httpx.get("http://reports.example.com/reports", auth=auth)
    except InvalidArgument as exc:
        print("plain http to another host:", type(exc).__name__, "before sending")


if __name__ == "__main__":
    main()
