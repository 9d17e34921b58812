"""The bearer credential of a request, and how a refusal is answered (RFC 6750).

Theory of operation
-------------------
Every web integration does the same three things, written once here and free of any
framework so each of them only carries values in and out:

1. :func:`bearer_credential` reads the credential: exactly one ``Authorization`` header
   of scheme ``Bearer`` (any case) holding one token.  It refuses a request that carries
   a token in its query string -- the ``access_token`` parameter, or any value that is a
   token string (``find_tokens``) -- whatever its header says, because query strings land
   in access logs and proxies' histories: the token must move to the header (and, being
   logged already, should be revoked).  A header of another scheme (``Basic`` from a
   proxy, a session's own) is no bearer credential at all: it is told apart as
   ``missing``, like no header, so an integration can leave the request to its other
   authentication or anonymous -- unless the header holds one of our tokens under the
   wrong scheme (``Token atk_...``, ``Beareratk_...``, a bare ``atk_...``), which is a
   malformed request to be answered.
2. :func:`login` logs the credential in through ``Security`` (the engine decides; nothing
   here checks a token) and turns a ``LoginError`` into a :class:`BearerRefused`.
3. :func:`missing_scopes` and :func:`challenge` give what the answer needs: the scopes
   a principal lacks (exact, as the principal's ``scopes`` hold them) and the
   ``WWW-Authenticate`` value.

A :class:`BearerRefused` carries the RFC 6750 ``error`` code -- ``None`` when no
bearer credential was sent (the RFC asks for no code then), ``invalid_request`` for a
malformed, repeated or misplaced one, ``invalid_token`` for one the engine refused --
and the HTTP ``status`` to answer: 401 for all of these, 503 when storage cannot tell
(``RepositoryError``).  No message, description or challenge ever holds the credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import parse_qsl, unquote

from .._errors import (
    AuthTokenError,
    InvalidToken,
    LoginError,
    RepositoryError,
    ScriptNotAuthorized,
    TokenExhausted,
    TokenExpired,
    TokenRevoked,
)
from .._redact import redact
from .._scan import find_tokens
from .._scopes import Script
from .._security import Security
from .._shape import BODY_PATTERN, KEY_CHARS, KEY_LENGTH, PART_CHARS, PREFIX, SECRET_LENGTH
from .._token import Principal

__all__ = [
    "MAX_CREDENTIAL_LENGTH",
    "RETRY_AFTER",
    "BearerRefused",
    "bearer_credential",
    "challenge",
    "login",
    "missing_scopes",
]

#: Longer credentials are refused before any parsing: nothing legitimate is that long.
MAX_CREDENTIAL_LENGTH: Final = 4096
#: Seconds a 503 (storage unreachable) asks the client to wait, in ``Retry-After``.
RETRY_AFTER: Final = 5
#: The query parameter RFC 6750 defines for a token, refused here whatever it holds.
QUERY_PARAMETER: Final = "access_token"
#: What a token must be sent as; every refusal of the request's form says it.
HOW: Final = "send the token in an 'Authorization: Bearer <token>' header"
# RFC 7230's tchar: what the auth-scheme at the start of the header is made of.
_SCHEME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 7230's OWS: the only whitespace a header value may be padded with.
_OWS: Final = " \t"
# RFC 6750's b64token, the credential after "Bearer" and its spaces: ASCII, no
# whitespace of any kind, no comma, no quote.
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9._~+/-]+=*")
# RFC 6750's scope-token characters (no quote, no backslash, no space, ASCII only).
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")

# What a client is told of each refusal of the engine: the RFC's code says the token is
# bad; the description names the check, never the token.  Expired and revoked are told
# only after the secret matched (the engine raises them only then), as everywhere else.
_DESCRIPTIONS: Final[dict[type[LoginError], str]] = {
    InvalidToken: "the token is invalid",
    TokenExpired: "the token has expired",
    TokenRevoked: "the token was revoked",
    TokenExhausted: "the token has no use left",
    ScriptNotAuthorized: "the token is not for this service",
}


class BearerRefused(AuthTokenError):
    """The request's bearer credential is missing or refused.

    ``error`` is the RFC 6750 code (``None``: no bearer credential was sent;
    ``"invalid_request"``: the request's form is wrong; ``"invalid_token"``: the engine
    refused the token), ``description`` a sentence for the client, ``status`` the HTTP
    status to answer (401, or 503 when storage cannot tell) and ``reason`` the class name
    of the engine's error, if any.  Neither holds the credential.
    """

    def __init__(self, description: str, *, error: str | None, status: int = 401,
                 reason: str | None = None) -> None:
        description = redact(description)
        super().__init__(description)
        self.description = description
        self.error = error
        self.status = status
        self.reason = reason

    @property
    def missing(self) -> bool:
        """Whether no bearer credential was sent: no ``Authorization`` header, or one of
        another scheme (an anonymous request, as far as tokens go)."""
        return self.error is None and self.status == 401

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value that answers this refusal."""
        if self.status != 401:
            return challenge()
        return challenge(self.error, self.description if self.error else None)


def challenge(error: str | None = None, description: str | None = None, *,
              scopes: Iterable[str] = ()) -> str:
    """A ``WWW-Authenticate: Bearer`` value with the RFC 6750 ``error``, its
    ``error_description`` and, for ``insufficient_scope``, the ``scope`` needed.

    Characters a quoted string may not hold are dropped from the description; a scope
    that is not an RFC 6750 scope-token (a quote, a backslash, non-ASCII) is left out of
    ``scope`` rather than breaking the header.
    """
    parts = []
    if error is not None:
        parts.append(f'error="{error}"')
    if description:
        text = "".join(c for c in description if 0x20 <= ord(c) < 0x7F and c not in '"\\')
        parts.append(f'error_description="{text}"')
    shown = [s for s in scopes if _SCOPE_TOKEN.fullmatch(redact(s))]
    if shown:
        parts.append(f'scope="{" ".join(shown)}"')
    return "Bearer" + (" " + ", ".join(parts) if parts else "")


