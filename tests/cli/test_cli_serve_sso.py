"""``authtoken serve-admin --oidc-authority … --oidc-client-id …``: the real command in a
real process, against the project's real OpenID provider on 127.0.0.1.

The browser's part is played by plain HTTP: the page sends it to the provider, the
provider's login form is filled (``OIDCProvider.sign_in``), and the provider's answer
is carried back to the page's callback with the page's cookies -- as a browser does.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.cli import SECRET_KEY

from authtoken import Security, SQLRepository
from authtoken.testing import OIDCProvider

pytestmark = pytest.mark.slow

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
TOKEN = re.compile(r'id="token-string"[^>]*value="(atk_[^"]+)"')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    with OIDCProvider() as op:
        op.groups = {op.username: ["authtoken-admins"]}
        yield op


def _serve(tmp_path: Path, port: int, *args: str) -> tuple[subprocess.Popen[str], str]:
    url = f"sqlite:///{tmp_path}/served.db"
    env = {**os.environ, "AUTHTOKEN_SECRET_KEYS": SECRET_KEY, "AUTHTOKEN_DATABASE_URL": url,
           "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "authtoken", "db", "upgrade"], env=env,
                   capture_output=True, check=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "authtoken", "serve-admin", "--port", str(port), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json")
            return server, url
        except httpx.TransportError:
            if server.poll() is not None:
                raise AssertionError(server.communicate()[1]) from None
            assert time.monotonic() < deadline, "serve-admin did not start"
            time.sleep(0.1)


def test_serve_admin_signs_people_in_with_the_provider(tmp_path: Path,
                                                       provider: OIDCProvider) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    provider.allow_redirect(f"{base}/ui/sso/callback")
    server, url = _serve(tmp_path, port, "--oidc-authority", provider.issuer,
                         "--oidc-client-id", provider.PUBLIC_CLIENT,
                         "--oidc-admin-claim", "groups",
                         "--oidc-admin-value", "authtoken-admins", "--oidc-name", "Test SSO")
    try:
        with httpx.Client(base_url=base) as browser:
            signin = browser.get("/ui/")
            assert 'id="sso"' in signin.text and "Sign in with Test SSO" in signin.text
            away = browser.get("/ui/sso")
            assert away.status_code == 303
            location = away.headers["location"]
            assert location.startswith(provider.issuer) and "code_challenge=" in location
            answer = provider.sign_in(location)
            assert "code" in answer, answer
            back = browser.get("/ui/sso/callback", params=answer)
            assert back.status_code == 303, back.text
            page = browser.get("/ui/")
            assert page.status_code == 200
            assert "Signed in as <strong id=\"user\">alice</strong> (admin) by single " \
                   "sign-on" in page.text
            csrf = CSRF.search(page.text)
            assert csrf is not None
            made = browser.post("/ui/tokens", headers={"origin": base},
                                data={"csrf": csrf.group(1), "scope": "jobs:run",
                                      "expires": "7d"})
            assert made.status_code == 200, made.text
            string = TOKEN.search(made.text)
            assert string is not None
            assert browser.get("/ui/all").status_code == 200  # an admin by the group
            # a replayed callback is refused: the round trip's cookie is spent
            assert browser.get("/ui/sso/callback", params=answer).status_code == 400
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    assert f"{base}/ui/sso/callback" in err
    with Security(SQLRepository(url), secret_keys=[SECRET_KEY]) as security:
        token = security.restore_auth_token(string.group(1))
        # a root token of alice's, made with no token of her own
        assert (token.user, token.parent_key, token.scopes) == ("alice", None, ("jobs:run",))
    assert string.group(1) not in err


def test_serve_admin_refuses_half_a_single_sign_on(tmp_path: Path) -> None:
    for args, said in ((("--oidc-authority", "https://id.example.com"), "--oidc-client-id"),
                       (("--oidc-admin-value", "x"), "--oidc-authority"),
                       (("--oidc-authority", "https://id.example.com", "--oidc-client-id",
                         "page", "--oidc-admin-value", "x"), "--oidc-admin-claim")):
        run = subprocess.run([sys.executable, "-m", "authtoken", "serve-admin", *args],
                             env={**os.environ, "HOME": str(tmp_path),
                                  "AUTHTOKEN_SECRET_KEYS": SECRET_KEY},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and said in run.stderr, (args, run.stderr)


def test_serve_admin_takes_no_client_secret_as_an_argument(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "authtoken", "serve-admin",
                          "--oidc-client-secret", "hunter2"],
                         env={**os.environ, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "hunter2" not in run.stderr
    assert "--oidc-client-secret-file" in run.stderr
