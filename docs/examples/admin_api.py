"""The admin API and its audit trail: mount it, call it over HTTP, read the trail.

Needs ``pip install "authtoken[serve]"`` (Starlette, uvicorn, and httpx to call the
API).  Run it with ``python docs/examples/admin_api.py``.  It serves the admin
application with uvicorn on a free port of 127.0.0.1, over a SQLite file in a temporary
folder with a throwaway key, and plays an admin and a user through it.  It never prints
a token string.
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
from starlette.routing import Mount

from authtoken import AuthToken, Security, open_security
from authtoken.admin import DelegationTokenAuth, create_app


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
        with open_security(url, secret_keys=secrets.token_urlsafe(32)) as security:
            run(security)


def run(security: Security) -> None:
    # The application mounts the admin API under /admin; callers present a delegation
    # token, and one holding "authtoken:admin" is an admin.
    admin_api = create_app(security, authenticate=DelegationTokenAuth(security))
    app = Starlette(routes=[Mount("/admin", admin_api)])
    server, base = serve(app)

    # Bootstrapping: the first admin token comes from the engine (or `authtoken
    # authorize --user ops --scope "authtoken:admin"`), never over the API.
    ops = security.authorize_token(AuthToken("authtoken:admin", expires="1h"), user="ops")
    alice = security.authorize_token(AuthToken("reports:read reports:write"), user="alice")

    with httpx.Client(base_url=f"{base}/admin") as http:
        as_alice = {"Authorization": f"Bearer {alice}"}
        as_ops = {"Authorization": f"Bearer {ops}"}

        made = http.post("/tokens", headers=as_alice,
                         json={"scope": "reports:read", "expires": "12h",
                               "description": "nightly export"})
        child = made.json()
        print(f"alice made {child['key']} (HTTP {made.status_code}), a child of "
              f"{child['parent_key']}; the answer held its string once: "
              f"{child['token'].startswith('atk_')}")

        wider = http.post("/tokens", headers=as_alice, json={"scope": "payroll:read"})
        print(f"a wider child is refused: HTTP {wider.status_code}, "
              f"{wider.headers['content-type']}, {wider.json()['title']!r}")

        others = http.get("/tokens", params={"user": "bob"}, headers=as_alice)
        print(f"alice listing bob's tokens: HTTP {others.status_code}")

        listed = http.get("/tokens", params={"user": "alice"}, headers=as_ops).json()
        print(f"ops lists alice's tokens: {len(listed['tokens'])} tokens")

        revoked = http.delete(f"/tokens/{child['key']}", headers=as_alice)
        print(f"alice revokes {child['key']}: HTTP {revoked.status_code}")

        stranger = http.get("/tokens", headers={"Authorization": "Bearer atk_guess"})
        print(f"a guessed token: HTTP {stranger.status_code}, "
              f"WWW-Authenticate: {stranger.headers['www-authenticate']}")

        trail = http.get("/audit", params={"user": "alice"}, headers=as_ops).json()
        print("alice's audit trail, oldest first:")
        for event in reversed(trail["events"]):
            print(f"  {event['action']:<9} {event['outcome']:<7} "
                  f"token={event['token_key']} actor={event['actor']} "
                  f"reason={event['reason']}")

    # The same trail without HTTP: every event this Security recorded is visible.
    failures = [e for e in security.audit_events() if e.action == "authenticate"]
    print(f"failed API authentications on the trail: {len(failures)} "
          f"(actor {failures[0].actor})")
    server.should_exit = True
    print("done")


if __name__ == "__main__":
    main()
