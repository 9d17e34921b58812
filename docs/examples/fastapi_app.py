"""A FastAPI service that takes delegation tokens: TokenAuth, scopes, and refusals.

Needs ``pip install "authtoken[fastapi,httpx]"`` (FastAPI, and httpx to call it).  Run it
with ``python docs/examples/fastapi_app.py``: it builds the service over a SQLite file in
a temporary folder with a throwaway key, calls it in-process through httpx's ASGI
transport (the same requests a client sends over the network) and prints what each call
got.  It never prints a token string.

To serve the same application, build it over the store your tokens live in and run it
with uvicorn::

    # service.py
    from authtoken import open_security
    app = create_app(open_security())   # AUTHTOKEN_DATABASE_URL, AUTHTOKEN_SECRET_KEYS

    $ uvicorn service:app
"""

# No "from __future__ import annotations": FastAPI reads the Annotated parameters of the
# routes, which name the TokenAuth made in create_app, when they are defined.
import asyncio
import secrets
import tempfile
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI
from fastapi import Security as Scopes

from authtoken import AuthToken, Principal, Security, open_security
from authtoken.integrations.fastapi import TokenAuth


def create_app(security: Security) -> FastAPI:
    auth = TokenAuth(security)
    app = FastAPI(title="Reports")

    @app.get("/whoami")
    def whoami(principal: Annotated[Principal, Depends(auth)]) -> dict[str, object]:
        return {"user": principal.user, "scopes": list(principal.scopes)}

    @app.get("/reports")
    def reports(principal: Annotated[Principal, Scopes(auth, scopes=["reports:read"])],
                ) -> dict[str, object]:
        return {"reports": ["sales", "stock"], "for": principal.user}

    @app.post("/reports/export")
    def export(principal: Annotated[Principal, Scopes(auth, scopes=["reports:export"])],
               ) -> dict[str, object]:
        return {"exported_by": principal.user}

    return app


def show(what: str, answer: httpx.Response) -> None:
    challenge = answer.headers.get("www-authenticate")
    said = f", WWW-Authenticate: {challenge}" if challenge else ""
    print(f"{what}: {answer.status_code} {answer.json()}{said}")


async def calls(security: Security) -> None:
    app = create_app(security)
    alice = security.authorize_token(AuthToken("reports:read"), user="alice")
    as_alice = {"Authorization": f"Bearer {alice}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reports") as client:
        show("whoami as alice", await client.get("/whoami", headers=as_alice))
        show("reports as alice", await client.get("/reports", headers=as_alice))
        show("reports with no header", await client.get("/reports"))
        show("export as alice", await client.post("/reports/export", headers=as_alice))
        show("a token in the query string",
             await client.get(f"/reports?access_token={alice}"))
        security.revoke_auth_token(alice)
        show("reports after revocation", await client.get("/reports", headers=as_alice))

    scheme = app.openapi()["components"]["securitySchemes"]["TokenAuth"]
    print(f"OpenAPI security scheme: type={scheme['type']} scheme={scheme['scheme']} "
          f"bearerFormat={scheme['bearerFormat']}")
    print("reports requires:", app.openapi()["paths"]["/reports"]["get"]["security"])
    security.flush()
    (token,) = security.list_auth_tokens(user="alice", include_revoked=True)
    print(f"alice's token was used {token.use_count} times")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'tokens.db'}"
        with open_security(url, secret_keys=secrets.token_urlsafe(32)) as security:
            asyncio.run(calls(security))
    print("done")


if __name__ == "__main__":
    main()
