"""Unit tests of ``authtoken._scopes``: the scope grammar and script bindings."""

from __future__ import annotations

import dataclasses
import posixpath
import re
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from authtoken._errors import InvalidArgument, ScopeError
from authtoken._escape import escape, unescape
from authtoken._scopes import (
    MAX_IDENTIFIER_LENGTH,
    MAX_IDENTIFIERS,
    MAX_SCOPE_LENGTH,
    Script,
    bindings_of,
    canonical_identifier,
    parse_scope,
    script_matches,
)

CANONICAL_VFS = re.compile(r"vfs:ikey\?(?:0|-?[1-9][0-9]*)\Z")
JS_ESCAPED = re.compile(r"(?:[A-Za-z0-9@*_+\-./]|%[0-9A-F]{2}|%u[0-9A-F]{4})+\Z")
FORBIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def assert_grammar(scopes: tuple[str, ...]) -> None:
    """Assert that ``scopes`` is a canonical scope tuple by the grammar in docs/concepts.md."""
    assert 1 <= len(scopes) <= MAX_IDENTIFIERS
    assert len(set(scopes)) == len(scopes)
    assert len(" ".join(scopes)) <= MAX_SCOPE_LENGTH
    for identifier in scopes:
        assert 1 <= len(identifier) <= MAX_IDENTIFIER_LENGTH
        for ch in identifier:
            assert not ch.isspace()
            assert unicodedata.category(ch) not in FORBIDDEN
        if identifier.startswith("vfs:"):
            assert CANONICAL_VFS.match(identifier), identifier
        elif identifier.startswith("ufs:"):
            escaped = identifier[4:]
            assert JS_ESCAPED.match(escaped), identifier
            assert escape(posixpath.normpath(unescape(escaped))) == escaped


# -- str, int and iterable input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("read", ("read",)),
        ("read write", ("read", "write")),
        ("  read \t write\n\nadmin\r\n", ("read", "write", "admin")),
        ("a\u3000b\u00a0c\u2003d", ("a", "b", "c", "d")),
        ("a\u2028b\x0bc\x0cd", ("a", "b", "c", "d")),
        ("reports:read vfs:ikey?42", ("reports:read", "vfs:ikey?42")),
        ("ünïcödé:läsen 読み取り", ("ünïcödé:läsen", "読み取り")),
    ],
)
def test_str_splits_on_runs_of_whitespace(scope: str, expected: tuple[str, ...]) -> None:
    """A str is split on runs of any whitespace, tabs and newlines included."""
    assert parse_scope(scope) == expected


@pytest.mark.parametrize(
    ("key", "expected"), [(42, "vfs:ikey?42"), (0, "vfs:ikey?0"), (-5, "vfs:ikey?-5")]
)
def test_int_is_a_script_key(key: int, expected: str) -> None:
    """An int scope K means the single identifier 'vfs:ikey?K'."""
    assert parse_scope(key) == (expected,)


@pytest.mark.parametrize("scope", [True, False, [True], ["read", False]])
def test_bool_is_refused(scope: object) -> None:
    """A bool, alone or as an item, is a TypeError rather than key 1 or 0."""
    with pytest.raises(TypeError):
        parse_scope(scope)


@pytest.mark.parametrize(
    "scope",
    [None, 1.5, b"read", bytearray(b"read"), memoryview(b"read"), {"read": 1}, object(),
     [None], [b"read"], [1.5], [["read"]], [("read",)]],
)
def test_wrong_types_are_refused(scope: object) -> None:
    """Anything but a str, an int or an iterable of str/int is a TypeError."""
    with pytest.raises(TypeError):
        parse_scope(scope)


def test_wrong_type_is_also_invalid_argument() -> None:
    """A wrongly typed scope is also an InvalidArgument, so either except clause works."""
    with pytest.raises(InvalidArgument):
        parse_scope(None)


def test_iterables_of_str_and_int() -> None:
    """Lists, tuples and generators of str/int items are read item by item."""
    expected = ("read", "vfs:ikey?7", "vfs:ikey?8")
    assert parse_scope(["read", 7, "vfs:ikey?8"]) == expected
    assert parse_scope(("read", 7, "vfs:ikey?8")) == expected

    def items() -> Iterator[str | int]:
        yield "read"
        yield 7
        yield "vfs:ikey?8"

    assert parse_scope(items()) == expected
    assert parse_scope({"only"}) == ("only",)
    assert parse_scope(frozenset({3})) == ("vfs:ikey?3",)


