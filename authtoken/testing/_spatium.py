"""A Spatium-compatible authorization service on 127.0.0.1, for tests.

It speaks Spatium's wire format: ``POST {url}/api/...`` with JSON bodies, answers
``{"requestId": <the request-id header>, "data": {...}}``, and refusals
``{"requestId": ..., "error": {"code": ..., "message": ...}}`` with a 4xx/5xx status.
Permission and refresh tokens are RS256 JWTs with Spatium's claims; security and
utility tokens are HS256 JWTs.  Refresh tokens rotate: each is good for one refresh, and
issuing a new pair for a ``tokenId`` makes the previous refresh token stale.

Test hooks: ``count(path)`` and ``calls`` (every request), ``refresh_attempts`` (which
refresh token each refresh presented), ``fail``/``drop``/``delay``/``garble`` (faults for
the next requests to a path), ``revoke(token_id)``, ``public_key_pem``, ``last_email_code`` and
an injectable ``clock``.  Passwords are stored as PBKDF2 hashes (libpass), with few
rounds: it is a test double.

Needs the ``testing`` extra: ``pip install "authtoken[testing]"``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from passlib.hash import pbkdf2_sha256  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "authtoken.testing.SpatiumAuthority needs PyJWT[crypto] and libpass: "
        'pip install "authtoken[testing]"'
    ) from exc

__all__ = ["Call", "Merchant", "RefreshAttempt", "SpatiumAuthority"]

ISSUER: Final = "authorization-service"
PATHS: Final = (
    "/api/security-factor/credentials",
    "/api/permission/probe",
    "/api/permission/issue-by-key",
    "/api/permission/issue-by-factors",
    "/api/permission/refresh",
    "/api/account/credentials",
    "/api/account/email-intent",
    "/api/account/email-confirm",
)
DEFAULT_FACTORS: Final[Mapping[str, Any]] = {
    "combination": "or",
    "types": [{"combination": "just", "type": "credentials"},
              {"combination": "just", "type": "email"}],
}
_HASHER = pbkdf2_sha256.using(rounds=1000)
_MAX_BODY = 1 << 20


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> _Refusal:
    return _Refusal(400, "VALIDATION_ERROR", message)


@dataclass(frozen=True)
class Merchant:
    """A merchant: its id and its key (``permissions=None`` allows any permission)."""

    merchant_id: str
    key: str = field(repr=False)
    permissions: frozenset[str] | None = None


@dataclass(frozen=True)
class Call:
    """One request the authority received, and the status it answered (0: dropped)."""

    path: str
    status: int
    request_id: str | None


@dataclass(frozen=True)
class RefreshAttempt:
    """One refresh request: the refresh token's ids (``None`` if unreadable), the outcome."""

    token_id: str | None
    refresh_id: str | None
    accepted: bool


@dataclass
class _Account:
    account_id: str
    merchant_id: str | None
    username: str | None = None
    password_hash: str | None = field(default=None, repr=False)
    email: str | None = None


@dataclass
class _Chain:
    """The live refresh token of one ``tokenId`` and what it grants."""

    account_id: str | None
    merchant_id: str | None
    permissions: list[str]
    refresh_id: str | None


@dataclass
class _Fault:
    kind: str  # "status", "drop", "delay" or "garble"
    status: int = 503
    seconds: float = 0.0


@dataclass
class _Operation:
    email: str
    code: str = field(repr=False)
    merchant_id: str | None
    used: bool = False


def _path(path: str) -> str:
    """``"permission/refresh"``, ``"/permission/refresh"`` or ``"/api/permission/refresh"``."""
    if not path.startswith("/"):
        path = "/" + path
    if not path.startswith("/api/"):
        path = "/api" + path
    if path not in PATHS:
        raise ValueError(f"unknown Spatium endpoint: {path}")
    return path


