"""panva's ``oidc-provider`` (npm) as a real, independent OpenID provider for tests.

``tests/support/panva/server.js`` runs it under Node on 127.0.0.1; ``.ci/run`` installs it
(``npm ci --prefix tests/support/panva``).  Use::

    from support.panva import panva_provider

    with panva_provider(access_ttl=2) as op:     # or the ``panva`` fixture of a test module
        session = OIDCPasswordSession(op.issuer, op.client_id, "alice", "wonderland",
                                      client_secret=op.client_secret)
        httpx.get(op.api_url, auth=session.auth)  # a protected resource checking the JWT
        op.stats()["grants"]["refresh_token"]     # what the token endpoint was asked

What the server does: the password grant (accounts ``ACCOUNTS``), ``refresh_token`` with
rotation (a used refresh token is consumed; presenting it again is refused with
``invalid_grant`` *and revokes the whole grant*, so the newer refresh token dies too),
``client_credentials``, ``authorization_code`` with PKCE (S256, required; its login and
consent pages are oidc-provider's devInteractions, the login checking the password;
``redirect_uris`` registers more redirect URIs for every client, and ``groups`` asked
as a scope puts alice's ``["authtoken-admins"]`` in the ID token); JWT access
tokens (RS256, ``typ`` ``at+jwt``, audience ``RESOURCE``) that ``JWTVerifier`` can check
against ``jwks_uri``.  ``stats()["refresh_tokens_presented"]`` holds the sha256 (hex) of
every refresh token sent, in order (``fingerprint`` computes one).

Without Node or ``node_modules`` the tests that need it skip with the reason -- except in
CI (``CI`` set), where a missing install fails them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

SERVER_DIR = Path(__file__).with_name("panva")
#: The accounts of the server's in-memory store: username -> password.
ACCOUNTS = {"alice": "wonderland", "bob": "builder"}
#: The confidential client, registered for client_secret_post (how authtoken's adapters
#: send a secret).  oidc-provider takes the secret in the form or in HTTP Basic from
#: either confidential client; both have the secret ``PanvaProvider.client_secret``.
CONFIDENTIAL_CLIENT = "authtoken-confidential"
#: The same, registered for client_secret_basic.
BASIC_CLIENT = "authtoken-basic"
#: A public client (no secret): the one the server's space pointer names.
PUBLIC_CLIENT = "authtoken-public"
#: The audience of every access token, and its one scope.
RESOURCE = "urn:authtoken:test-api"
RESOURCE_SCOPE = "api:read"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as tests/conftest.py reads it
_START_TIMEOUT = 30.0


def fingerprint(token: str) -> str:
    """The sha256 (hex) of a token, as ``stats()["refresh_tokens_presented"]`` lists it."""
    return hashlib.sha256(token.encode()).hexdigest()


def unavailable_reason() -> str | None:
    """Why the server cannot run here (no Node, no ``npm ci``), or ``None``."""
    if shutil.which("node") is None:
        return "Node.js is not installed (apt install nodejs npm)"
    if not (SERVER_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return ("panva's oidc-provider is not installed: "
                "npm ci --prefix tests/support/panva (.ci/run does it)")
    return None


def require_panva() -> None:
    """Skip the calling test when the server cannot run -- or fail it, in CI."""
    reason = unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"panva's oidc-provider is required in CI: {reason}")
    pytest.skip(reason)


@dataclass
class PanvaProvider:
    """A running server: where it is, its clients, and what it was asked."""

    issuer: str
    port: int
    client_secret: str
    access_ttl: int
    refresh_ttl: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    client_id: str = CONFIDENTIAL_CLIENT
    basic_client_id: str = BASIC_CLIENT
    public_client_id: str = PUBLIC_CLIENT
    resource: str = RESOURCE
    redirect_uri: str = "http://127.0.0.1/callback"
    redirect_uris: tuple[str, ...] = ()

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def api_url(self) -> str:
        """A protected resource: 200 ``{"sub", "client_id", "scope"}`` for a valid access
        token, 401 with ``WWW-Authenticate: Bearer ... error="invalid_token"`` otherwise."""
        return f"{self.issuer}/api/me"

    @property
    def space_url(self) -> str:
        """A "space" whose ``/api/.well-known/oidc`` names this issuer and the public
        client, for ``OIDCPasswordSession.from_space``."""
        return self.issuer

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.issuer}/_test/{path}", json=body or {}, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def stats(self) -> dict[str, Any]:
        """What the token endpoint was asked since the start (or ``reset_stats``):
        ``token_requests``; per ``grant_type``: ``grants``, ``succeeded``; ``errors`` per
        error code; ``clients`` per client id; ``refresh_tokens_presented`` (sha256 hex, in
        order) and ``refresh_tokens_processed`` (less those a ``fault`` answered);
        ``api_requests``; ``grants_revoked`` (a reused refresh token revokes its grant).
        ``reset_stats`` empties it and clears the faults."""
        response = httpx.get(f"{self.issuer}/_test/stats", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def refresh_requests(self) -> int:
        """How many refresh_token grants the token endpoint was asked for."""
        return int(self.stats()["grants"].get("refresh_token", 0))

    def reset_stats(self) -> None:
        """Empty the record and clear every ``fault``."""
        self._post("reset")

    def fault(self, grant_type: str, *, fail_count: int = 0, fail_status: int = 503,
              delay_before: float = 0.0, delay_after: float = 0.0) -> None:
        """Make the token endpoint misbehave for ``grant_type`` until ``reset_stats``:
        answer ``fail_status`` without processing for the next ``fail_count`` requests;
        wait ``delay_before`` seconds before processing a request (nothing used yet) or
        ``delay_after`` seconds after it (a refresh token already consumed, the answer
        not yet sent).  Faulted requests count in ``refresh_tokens_presented`` but not in
        ``refresh_tokens_processed``.  A new call replaces the grant type's fault."""
        self._post("fault", {"grant_type": grant_type, "fail_count": fail_count,
                             "fail_status": fail_status,
                             "delay_before_ms": round(delay_before * 1000),
                             "delay_after_ms": round(delay_after * 1000)})

    def revoke(self, username: str) -> int:
        """Revoke every grant of ``username`` (its refresh tokens are refused from now
        on); how many there were."""
        return int(self._post("revoke", {"username": username})["revoked"])

    def set_password(self, username: str, password: str) -> None:
        self._post("password", {"username": username, "password": password})

    def sign_in(self, url: str, username: str = "alice", password: str | None = None, *,
                abort: bool = False) -> dict[str, str]:
        """Play the browser at ``url`` (an authorization request's, with
        ``prompt=consent`` for a refresh token): the devInteractions login page, then the
        consent page (or abort: ``error=access_denied``); the query parameters of the
        redirect to the client, whose redirect URI is never visited.  ``password``
        defaults to the account's.  ``AssertionError`` if a page is not as expected."""
        secret = ACCOUNTS[username] if password is None else password
        with httpx.Client(timeout=10) as browser:
            answer = browser.get(url)
            for _ in range(10):
                if answer.status_code in (302, 303):
                    location = answer.url.join(answer.headers["location"])
                    if not str(location).startswith(self.issuer + "/"):
                        return dict(parse_qsl(location.query.decode()))
                    answer = browser.get(location)
                    continue
                assert answer.status_code == 200, (
                    f"the provider answered {answer.status_code}: {answer.text[:200]}")
                found = re.search(r'action="([^"]*)"', answer.text)
                assert found is not None, "the interaction page has no form"
                if abort:
                    answer = browser.get(answer.url.join(
                        f"{answer.url.path}/abort"))
                    continue
                action = answer.url.join(found.group(1))
                if 'name="login"' in answer.text:
                    answer = browser.post(action, data={
                        "prompt": "login", "login": username, "password": secret})
                    assert answer.status_code != 401, "the provider refused the password"
                else:
                    answer = browser.post(action, data={"prompt": "consent"})
            raise AssertionError("the sign-in did not come back to the client")

    def log(self) -> str:
        """What the server wrote on stderr (oidc-provider's warnings, a crash)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the server (closing its stdin ends it; then SIGTERM, then SIGKILL)."""
        process = self.process
        if process.poll() is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