@pytest.mark.parametrize("item", ["read write", "read\t", "\nread", "a\u3000b", "a\u2028b"])
def test_item_with_whitespace_is_refused(item: str) -> None:
    """Each str item of an iterable must be one identifier: whitespace is a ScopeError."""
    with pytest.raises(ScopeError, match="whitespace"):
        parse_scope(["ok", item])


def test_duplicates_dropped_first_seen_order() -> None:
    """Duplicates are dropped, the first occurrence keeping its place."""
    assert parse_scope("b a b c a") == ("b", "a", "c")
    assert parse_scope(["vfs:ikey?007", 7, "x", "vfs:ikey?7"]) == ("vfs:ikey?7", "x")
    assert parse_scope("ufs:/a/./b ufs:/a//b ufs:/a/b") == ("ufs:/a/b",)


@pytest.mark.parametrize("scope", ["", " ", " \t\n\r ", [], (), iter([])])
def test_empty_scope_is_refused(scope: object) -> None:
    """A scope with no identifier is a ScopeError."""
    with pytest.raises(ScopeError, match="at least one"):
        parse_scope(scope)


def test_empty_item_is_refused() -> None:
    """An empty str item of an iterable is a ScopeError."""
    with pytest.raises(ScopeError):
        parse_scope(["read", ""])


def test_scope_error_is_invalid_argument_and_value_error() -> None:
    """ScopeError is an InvalidArgument and a ValueError, as the tree in ``_errors`` draws it."""
    with pytest.raises(ScopeError) as info:
        parse_scope("")
    assert isinstance(info.value, InvalidArgument)
    assert isinstance(info.value, ValueError)


# -- limits ------------------------------------------------------------------------------


def test_identifier_length_limit() -> None:
    """An identifier may hold 512 characters, not 513."""
    assert parse_scope("x" * 512) == ("x" * 512,)
    assert parse_scope(["é" * 512]) == ("é" * 512,)
    with pytest.raises(ScopeError, match="512") as info:
        parse_scope("x" * 513)
    assert info.value.identifier is not None
    assert len(info.value.identifier) <= 80


def test_identifier_count_limit() -> None:
    """A scope may hold 256 distinct identifiers, not 257; duplicates do not count."""
    names = [f"s{i}" for i in range(256)]
    assert parse_scope(names) == tuple(names)
    assert parse_scope(names + names[:10]) == tuple(names)
    with pytest.raises(ScopeError, match="256"):
        parse_scope([*names, "one-more"])
    with pytest.raises(ScopeError, match="256"):
        parse_scope(" ".join([*names, "one-more"]))


def test_total_length_limit() -> None:
    """A scope may hold 8192 characters once joined by single spaces, not 8193."""
    names = [f"{i:02d}" + "x" * 509 for i in range(15)] + ["yy" + "x" * 510]
    joined = " ".join(names)
    assert len(joined) == 8192
    assert parse_scope(joined) == tuple(names)
    assert parse_scope(names) == tuple(names)
    longer = [*names[:-1], names[-1][:-1], "z"]
    assert len(" ".join(longer)) == 8193
    with pytest.raises(ScopeError, match="8192"):
        parse_scope(longer)


def test_total_length_counts_canonical_distinct_identifiers() -> None:
    """The total length is that of the canonical scope: repeats and padding do not count."""
    names = [f"{i:02d}" + "x" * 509 for i in range(15)] + ["yy" + "x" * 510]
    assert parse_scope(names + names) == tuple(names)


@pytest.mark.parametrize(
    ("sign", "exponent"), [(1, 503), (-1, 502), (1, 600), (1, 5000), (-1, 5000)]
)
def test_huge_int_key_is_scope_error(sign: int, exponent: int) -> None:
    """An int key too long to be an identifier is a ScopeError, never a ValueError crash."""
    key = sign * 10**exponent
    with pytest.raises(ScopeError):
        parse_scope(key)
    with pytest.raises(ScopeError):
        parse_scope(["read", key])


