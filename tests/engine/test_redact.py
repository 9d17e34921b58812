"""The one masking function: token strings, secret parts, JWTs and URL passwords."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authtoken import AuthToken, Security
from authtoken._redact import MASK, redact
from authtoken.testing import FakeClock

_B64 = string.ascii_letters + string.digits + "-_"


@pytest.fixture(scope="module")
def token_string() -> str:
    """A real token string from the engine."""
    security = Security(__import__("authtoken").MemoryRepository(), secret_keys="k",
                        clock=FakeClock())
    return security.authorize_token(AuthToken("reports:read"), user="alice")


def _parts(token: str) -> list[str]:
    key_secret_signature = token[4:].split(".")
    return key_secret_signature[1:3]


def test_token_string_masked_whole_glued_cut_and_upper(token_string: str) -> None:
    """A token string is masked alone, glued into a scope, cut short and upper-cased."""
    secret, signature = _parts(token_string)
    for text in (token_string, "vfs:" + token_string, f"expires={token_string[:60]}",
                 token_string.upper(), token_string[4:], secret, signature,
                 f"'{token_string}'", f"a,{token_string},b"):
        masked = redact(text)
        assert secret not in masked and secret.upper() not in masked
        assert signature not in masked
        assert MASK in masked


def test_ordinary_text_is_unchanged() -> None:
    """Scopes, paths, keys and plain URLs come back as they were."""
    for text in ("reports:read", "ufs:/jobs/my%20job.py", "vfs:ikey?42",
                 "sqlite:///tmp/x.db", "postgresql://alice@db.example/app",
                 "abcdefghijklmnop", "a" * 43, "token key k5l2mhd3ybq4zk7a", ""):
        assert redact(text) == text


@pytest.mark.parametrize(("url", "secret"), [
    ("postgresql://u:hunter2@db/app", "hunter2"),
    ("postgresql://u:p%40ss@db:5432/app?sslmode=require", "p%40ss"),
    ("postgresql://u:p@ss@db/app", "p@ss"),
    ("postgresql://u@db/app?password=hunter2", "hunter2"),
    ("postgresql://u@db/app?sslmode=require&password=hunter2&x=1", "hunter2"),
    ("postgresql://u@db/app?PASSWORD=hunter2", "hunter2"),
    ("host=db password='hun ter2' user=u", "hun ter2"),
    ("could not connect to 'postgresql://u:hunter2@db/app': refused", "hunter2"),
])
def test_url_passwords_masked(url: str, secret: str) -> None:
    """A password in the user part, the query string or a keyword string is masked."""
    masked = redact(url)
    assert secret not in masked
    assert "***" in masked


def test_password_mask_keeps_the_closing_quote() -> None:
    """An unquoted password quoted as a whole URL keeps the quote that closes the URL."""
    assert redact("bad URL 'postgresql://u@db/app?password=hunter2'") == (
        "bad URL 'postgresql://u@db/app?password=***'"
    )


def test_jwt_masked() -> None:
    """A JSON Web Token is masked."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    assert "eyJzdWIi" not in redact(f"Bearer {jwt}")


@given(st.text(alphabet=_B64, min_size=43, max_size=43).filter(
    lambda s: any(c.isupper() for c in s) and any(c.islower() for c in s)
    and any(c.isdigit() for c in s)),
    st.text(max_size=20), st.text(max_size=20))
def test_any_secret_part_masked_in_any_text(part: str, before: str, after: str) -> None:
    """A 43-character secret part between any separators is masked."""
    text = f"{before} {part} {after}"
    assert part not in redact(text)


@given(st.text(max_size=200))
def test_redact_is_idempotent(text: str) -> None:
    """Masking masked text changes nothing, and never raises."""
    once = redact(text)
    assert redact(once) == once
