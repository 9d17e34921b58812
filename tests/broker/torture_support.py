"""Helpers of the broker's torture tests, shared by the test and its worker processes.

- ``Capture``: an ``httpx`` response hook that keeps every token an upstream's token
  endpoint issued (access, refresh and ID tokens), in memory and appended to a private
  file that worker processes share -- never printed -- so the test can look for them in
  the database's bytes afterwards;
- ``presented_refresh_token``: the refresh token a request carries, if it is a refresh;
- ``issued_at``: a JWT access token's ``iat`` (the issuer's clock, whole seconds);
- ``database_bytes`` (a SQLite file with its ``-wal``/``-journal``) and ``postgres_dump``
  (every table by ``COPY ... TO STDOUT``), and ``found_in`` to search them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

#: The JSON keys under which an OIDC issuer or Spatium hands out a token.
TOKEN_KEYS = {"access_token": "access", "refresh_token": "refresh", "id_token": "id",
              "permissionToken": "access", "permissionRefreshToken": "refresh"}


def fingerprint(token: str) -> str:
    """The sha256 (hex) of a token: how tokens are named in anything a test prints."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_in(body: object) -> list[tuple[str, str]]:
    """Every ``(kind, token)`` in a JSON answer, however deeply nested (Spatium nests
    ``{"permissionToken": {"permissionToken": "..."}}``)."""
    found: list[tuple[str, str]] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, str) and key in TOKEN_KEYS and value:
                found.append((TOKEN_KEYS[key], value))
            else:
                found.extend(tokens_in(value))
    elif isinstance(body, list):
        for value in body:
            found.extend(tokens_in(value))
    return found


class Capture:
    """Keeps the tokens of every answer it sees (``hook``), here and in ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    def hook(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            return
        response.read()
        try:
            body = json.loads(response.content)
        except ValueError:
            return
        found = tokens_in(body)
        if not found:
            return
        lines = "".join(f"{kind}\t{token}\n" for kind, token in found).encode()
        with self._lock:
            self.seen.extend(found)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, lines)
            finally:
                os.close(fd)

    def all(self) -> list[tuple[str, str]]:
        """Every token any process captured into ``path``: ``(kind, token)``."""
        if not self.path.exists():
            return []
        rows = self.path.read_text().splitlines()
        return [(kind, token) for kind, _, token in (row.partition("\t") for row in rows)]


def capturing_client(capture: Capture,
                     on_request: Callable[[httpx.Request], None] | None = None,
                     ) -> httpx.Client:
    """An ``httpx.Client`` for a broker: ``on_request`` sees each request before it is
    sent; ``capture`` keeps the tokens of each answer."""
    hooks: dict[str, list[Callable[..., Any]]] = {"response": [capture.hook]}
    if on_request is not None:
        hooks["request"] = [on_request]
    return httpx.Client(timeout=10, event_hooks=hooks)


def presented_refresh_token(request: httpx.Request) -> str | None:
    """The refresh token ``request`` carries (an OIDC refresh grant or Spatium's
    ``permission/refresh``), else ``None``."""
    content = request.content
    if request.url.path.endswith("/permission/refresh"):
        value = json.loads(content).get("permissionRefreshToken")
        return value if isinstance(value, str) else None
    form = parse_qs(content.decode("ascii", "replace"))
    if form.get("grant_type") == ["refresh_token"]:
        return form.get("refresh_token", [None])[0]
    return None


def jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (the issuer's own tests verify them)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


def issued_at(token: str) -> int:
    """A JWT access token's ``iat``: when the issuer made it, in whole seconds."""
    return int(jwt_claims(token)["iat"])


def database_bytes(db: Path) -> bytes:
    """Every byte of a SQLite database: the file and its ``-wal``/``-journal``/``-shm``."""
    parts = [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-journal", "-shm"))]
    return b"".join(part.read_bytes() for part in parts if part.exists())


def postgres_dump(url: str) -> tuple[bytes, dict[str, int]]:
    """Every table of the database's public schema by ``COPY ... TO STDOUT`` in binary
    (the text format would spell a ``bytea`` column in hex), and how many bytes each
    gave."""
    import psycopg
    from psycopg import sql

    dump, sizes = bytearray(), {}
    with psycopg.connect(url) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            before = len(dump)
            with conn.cursor() as cur, cur.copy(
                    sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(
                        sql.Identifier(table))) as copy:
                for chunk in copy:
                    dump += bytes(chunk)
            sizes[table] = len(dump) - before
    return bytes(dump), sizes


def _needles(token: str) -> list[bytes]:
    """What would betray ``token`` in a blob: itself, and for a JWT its signature (the
    part no two tokens share), else its middle -- a token kept cut up still shows."""
    needles = [token.encode()]
    signature = token.rsplit(".", 1)[-1] if token.count(".") == 2 else ""
    if len(signature) >= 24:
        needles.append(signature.encode())
    elif len(token) >= 32:
        needles.append(token[len(token) // 2 - 8: len(token) // 2 + 8].encode())
    return needles


def found_in(blob: bytes, tokens: Iterable[tuple[str, str]]) -> list[str]:
    """Which tokens ``blob`` betrays, as ``"<kind> <sha256 prefix>"`` (never the token)."""
    return sorted({f"{kind} {fingerprint(token)[:12]}" for kind, token in tokens
                   if any(needle in blob for needle in _needles(token))})