def test_largest_int_key_fits() -> None:
    """The largest int key whose identifier holds 512 characters is accepted."""
    key = 10**503 - 1
    assert parse_scope(key) == (f"vfs:ikey?{key}",)
    assert len(parse_scope(-(10**502 - 1))[0]) == 512


# -- character classes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ch",
    ["\x00", "\x01", "\x7f", "\x80", "\x9f", "\u200b", "\u200e", "\u2066", "\ufeff",
     "\U000e0001", chr(0xD800), chr(0xDFFF)],
)
def test_control_format_and_surrogate_characters_refused(ch: str) -> None:
    """Control, format and surrogate characters are a ScopeError naming the character."""
    with pytest.raises(ScopeError, match=f"U\\+{ord(ch):04X}"):
        parse_scope(f"read{ch}write")
    with pytest.raises(ScopeError):
        parse_scope([f"a{ch}"])


@pytest.mark.parametrize("identifier", ["a:b/c?d=e&f#g", "~!@$%^*()[]{}", "Ω≈ç√", "😀", "\ue000"])
def test_other_identifiers_are_opaque(identifier: str) -> None:
    """Identifiers outside vfs:/ufs: are kept exactly as given."""
    assert parse_scope(identifier) == (identifier,)
    assert canonical_identifier(identifier) == identifier


@pytest.mark.parametrize("identifier", ["VFS:ikey?1", "Vfs:ikey?x", "UFS:/a", "uFs:%"])
def test_mixed_case_binding_prefix_is_opaque(identifier: str) -> None:
    """Only lowercase vfs:/ufs: bind scripts; other cases are opaque, stored as given."""
    assert parse_scope(identifier) == (identifier,)
    assert bindings_of(parse_scope(identifier)) == ()


def test_case_of_opaque_identifiers_is_kept() -> None:
    """Opaque identifiers differing only in case are distinct."""
    assert parse_scope("Read read READ") == ("Read", "read", "READ")


# -- vfs: ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "canonical"),
    [
        ("vfs:ikey?7", "vfs:ikey?7"),
        ("vfs:ikey?007", "vfs:ikey?7"),
        ("vfs:ikey?0", "vfs:ikey?0"),
        ("vfs:ikey?000", "vfs:ikey?0"),
        ("vfs:ikey?-0", "vfs:ikey?0"),
        ("vfs:ikey?-007", "vfs:ikey?-7"),
        ("vfs:ikey?-42", "vfs:ikey?-42"),
        ("vfs:ikey?" + "0" * 502 + "1", "vfs:ikey?1"),
        ("vfs:ikey?12345678901234567890123", "vfs:ikey?12345678901234567890123"),
    ],
)
def test_vfs_canonical_decimal(identifier: str, canonical: str) -> None:
    """A vfs: identifier is stored with the canonical decimal of its key."""
    assert parse_scope(identifier) == (canonical,)
    assert canonical_identifier(identifier) == canonical


@pytest.mark.parametrize(
    "identifier",
    [
        "vfs:",
        "vfs:ikey",
        "vfs:ikey?",
        "vfs:ikey?1.5",
        "vfs:ikey?1e3",
        "vfs:ikey?0x10",
        "vfs:ikey?+1",
        "vfs:ikey?--1",
        "vfs:ikey?1-",
        "vfs:ikey?1a",
        "vfs:ikey?1?",
        "vfs:ikey?1_000",
        "vfs:key?1",
        "vfs:IKEY?1",
        "vfs:ikey=1",
        "vfs:ikey?\u0661",
        "vfs:ikey?\uff11",
        "vfs:ikey?\u00b2",
        "vfs:/path",
    ],
)
def test_bad_vfs_is_scope_error_saying_how_to_fix(identifier: str) -> None:
    """A malformed vfs: identifier is a ScopeError whose message shows the right form."""
    with pytest.raises(ScopeError) as info:
        parse_scope(identifier)
    message = str(info.value)
    assert "vfs:ikey?<integer>" in message
    assert "e.g." in message
    assert info.value.identifier == identifier


def test_vfs_longer_than_identifier_limit_refused() -> None:
    """A vfs: identifier longer than 512 characters is refused even if its key is small."""
    with pytest.raises(ScopeError):
        parse_scope("vfs:ikey?" + "0" * 503 + "1")


