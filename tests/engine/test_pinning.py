"""Code pinning, the model: the sha256: grammar, Script.digest, Script.for_file on real
files, digest_binding, script_matches and the warnings for a wrong-case prefix."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authtoken import AuthToken, InvalidArgument, ScopeError, Script
from authtoken._scopes import (
    binding_refusal,
    bindings_of,
    code_bindings_of,
    digest_binding,
    parse_scope,
    scope_warnings,
    script_matches,
)

HEX = "0123456789abcdef"
DIGEST_A = hashlib.sha256(b"print('a')\n").hexdigest()
DIGEST_B = hashlib.sha256(b"print('b')\n").hexdigest()
TOKEN_LIKE = "atk_" + "A" * 40 + "." + "b" * 40

digests = st.text(alphabet=HEX, min_size=64, max_size=64)


# -- the grammar -----------------------------------------------------------------------
@given(digests)
def test_well_formed_code_binding_is_kept(digest: str) -> None:
    """sha256: and 64 lower-case hex digits is a canonical code binding, kept as written."""
    identifier = "sha256:" + digest
    assert parse_scope(identifier) == (identifier,)
    assert code_bindings_of(parse_scope(f"read {identifier} vfs:ikey?1")) == (identifier,)
    assert bindings_of(parse_scope(identifier)) == ()


@given(st.text(alphabet=HEX + "ABCDEF", min_size=64, max_size=64).filter(
    lambda s: s != s.lower()))
def test_upper_case_digits_are_refused(digest: str) -> None:
    """Upper-case hex digits after sha256: are a ScopeError that says to write lower case."""
    with pytest.raises(ScopeError, match="lower case"):
        parse_scope("sha256:" + digest)


@given(st.text(alphabet=HEX, max_size=200).filter(lambda s: len(s) != 64))
def test_wrong_length_is_refused(digest: str) -> None:
    """Fewer or more than 64 digits is a ScopeError naming the count and the fix."""
    with pytest.raises(ScopeError, match=r"64 lower-case hex digits") as info:
        parse_scope("sha256:" + digest)
    assert (f"{len(digest)} characters" in str(info.value)) or "no digest" in str(info.value)


@given(st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Zs")),
    min_size=64, max_size=64,
).filter(lambda s: not re.fullmatch("[0-9a-fA-F]{64}", s) and not any(
    ch.isspace() for ch in s)))
def test_non_hex_is_refused(digits: str) -> None:
    """64 characters that are not all hex digits (non-ASCII ones too) are a ScopeError."""
    with pytest.raises(ScopeError, match="not hex digits"):
        parse_scope("sha256:" + digits)


@pytest.mark.parametrize("identifier", [
    "sha256:", "sha256:" + DIGEST_A + "0", "sha256:" + DIGEST_A[:-1],
    "sha256:" + DIGEST_A.upper(), "sha256:" + DIGEST_A[:-1] + "g",
    "sha256:" + DIGEST_A[:-1] + "\u0660", "sha256:" + "f" * 505,
    "sha256:" + TOKEN_LIKE,
])
def test_malformed_identifiers(identifier: str) -> None:
    """Each malformed code binding is a ScopeError through every way a scope is given,
    and no message holds a token-shaped text."""
    for scope in (identifier, [identifier], f"read {identifier}"):
        with pytest.raises(ScopeError) as info:
            parse_scope(scope)
        assert TOKEN_LIKE not in str(info.value) and TOKEN_LIKE not in repr(info.value)
    with pytest.raises(ScopeError):
        AuthToken(identifier)


@pytest.mark.parametrize("identifier", [
    "SHA256:" + DIGEST_A, "Sha256:" + DIGEST_A, "sHa256:xyz", "SHA256:",
    "sha-256:" + DIGEST_A, "sha256" + DIGEST_A, "sha512:" + DIGEST_A,
])
def test_other_spellings_are_opaque(identifier: str) -> None:
    """Another case or another name is an opaque identifier: no code binding."""
    scopes = parse_scope(identifier)
    assert scopes == (identifier,)
    assert code_bindings_of(scopes) == ()
    assert script_matches(code_bindings_of(scopes), None)


@pytest.mark.parametrize("identifier", ["SHA256:" + DIGEST_A, "Sha256:abc", "sHA256:"])
def test_wrong_case_prefix_warns(identifier: str) -> None:
    """scope_warnings says a SHA256: identifier in another case pins nothing."""
    warnings = scope_warnings(f"read {identifier}")
    assert len(warnings) == 1
    assert "not a code binding" in warnings[0] and "lower case" in warnings[0]


def test_well_formed_and_other_names_do_not_warn() -> None:
    """A canonical code binding, or an unrelated sha-like name, brings no warning."""
    assert scope_warnings(f"read sha256:{DIGEST_A} sha512:x sha-256:y") == ()


def test_wrong_case_warning_masks_token_text() -> None:
    """A token-shaped text after SHA256: is masked in the warning."""
    (warning,) = scope_warnings("SHA256:" + TOKEN_LIKE)
    assert TOKEN_LIKE not in warning


# -- digest_binding ------------------------------------------------------------------------
@given(digests)
def test_digest_binding(digest: str) -> None:
    """digest_binding gives sha256: + the digest, which parse_scope keeps unchanged."""
    assert digest_binding(digest) == "sha256:" + digest
    assert parse_scope(digest_binding(digest)) == ("sha256:" + digest,)


@pytest.mark.parametrize("digest", ["", "abc", DIGEST_A.upper(), DIGEST_A + "0",
                                    " " + DIGEST_A[1:], "sha256:" + DIGEST_A])
def test_digest_binding_refuses_malformed(digest: str) -> None:
    """A digest of another length, case or alphabet is InvalidArgument."""
    with pytest.raises(InvalidArgument, match="digest"):
        digest_binding(digest)


@pytest.mark.parametrize("digest", [None, 1, b"0" * 64, ["a"]])
def test_digest_binding_type(digest: object) -> None:
    """A non-str digest is a TypeError."""
    with pytest.raises(TypeError):
        digest_binding(digest)  # type: ignore[arg-type]


# -- Script ----------------------------------------------------------------------------
def test_script_with_digest_only() -> None:
    """A Script may be known by its digest alone; its repr shows it."""
    script = Script(digest=DIGEST_A)
    assert (script.key, script.path, script.digest) == (None, None, DIGEST_A)
    assert script.identifiers() == {"sha256:" + DIGEST_A}
    assert DIGEST_A in repr(script)
    assert repr(Script(key=1)) == "Script(key=1, path=None)"


def test_script_needs_something() -> None:
    """A Script with neither key, path nor digest is refused."""
    with pytest.raises(InvalidArgument, match="key, a path or a digest"):
        Script()


@pytest.mark.parametrize("digest", ["", "0" * 63, "0" * 65, DIGEST_A.upper(),
                                    DIGEST_A[:-1] + "g", "sha256:" + DIGEST_A,
                                    DIGEST_A[:-1] + "\u0661", TOKEN_LIKE])
def test_script_refuses_malformed_digest(digest: str) -> None:
    """A digest that is not 64 lower-case hex digits is InvalidArgument, never echoing a
    token-shaped text."""
    with pytest.raises(InvalidArgument, match=r"Script\.digest") as info:
        Script(key=1, digest=digest)
    assert TOKEN_LIKE not in str(info.value)


def test_script_upper_case_digest_says_lower() -> None:
    """An upper-case digest is refused with the fix: lower case."""
    with pytest.raises(InvalidArgument, match="lower case"):
        Script(digest=DIGEST_A.upper())


@pytest.mark.parametrize("digest", [1, b"0" * 64, bytearray(64)])
def test_script_digest_type(digest: object) -> None:
    """A non-str digest is a TypeError."""
    with pytest.raises(TypeError):
        Script(digest=digest)  # type: ignore[arg-type]


def test_digest_is_keyword_only() -> None:
    """digest is keyword-only; key and path stay positional."""
    with pytest.raises(TypeError):
        Script(1, "/a", DIGEST_A)  # type: ignore[misc]
    assert Script(1, "/a", digest=DIGEST_A).path == "/a"


# -- script_matches and binding_refusal -------------------------------------------------
def test_code_rule_alone() -> None:
    """A pinned token is for scripts whose digest is one of its pins, by key or not."""
    scopes = parse_scope(f"read sha256:{DIGEST_A} sha256:{DIGEST_B}")
    assert binding_refusal(scopes, Script(digest=DIGEST_A)) is None
    assert binding_refusal(scopes, Script(key=5, path="/x", digest=DIGEST_B)) is None
    assert "other code" in str(binding_refusal(scopes, Script(digest="0" * 64)))
    assert "pinned to code" in str(binding_refusal(scopes, Script(key=5)))
    assert "pinned to code" in str(binding_refusal(scopes, None))


def test_both_rules_must_hold() -> None:
    """A token with script and code bindings needs a script that satisfies both."""
    scopes = parse_scope(f"vfs:ikey?1 ufs:/jobs/a.py sha256:{DIGEST_A}")
    bindings = bindings_of(scopes) + code_bindings_of(scopes)
    allowed = [Script(key=1, digest=DIGEST_A), Script(path="/jobs//a.py", digest=DIGEST_A)]
    refused = [Script(key=1), Script(digest=DIGEST_A), Script(key=2, digest=DIGEST_A),
               Script(key=1, digest=DIGEST_B), Script(path="/jobs/a.py"), None]
    for script in allowed:
        assert script_matches(bindings, script) and binding_refusal(scopes, script) is None
    for script in refused:
        assert not script_matches(bindings, script)
        assert binding_refusal(scopes, script) is not None


def test_unpinned_token_ignores_digest() -> None:
    """A token without code bindings does not look at the script's digest."""
    assert binding_refusal(parse_scope("read vfs:ikey?1"), Script(key=1, digest=DIGEST_A)) is None
    assert binding_refusal(parse_scope("read"), Script(digest=DIGEST_A)) is None
    assert binding_refusal(parse_scope("read"), None) is None


