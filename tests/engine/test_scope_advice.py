"""Binding a script without hand-escaping, and warnings about scopes that mislead."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authtoken import (
    AuthToken,
    InvalidArgument,
    MemoryRepository,
    ScopeError,
    Script,
    ScriptNotAuthorized,
    Security,
    key_binding,
    path_binding,
    scope_warnings,
)
from authtoken.testing import FakeClock

_PATHS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1, max_size=60,
)


@pytest.fixture
def security() -> Security:
    """An engine on a memory repository."""
    return Security(MemoryRepository(), secret_keys="k", clock=FakeClock())


def test_path_binding_escapes_spaces_and_normalises() -> None:
    """A path with a space becomes one identifier; './' and '//' are normalised away."""
    assert path_binding("/jobs/my job.py") == "ufs:/jobs/my%20job.py"
    assert path_binding("/a/./b//c.py") == "ufs:/a/b/c.py"
    assert path_binding("/jobs/r\u00e9sum\u00e9 %.py") == "ufs:/jobs/r%E9sum%E9%20%25.py"


def test_key_binding() -> None:
    """An int key becomes its vfs: identifier; bools and strings are type errors."""
    assert key_binding(42) == "vfs:ikey?42"
    assert key_binding(-7) == "vfs:ikey?-7"
    for bad in (True, "42", 4.2, None):
        with pytest.raises(TypeError):
            key_binding(bad)  # type: ignore[arg-type]
    with pytest.raises(ScopeError):
        key_binding(10 ** 600)


@pytest.mark.parametrize("bad", ["", "/a\x00b"])
def test_path_binding_refuses_empty_and_nul(bad: str) -> None:
    """An empty path or one holding NUL is refused, saying what a path must be."""
    with pytest.raises(InvalidArgument, match="non-empty"):
        path_binding(bad)


def test_path_binding_refuses_non_str() -> None:
    """A path that is not a str is a TypeError."""
    with pytest.raises(TypeError):
        path_binding(b"/a")  # type: ignore[arg-type]


@given(_PATHS)
def test_any_bound_path_logs_in_as_that_path_only(path: str) -> None:
    """Whatever the path, a token bound with path_binding logs in as that script."""
    try:
        binding = path_binding(path)
    except ScopeError:
        return  # too long once escaped: refused, not mangled
    security = Security(MemoryRepository(), secret_keys="k", clock=FakeClock())
    string = security.authorize_token(AuthToken(["reports:read", binding]), user="u")
    assert security.login_by_auth_token(string, script=Script(path=path)).user == "u"
    other = posixpath.normpath(path) + "x"
    with pytest.raises(ScriptNotAuthorized):
        security.login_by_auth_token(string, script=Script(path=other))


def test_warns_about_a_path_split_by_a_space() -> None:
    """'ufs:/jobs/my job.py' warns and says how to write the one path."""
    (warning,) = scope_warnings("reports:read ufs:/jobs/my job.py")
    assert "'job.py'" in warning and "ufs:/jobs/my%20job.py" in warning


def test_warns_about_commas() -> None:
    """A comma-joined list is one opaque scope: the warning shows the spaced form."""
    (warning,) = scope_warnings("reports:read,reports:write")
    assert "comma" in warning and "'reports:read reports:write'" in warning


@pytest.mark.parametrize("identifier", ["VFS:ikey?1", "Ufs:/a.py", "vFs:ikey?2", "UFS:/x"])
def test_warns_about_bindings_in_the_wrong_case(identifier: str) -> None:
    """A binding in another case binds nothing: the warning names the lower-case form."""
    (warning,) = scope_warnings(identifier)
    assert "not a script binding" in warning
    assert identifier[:4].lower() + identifier[4:] in warning


@pytest.mark.parametrize("scope", [
    "reports:read", "vfs:ikey?1 ufs:/a.py reports:read", "ufs:/a.py reports:write",
    "ufs:/a%20b.py", "ufs:/a,b.py", "admin",
])
def test_no_warning_for_what_is_meant(scope: str) -> None:
    """Ordinary scopes, escaped paths and a path with a comma draw no warning."""
    assert scope_warnings(scope) == ()


def test_warnings_never_echo_a_token_string(security: Security) -> None:
    """A token string pasted into a scope by mistake is masked in the warnings."""
    string = security.authorize_token(AuthToken("x"), user="u")
    secret = string.split(".")[1]
    for scope in (f"VFS:{string}", f"ufs:/a {string}", f"a,{string}"):
        warnings = scope_warnings(scope)
        assert warnings
        assert all(secret not in w for w in warnings)


@given(st.text(max_size=300))
def test_scope_warnings_never_raise_for_text(scope: str) -> None:
    """Any text gets a tuple of strings back."""
    assert all(isinstance(w, str) for w in scope_warnings(scope))


def test_scope_warnings_needs_text() -> None:
    """A non-str scope is a TypeError."""
    with pytest.raises(TypeError):
        scope_warnings(["a"])  # type: ignore[arg-type]
