"""A job that calls a Spatium-protected API with a permission token that keeps itself fresh.

Needs ``pip install "authtoken[issuers,testing]"`` (the sessions, and the test
authority).  Run it with ``python docs/examples/spatium_job.py``.  Everything runs on
127.0.0.1 and takes a few seconds:

- ``SpatiumAuthority`` (from ``authtoken.testing``) plays Spatium's authorization
  service, with permission tokens that live 3 seconds instead of 15 minutes;
- a tiny *reports API* checks each request's permission token with the authority's
  public key (RS256), as a real Spatium-protected service does;
- the *job* logs in as alice (the credentials factor), establishes an
  ``AuthorizationSession`` and calls the API again and again.  It never refreshes by
  hand: ``get_permission_token()`` does, ``leeway`` before the token expires.

Then it shows what the engine does when things go wrong: a refresh that fails with
HTTP 503 (the still-valid token keeps serving), a refresh token the service refuses
(``SessionExpired``: log in again), and a backend's ``KeyAuthorizationSession``, which
simply issues again by merchant key.  Tokens are shown only as short fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt

from authtoken import SessionExpired
from authtoken.issuers.spatium import (
    AuthorizationSession,
    KeyAuthorizationSession,
    SpatiumClient,
)
from authtoken.testing import SpatiumAuthority

PERMISSION = "reports:read"
LIFETIME = 3  # seconds a permission token lives (Spatium: 15 minutes)
LEEWAY = 1.5  # refresh this long before expiry (the default, 60 s, suits 15 minutes)


def fingerprint(token: str) -> str:
    """A short, safe stand-in for a token in output: never print the token itself."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:8]


# -- the protected API: what a service behind Spatium does with each request -------------
class ReportsAPI(BaseHTTPRequestHandler):
    public_key: str = ""  # the authority's public key (PEM), set before serving

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        try:
            if scheme != "Bearer":
                raise jwt.InvalidTokenError("no bearer token")
            claims = jwt.decode(token, self.public_key, algorithms=["RS256"],
                                issuer="authorization-service",
                                options={"require": ["exp", "iat", "iss"]})
            if claims.get("magic") != "permissionTokenSchema":
                raise jwt.InvalidTokenError("not a permission token")
        except jwt.InvalidTokenError:
            self.answer(401, {"error": "invalid permission token"})
            return
        if PERMISSION not in claims.get("permissions", []):
            self.answer(403, {"error": f"{PERMISSION} is required"})
            return
        self.answer(200, {"report": "sales", "account": claims.get("accountId"),
                          "merchant": claims.get("merchantId")})

    def answer(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@contextmanager
def reports_api(public_key: str) -> Iterator[str]:
    handler = type("Handler", (ReportsAPI,), {"public_key": public_key})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/reports/sales"
    finally:
        server.shutdown()
        server.server_close()


# -- the job ----------------------------------------------------------------------------
def call(api: httpx.Client, url: str, token: str, label: str) -> int:
    """One API call with the permission token as a Bearer token; the HTTP status."""
    response = api.get(url, headers={"Authorization": f"Bearer {token}"})
    print(f"  {label}: HTTP {response.status_code} with {fingerprint(token)}")
    return response.status_code


def seconds_left(session: AuthorizationSession) -> float:
    """How long the session's current permission token still lives."""
    expires = session.expires_at
    assert expires is not None, "established sessions have a token"
    return expires.timestamp() - time.time()


def main() -> None:
    password = secrets.token_urlsafe(16)  # in real life: from a secret store
    with SpatiumAuthority(permission_lifetime=LIFETIME) as authority, \
            reports_api(authority.public_key_pem) as url, httpx.Client() as api:
        account = authority.add_account("alice", password)
        print(f"authority at {authority.url}; reports API at {url}")
        print(f"permission tokens live {LIFETIME} s; the session refreshes {LEEWAY} s early")

        # 1. Log in: which factors does the permission need, then prove one.
        with SpatiumClient(authority.url) as client:
            needs = client.probe([PERMISSION])
            print(f"{PERMISSION} needs one of {sorted(needs.factor_types())}; "
                  f"credentials suffice: {needs.satisfied_by({'credentials'})}")
            factor = client.security_factor_credentials("alice", password)

        with AuthorizationSession(authority.url, "job-device-1", [PERMISSION],
                                  leeway=LEEWAY) as session:
            session.establish([factor])
            print(f"session established for account {account[:8]}..., "
                  f"token expires at {session.expires_at:%H:%M:%S} UTC")

            # 2. Work: call the API until the token has been refreshed twice.
            seen = {session.get_permission_token()}
            statuses: set[int] = set()
            number = 0
            while authority.count("permission/refresh") < 2 and number < 40:
                number += 1
                token = session.get_permission_token()
                if token not in seen:
                    seen.add(token)
                    print(f"  the session refreshed the token "
                          f"(refresh requests so far: {authority.count('permission/refresh')})")
                statuses.add(call(api, url, token, f"call {number}"))
                time.sleep(0.4)
            print(f"{number} calls, {len(seen)} permission tokens, "
                  f"{authority.count('permission/refresh')} refresh requests, "
                  f"API answers {sorted(statuses)}")

            # 3. A refresh that fails transiently: the valid token keeps serving.
            authority.fail("permission/refresh", 503)
            time.sleep(max(0.0, seconds_left(session) - LEEWAY) + 0.1)  # refresh is due
            before = session.get_permission_token()  # tries to refresh: HTTP 503
            failed = [c for c in authority.calls if c.path.endswith("refresh")][-1]
            print(f"refresh failed with HTTP {failed.status}: kept the valid token "
                  f"{fingerprint(before)}, {seconds_left(session):.1f} s left")
            call(api, url, before, "call during the outage")
            time.sleep(0.6)  # the engine backs off 0.5 s before the next attempt
            after = session.get_permission_token()
            print(f"the next attempt succeeded: {fingerprint(after)} "
                  f"({'a new token' if after != before else 'the same token'})")
            call(api, url, after, "call after the outage")

            # 4. The service refuses the refresh token: the user must log in again.
            authority.revoke("job-device-1")
            try:
                session.refresh()
            except SessionExpired as exc:
                print(f"refresh refused: SessionExpired (status={exc.status}, "
                      f"code={exc.code}, request_id={exc.request_id})")
            try:
                session.get_permission_token()
            except SessionExpired:
                print("  get_permission_token() keeps raising SessionExpired until establish()")
            with SpatiumClient(authority.url) as client:
                session.establish(client.security_factor_credentials("alice", password))
            # (A pair issued in the same second for the same grant is the same JWT: the
            # fingerprint may repeat.  The authority's counters tell what happened.)
            print(f"session re-established after a new login (issue-by-factors requests: "
                  f"{authority.count('permission/issue-by-factors')})")
            call(api, url, session.get_permission_token(), "call after re-login")

        # 5. A backend's session by merchant key: a dead refresh token is not an error.
        with KeyAuthorizationSession(authority.url, "reports-backend", [PERMISSION],
                                     authority.merchant_key, leeway=LEEWAY) as backend:
            call(api, url, backend.get_permission_token(), "backend call")
            authority.revoke("reports-backend")
            backend.refresh()
            print(f"backend refresh token refused: re-issued by key "
                  f"(issue-by-key requests: {authority.count('permission/issue-by-key')})")
            call(api, url, backend.get_permission_token(), "backend call after re-issue")
    print("done")


if __name__ == "__main__":
    main()
