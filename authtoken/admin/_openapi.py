"""The OpenAPI 3.1 document of the admin API (``GET /openapi.json``).

It names every JSON route -- and the form routes of RFC 7662 introspection and RFC 7009
revocation -- every body and answer, and points every error at the shared problem
responses (``application/problem+json``); ``tests/admin`` checks that the document and
the routes agree, and CI runs schemathesis against it.  The HTML page under ``/ui`` is
not part of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .._explain import REASONS
from .._jobs import MAX_RUN_ID
from .._scopes import MAX_IDENTIFIERS
from ._api import MAX_AUDIT_EVENTS
from ._oauth import FORM
from ._problems import PROBLEM_JSON
from ._upstreams import upstream_openapi

__all__ = ["openapi_document"]

def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str, *headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    if headers:
        response["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return response


def _json(description: str, schema: str, **extra: Any) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema)}}, **extra}


def _responses(ok: Mapping[str, Any], *errors: str) -> dict[str, Any]:
    """``ok`` plus references to the shared problem responses: 401, 429, 503 always."""
    shared = ("401", *errors, "429", "503")
    return {**ok, **{code: {"$ref": f"#/components/responses/{code}"} for code in shared},
            "default": {"$ref": "#/components/responses/default"}}


_NULLABLE_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_USER: Final = {"type": ["string", "integer"],
                "description": "A user: an integer or a string (1 to 256 characters)."}
_USER_TEXT: Final = {"type": "string", "minLength": 1, "maxLength": 256,
                     "pattern": r"^[^\u0000-\u001f\u007f-\u009f]+$"}
#: The largest max_uses the store keeps (a signed 64-bit integer).
_MAX_USES: Final = 2**63 - 1
_RUN_ID: Final = {"type": "string", "minLength": 1, "maxLength": MAX_RUN_ID,
                  "pattern": r"^[^\u0000-\u001f\u007f-\u009f]+$"}
_KEY_PARAM: Final = {"name": "key", "in": "path", "required": True,
                     "description": "The token's key (16 characters of a-z and 2-7).",
                     "schema": {"type": "string"}}


def _fields(required: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "scope": {
                "description": "Identifiers separated by whitespace, an integer script "
                               "key (vfs:ikey?K), or a list of identifiers and keys.",
                "oneOf": [
                    {"type": "string"},
                    {"type": "integer"},
                    {"type": "array", "items": {"type": ["string", "integer"]}},
                ],
            },
            "data": {"type": ["string", "null"],
                     "description": "A payload for the token's users, at most 65,536 bytes "
                                    "of UTF-8."},
            "description": {"type": "string", "maxLength": 1024},
            "expires": {"type": ["string", "null"],
                        "description": "An ISO 8601 time, a duration such as '90m', "
                                       "'12h', '30d' or '2w' (from now), 'never', or null "
                                       "(never).  Omitted on creation: 30 days, and never "
                                       "later than the caller's own token."},
            "max_uses": {"type": ["integer", "null"], "minimum": 1, "maximum": _MAX_USES,
                         "description": "How many logins the token allows (null: no "
                                        "limit).  Counted exactly: a login with no use "
                                        "left is refused.  On an existing token it can be "
                                        "changed, but not added or removed."},
            "max_lifetime": {"type": ["string", "null"],
                             "description": "A duration such as '90d' that makes the token "
                                            "renewable (POST /tokens/{key}/renew) up to "
                                            "created_at plus it; null: not renewable.  "
                                            "Needs an expiry no later than that."},
        },
    }
    if required:
        schema["required"] = ["scope"]
        schema["properties"] |= {
            "bind_paths": {
                "type": "array", "items": {"type": "string", "minLength": 1},
                "maxItems": MAX_IDENTIFIERS,
                "description": "Scripts the token is for, by plain path as the script "
                               "runner sees it ('/jobs/my job.py'): each becomes a ufs: "
                               "binding, escaped for you, added to the scope."},
            "bind_keys": {
                "type": "array", "items": {"type": "integer"},
                "maxItems": MAX_IDENTIFIERS,
                "description": "Scripts the token is for, by integer key: each becomes "
                               "vfs:ikey?K, added to the scope."},
        }
    return schema


# Form fields are text: a script key is written as its digits.  Blank script fields name
# no script; fields not named here are ignored (RFC 6749 §3.1), so none is forbidden.
_INTROSPECTION_REQUEST: Final = {
    "type": "object",
    "properties": {
        "token": {"type": "string", "description": "The token to check.  Missing, empty "
                  "or not a token of this store: {\"active\": false}."},
        "token_type_hint": {"type": "string", "description": "Ignored: there is one kind "
                            "of token."},
        "script_key": {"type": "string", "pattern": r"^(-?[0-9]{1,600})?$",
                       "description": "The key of the script the service logs in as."},
        "script_path": {"type": "string", "pattern": r"^[^\u0000]*$",
                        "description": "The path of the script, as a script runner "
                                       "sees it."},
        "script_digest": {"type": "string", "pattern": r"^((sha256:)?[0-9a-f]{64})?$",
                          "description": "The SHA-256 of the code it runs, in lower-case "
                                         "hex."},
    },
}
_INTROSPECTION: Final = {
    "type": "object",
    "required": ["active"],
    "properties": {
        "active": {"type": "boolean"},
        "sub": {"type": "string", "description": "The token's user, as text."},
        "scope": {"type": "string", "description": "Its scopes, separated by spaces."},
        "exp": {"type": "integer", "description": "When it expires, in seconds since "
                "1970 (UTC); absent for a token that never expires."},
        "iat": {"type": "integer", "description": "When it was authorized, in seconds "
                "since 1970 (UTC)."},
        "token_type": {"const": "atk"},
        "authtoken_key": {"type": "string", "description": "The token's key."},
        "run_id": {"type": ["string", "null"], "description": "The run of a job a run "
                   "token was made for."},
        "chain": {"type": "array", "items": {"type": "string"}, "description": "The keys "
                  "from the root of its delegation tree down to the token itself."},
    },
}
_REVOCATION_REQUEST: Final = {
    "type": "object",
    "required": ["token"],
    "properties": {
        "token": {"type": "string", "description": "The token to revoke."},
        "token_type_hint": {"type": "string", "description": "Ignored."},
    },
}


def _oauth_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """The paths ``/introspect`` (RFC 7662) and ``/revoke`` (RFC 7009)."""

    def form(schema: str) -> dict[str, Any]:
        return {"required": True, "content": {FORM: {"schema": _ref(schema)}}}

    no_cache = {name: {"schema": {"type": "string"}}
                for name in ("Cache-Control", "Pragma")}
    introspect = {"post": {
        "operationId": "introspectToken",
        "summary": "Check a token for a service (RFC 7662 token introspection)",
        "description": "A login by the script the form names: counted, audited and "
                       "spending a use of a token with max_uses.  Any refusal is 200 "
                       "{\"active\": false} and nothing more; a store that cannot be "
                       "reached is a 503, never an inactive token.  The query string is "
                       "not read.",
        "requestBody": form("IntrospectionRequest"),
        "responses": _responses({"200": _json("The token's state.", "Introspection",
                                              headers=no_cache)},
                                "400", "413", "415", "422"),
    }}
    revoke = {"post": {
        "operationId": "revokeTokenString",
        "summary": "Revoke a token by its string (RFC 7009 token revocation)",
        "description": "Revokes the token and every token derived from it.  200 with an "
                       "empty body whether or not the string was a known token; a "
                       "non-admin may revoke only its own user's tokens (403 and "
                       "nothing changes otherwise).",
        "requestBody": form("RevocationRequest"),
        "responses": _responses({"200": {"description": "Revoked, or no such token.",
                                         "headers": no_cache}},
                                "400", "403", "413", "415", "422"),
    }}
    return introspect, revoke


def openapi_document(root_path: str = "", *, upstreams: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API; ``root_path`` is where it is mounted;
    ``upstreams``: with the routes of an application given a broker."""
    token_routes = {
        "get": {
            "operationId": "listTokens",
            "summary": "List tokens, newest first",
            "description": "The caller's tokens; an admin may name any user.  A decimal "
                           "user also matches the integer user.",
            "parameters": [
                {"name": "user", "in": "query", "required": False, "schema": _USER_TEXT,
                 "description": "Whose tokens (default: the caller's)."},
                {"name": "include_revoked", "in": "query", "required": False,
                 "schema": {"type": "boolean", "default": False}},
                {"name": "run_id", "in": "query", "required": False, "schema": _RUN_ID,
                 "description": "Only the tokens made for this run of a job."},
            ],
            "responses": _responses({"200": _json("The tokens.", "TokenList")},
                                    "403", "422"),
        },
        "post": {
            "operationId": "createToken",
            "summary": "Authorize a new token for the caller",
            "description": "The answer carries the token string, this once only, and "
                           "warnings about a scope that is probably not what its writer "
                           "meant (a comma, a binding in capitals, a path with a space).  "
                           "A caller authenticated by a delegation token creates a child "
                           "of it, no wider than it.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("CreateToken")}}},
            "responses": _responses(
                {"201": _json("The token, with its string.", "NewToken", headers={
                    "Location": {"description": "The token's URL.",
                                 "schema": {"type": "string"}}}, links={
                    name: {"operationId": operation,
                           "parameters": {"key": "$response.body#/key"}}
                    for name, operation in (("ShowToken", "showToken"),
                                            ("UpdateToken", "updateToken"),
                                            ("RenewToken", "renewToken"),
                                            ("RevokeToken", "revokeToken"))})},
                "400", "403", "409", "413", "415", "422"),
        },
    }
    one_token = {
        "parameters": [_KEY_PARAM],
        "get": {
            "operationId": "showToken",
            "summary": "Show one token",
            "responses": _responses({"200": _json("The token.", "TokenView")},
                                    "403", "404"),
        },
        "patch": {
            "operationId": "updateToken",
            "summary": "Change a token's scope, data, description or expiry",
            "description": "Only the fields given change.  A caller authenticated by a "
                           "delegation token cannot make scope or expiry wider than its "
                           "own.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("UpdateToken")}}},
            "responses": _responses({"200": _json("The updated token.", "TokenView")},
                                    "400", "403", "404", "409", "413", "415", "422"),
        },
        "delete": {
            "operationId": "revokeToken",
            "summary": "Revoke a token and every token derived from it (idempotent)",
            "description": "Revoking is not deleting: the token stays readable, with "
                           "revoked_at set, and can no longer log in or be changed.",
            "responses": _responses({"204": {"description": "Revoked."}},
                                    "403", "404", "409"),
        },
    }
    renew = {
        "parameters": [_KEY_PARAM],
        "post": {
            "operationId": "renewToken",
            "summary": "Renew a renewable token",
            "description": "Sets expires to the earlier of now + by and created_at + "
                           "max_lifetime -- and no later than the parent token's expiry "
                           "or a policy's cap -- never shortening it.  by defaults to the "
                           "token's first lifetime.  The body may be left out.  A token "
                           "without max_lifetime is 422; a revoked or expired one 409; "
                           "a caller authenticated by a delegation token renews only that "
                           "token and those derived from it (else 403).",
            "requestBody": {"required": False, "content": {
                "application/json": {"schema": _ref("RenewToken")}}},
            "responses": _responses({"200": _json("The renewed token.", "TokenView")},
                                    "400", "403", "404", "409", "413", "415", "422"),
        },
    }
    check = {
        "parameters": [_KEY_PARAM],
        "get": {
            "operationId": "checkToken",
            "summary": "Why a login with a token would be refused now",
            "description": "What a login with the token, by the script the query names "
                           "(none: a login that names no script), would get now -- the "
                           "login's checks in its order, the secret aside: ok, the "
                           "reason (the class name of the login's error) and a message "
                           "saying what to change.  Reads only.  Another user's token "
                           "is 403; a key that is not shaped as a key, a script_key "
                           "that is no integer or a script_digest that is not 64 "
                           "lower-case hex digits is 422.",
            "parameters": [
                {"name": "script_key", "in": "query", "required": False,
                 "schema": {"type": "integer"},
                 "description": "The key of the script that logs in."},
                {"name": "script_path", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1},
                 "description": "The path of the script, as the script runner sees it."},
                {"name": "script_digest", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^(sha256:)?[0-9a-f]{64}$"},
                 "description": "The SHA-256 of the code it runs, in lower-case hex."},
            ],
            "responses": _responses({"200": _json("The verdict.", "LoginCheck")},
                                    "403", "404", "422"),
        },
    }
    revoke_all = {
        "post": {
            "operationId": "revokeAll",
            "summary": "Revoke every token of a user",
            "description": "And, transitively, the tokens derived from them.  A decimal "
                           "user also revokes the integer user's tokens.",
            "parameters": [{"name": "user", "in": "path", "required": True,
                            "schema": _USER_TEXT}],
            "responses": _responses({"200": _json("How many were revoked.", "Revoked")},
                                    "403", "422"),
        },
    }
    audit = {
        "get": {
            "operationId": "readAudit",
            "summary": "Read the audit trail, newest first",
            "description": "A non-admin sees only events about its own user's tokens.",
            "parameters": [
                {"name": "user", "in": "query", "required": False, "schema": _USER_TEXT},
                {"name": "token", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "A token key."},
                {"name": "since", "in": "query", "required": False,
                 "schema": {"type": "string", "format": "date-time"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_EVENTS}},
            ],
            "responses": _responses({"200": _json("The events.", "AuditList")},
                                    "403", "422"),
        },
    }
    introspect, revoke = _oauth_paths()
    openapi = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI document.",
                                  "content": {"application/json": {
                                      "schema": {"type": "object"}}}}},
        },
    }
    token_view = {
        "type": "object",
        "required": ["key", "user", "scope", "scopes", "description", "data", "expires",
                     "created_at", "updated_at", "revoked_at", "last_used_at", "use_count",
                     "parent_key", "max_uses", "max_lifetime", "run_id"],
        "properties": {
            "key": {"type": "string"},
            "user": _USER,
            "scope": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
            "data": {"type": ["string", "null"]},
            "expires": {**_NULLABLE_TIME, "description": "null: never expires."},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "revoked_at": _NULLABLE_TIME,
            "last_used_at": _NULLABLE_TIME,
            "use_count": {"type": "integer", "minimum": 0},
            "parent_key": {"type": ["string", "null"]},
            "max_uses": {"type": ["integer", "null"], "minimum": 1,
                         "description": "null: no limit; use_count is then exact."},
            "max_lifetime": {"type": ["string", "null"],
                             "description": "A duration such as '90d': renewable up to "
                                            "created_at plus it; null: not renewable."},
            "run_id": {"type": ["string", "null"],
                       "description": "The run of a job a run token was made for."},
        },
    }
    problem_codes = {
        "400": "The request is malformed (a Content-Length that is not a number).",
        "401": "No or bad credentials.",
        "403": "The caller may not do that (another user's token, or wider than its own "
               "token), or a policy forbids it (type ...:policy-violation, with rule and "
               "limit).",
        "404": "No token with that key.",
        "409": "The token is revoked, expired (renewal), or was changed concurrently.",
        "413": "The body is too large.",
        "415": "The body is not application/json (application/x-www-form-urlencoded for "
               "/introspect and /revoke).",
        "422": "The body or a parameter is invalid.",
        "429": "Too many failed authentications from this address.",
        "503": "The token store or the identity provider cannot be reached.",
        "default": "Any other error.",
    }
    responses: dict[str, Any] = {code: _problem(text) for code, text in problem_codes.items()}
    responses["401"] = _problem(problem_codes["401"], "WWW-Authenticate")
    responses["429"] = _problem(problem_codes["429"], "Retry-After")
    upstream_paths, upstream_schemas = upstream_openapi(_responses, _USER_TEXT) \
        if upstreams else ({}, {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authtoken admin API",
            "version": "1",
            "description": "Manage delegation tokens: list, authorize, show, update, "
                           "renew, revoke, revoke all of a user's, ask why a login "
                           "would be refused, read the audit trail, and -- for "
                           "services in any language -- introspect (RFC 7662) and "
                           "revoke (RFC 7009) a token by its string.  "
                           "Errors are RFC 9457 problems (application/problem+json) and "
                           "never carry a token string.",
        },
        "servers": [{"url": root_path or "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/tokens": token_routes,
            "/tokens/{key}": one_token,
            "/tokens/{key}/renew": renew,
            "/tokens/{key}/check": check,
            "/users/{user}/revoke-all": revoke_all,
            "/audit": audit,
            "/introspect": introspect,
            "/revoke": revoke,
            "/openapi.json": openapi,
            **upstream_paths,
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "What the application's authenticator accepts: "
                                          "an atk_ delegation token, an OIDC access token "
                                          "or a Spatium permission token."},
            },
            "headers": {
                "WWW-Authenticate": {"description": "The Bearer challenge.",
                                     "schema": {"type": "string"}},
                "Retry-After": {"description": "Seconds to wait.",
                                "schema": {"type": "integer", "minimum": 1}},
            },
            "responses": responses,
            "schemas": {
                "TokenView": token_view,
                "NewToken": {"allOf": [_ref("TokenView"), {
                    "type": "object", "required": ["token"],
                    "properties": {
                        "token": {
                            "type": "string", "pattern": "^atk_",
                            "description": "The token string: shown this once, never "
                                           "again.",
                        },
                        "warnings": {
                            "type": "array", "items": {"type": "string"},
                            "description": "What the scope, as written, does that its "
                                           "writer probably did not mean; present only "
                                           "when there is something to say.  The token "
                                           "was made as written.",
                        },
                    },
                }]},
                "TokenList": {"type": "object", "required": ["tokens"], "properties": {
                    "tokens": {"type": "array", "items": _ref("TokenView")}}},
                "CreateToken": _fields(required=True),
                "UpdateToken": _fields(required=False),
                "RenewToken": {"type": "object", "additionalProperties": False,
                               "properties": {"by": {
                                   "type": ["string", "null"],
                                   "description": "A duration such as '7d' (null or "
                                                  "left out: the token's first "
                                                  "lifetime)."}}},
                "LoginCheck": {
                    "type": "object", "required": ["ok", "reason", "message"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "reason": {"enum": [*sorted(REASONS), None], "description":
                                   "null when ok; else the class name of the error the "
                                   "login would raise."},
                        "message": {"type": "string", "description":
                                    "What to change, or what the login would get."},
                    }},
                "IntrospectionRequest": _INTROSPECTION_REQUEST,
                "Introspection": _INTROSPECTION,
                "RevocationRequest": _REVOCATION_REQUEST,
                "Revoked": {"type": "object", "required": ["revoked"], "properties": {
                    "revoked": {"type": "integer", "minimum": 0}}},
                "Script": {"type": "object", "required": ["key", "path"], "properties": {
                    "key": {"type": ["integer", "null"]},
                    "path": {"type": ["string", "null"]}}},
                "AuditEvent": {
                    "type": "object",
                    "required": ["at", "actor", "action", "token_key", "run_id", "script",
                                 "outcome", "reason"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "actor": {"type": ["string", "null"]},
                        "action": {"enum": ["authorize", "update", "renew", "revoke",
                                            "revoke_all", "login", "authenticate",
                                            "upstream"]},
                        "token_key": {"type": ["string", "null"]},
                        "run_id": {"type": ["string", "null"]},
                        "script": {"oneOf": [_ref("Script"), {"type": "null"}]},
                        "outcome": {"enum": ["ok", "refused"]},
                        "reason": {"type": ["string", "null"]},
                        "count": {"type": "integer", "minimum": 2, "description":
                                  "only on a summary event: how many like login "
                                  "attempts of one kind and minute it stands for"},
                    },
                },
                **upstream_schemas,
                "AuditList": {"type": "object", "required": ["events"], "properties": {
                    "events": {"type": "array", "items": _ref("AuditEvent")}}},
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string", "format": "uri-reference"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "rule": {"type": "string", "description": "Of a policy violation: "
                                 "the rule (max_lifetime, require_expiry, "
                                 "max_tokens_per_user)."},
                        "limit": {"type": ["string", "integer", "boolean", "null"],
                                  "description": "Of a policy violation: the rule's limit."},
                    },
                },
            },
        },
    }