# -- Script.for_file on real files ----------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"print('hi')\n", bytes(range(256)) * 3,
                                     b"\x00\xff\xfe" * 1000])
def test_for_file_digest(tmp_path: Path, content: bytes) -> None:
    """for_file gives the path as given and the SHA-256 of the bytes: empty and binary."""
    path = tmp_path / "job.py"
    path.write_bytes(content)
    script = Script.for_file(str(path), key=3)
    assert script.digest == hashlib.sha256(content).hexdigest()
    assert (script.key, script.path) == (3, str(path))
    assert Script.for_file(path).path == str(path)  # a PathLike is accepted too


def test_for_file_large(tmp_path: Path) -> None:
    """A file larger than one read chunk is hashed whole, every byte counted."""
    path = tmp_path / "big.bin"
    block = os.urandom(1 << 16)
    expected = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(40):  # 2.5 MiB, not a multiple of the chunk
            out.write(block)
            expected.update(block)
        out.write(b"tail")
        expected.update(b"tail")
    assert Script.for_file(path).digest == expected.hexdigest()
    with path.open("r+b") as out:  # one changed byte in the middle changes the digest
        out.seek(3 << 19)
        out.write(b"\x00" if block[(3 << 19) % len(block)] else b"\x01")
    assert Script.for_file(path).digest != expected.hexdigest()


