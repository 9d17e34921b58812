"""What a Spatium authorization service does, without HTTP: the state and the endpoints
of ``authtoken.testing.SpatiumAuthority`` (which serves them, in ``_spatium``).

Accounts, merchants and their keys, one live refresh token per ``tokenId`` (issuing a new
pair for a ``tokenId`` makes the previous refresh token stale; each is good for one
refresh), email confirmations; permission and refresh tokens are RS256 JWTs with
Spatium's claims, security and utility tokens HS256 JWTs.  ``SpatiumService.handle_call``
answers one call's body with its ``data``, or raises ``Refusal``.  Passwords are stored
as PBKDF2 hashes (libpass), with few rounds: it is a test double.

Needs the ``testing`` extra: ``pip install "authtoken[testing]"``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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

from .._clock import ClockOrSeconds, seconds_clock

__all__ = ["DEFAULT_FACTORS", "ISSUER", "PATHS", "Merchant", "RefreshAttempt", "Refusal",
           "SpatiumService"]

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


class Refusal(Exception):
    """What the service answers instead of ``data``: a status and an error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> Refusal:
    return Refusal(400, "VALIDATION_ERROR", message)


@dataclass(frozen=True)
class Merchant:
    """A merchant: its id and its key (``permissions=None`` allows any permission)."""

    merchant_id: str
    key: str = field(repr=False)
    permissions: frozenset[str] | None = None


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
class _Operation:
    email: str
    code: str = field(repr=False)
    merchant_id: str | None
    used: bool = False


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


class SpatiumService:
    """The state and the endpoints of a Spatium authorization service (no HTTP).

    ``clock`` (aware datetimes, e.g. ``FakeClock``, or seconds) decides ``iat``/``exp``
    and every expiry check; lifetimes are seconds.  A merchant with every permission is
    made at once (``merchant``, ``merchant_key``, ``merchant_id``).
    """

    def __init__(self, *, clock: ClockOrSeconds | None = None,
                 permission_lifetime: float = 900, refresh_lifetime: float = 7200,
                 security_lifetime: float = 900, utility_lifetime: float = 900,
                 factors: Mapping[str, Any] = DEFAULT_FACTORS,
                 private_key: rsa.RSAPrivateKey | None = None) -> None:
        self._now = seconds_clock(clock)
        self.permission_lifetime = permission_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.security_lifetime = security_lifetime
        self.utility_lifetime = utility_lifetime
        self.factors: Mapping[str, Any] = json.loads(json.dumps(factors))
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
        self._refreshes: list[RefreshAttempt] = []
        self.sent_emails: list[tuple[str, str]] = []
        self.merchant = self.add_merchant()

    def now(self) -> float:
        """The service's time, seconds since 1970."""
        return self._now()

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


    # -- revocation ------------------------------------------------------------------------
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
            raise Refusal(401, "UNAUTHORIZED", "a Bearer permission token is required")
        claims = self._decode(token.strip(), "RS256", "permissionTokenSchema")
        if claims is None:
            raise Refusal(401, "INVALID_PERMISSION_TOKEN", "the permission token is not valid")
        if permission not in (claims.get("permissions") or ()):
            raise Refusal(403, "PERMISSION_DENIED", f"the {permission!r} permission is required")
        return claims

    # -- endpoints (called with the body and lower-case headers) ---------------------------
    def handle_call(self, path: str, body: dict[str, Any], headers: Mapping[str, str],
                    ) -> dict[str, Any]:
        """The ``data`` of the answer to one call to ``path`` (one of ``PATHS``) with a
        JSON object as ``body`` and lower-case ``headers``; ``Refusal`` instead of an
        error answer."""
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
            raise Refusal(401, "INVALID_CREDENTIALS", "wrong username or password")
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
                raise Refusal(401, "INVALID_MERCHANT_KEY", "the merchant key is not valid")
            if merchant.permissions is not None and not set(permissions) <= merchant.permissions:
                raise Refusal(403, "PERMISSION_DENIED",
                               "the merchant key does not grant these permissions")
            return self._pair(token_id, _Chain(None, merchant.merchant_id, permissions, None))

    def _issue_by_factors(self, body: dict[str, Any], headers: Mapping[str, str],
                          ) -> dict[str, Any]:
        token_id = _string(body, "tokenId")
        permissions = _strings(body.get("permissions"), "permissions")
        tokens = _strings(body.get("securityTokens"), "securityTokens")
        claims = [self._decode(t, "HS256", "securityTokenSchema") for t in tokens]
        if any(c is None for c in claims):
            raise Refusal(401, "INVALID_SECURITY_TOKEN", "a security token is not valid")
        accounts = {c["accountId"] for c in claims if c is not None}
        if len(accounts) != 1:
            raise Refusal(400, "FACTOR_MISMATCH", "the security tokens are of different accounts")
        types = {c.get("securityFactorType") for c in claims if c is not None}
        if not _satisfied(self.factors, types):
            raise Refusal(403, "INSUFFICIENT_FACTORS",
                           "the security factors do not suffice for these permissions")
        (account_id,) = accounts
        with self._lock:
            account = self._accounts.get(account_id)
            if account is None:
                raise Refusal(401, "INVALID_SECURITY_TOKEN", "the account does not exist")
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
                raise Refusal(401, "INVALID_REFRESH_TOKEN",
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
                raise Refusal(409, "USERNAME_TAKEN", "the username is taken")
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
            raise Refusal(401, "INVALID_UTILITY_TOKEN", "the utility token is not valid")
        with self._lock:
            operation = self._operations.get(str(claims.get("operationId")))
            if operation is None or operation.used:
                raise Refusal(401, "INVALID_UTILITY_TOKEN", "the operation is unknown or done")
            if not hmac.compare_digest(operation.code.encode(), code.encode()):
                raise Refusal(400, "INVALID_CODE", "the confirmation code is wrong")
            operation.used = True
            account = _Account(str(uuid.uuid4()), operation.merchant_id, email=operation.email)
            self._accounts[account.account_id] = account
        return {"accountId": account.account_id}


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
