"""Reading an issuer's JSON answers: what every OAuth2 / OIDC flow and the JWKS fetch share.

Each helper turns an answer it cannot use into an ``IssuerError`` that carries the
answer's status and request id and says what was wrong with it, never what it held.
Spatium's ``data`` envelope is read by its own protocol (``spatium/_protocol.py``).
"""

from __future__ import annotations

from typing import Any, Final

from .._errors import InvalidArgument, IssuerError
from ._core import Response
from ._urls import credential_url

__all__ = ["JSON_ACCEPT", "MAX_TOKEN_LENGTH", "answer_url", "json_object", "malformed",
           "succeeded"]

#: The header of a request that wants a JSON answer.
JSON_ACCEPT: Final = (("accept", "application/json"),)
#: The longest token an issuer may hand out, or a verifier is asked to read (characters).
MAX_TOKEN_LENGTH: Final = 65536


def succeeded(response: Response) -> bool:
    """Whether the issuer answered with a 2xx status."""
    return 200 <= response.status < 300


def malformed(response: Response, what: str, problem: str) -> IssuerError:
    """The error for an answer that says ``problem`` instead of what ``what`` needs."""
    return IssuerError(f"{what}: the issuer's answer {problem}",
                       status=response.status, request_id=response.request_id)


def json_object(response: Response, what: str) -> dict[str, Any]:
    """The answer's body as a JSON object; else ``IssuerError``."""
    body = response.json()
    if not isinstance(body, dict):
        raise malformed(response, what, "is not a JSON object")
    return body


def answer_url(response: Response, value: object, what: str, field: str, *, origin: str,
               base: bool = False) -> str:
    """A URL read from an issuer's document, held to the rule for URL arguments
    (``_urls.credential_url``) and never a downgrade from ``origin``, the URL the document
    came from; else ``IssuerError``."""
    if not isinstance(value, str) or not value:
        raise malformed(response, what, f"has no usable {field!r}")
    try:
        return credential_url(value, field, base=base, origin=origin)
    except InvalidArgument as exc:
        raise IssuerError(f"{what}: the issuer's answer was refused: {exc}",
                          status=response.status, request_id=response.request_id) from None
