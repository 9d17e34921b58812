"""No token string, secret or database password in storage, messages, reprs or logs."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import authtoken
from authtoken import (
    AuthToken,
    AuthTokenError,
    ConcurrentUpdate,
    InvalidArgument,
    InvalidToken,
    IssuerError,
    LoginError,
    MemoryRepository,
    PermissionDenied,
    RepositoryError,
    ScopeError,
    Script,
    ScriptNotAuthorized,
    ScriptRunner,
    Security,
    Session,
    SessionExpired,
    SessionNotEstablished,
    SQLRepository,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
    open_security,
)
from authtoken.testing import FakeClock


def secret_parts(string: str) -> list[bytes]:
    """Everything that must never leak: the string, its secret, the secret's bytes."""
    _, secret, signature, *_checksum = string.split(".")
    raw = base64.urlsafe_b64decode(secret + "=")
    return [string.encode(), secret.encode(), signature.encode(), raw]


def test_database_file_holds_no_token_or_secret(tmp_path: Path) -> None:
    """After authorize, login, update and revoke, the SQLite files contain no secret."""
    clock = FakeClock()
    repo = SQLRepository(f"sqlite:///{tmp_path / 'tokens.db'}")
    strings = []
    with Security(repo, secret_keys="k", clock=clock) as security:
        for n in range(20):
            token = AuthToken("a vfs:ikey?1", data="payload")
            strings.append(security.authorize_token(token, user=n))
            security.login_by_auth_token(strings[-1], script=Script(key=1))
            token.description = "changed"
            security.update_auth_token(token)
        security.revoke_auth_token(strings[0])
        security.flush()
        # read while open (WAL not yet checkpointed) and after close
        contents = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    contents += b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"payload" in contents  # the check can see what is stored
    for string in strings:
        for part in secret_parts(string):
            assert part not in contents


def test_database_file_is_private(tmp_path: Path) -> None:
    """A SQLite file the engine creates is readable by its owner only."""
    SQLRepository(f"sqlite:///{tmp_path / 'new.db'}").close()
    assert (tmp_path / "new.db").stat().st_mode & 0o077 == 0