# -- ufs: ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "canonical"),
    [
        ("ufs:/jobs/nightly.js", "ufs:/jobs/nightly.js"),
        ("ufs:/a/./b", "ufs:/a/b"),
        ("ufs:/a//b", "ufs:/a/b"),
        ("ufs:/a/b/", "ufs:/a/b"),
        ("ufs:/a/c/../b", "ufs:/a/b"),
        ("ufs:/../a", "ufs:/a"),
        ("ufs:relative/./x", "ufs:relative/x"),
        ("ufs:.", "ufs:."),
        ("ufs:./", "ufs:."),
        ("ufs:/a%20b", "ufs:/a%20b"),
        ("ufs:/a%u0020b", "ufs:/a%20b"),
        ("ufs:%2Fa%2F.%2Fb", "ufs:/a/b"),
        ("ufs:/%41", "ufs:/A"),
        ("ufs:/%e9", "ufs:/%E9"),
        ("ufs:/%u00e9", "ufs:/%E9"),
        ("ufs:/%u20ac", "ufs:/%u20AC"),
        ("ufs:/€", "ufs:/%u20AC"),
        ("ufs:/~user", "ufs:/%7Euser"),
        ("ufs:/%uD83D%uDE00", "ufs:/%uD83D%uDE00"),
        ("ufs:/😀", "ufs:/%uD83D%uDE00"),
        ("ufs:/a%u200Bb", "ufs:/a%u200Bb"),
    ],
)
def test_ufs_canonical_form(identifier: str, canonical: str) -> None:
    """A ufs: identifier is stored as 'ufs:' + escape(normpath(unescape(path)))."""
    assert parse_scope(identifier) == (canonical,)
    assert canonical_identifier(identifier) == canonical


@pytest.mark.parametrize(
    "identifier", ["ufs:/a%", "ufs:/a%2", "ufs:/a%ZZ", "ufs:/a%u12", "ufs:/%u12G4", "ufs:%"]
)
def test_ufs_malformed_escape_is_scope_error(identifier: str) -> None:
    """A malformed escape in a ufs: path is a ScopeError telling how to escape the path."""
    with pytest.raises(ScopeError, match="%XX") as info:
        parse_scope(identifier)
    assert "escape" in str(info.value)


def test_ufs_empty_path_is_scope_error() -> None:
    """'ufs:' with no path is a ScopeError that shows an example."""
    with pytest.raises(ScopeError, match="no path") as info:
        parse_scope("ufs:")
    assert "e.g." in str(info.value)


@pytest.mark.parametrize(("identifier", "canonical"), [
    ("ufs:/a%00", "ufs:/a%00"), ("ufs:/a%0a", "ufs:/a%0A"), ("ufs:%u007F", "ufs:%7F"),
    ("ufs:/%9F", "ufs:/%9F"),
])
def test_ufs_escaped_control_characters_accepted(identifier: str, canonical: str) -> None:
    """Any well-formed escape is accepted, control characters included, and canonicalised."""
    assert parse_scope(identifier) == (canonical,)


def test_ufs_canonical_form_too_long_refused() -> None:
    """A ufs: identifier whose canonical form exceeds 512 characters is a ScopeError."""
    with pytest.raises(ScopeError, match="canonical"):
        parse_scope("ufs:/" + "€" * 100)


# -- Script -----------------------------------------------------------------------------------


def test_script_needs_key_or_path() -> None:
    """Script() with neither key nor path is an InvalidArgument that is also a TypeError."""
    with pytest.raises(TypeError) as info:
        Script()
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize(
    "kwargs",
    [{"key": True}, {"key": False}, {"key": "7"}, {"key": 7.0}, {"path": b"/a"},
     {"path": 1}, {"key": 1, "path": ["/a"]}],
)
def test_script_refuses_wrong_types(kwargs: dict[str, object]) -> None:
    """Script refuses a bool or non-int key and a non-str path with TypeError."""
    with pytest.raises(TypeError):
        Script(**kwargs)  # type: ignore[arg-type]