# A token's key and secret, with its prefix or without (what is left when it was cut off).
_LEAKED: Final = re.compile(
    rf"{PREFIX}[{KEY_CHARS}]{{{KEY_LENGTH}}}\.[{PART_CHARS}]{{{SECRET_LENGTH}}}|{BODY_PATTERN}")


def _query_holds_token(query: str) -> bool:
    """Whether ``query`` (a raw query string) carries a token anywhere."""
    if not query:
        return False
    pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=None)
    if any(name.lower() == QUERY_PARAMETER for name, _ in pairs):
        return True
    texts = [query, *(part for pair in pairs for part in pair)]
    # Decoded once more too: a token percent-encoded twice is still a token in a log.
    texts += [unquote(text) for text in texts]
    # A string with a checksum, or the key and secret of any string (an earlier one has
    # no checksum; either way the secret is what must not reach a log).
    return any(find_tokens(text) or _LEAKED.search(text) for text in texts)


def bearer_credential(authorization: Sequence[str], query: str = "") -> str:
    """The token of a request whose ``Authorization`` header values are
    ``authorization`` (every value sent, in order) and whose raw query string is
    ``query``.

    Raises ``BearerRefused``: with ``error=None`` (``missing``) when no
    ``Authorization`` header was sent or its scheme is another one (``Basic``, ...);
    with ``"invalid_request"`` when a token is in the query string, when there are two
    headers, when the header is empty or starts with no scheme, when it holds a token
    under a scheme other than ``Bearer``, or when the value is not exactly one token
    (two words, a comma, absurdly long).  The message says how to send it and never
    holds the credential.

    The grammar is RFC 6750's, with nothing lenient about it: ``Bearer``, one or more
    spaces (SP; a tab is refused with a message saying so), and one b64token --
    ASCII letters, digits and ``-._~+/``, then any ``=``.  Padding of spaces and tabs
    around the whole value (RFC 7230's OWS) is dropped; any other whitespace, a
    no-break space or a line separator say, is refused wherever it is, never trimmed,
    so a value logs in only when what follows ``Bearer`` is exactly the token.
    """
    if _query_holds_token(query):
        raise BearerRefused(
            "a token in the query string is refused, since query strings are written to "
            f"access logs: revoke it, and {HOW}", error="invalid_request")
    if not authorization:
        raise BearerRefused(f"no credentials: {HOW}", error=None)
    if len(authorization) > 1:
        raise BearerRefused(f"more than one Authorization header: {HOW}",
                            error="invalid_request")
    value = authorization[0]
    if len(value) > MAX_CREDENTIAL_LENGTH:
        raise BearerRefused("the Authorization header is too long", error="invalid_request")
    value = value.strip(_OWS)
    if not value:
        raise BearerRefused(f"the Authorization header is empty: {HOW}",
                            error="invalid_request")
    match = _SCHEME.match(value)
    if match is None:
        raise BearerRefused(f"the Authorization header does not start with a scheme: {HOW}",
                            error="invalid_request")
    scheme, credential = match.group(), value[match.end():]
    if scheme.lower() != "bearer":
        if scheme.lower().startswith("bearer") or "atk_" in value:
            raise BearerRefused(
                f"a token must follow the scheme Bearer and a space: {HOW}",
                error="invalid_request")
        raise BearerRefused(f"the Authorization scheme is not Bearer: {HOW}", error=None)
    if not credential:
        raise BearerRefused(f"no token after Bearer: {HOW}", error="invalid_request")
    if credential[0] == "\t":
        raise BearerRefused(
            f"Bearer and the token must be separated by a space, not a tab: {HOW}",
            error="invalid_request")
    token = credential.lstrip(" ")
    if credential[0] != " " or _B64TOKEN.fullmatch(token) is None:
        raise BearerRefused(f"the Authorization header must hold one token: {HOW}",
                            error="invalid_request")
    return token


def login(security: Security, credential: str, script: Script | None) -> Principal:
    """Log ``credential`` in for ``script``: the ``Principal``, counted and audited.

    Blocks on storage (call it in a worker thread from async code).  Raises
    ``BearerRefused``: ``invalid_token`` for any ``LoginError`` (its class name in
    ``reason``), status 503 for a ``RepositoryError``.  The engine's own error is not
    chained, so nothing the caller sent travels with it.
    """
    try:
        return security.login_by_auth_token(credential, script=script)
    except LoginError as exc:
        kind = next((k for k in _DESCRIPTIONS if isinstance(exc, k)), InvalidToken)
        refusal = BearerRefused(_DESCRIPTIONS[kind], error="invalid_token",
                                reason=type(exc).__name__)
    except RepositoryError as exc:
        refusal = BearerRefused("the token store cannot be reached; try again later",
                                error=None, status=503, reason=type(exc).__name__)
    raise refusal


def missing_scopes(principal: Principal, required: Iterable[str]) -> list[str]:
    """The ``required`` scopes that ``principal.scopes`` does not hold (exact match),
    in order, each once."""
    missing: list[str] = []
    for scope in required:
        if scope not in principal.scopes and scope not in missing:
            missing.append(scope)
    return missing
