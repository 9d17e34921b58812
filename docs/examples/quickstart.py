"""Quickstart: authorize a token, log in with it, update it, revoke it.

Needs ``pip install authtoken`` (no extra).  Run it with
``python docs/examples/quickstart.py``.  It works on a SQLite file in a temporary folder
with a throwaway secret key, so it touches nothing of yours, and it never prints a token
string (only the token's key, which is safe to show).
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from authtoken import (
    AuthToken,
    InvalidToken,
    PermissionDenied,
    Script,
    ScriptNotAuthorized,
    Security,
    TokenRevoked,
    open_security,
)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'tokens.db'}"
        # A throwaway key.  A real deployment sets AUTHTOKEN_SECRET_KEYS or lets
        # open_security() create its key file (mode 0600) on first use.
        key = secrets.token_urlsafe(32)
        with open_security(url, secret_keys=key) as security:
            run(security)


def run(security: Security) -> None:
    # 1. The user "alice" authorizes a token for script 42 only.
    token = AuthToken(
        "reports:read vfs:ikey?42",
        '{"report": "sales"}',
        description="nightly sales report",
        expires="30d",
    )
    token_string = security.authorize_token(token, user="alice")
    key = token.key  # set by authorize_token: safe to show and log
    assert key is not None
    print(f"authorized token {key} for user {token.user!r}")
    print(f"  scope:   {token.scope}")
    print(f"  expires: {token.expires:%Y-%m-%d %H:%M} UTC")
    print(f"  the token string ({len(token_string)} characters) is shown once; "
          "hand it to the script runner through a secret store, never argv")

    # 2. Script 42 logs in as alice with it -- no password involved.
    principal = security.login_by_auth_token(token_string, script=Script(key=42))
    print(f"login as script 42: ok, user={principal.user!r}, scopes={principal.scopes}, "
          f"data={principal.data}")
    principal.require("reports:read")
    print("  principal.require('reports:read'): ok")
    try:
        principal.require("reports:read", "billing:write")
    except PermissionDenied as exc:
        print(f"  principal.require('billing:write'): PermissionDenied, missing "
              f"{list(exc.missing_scopes)}")

    # 3. The token is bound to script 42: any other script is refused.
    try:
        security.login_by_auth_token(token_string, script=Script(key=43))
    except ScriptNotAuthorized as exc:
        print(f"login as script 43: refused, ScriptNotAuthorized: {exc}")

    # 4. A string that is not exactly the issued one is refused before storage is read.
    tampered = token_string[:-1] + ("A" if token_string[-1] != "A" else "B")
    try:
        security.login_by_auth_token(tampered, script=Script(key=42))
    except InvalidToken as exc:
        print(f"login with a tampered string: refused, InvalidToken: {exc}")

    # 5. The user changes the description and the payload; the key and string stay.
    token.description = "nightly sales report (EMEA)"
    token.data = '{"report": "sales", "region": "emea"}'
    security.update_auth_token(token)
    print(f"updated token {key}: description={token.description!r}")
    principal = security.login_by_auth_token(token_string, script=Script(key=42))
    print(f"login after the update sees data={principal.data}")

    # 6. Revocation takes effect at the next login.
    security.revoke_auth_token_by_key(key)
    try:
        security.login_by_auth_token(token_string, script=Script(key=42))
    except TokenRevoked as exc:
        print(f"login after revocation: refused, TokenRevoked: {exc}")

    # 7. Usage is written lazily; flush() makes it exact in storage.
    security.flush()
    stored = security.get_auth_token(key)
    print(f"usage: use_count={stored.use_count}, "
          f"last_used_at={stored.last_used_at:%Y-%m-%d %H:%M:%S} UTC, "
          f"revoked_at={stored.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    print("done")


if __name__ == "__main__":
    main()