def test_script_is_frozen() -> None:
    """A Script cannot be changed once made."""
    script = Script(key=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        script.key = 2  # type: ignore[misc]


def test_script_identifiers() -> None:
    """Script.identifiers() gives the canonical bindings the script satisfies."""
    assert Script(key=7).identifiers() == {"vfs:ikey?7"}
    assert Script(path="/a/./b c").identifiers() == {"ufs:/a/b%20c"}
    assert Script(key=-1, path="/x").identifiers() == {"vfs:ikey?-1", "ufs:/x"}
    assert Script(key=10**5000).identifiers() == frozenset()


def test_bindings_of() -> None:
    """bindings_of() keeps the vfs:/ufs: identifiers, in order."""
    scopes = parse_scope("read ufs:/a vfs:ikey?1 write vfs:ikey?2")
    assert bindings_of(scopes) == ("ufs:/a", "vfs:ikey?1", "vfs:ikey?2")
    assert bindings_of(parse_scope("read write")) == ()


# -- script_matches -----------------------------------------------------------------------------


def test_no_bindings_any_script_or_none() -> None:
    """A token with no binding may be used by any script, or by none."""
    assert script_matches((), None)
    assert script_matches((), Script(key=1))
    assert script_matches((), Script(path="/anything"))


def test_bindings_need_a_script() -> None:
    """A token with bindings refuses a login that names no script."""
    assert not script_matches(("vfs:ikey?1",), None)
    assert not script_matches(("ufs:/a",), None)


def test_vfs_binding_matches_key_exactly() -> None:
    """'vfs:ikey?K' matches a script whose key is K, and no other key."""
    bindings = bindings_of(parse_scope("read vfs:ikey?007"))
    assert script_matches(bindings, Script(key=7))
    assert script_matches(bindings, Script(key=7, path="/elsewhere"))
    assert not script_matches(bindings, Script(key=8))
    assert not script_matches(bindings, Script(key=-7))
    assert not script_matches(bindings, Script(key=70))
    assert not script_matches(bindings, Script(path="/7"))
    assert not script_matches(bindings, Script(path="vfs:ikey?7"))


def test_vfs_binding_with_negative_and_zero_keys() -> None:
    """Negative and zero keys match their own canonical binding."""
    assert script_matches(parse_scope("vfs:ikey?-0"), Script(key=0))
    assert script_matches(parse_scope(-3), Script(key=-3))
    assert not script_matches(parse_scope(-3), Script(key=3))


def test_huge_script_key_does_not_crash() -> None:
    """A script key too large for any binding simply matches nothing."""
    assert not script_matches(("vfs:ikey?1",), Script(key=10**5000))
    assert script_matches(("ufs:/a",), Script(key=10**5000, path="/a"))


@pytest.mark.parametrize(
    "path", ["/a/b", "/a/./b", "/a//b", "/a/b/", "/a/c/../b", "/a/b/.", "/../a/b"]
)
def test_ufs_binding_matches_normalised_path(path: str) -> None:
    """'ufs:/a/b' matches every spelling of /a/b that normpath reduces to it."""
    assert script_matches(("ufs:/a/b",), Script(path=path))
    assert script_matches(parse_scope("ufs:/a/./b"), Script(path=path))


@pytest.mark.parametrize(
    "path", ["/a", "/a/b/c", "/a/bc", "/a/B", "/A/b", "a/b", "/a/b*", "/a/b ", "/a/b%20"]
)
def test_ufs_binding_is_exact_no_prefix_no_glob(path: str) -> None:
    """'ufs:/a/b' matches no prefix, extension, other case or relative spelling."""
    assert not script_matches(("ufs:/a/b",), Script(key=1, path=path))


def test_ufs_binding_glob_characters_are_literal() -> None:
    """A '*' in a ufs: binding matches only a path holding that very '*'."""
    bindings = parse_scope("ufs:/jobs/*")
    assert script_matches(bindings, Script(path="/jobs/*"))
    assert not script_matches(bindings, Script(path="/jobs/x"))


@pytest.mark.parametrize(
    "path", ["/jobs/nightly job.js", "/données/é.js", "/€/😀", "/a\u200bb", "/x/\ud800"]
)
def test_ufs_binding_matches_escaped_path(path: str) -> None:
    """A path with spaces or non-ASCII characters matches 'ufs:' + escape(path)."""
    bindings = parse_scope("read ufs:" + escape(path))
    assert script_matches(bindings_of(bindings), Script(path=path))
    assert not script_matches(bindings_of(bindings), Script(path=path + "x"))


def test_ufs_lowercase_escape_matches() -> None:
    """A binding written with lowercase hex escapes matches the script's path."""
    assert script_matches(parse_scope("ufs:/caf%e9"), Script(path="/café"))


def test_any_of_several_bindings_matches() -> None:
    """A script matching any one of several bindings may use the token."""
    bindings = bindings_of(parse_scope("read vfs:ikey?1 ufs:/a ufs:/b"))
    assert script_matches(bindings, Script(key=1))
    assert script_matches(bindings, Script(path="/b"))
    assert script_matches(bindings, Script(key=9, path="/a"))
    assert not script_matches(bindings, Script(key=9, path="/c"))


# -- properties ---------------------------------------------------------------------------------

fragments = st.sampled_from(
    ["vfs:", "ufs:", "ikey?", "?", "-", "0", "7", "%", "%u", "20", "E9", "zz", "/", ".",
     "..", " ", "\t", "\n", "read", "VFS:", "\x00", "\u200b", "é", "€", "😀", "\u3000"]
)
scope_text = st.one_of(
    st.text(),
    st.lists(st.one_of(fragments, st.text(max_size=3)), max_size=20).map("".join),
)
scope_items = st.lists(
    st.one_of(
        st.integers(-(10**20), 10**20),
        scope_text,
        st.lists(fragments, max_size=6).map("".join),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(scope_text)
def test_text_parses_or_scope_error(scope: str) -> None:
    """Any text either parses to a grammatical, idempotent scope or raises ScopeError."""
    try:
        scopes = parse_scope(scope)
    except ScopeError:
        return
    assert_grammar(scopes)
    assert parse_scope(" ".join(scopes)) == scopes
    assert parse_scope(list(scopes)) == scopes


@settings(max_examples=200, deadline=None)
@given(scope_items)
def test_items_parse_or_scope_error(items: list[str | int]) -> None:
    """Any list of str/int items parses to the deduplicated canonical items, or ScopeError."""
    try:
        scopes = parse_scope(items)
    except ScopeError:
        return
    assert_grammar(scopes)
    canonical = [f"vfs:ikey?{i}" if isinstance(i, int) else canonical_identifier(i)
                 for i in items]
    assert scopes == tuple(dict.fromkeys(canonical))
    assert parse_scope(" ".join(scopes)) == scopes


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**30), 10**30), st.integers(0, 5))
def test_vfs_key_property(key: int, padding: int) -> None:
    """Any int key, padded with zeros or not, gives the same canonical vfs: identifier."""
    sign, digits = ("-", str(-key)) if key < 0 else ("", str(key))
    expected = (f"vfs:ikey?{key}",)
    assert parse_scope(key) == expected
    assert parse_scope(f"vfs:ikey?{sign}{'0' * padding}{digits}") == expected
    assert script_matches(expected, Script(key=key))
    assert not script_matches(expected, Script(key=key + 1))


