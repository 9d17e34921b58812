"""The login check: ``LoginGate`` turns a token string into a ``Principal``, or refuses.

Theory of operation
-------------------
A login checks, in this order and stopping at the first failure: the signature (no
storage touched, so forged strings cost nothing), existence and secret (one read by key,
then ``compare_digest`` of SHA-256 digests -- unknown, malformed and wrong-secret are all
the same ``InvalidToken``), revocation, expiry, script and code bindings
(``binding_refusal``), and for a token with ``max_uses`` a use left.  Only after the
secret matched does the caller learn that a token is revoked, expired or spent.

Nothing about a token is cached: every login reads storage (``Repository.login_row``),
so a revocation made by any process is refused by the next login everywhere.  What a
login *writes* -- usage and its audit event -- goes to the engine's ``Trail`` and is
written in batches.  The one exception is a use-limited token: its use is spent in
storage by the login itself (``UseLimits.spend_use``, one atomic statement), so that of
two processes racing for the last use exactly one wins, and no refused login spends one.
The row a login reads carries the token's ancestors, so ``Principal.chain`` costs no
second read.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from ._codec import TokenCodec
from ._errors import (
    ArgumentTypeError,
    InvalidToken,
    ScriptNotAuthorized,
    TokenExhausted,
    TokenExpired,
    TokenRevoked,
)
from ._expiry import from_micros
from ._jobs import stored_digest
from ._repository import LoginRow, Repository, UseLimits
from ._scopes import Script, binding_refusal
from ._token import Principal
from ._trail import Trail

__all__ = ["LoginGate"]


class LoginGate:
    """Checks logins against one repository, recording them on ``trail``."""

    __slots__ = ("_codec", "_now_us", "_repository", "_trail")

    def __init__(self, codec: TokenCodec, repository: Repository, trail: Trail,
                 now_us: Callable[[], int]) -> None:
        self._codec = codec
        self._repository = repository
        self._trail = trail
        self._now_us = now_us

    def login(self, token_string: str | bytes, script: Script | None) -> Principal:
        """The principal of ``token_string`` logging in as ``script``, or the
        ``LoginError`` of the first check that fails (see the module notes)."""
        if script is not None and not isinstance(script, Script):
            raise ArgumentTypeError(f"script must be a Script or None, not {type(script).__name__}")
        try:
            key, digest = self._codec.read(token_string)
        except InvalidToken:
            self._trail.invalid(script)
            raise
        row = self._repository.login_row(key)
        if row is None or not hmac.compare_digest(
                row.secret_hash,
                digest if row.max_uses is None else stored_digest(digest, row.max_uses)):
            self._trail.invalid(script)
            raise InvalidToken("not a valid authtoken token string")
        now_us = self._now_us()
        if row.revoked_at is not None:
            self._trail.login(now_us, key, row.user, script, "TokenRevoked")
            raise TokenRevoked("the token was revoked", token_key=key,
                               revoked_at=from_micros(row.revoked_at))
        if row.expires is not None and now_us >= row.expires:
            self._trail.login(now_us, key, row.user, script, "TokenExpired")
            expired_at = from_micros(row.expires)
            raise TokenExpired(f"the token expired at {expired_at.isoformat()}",
                               token_key=key, expired_at=expired_at)
        scope = row.scope
        scopes = tuple(scope.split(" "))
        # Most tokens bind no script: two substring tests (as many as before code
        # pinning; "fs:" is in both "vfs:" and "ufs:") spare them the binding check.
        if "fs:" in scope or "sha256:" in scope:
            refusal = binding_refusal(scopes, script)
            if refusal is not None:
                self._trail.login(now_us, key, row.user, script, "ScriptNotAuthorized")
                raise ScriptNotAuthorized(refusal, token_key=key)
        counted = row.max_uses is None
        if not counted:
            self._spend(key, now_us, row, script)
        self._trail.login(now_us, key, row.user, script, counted=counted)
        ancestors = row.ancestors
        return Principal(
            user=row.user, token_key=key, scopes=scopes, data=row.data,
            expires=None if row.expires is None else from_micros(row.expires),
            script=script, parent_key=row.parent_key, run_id=row.run_id,
            chain=() if ancestors is None else (*ancestors.split(" "), key),
        )

    def _spend(self, key: str, now_us: int, row: LoginRow, script: Script | None) -> None:
        """Spend one use of a token with ``max_uses`` in storage, or refuse the login."""
        repository = self._repository
        if isinstance(repository, UseLimits) and repository.spend_use(key, now_us):
            return
        again = repository.login_row(key)
        if again is not None and again.revoked_at is not None:  # revoked meanwhile
            self._trail.login(now_us, key, row.user, script, "TokenRevoked")
            raise TokenRevoked("the token was revoked", token_key=key,
                               revoked_at=from_micros(again.revoked_at))
        self._trail.login(now_us, key, row.user, script, "TokenExhausted")
        raise TokenExhausted(f"every use of the token is spent ({row.max_uses} in all)",
                             token_key=key, max_uses=row.max_uses)