def _strings(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(f"{name} must be a list of non-empty strings")
    if not value:
        raise _bad(f"{name} must not be empty")
    return list(value)


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > 8192:
        raise _bad(f"{name} must be a non-empty string")
    return value


class SpatiumAuthority:
    """A Spatium authorization service for tests, on ``127.0.0.1`` in a daemon thread.

    ``clock`` (aware datetimes, e.g. ``FakeClock``, or seconds) decides ``iat``/``exp``
    and every expiry check; lifetimes are seconds.  A merchant with every permission is
    made at once (``merchant``, ``merchant_key``, ``merchant_id``).  ``url`` is the base
    URL to give clients, ``http://127.0.0.1:PORT/authorization/v1``; ``stop()`` then
    ``start()`` serves again on the same port.
    """

    def __init__(self, *, clock: Callable[[], datetime | float] | None = None,
                 permission_lifetime: float = 900, refresh_lifetime: float = 7200,
                 security_lifetime: float = 900, utility_lifetime: float = 900,
                 factors: Mapping[str, Any] = DEFAULT_FACTORS,
                 private_key: rsa.RSAPrivateKey | None = None,
                 base_path: str = "/authorization/v1", port: int = 0) -> None:
        self._clock = clock
        self.permission_lifetime = permission_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.security_lifetime = security_lifetime
        self.utility_lifetime = utility_lifetime
        self.factors: Mapping[str, Any] = json.loads(json.dumps(factors))
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._private_key = private_key if private_key is not None else \
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key_pem: str = self._private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
        ).decode("ascii")
        self._hs_secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._merchants: dict[str, Merchant] = {}
        self._chains: dict[str, _Chain] = {}
        self._operations: dict[str, _Operation] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._counts: Counter[str] = Counter()
        self._calls: list[Call] = []
        self._refreshes: list[RefreshAttempt] = []
        self.sent_emails: list[tuple[str, str]] = []
        self.merchant = self.add_merchant()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"SpatiumAuthority({state})"

    # -- running ---------------------------------------------------------------------------
    def start(self) -> SpatiumAuthority:
        """Serve on 127.0.0.1 (the same port as before after a ``stop``); returns self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.authority = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"spatium-authority-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: new connections are refused until ``start()``."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> SpatiumAuthority:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL for clients: ``http://127.0.0.1:PORT/authorization/v1``."""
        if not self._port:
            raise RuntimeError("the authority has not been started")
        return f"http://127.0.0.1:{self._port}{self.base_path}"

    def now(self) -> float:
        """The authority's time, seconds since 1970."""
        if self._clock is None:
            return time.time()
        value = self._clock()
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.timestamp()
        return float(value)

    # -- setting up ------------------------------------------------------------------------
    @property
    def merchant_key(self) -> str:
        return self.merchant.key

    @property
    def merchant_id(self) -> str:
        return self.merchant.merchant_id

    def add_merchant(self, permissions: Iterable[str] | None = None) -> Merchant:
        """A new merchant with a fresh key; ``permissions`` limits what its key may get."""
        merchant = Merchant(str(uuid.uuid4()), secrets.token_urlsafe(48),
                            None if permissions is None else frozenset(permissions))
        with self._lock:
            self._merchants[merchant.key] = merchant
        return merchant

    def add_account(self, username: str, password: str, *,
                    merchant_id: str | None = None) -> str:
        """An account with the credentials factor; returns its id."""
        account = _Account(str(uuid.uuid4()), merchant_id or self.merchant_id, username,
                           _HASHER.hash(password))
        with self._lock:
            if any(a.username == username for a in self._accounts.values()):
                raise ValueError(f"the username {username!r} is taken")
            self._accounts[account.account_id] = account
        return account.account_id

    def account(self, account_id: str) -> dict[str, str | None]:
        """What is known about an account (no password hash)."""
        with self._lock:
            found = self._accounts[account_id]
        return {"accountId": found.account_id, "merchantId": found.merchant_id,
                "username": found.username, "email": found.email}

    # -- faults and revocation -------------------------------------------------------------
    def fail(self, path: str, status: int = 503, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` are answered with ``status``."""
        self._add_fault(path, _Fault("status", status=status), times)

    def drop(self, path: str, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` are read, then the connection is closed
        without an answer (and the request is not processed)."""
        self._add_fault(path, _Fault("drop"), times)

    def delay(self, path: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` wait ``seconds`` (real time), then are
        processed normally."""
        self._add_fault(path, _Fault("delay", seconds=seconds), times)

    def garble(self, path: str, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` are answered 200 with a body that is not
        JSON (as a misconfigured proxy would), and the request is not processed."""
        self._add_fault(path, _Fault("garble", status=200), times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, path: str, fault: _Fault, times: int) -> None:
        key = _path(path)
        with self._lock:
            self._faults.setdefault(key, deque()).extend(fault for _ in range(times))

    def revoke(self, token_id: str) -> None:
        """Make the live refresh token of ``token_id`` stale."""
        with self._lock:
            chain = self._chains.get(token_id)
            if chain is not None:
                chain.refresh_id = None

    def revoke_all(self) -> None:
        """Make every live refresh token stale."""
        with self._lock:
            for chain in self._chains.values():
                chain.refresh_id = None

    # -- observing -------------------------------------------------------------------------
    def count(self, path: str) -> int:
        """How many requests reached ``path`` (faulted ones included)."""
        key = _path(path)
        with self._lock:
            return self._counts[key]

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def refresh_attempts(self) -> list[RefreshAttempt]:
        with self._lock:
            return list(self._refreshes)

    @property
    def last_email_code(self) -> str | None:
        """The code of the last confirmation email "sent"."""
        with self._lock:
            return self.sent_emails[-1][1] if self.sent_emails else None

    def email_code(self, email: str) -> str:
        """The code of the last confirmation email sent to ``email``."""
        with self._lock:
            for to, code in reversed(self.sent_emails):
                if to == email:
                    return code
        raise LookupError(f"no email was sent to {email!r}")

    def verify_permission_token(self, token: str) -> dict[str, Any]:
        """The claims of a permission token this authority issued and that is still valid;
        ``jwt.InvalidTokenError`` otherwise."""
        claims = self._decode(token, "RS256", "permissionTokenSchema")
        if claims is None:
            raise jwt.InvalidTokenError("not a valid permission token")
        return claims

    # -- tokens ----------------------------------------------------------------------------
    def _sign_rs(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._private_key, algorithm="RS256")

    def _sign_hs(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._hs_secret, algorithm="HS256")

    def _decode(self, token: object, algorithm: str, magic: str) -> dict[str, Any] | None:
        """Claims of a genuine, unexpired token of this kind, else ``None``."""
        if not isinstance(token, str):
            return None
        key: Any = self._private_key.public_key() if algorithm == "RS256" else self._hs_secret
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[algorithm], issuer=ISSUER,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "require": ["exp", "iat", "iss"]},
            )
        except jwt.InvalidTokenError:
            return None
        exp = claims.get("exp")
        if claims.get("magic") != magic or not isinstance(exp, (int, float)) \
                or self.now() >= exp:
            return None
        return claims

    def _pair(self, token_id: str, chain: _Chain) -> dict[str, Any]:
        """Issue a pair for ``chain`` (under the lock); the previous refresh token dies."""
        iat = int(self.now())
        chain.refresh_id = str(uuid.uuid4())
        self._chains[token_id] = chain
        access_exp = iat + int(self.permission_lifetime)
        refresh_exp = iat + int(self.refresh_lifetime)
        access = self._sign_rs({
            "magic": "permissionTokenSchema", "accountId": chain.account_id,
            "merchantId": chain.merchant_id, "permissions": chain.permissions,
            "iat": iat, "exp": access_exp, "iss": ISSUER,
        })
        refresh = self._sign_rs({
            "magic": "permissionRefreshTokenSchema", "tokenId": token_id,
            "tokenRefreshId": chain.refresh_id, "iat": iat, "exp": refresh_exp, "iss": ISSUER,
        })
        return {
            "permissionToken": {"permissionToken": access, "issuer": ISSUER,
                                "expiresAt": access_exp},
            "permissionRefreshToken": {"permissionRefreshToken": refresh, "issuer": ISSUER,
                                       "expiresAt": refresh_exp},
        }

    def _bearer(self, headers: Mapping[str, str], permission: str) -> dict[str, Any]:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Refusal(401, "UNAUTHORIZED", "a Bearer permission token is required")
        claims = self._decode(token.strip(), "RS256", "permissionTokenSchema")
        if claims is None:
            raise _Refusal(401, "INVALID_PERMISSION_TOKEN", "the permission token is not valid")
        if permission not in (claims.get("permissions") or ()):
            raise _Refusal(403, "PERMISSION_DENIED", f"the {permission!r} permission is required")
        return claims

    # -- endpoints (called with the body and lower-case headers) ---------------------------
    def _handle(self, path: str, body: dict[str, Any], headers: Mapping[str, str],
                ) -> dict[str, Any]:
        handler = {
            "/api/security-factor/credentials": self._credentials_factor,
            "/api/permission/probe": self._probe,
            "/api/permission/issue-by-key": self._issue_by_key,
            "/api/permission/issue-by-factors": self._issue_by_factors,
            "/api/permission/refresh": self._refresh,
            "/api/account/credentials": self._account_credentials,
            "/api/account/email-intent": self._email_intent,
            "/api/account/email-confirm": self._email_confirm,
        }[path]
        return handler(body, headers)

    def _credentials_factor(self, body: dict[str, Any], headers: Mapping[str, str],
                            ) -> dict[str, Any]:
        username, password = _string(body, "username"), _string(body, "password")
        with self._lock:
            found = next((a for a in self._accounts.values() if a.username == username), None)
        # Verify against a dummy hash for an unknown user, so both take the same time.
        hashed = found.password_hash if found is not None and found.password_hash else None
        ok = _HASHER.verify(password, hashed or _DUMMY_HASH)
        if found is None or hashed is None or not ok:
            raise _Refusal(401, "INVALID_CREDENTIALS", "wrong username or password")
        iat = int(self.now())
        exp = iat + int(self.security_lifetime)
        token = self._sign_hs({"magic": "securityTokenSchema", "accountId": found.account_id,
                               "securityFactorType": "credentials", "iat": iat, "exp": exp,
                               "iss": ISSUER})
        return {"securityToken": token, "issuer": ISSUER, "expiresAt": exp}

    def _probe(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        _strings(body.get("permissions"), "permissions")
        return dict(self.factors)

    def _issue_by_key(self, body: dict[str, Any], headers: Mapping[str, str],
                      ) -> dict[str, Any]:
        token_id = _string(body, "tokenId")
        permissions = _strings(body.get("permissions"), "permissions")
        key = _string(body, "merchantKey")
        with self._lock:
            merchant = next((m for k, m in self._merchants.items()
                             if hmac.compare_digest(k.encode(), key.encode())), None)
            if merchant is None:
                raise _Refusal(401, "INVALID_MERCHANT_KEY", "the merchant key is not valid")
            if merchant.permissions is not None and not set(permissions) <= merchant.permissions:
                raise _Refusal(403, "PERMISSION_DENIED",
                               "the merchant key does not grant these permissions")
            return self._pair(token_id, _Chain(None, merchant.merchant_id, permissions, None))

    def _issue_by_factors(self, body: dict[str, Any], headers: Mapping[str, str],
                          ) -> dict[str, Any]:
        token_id = _string(body, "tokenId")
        permissions = _strings(body.get("permissions"), "permissions")
        tokens = _strings(body.get("securityTokens"), "securityTokens")
        claims = [self._decode(t, "HS256", "securityTokenSchema") for t in tokens]
        if any(c is None for c in claims):
            raise _Refusal(401, "INVALID_SECURITY_TOKEN", "a security token is not valid")
        accounts = {c["accountId"] for c in claims if c is not None}
        if len(accounts) != 1:
            raise _Refusal(400, "FACTOR_MISMATCH", "the security tokens are of different accounts")
        types = {c.get("securityFactorType") for c in claims if c is not None}
        if not _satisfied(self.factors, types):
            raise _Refusal(403, "INSUFFICIENT_FACTORS",
                           "the security factors do not suffice for these permissions")
        (account_id,) = accounts
        with self._lock:
            account = self._accounts.get(account_id)
            if account is None:
                raise _Refusal(401, "INVALID_SECURITY_TOKEN", "the account does not exist")
            return self._pair(token_id, _Chain(account_id, account.merchant_id, permissions,
                                               None))

    def _refresh(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        raw = body.get("permissionRefreshToken")
        claims = self._decode(raw, "RS256", "permissionRefreshTokenSchema")
        token_id = refresh_id = None
        if claims is None and isinstance(raw, str):
            try:  # for the log only: which token was presented
                unverified = jwt.decode(raw, options={"verify_signature": False})
                token_id, refresh_id = unverified.get("tokenId"), unverified.get("tokenRefreshId")
            except jwt.InvalidTokenError:
                pass
        elif claims is not None:
            token_id, refresh_id = claims.get("tokenId"), claims.get("tokenRefreshId")
        with self._lock:
            chain = self._chains.get(token_id) if isinstance(token_id, str) else None
            live = claims is not None and chain is not None and chain.refresh_id is not None \
                and hmac.compare_digest(chain.refresh_id, str(refresh_id))
            self._refreshes.append(RefreshAttempt(
                token_id if isinstance(token_id, str) else None,
                refresh_id if isinstance(refresh_id, str) else None, live))
            if not live or chain is None or not isinstance(token_id, str):
                raise _Refusal(401, "INVALID_REFRESH_TOKEN",
                               "the refresh token is expired, stale or not valid")
            return self._pair(token_id, chain)

    def _account_credentials(self, body: dict[str, Any], headers: Mapping[str, str],
                             ) -> dict[str, Any]:
        claims = self._bearer(headers, "register")
        username, password = _string(body, "username"), _string(body, "password")
        account = _Account(str(uuid.uuid4()), claims.get("merchantId"), username,
                           _HASHER.hash(password))
        with self._lock:
            if any(a.username == username for a in self._accounts.values()):
                raise _Refusal(409, "USERNAME_TAKEN", "the username is taken")
            self._accounts[account.account_id] = account
        return {"accountId": account.account_id}

    def _email_intent(self, body: dict[str, Any], headers: Mapping[str, str],
                      ) -> dict[str, Any]:
        claims = self._bearer(headers, "register")
        email = _string(body, "email")
        if "@" not in email:
            raise _bad("email must be an email address")
        operation_id = str(uuid.uuid4())
        code = f"{secrets.randbelow(10**6):06d}"
        iat = int(self.now())
        token = self._sign_hs({"magic": "utilityTokenSchema", "operationId": operation_id,
                               "iat": iat, "exp": iat + int(self.utility_lifetime),
                               "iss": ISSUER})
        with self._lock:
            self._operations[operation_id] = _Operation(email, code, claims.get("merchantId"))
            self.sent_emails.append((email, code))
        return {"utilityToken": token}

    def _email_confirm(self, body: dict[str, Any], headers: Mapping[str, str],
                       ) -> dict[str, Any]:
        claims = self._decode(_string(body, "utilityToken"), "HS256", "utilityTokenSchema")
        code = _string(body, "code")
        if claims is None:
            raise _Refusal(401, "INVALID_UTILITY_TOKEN", "the utility token is not valid")
        with self._lock:
            operation = self._operations.get(str(claims.get("operationId")))
            if operation is None or operation.used:
                raise _Refusal(401, "INVALID_UTILITY_TOKEN", "the operation is unknown or done")
            if not hmac.compare_digest(operation.code.encode(), code.encode()):
                raise _Refusal(400, "INVALID_CODE", "the confirmation code is wrong")
            operation.used = True
            account = _Account(str(uuid.uuid4()), operation.merchant_id, email=operation.email)
            self._accounts[account.account_id] = account
        return {"accountId": account.account_id}

    # -- bookkeeping for the handler -------------------------------------------------------
    def _begin(self, path: str) -> _Fault | None:
        with self._lock:
            self._counts[path] += 1
            faults = self._faults.get(path)
            return faults.popleft() if faults else None

    def _record(self, path: str, status: int, request_id: str | None) -> None:
        with self._lock:
            self._calls.append(Call(path, status, request_id))


_DUMMY_HASH: Final = _HASHER.hash(secrets.token_urlsafe(16))


def _satisfied(node: Mapping[str, Any], types: set[Any]) -> bool:
    combination = node.get("combination")
    if combination == "just":
        return node.get("type") in types
    children = node.get("types") or []
    if combination == "or":
        return any(_satisfied(c, types) for c in children)
    if combination == "and":
        return all(_satisfied(c, types) for c in children)
    return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    authority: SpatiumAuthority


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so stop() really ends the service.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read ``calls`` instead

    def do_GET(self) -> None:
        self._dispatch(read=False)

    def do_POST(self) -> None:
        self._dispatch(read=True)

    def _dispatch(self, *, read: bool) -> None:
        authority = self.server.authority
        request_id = self.headers.get("request-id") or str(uuid.uuid4())
        raw = b""
        if read:
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                self._answer(None, 413, request_id, error=("PAYLOAD_TOO_LARGE", "bad length"))
                return
            raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if authority.base_path and path.startswith(authority.base_path + "/"):
            path = path[len(authority.base_path):]
        elif authority.base_path:
            path = ""
        if path not in PATHS:
            self._answer(None, 404, request_id, error=("NOT_FOUND", "no such endpoint"))
            return
        if not read:
            self._answer(path, 405, request_id, error=("METHOD_NOT_ALLOWED", "use POST"))
            return
        fault = authority._begin(path)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault is not None and fault.kind == "drop":
            authority._record(path, 0, request_id)
            self.close_connection = True
            return
        elif fault is not None and fault.kind == "garble":
            authority._record(path, 200, request_id)
            page = b"<html><body>Welcome to the proxy</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        elif fault is not None:
            self._answer(path, fault.status, request_id,
                         error=("SERVICE_UNAVAILABLE" if fault.status >= 500 else "INJECTED",
                                "injected failure"))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._answer(path, 400, request_id, error=("VALIDATION_ERROR",
                                                       "the body must be a JSON object"))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            data = authority._handle(path, body, headers)
        except _Refusal as refusal:
            self._answer(path, refusal.status, request_id, error=(refusal.code, refusal.message))
            return
        self._answer(path, 200, request_id, data=data)

    def _answer(self, path: str | None, status: int, request_id: str, *,
                data: dict[str, Any] | None = None,
                error: tuple[str, str] | None = None) -> None:
        payload: dict[str, Any] = {"requestId": request_id}
        if error is not None:
            payload["error"] = {"code": error[0], "message": error[1]}
        else:
            payload["data"] = data
        raw = json.dumps(payload).encode()
        if path is not None:
            self.server.authority._record(path, status, request_id)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("request-id", request_id)
        self.end_headers()
        self.wfile.write(raw)
