"""No token string or secret in storage, messages, reprs or logs (contract §1, §4)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

import authtoken
from authtoken import (
    AuthToken,
    AuthTokenError,
    Script,
    ScriptRunner,
    Security,
    Session,
    SQLRepository,
)
from authtoken.testing import FakeClock


def secret_parts(string: str) -> list[bytes]:
    """Everything that must never leak: the string, its secret, the secret's bytes."""
    _, secret, signature = string.split(".")
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
        "AuthToken", "AuthTokenError", "ConcurrentUpdate", "InvalidArgument", "InvalidToken",
        "IssuerError", "LoginError", "MemoryRepository", "PermissionDenied", "Principal",
        "Repository", "RepositoryError", "SQLRepository", "ScopeError", "Script",
        "ScriptNotAuthorized", "ScriptRunner", "Security", "Session", "SessionExpired",
        "SessionNotEstablished", "TokenExpired", "TokenNotFound", "TokenRevoked", "UserKey",
        "default_database_path", "default_key_path", "escape", "key_binding",
        "open_security", "path_binding", "scope_warnings", "unescape",
    ]
    for name in authtoken.__all__:
        assert getattr(authtoken, name) is not None


def test_error_tree() -> None:
    """The error classes form the tree of contract §1."""
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