def test_no_secret_in_reprs_errors_or_logs(security: Security, clock: FakeClock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Every object and error built around a token string shows none of it."""
    caplog.set_level(logging.DEBUG)
    token = AuthToken("a vfs:ikey?1", data="d", expires="1h")
    string = security.authorize_token(token, user="alice")
    session = ScriptRunner(security, Script(key=1)).login_by_auth_token(string)
    shown: list[str] = [repr(token), str(token), repr(session), repr(security),
                        repr(session.principal), repr(security._codec),
                        repr(security.repository)]
    errors: list[AuthTokenError] = []
    attempts = [
        lambda: security.login_by_auth_token(string, script=Script(key=2)),
        lambda: security.login_by_auth_token(string[:-1] + "A"),
        lambda: security.login_by_auth_token(string + "x"),
        lambda: security.login_by_auth_token(string.upper()),
        lambda: security.authorize_token(token, user="alice"),
        lambda: Session(security).authorize_token(AuthToken("a")),
        lambda: session.principal.require("missing") if session.principal else None,
    ]
    clock.advance(hours=2)
    attempts.append(lambda: security.login_by_auth_token(string, script=Script(key=1)))
    for attempt in attempts:
        with pytest.raises(AuthTokenError) as info:
            attempt()
        errors.append(info.value)
    security.revoke_auth_token(string)
    with pytest.raises(AuthTokenError) as info:
        security.login_by_auth_token(string, script=Script(key=1))
    errors.append(info.value)
    for error in errors:
        shown += [str(error), repr(error), repr(vars(error))]
    shown += [record.getMessage() for record in caplog.records]
    text = "\n".join(shown).encode()
    for part in secret_parts(string):
        assert part.decode("latin-1") not in text.decode("latin-1")


def test_public_names_are_pinned() -> None:
    """The package exports exactly these names, sorted."""
    assert authtoken.__all__ == sorted(authtoken.__all__)
    assert authtoken.__all__ == [
        "AuthToken", "AuthTokenError", "ConcurrentUpdate", "FoundToken", "InvalidArgument",
        "InvalidToken", "IssuerError", "LoginCheck", "LoginError", "MemoryRepository",
        "PermissionDenied", "Policy",
        "PolicyViolation", "Principal", "Repository", "RepositoryError", "RunToken",
        "SQLRepository", "ScopeError", "Script", "ScriptNotAuthorized", "ScriptRunner",
        "Security", "Session", "SessionExpired", "SessionNotEstablished", "TokenExhausted",
        "TokenExpired", "TokenNotFound", "TokenRevoked", "UserKey",
        "default_database_path", "default_key_path", "digest_binding", "escape",
        "find_tokens", "key_binding",
        "open_security", "path_binding", "scope_warnings", "unescape",
    ]
    for name in authtoken.__all__:
        assert getattr(authtoken, name) is not None


def test_error_tree() -> None:
    """The error classes form the documented tree."""
    e = authtoken
    assert issubclass(e.InvalidArgument, (e.AuthTokenError, ValueError))
    assert issubclass(e.ScopeError, e.InvalidArgument)
    for cls in (e.InvalidToken, e.TokenExpired, e.TokenRevoked, e.ScriptNotAuthorized):
        assert issubclass(cls, e.LoginError) and issubclass(cls, e.AuthTokenError)
    assert issubclass(e.TokenNotFound, (e.AuthTokenError, LookupError))
    for cls in (e.PermissionDenied, e.RepositoryError, e.IssuerError, e.LoginError):
        assert issubclass(cls, e.AuthTokenError)
    assert issubclass(e.SessionNotEstablished, e.IssuerError)
    assert issubclass(e.SessionExpired, e.IssuerError)
    assert not issubclass(e.InvalidToken, ValueError)


def test_import_is_light() -> None:
    """import authtoken does not pull in SQLAlchemy."""
    import subprocess
    import sys

    code = "import sys, authtoken; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_token_string_given_as_key_is_not_echoed(security: Security) -> None:
    """Passing a token string (or its secret) where a key belongs leaks none of it."""
    from authtoken import TokenNotFound

    string = security.authorize_token(AuthToken("a"), user=1)
    secret = string.split(".")[1]
    for wrong in (string, string[:40], secret):
        for call in (security.get_auth_token, security.revoke_auth_token_by_key,
                     Session(security, user=1).revoke_auth_token_by_key):
            with pytest.raises(TokenNotFound) as info:
                call(wrong)
            text = str(info.value) + repr(info.value) + repr(vars(info.value))
            assert secret[:8] not in text
            assert info.value.token_key is None


# -- token strings passed by mistake ------------------------------------------------------
_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=16, max_size=16)
# A secret or signature alone is recognised by its mix of upper case, lower case and
# digits (a 43-character run without it is more likely a name than a secret); one of
# about 1,400 real secrets lacks a digit, so the generated ones are filtered the same way.
_PARTS = st.binary(min_size=32, max_size=32).map(
    lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")).filter(
    lambda part: not (part.isalpha() or part.upper() == part or part.lower() == part))
#: Token-shaped strings: right prefix, alphabets and lengths (the signature need not hold).
TOKENS = st.builds(lambda key, secret, sig: f"atk_{key}.{secret}.{sig}", _KEYS, _PARTS, _PARTS)


def exposed(thing: object, seen: set[int] | None = None) -> str:
    """What a user sees of ``thing``: str and repr; of an error, args, attributes, chain.

    A model's attributes are its data (a token string accepted as a scope stays one);
    only its ``repr`` must hide it.
    """
    seen = set() if seen is None else seen
    if id(thing) in seen:
        return ""
    seen.add(id(thing))
    shown = [str(thing), repr(thing)]
    if not isinstance(thing, BaseException):
        return "\n".join(shown)
    shown += [repr(arg) for arg in thing.args]
    shown += [repr(getattr(thing, "__notes__", ""))]
    for linked in (thing.__cause__, thing.__context__):
        if linked is not None:
            shown.append(exposed(linked, seen))
    attributes: dict[str, object] = {}
    with contextlib.suppress(TypeError):
        attributes.update(vars(thing))
    for cls in type(thing).__mro__:
        for name in getattr(cls, "__slots__", ()):
            with contextlib.suppress(AttributeError):
                attributes[name] = getattr(thing, name)
    for name, value in attributes.items():
        if name.startswith("__") or (callable(value) and not isinstance(value, type)):
            continue
        if isinstance(value, (str, int, tuple, list, frozenset, set, type(None))):
            shown.append(f"{name}={value!r}")
    return "\n".join(shown)


def assert_hidden(token: str, *things: object) -> None:
    """Neither ``token`` nor its secret nor its signature shows in any of ``things``."""
    _, secret, signature, *_checksum = token[4:].split(".")
    text = "\n".join(exposed(thing) for thing in things)
    for part in (token, secret, signature, token[4:40]):
        assert part not in text
        assert part.upper() not in text


def raised(call: Callable[[], object]) -> AuthTokenError:
    """The AuthTokenError that ``call`` raises."""
    with pytest.raises(AuthTokenError) as info:
        call()
    return info.value


def _memory_security() -> Security:
    return Security(MemoryRepository(), secret_keys="k", clock=FakeClock())


@settings(max_examples=40, deadline=None)
@given(TOKENS)
def test_token_as_expires_is_not_echoed(token: str) -> None:
    """A token string given as expires is refused without showing it, chain included."""
    for value in (token, " " + token, token[:64], token.upper(), token[4:],
                  token.split(".")[1], token.split(".")[1][:40] + "x"):
        error = raised(lambda value=value: AuthToken("a", expires=value))
        assert isinstance(error, InvalidArgument)
        assert_hidden(token, error)
        with pytest.raises(InvalidArgument) as info:
            AuthToken("a").expires = value
        assert_hidden(token, info.value)


@settings(max_examples=40, deadline=None)
@given(TOKENS)
def test_token_in_a_scope_is_not_echoed(token: str) -> None:
    """A token string glued into a binding or holding whitespace in a list is masked."""
    for scope in ("vfs:" + token, ["vfs:" + token], "ufs:%zz" + token,
                  [token + " b"], ["x" * 500 + token], "vfs:" + token.upper()):
        error = raised(lambda scope=scope: AuthToken(scope))
        assert isinstance(error, ScopeError)
        assert_hidden(token, error)
        assert error.identifier is None or "[redacted]" in error.identifier or (
            token[:20] not in error.identifier)


@settings(max_examples=25, deadline=None)
@given(TOKENS)
def test_token_accepted_as_scope_or_user_is_masked(token: str) -> None:
    """A token string stored as an opaque scope or as a user shows in no repr or error."""
    security = _memory_security()
    token_obj = AuthToken(["a", token, "vfs:ikey?1"])
    string = security.authorize_token(token_obj, user=token)
    principal = security.login_by_auth_token(string, script=Script(key=1))
    session = Session(security, user=token, script=Script(key=1, path="/x/" + token))
    runner = ScriptRunner(security, Script(key=1, path="/x/" + token))
    logged_in = runner.login_by_auth_token(string)
    denied = raised(lambda: principal.require(token, "missing"))
    assert isinstance(denied, PermissionDenied)
    assert "missing" in denied.missing_scopes
    child = raised(lambda: logged_in.authorize_token(AuthToken(["vfs:ikey?1", token + "x"])))
    assert_hidden(token, token_obj, principal, session, runner, logged_in, denied, child,
                  security.list_auth_tokens()[0], security.repository.get(principal.token_key),
                  Script(path="/jobs/" + token))


@pytest.mark.parametrize("make", [
    lambda s: AuthTokenError(f"boom {s}"),
    lambda s: AuthTokenError("two", s),
    lambda s: InvalidArgument(f"bad {s}"),
    lambda s: ScopeError(f"bad {s}", identifier="vfs:" + s),
    lambda s: ConcurrentUpdate(f"changed {s}", token_key=s),
    lambda s: LoginError(f"no {s}", token_key=s),
    lambda s: InvalidToken(s),
    lambda s: TokenExpired(s, token_key=s),
    lambda s: TokenRevoked(s, token_key=s),
    lambda s: ScriptNotAuthorized(s, token_key=s),
    lambda s: TokenNotFound(f"no token {s}", token_key=s),
    lambda s: PermissionDenied(f"lacks {s}", missing_scopes=[s, "vfs:" + s]),
    lambda s: RepositoryError(f"failed for {s}"),
    lambda s: IssuerError(f"refused {s}", status=400, request_id=s, code=s),
    lambda s: SessionNotEstablished(s, request_id=s, code=s),
    lambda s: SessionExpired(s, request_id=s, code=s),
])
def test_every_error_masks_at_construction(make: Callable[[str], AuthTokenError]) -> None:
    """Each error class masks a token string in its message and in every attribute."""
    token = _memory_security().authorize_token(AuthToken("a"), user=1)
    assert_hidden(token, make(token))


def test_constant_messages_are_kept_as_given() -> None:
    """An error message with nothing to mask is kept, object and all (the login path)."""
    message = "not a valid authtoken token string"
    error = InvalidToken(message)
    assert error.args == (message,) and error.args[0] is message
    assert str(ScopeError("x", identifier="reports:read").identifier) == "reports:read"
    assert PermissionDenied("x", missing_scopes=["a", "b"]).missing_scopes == ("a", "b")


# -- database passwords ---------------------------------------------------------------------
PASSWORD = "SENTINELpw"
PG_URLS = [
    f"postgresql://u@127.0.0.1:1/db?password={PASSWORD}",
    f"postgresql://u:{PASSWORD}@127.0.0.1:1/db",
]
BAD_PG_URLS = [
    f"postgresql://u@127.0.0.1:99999/db?password={PASSWORD}",
    f"postgresql://u:{PASSWORD}@127.0.0.1:99999/db",
    f"postgresql://u@127.0.0.1:1/db?password={PASSWORD}&no_such_option=1",
    f"postgresql://u:{PASSWORD}@127.0.0.1:1/db?no_such_option=1",
    f"postgresql://u:{PASSWORD}@127.0.0.1:port/db",
    f"postgresql://u@127.0.0.1:port/db?password={PASSWORD}",
    f"postgresql+nodriver://u@127.0.0.1:1/db?password={PASSWORD}",
]


@pytest.mark.parametrize("url", PG_URLS)
def test_no_password_in_repository_or_security_repr(url: str) -> None:
    """repr(SQLRepository) and repr(Security) hide the password, in either place."""
    repo = SQLRepository(url)
    try:
        security = Security(repo, secret_keys="k")
        assert PASSWORD not in repr(repo)
        assert PASSWORD not in repr(security)
    finally:
        repo.close()


class _Talkative(MemoryRepository):
    """A repository whose repr shows a URL with its password, as a careless one might."""

    def __repr__(self) -> str:
        return f"_Talkative('postgresql://u@db/app?password={PASSWORD}')"


def test_security_repr_masks_what_its_repository_shows() -> None:
    """repr(Security) masks a password even when its repository's repr does not."""
    assert PASSWORD not in repr(Security(_Talkative(), secret_keys="k"))


@pytest.mark.parametrize("url", PG_URLS + BAD_PG_URLS)
def test_no_password_in_errors(url: str) -> None:
    """Whatever fails -- a bad URL, a closed port -- no error shows the password."""
    errors: list[BaseException] = []
    try:
        with open_security(url, secret_keys="k") as security:
            errors.append(raised(lambda: security.list_auth_tokens()))
    except Exception as exc:  # any failure at all must hide the password
        errors.append(exc)
    assert errors
    for error in errors:
        assert isinstance(error, AuthTokenError)
        assert PASSWORD not in exposed(error)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AUTHTOKEN_SECRET_KEYS="k")
    return subprocess.run([sys.executable, "-m", "authtoken", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize("url", PG_URLS + BAD_PG_URLS[:4])
def test_no_password_from_the_command_line(url: str) -> None:
    """authtoken list and authtoken demo print no password, on either stream."""
    for args in (("--database", url, "list"), ("demo", "--database", url)):
        result = _run_cli(*args)
        assert result.returncode != 0, result
        assert PASSWORD not in result.stdout + result.stderr


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("atkATK_.=:/@?&eyJpassword Ab1-xyz9")), max_size=60)
       | st.text(max_size=50))
def test_quick_test_before_masking_skips_nothing(text: str) -> None:
    """The errors' quick test before redact never lets through a text redact would change."""
    from authtoken._errors import _masked
    from authtoken._redact import redact

    assert _masked(text) == redact(text)
    assert str(AuthTokenError(text)) == redact(text)
