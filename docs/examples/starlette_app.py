"""A Starlette service that takes delegation tokens through AuthenticationMiddleware.

Needs ``pip install "authtoken[starlette,httpx]"`` (Starlette, and httpx to call it).
Run it with ``python docs/examples/starlette_app.py``: it builds the service over a
SQLite file in a temporary folder with a throwaway key, calls it in-process through
httpx's ASGI transport and prints what each call got.  It never prints a token string.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authtoken import AuthToken, Security, open_security
from authtoken.integrations.starlette import TokenAuthBackend, bearer_challenge


async def whoami(request: Request) -> JSONResponse:
    if not request.user.is_authenticated:
        return JSONResponse({"user": None})
    principal = request.user.principal  # the Principal of the login
    return JSONResponse({"user": principal.user, "scopes": request.auth.scopes,
                         "expires": principal.expires is not None})


@requires("reports:read")
async def reports(request: Request) -> JSONResponse:
    return JSONResponse({"reports": ["sales", "stock"], "for": request.user.display_name})


def create_app(security: Security) -> Starlette:
    return Starlette(
        routes=[Route("/whoami", whoami), Route("/reports", reports)],
        middleware=[Middleware(AuthenticationMiddleware,
                               backend=TokenAuthBackend(security),
                               on_error=bearer_challenge)],
    )


def show(what: str, answer: httpx.Response) -> None:
    challenge = answer.headers.get("www-authenticate")
    said = f", WWW-Authenticate: {challenge}" if challenge else ""
    body = answer.json() if answer.headers.get("content-type") == "application/json" \
        else answer.text
    print(f"{what}: {answer.status_code} {body}{said}")


async def calls(security: Security) -> None:
    alice = security.authorize_token(AuthToken("reports:read"), user="alice")
    bob = security.authorize_token(AuthToken("files:list"), user="bob")
    forged = alice[:30] + ("A" if alice[30] != "A" else "B") + alice[31:]
    transport = httpx.ASGITransport(app=create_app(security))
    async with httpx.AsyncClient(transport=transport, base_url="http://reports") as client:
        for who, token in (("alice", alice), ("bob", bob)):
            show(f"whoami as {who}", await client.get(
                "/whoami", headers={"Authorization": f"Bearer {token}"}))
        show("anonymous whoami", await client.get("/whoami"))
        show("reports as alice", await client.get(
            "/reports", headers={"Authorization": f"Bearer {alice}"}))
        show("reports as bob (no reports:read)", await client.get(
            "/reports", headers={"Authorization": f"Bearer {bob}"}))
        show("a forged token", await client.get(
            "/whoami", headers={"Authorization": f"Bearer {forged}"}))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'tokens.db'}"
        with open_security(url, secret_keys=secrets.token_urlsafe(32)) as security:
            asyncio.run(calls(security))
    print("done")


if __name__ == "__main__":
    main()
