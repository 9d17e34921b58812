"""Read a space's lessons with an OpenID Connect session that keeps its token fresh.

Needs ``pip install "authtoken[issuers,testing]"`` (the sessions, and the test
provider).  Run it with ``python docs/examples/oidc_lessons.py``.  ``OIDCProvider`` (from
``authtoken.testing``) plays the identity provider (a Keycloak-like realm) and the space
with its protected lesson API, on 127.0.0.1; access tokens live 2 seconds so that a
refresh happens while you watch.  The script:

1. opens an ``OIDCPasswordSession`` with ``from_space``: it reads the space's
   ``/api/.well-known/oidc`` (authority, client id) and the authority's discovery
   document (token endpoint, JWKS);
2. reads ``GET {space}/api/lessons/1`` a few times through ``httpx`` with
   ``auth=session.auth`` -- the session fetches, refreshes (at 0.9 * ``expires_in``) and
   retries once after a 401 by itself;
3. checks the access token as an API would, with ``JWTVerifier``;
4. does the same with the asyncio twin, ``AsyncOIDCPasswordSession``;
5. gets a service token by the client credentials grant and sends it in a ``bsauth``
   header, as Brainysoft's core expects.

No token, password or client secret is printed.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx

from authtoken import IssuerError
from authtoken.issuers.oidc import (
    AsyncOIDCPasswordSession,
    ClientCredentialsSession,
    JWTVerifier,
    OIDCPasswordSession,
)
from authtoken.testing import OIDCProvider

LIFETIME = 2.0  # expires_in of the access tokens, in seconds


def main() -> None:
    password = secrets.token_urlsafe(16)  # in real life: from a secret store
    client_secret = secrets.token_urlsafe(24)
    with OIDCProvider(password=password, client_secret=client_secret,
                      lifetime=LIFETIME) as provider:
        space = provider.space_url
        print(f"space at {space}")
        read_lessons(provider, space, password)
        asyncio.run(read_lessons_async(space, password))
        service_token(provider, client_secret)
    print("done")


def read_lessons(provider: OIDCProvider, space: str, password: str) -> None:
    with OIDCPasswordSession.from_space(space, "alice", password) as session, \
            httpx.Client(auth=session.auth) as api:
        print(f"authority {session.authority}, client {session.client_id!r}")
        print(f"token endpoint {session.token_endpoint}")
        for number in range(1, 5):
            response = api.get(f"{space}/api/lessons/1")
            lesson = response.json()["data"]
            print(f"  read {number}: HTTP {response.status_code}, lesson {lesson['id']} "
                  f"of space {lesson['space_id']} as {lesson['user']!r}")
            time.sleep(0.7)
        print(f"token requests: password grant {provider.counts['password']}, "
              f"refresh grant {provider.counts['refresh_token']}; "
              f"API answers {sorted(set(provider.api_statuses))}")

        # The API refuses a token (revoked upstream, say): the auth gets a fresh one and
        # retries the request once.
        provider.reject_api(1)
        response = api.get(f"{space}/api/lessons/1")
        print(f"the API refused once (401); the auth refreshed and retried: "
              f"HTTP {response.status_code}")

        # What the lesson API does with the token: check it against the issuer's keys.
        assert session.jwks_uri is not None
        with JWTVerifier(jwks_uri=session.jwks_uri, issuer=session.authority,
                         audience=OIDCProvider.AUDIENCE) as verifier:
            claims = verifier.verify(session.get_access_token())
        print(f"JWTVerifier: sub={claims['sub']!r}, scope={claims.get('scope')!r}, "
              f"expires in {claims['exp'] - time.time():.0f} s")

    # A wrong password is an IssuerError with the status and the issuer's error code.
    try:
        with OIDCPasswordSession.from_space(space, "alice", "not-the-password") as wrong:
            wrong.get_access_token()
    except IssuerError as exc:
        print(f"wrong password: IssuerError (status={exc.status}, code={exc.code})")


async def read_lessons_async(space: str, password: str) -> None:
    # ``await`` on from_space reads the discovery documents now.
    async with await AsyncOIDCPasswordSession.from_space(space, "alice", password) as session, \
            httpx.AsyncClient(auth=session.auth) as api:
        responses = await asyncio.gather(
            *(api.get(f"{space}/api/lessons/{n}") for n in (1, 2, 3)))
        print(f"async: lessons {[r.json()['data']['id'] for r in responses]}, "
              f"statuses {[r.status_code for r in responses]}")


def service_token(provider: OIDCProvider, client_secret: str) -> None:
    with ClientCredentialsSession(provider.bs_token_url, OIDCProvider.SERVICE_CLIENT,
                                  client_secret, header="bsauth") as service:
        print(f"service header: {sorted(service.authorization_header())}")
        whoami = httpx.get(provider.whoami_url, auth=service.auth).json()
        print(f"bsauth whoami: {whoami['status']}, customerKey={whoami['data']['customerKey']!r}")


if __name__ == "__main__":
    main()