def test_for_file_symlink(tmp_path: Path) -> None:
    """A symlink is followed for the digest; the path stays the link's."""
    target = tmp_path / "real.py"
    target.write_bytes(b"run()\n")
    link = tmp_path / "link.py"
    link.symlink_to(target)
    script = Script.for_file(link)
    assert script.digest == hashlib.sha256(b"run()\n").hexdigest()
    assert script.path == str(link)


def test_for_file_missing(tmp_path: Path) -> None:
    """A missing file, or a dangling link, is InvalidArgument naming the path, unchained."""
    for path in (tmp_path / "nope.py", tmp_path / "dangling"):
        if path.name == "dangling":
            path.symlink_to(tmp_path / "gone")
        with pytest.raises(InvalidArgument, match="cannot read the script file") as info:
            Script.for_file(path)
        assert str(path) in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_for_file_folder(tmp_path: Path) -> None:
    """A folder is InvalidArgument naming the path."""
    with pytest.raises(InvalidArgument, match="not a regular file") as info:
        Script.for_file(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_for_file_fifo(tmp_path: Path) -> None:
    """A named pipe is refused at once rather than waited on."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        Script.for_file(fifo)


def test_for_file_not_a_folder_on_the_way(tmp_path: Path) -> None:
    """A path through a file (ENOTDIR) is InvalidArgument, never an OSError."""
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="cannot read"):
        Script.for_file(tmp_path / "f" / "x.py")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_for_file_unreadable(tmp_path: Path) -> None:
    """A file the user may not read is InvalidArgument naming the path, unchained, with
    none of its content."""
    path = tmp_path / "secret.py"
    path.write_bytes(b"SECRET CONTENT")
    path.chmod(0)
    with pytest.raises(InvalidArgument, match="Permission denied") as info:
        Script.for_file(path)
    assert str(path) in str(info.value) and "SECRET" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_for_file_masks_token_in_path(tmp_path: Path) -> None:
    """A token string passed as the path is not echoed in the error."""
    with pytest.raises(InvalidArgument) as info:
        Script.for_file(str(tmp_path / TOKEN_LIKE))
    assert TOKEN_LIKE not in str(info.value) and TOKEN_LIKE not in repr(info.value)


@pytest.mark.parametrize("path", ["", "a\x00b"])
def test_for_file_bad_path(path: str) -> None:
    """An empty path or one holding NUL is InvalidArgument."""
    with pytest.raises(InvalidArgument):
        Script.for_file(path)


@pytest.mark.parametrize("path", [None, 3, b"/etc/hostname"])
def test_for_file_path_type(path: object) -> None:
    """A path that is not a str (or PathLike of str) is a TypeError."""
    with pytest.raises(TypeError):
        Script.for_file(path)  # type: ignore[arg-type]


def test_for_file_key_is_checked(tmp_path: Path) -> None:
    """for_file's key is checked as Script's is."""
    (tmp_path / "j.py").write_bytes(b"")
    with pytest.raises(TypeError):
        Script.for_file(tmp_path / "j.py", key="1")  # type: ignore[arg-type]