def _first_line(process: subprocess.Popen[bytes], log_path: Path) -> dict[str, Any]:
    """The JSON line the server prints once it listens, or a failure with its log."""
    assert process.stdout is not None
    deadline = time.monotonic() + _START_TIMEOUT
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (process.poll() is not None and not selector.select(0)):
                break
            if selector.select(min(remaining, 0.5)):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
    try:
        info: dict[str, Any] = json.loads(line)
        return info
    except ValueError:
        process.kill()
        process.wait(5)
        raise RuntimeError(
            "panva's oidc-provider did not start (exit status "
            f"{process.returncode}); its log:\n{log_path.read_text(errors='replace')}"
        ) from None


def _wait_for_discovery(issuer: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    url = f"{issuer}/.well-known/openid-configuration"
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"panva's oidc-provider does not answer at {url}")
        time.sleep(0.05)


@contextmanager
def panva_provider(*, access_ttl: int = 60, refresh_ttl: int = 3600,
                   client_secret: str | None = None,
                   redirect_uris: Iterable[str] = ()) -> Iterator[PanvaProvider]:
    """A running server on a free loopback port, stopped afterwards.

    ``access_ttl``/``refresh_ttl``: lifetimes in whole seconds.  ``redirect_uris``: more
    redirect URIs every client registers (besides ``http://127.0.0.1/callback``).  The confidential
    clients' secret is random unless given; it reaches the server by its environment,
    never its command line.  Skips (fails in CI) when Node or the install is missing.
    """
    require_panva()
    secret = client_secret or secrets.token_urlsafe(24)
    uris = list(redirect_uris)
    if any(not uri or " " in uri for uri in uris):
        raise ValueError("redirect_uris are URLs without spaces")
    env = {**os.environ, "ACCESS_TTL": str(access_ttl), "REFRESH_TTL": str(refresh_ttl),
           "CLIENT_SECRET": secret, "EXIT_WITH_STDIN": "1", "NODE_ENV": "test",
           "REDIRECT_URIS": " ".join(uris)}
    env.pop("PORT", None)
    with tempfile.TemporaryDirectory(prefix="panva-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [shutil.which("node") or "node", "server.js", "0"], cwd=SERVER_DIR, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        op: PanvaProvider | None = None
        try:
            info = _first_line(process, log_path)
            op = PanvaProvider(issuer=info["issuer"], port=info["port"], client_secret=secret,
                               access_ttl=access_ttl, refresh_ttl=refresh_ttl,
                               log_path=log_path, process=process,
                               redirect_uri=info["redirect_uri"],
                               redirect_uris=tuple(info["redirect_uris"]))
            _wait_for_discovery(op.issuer, process)
            yield op
        finally:
            if op is not None:
                op.stop()
            elif process.poll() is None:
                process.kill()
                process.wait(5)