paths = st.text(
    st.one_of(
        st.sampled_from("/./..//"),
        st.characters(blacklist_categories=("Cc", "Cs")),
        st.integers(0xD800, 0xDFFF).map(chr),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(paths)
def test_ufs_path_property(path: str) -> None:
    """Any escaped path parses to its canonical binding, and that script path matches it."""
    identifier = "ufs:" + escape(path)
    assume(len(identifier) <= MAX_IDENTIFIER_LENGTH)
    scopes = parse_scope(identifier)
    expected = "ufs:" + escape(posixpath.normpath(path))
    assert scopes == (expected,)
    assert_grammar(scopes)
    assert script_matches(scopes, Script(path=path))
    assert script_matches(scopes, Script(path=posixpath.normpath(path)))
    assert parse_scope(scopes[0]) == scopes


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_has_no_whitespace_then_one_identifier(text: str) -> None:
    """A str without whitespace is at most one identifier; with it, never an item of a list."""
    if any(ch.isspace() for ch in text):
        with pytest.raises(ScopeError):
            parse_scope([text])
    else:
        try:
            scopes = parse_scope(text)
        except ScopeError:
            return
        assert len(scopes) == 1
        assert parse_scope([text]) == scopes


@pytest.mark.parametrize("path", ["", "/a/\x00b"])
def test_script_path_must_be_non_empty_without_nul(path: str) -> None:
    """An empty path or one holding NUL is refused: it can name no script."""
    with pytest.raises(InvalidArgument):
        Script(path=path)
