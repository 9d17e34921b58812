"""Unit tests of ``authtoken._escape``: JavaScript's global ``escape``/``unescape``."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken._escape import escape, strict_unescape, unescape

JS_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@*_+-./")
# What JavaScript's escape() can produce: kept characters and uppercase-hex escapes.
ESCAPED_FORM = re.compile(r"(?:[A-Za-z0-9@*_+\-./]|%[0-9A-F]{2}|%u[0-9A-F]{4})*\Z")
# A '%' that starts a well-formed escape, as JavaScript's unescape() reads it.
ESCAPE_AT = re.compile(r"%(?:u[0-9A-Fa-f]{4}|[0-9A-Fa-f]{2})")

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None, reason="node is not on PATH: cannot compare with JavaScript itself"
)

# Characters with a lone surrogate among them: Python strings may hold them, and
# JavaScript strings are made of UTF-16 code units, so both sides can represent them.
with_surrogates = st.text(
    st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=40
)
# Text rich in '%', 'u' and hex digits, so that escapes both well-formed and not occur.
escapish = st.text(
    st.one_of(st.sampled_from("%%%uUaAfF09gG"), st.characters()), max_size=40
)


def js_string(s: str) -> str:
    """``s`` as JavaScript sees it: adjacent high+low surrogates are one character."""
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def well_formed(s: str) -> bool:
    """Whether every '%' in ``s`` starts a well-formed ``%XX`` or ``%uXXXX`` escape."""
    return all(ESCAPE_AT.match(s, i) for i, c in enumerate(s) if c == "%")


ESCAPE_PAIRS = [
    ("", ""),
    ("abcXYZ0189", "abcXYZ0189"),
    ("@*_+-./", "@*_+-./"),
    (" ", "%20"),
    ("%", "%25"),
    ("\x00", "%00"),
    ("\n\t\r", "%0A%09%0D"),
    ("\x7f", "%7F"),
    ("\xad", "%AD"),
    ("\xff", "%FF"),
    ("é", "%E9"),
    ("\u0100", "%u0100"),
    ("€", "%u20AC"),
    ("\uffff", "%uFFFF"),
    ("😀", "%uD83D%uDE00"),
    ("\U00010000", "%uD800%uDC00"),
    ("\U0010ffff", "%uDBFF%uDFFF"),
    ("\ud800", "%uD800"),
    ("a\udc00b", "a%uDC00b"),
    (
        "~!#$&'()=,;:?[]{}|\\^`\"<>",
        "%7E%21%23%24%26%27%28%29%3D%2C%3B%3A%3F%5B%5D%7B%7D%7C%5C%5E%60%22%3C%3E",
    ),
    ("/jobs/nightly report.js", "/jobs/nightly%20report.js"),
    ("/données/é€.js", "/donn%E9es/%E9%u20AC.js"),
]

UNESCAPE_PAIRS = [
    ("", ""),
    ("plain text", "plain text"),
    ("+", "+"),
    ("%20", " "),
    ("%E9", "é"),
    ("%e9", "é"),
    ("%u20AC", "€"),
    ("%u20ac", "€"),
    ("%u0041", "A"),
    ("%u00411", "A1"),
    ("%41%42", "AB"),
    ("%uD83D%uDE00", "😀"),
    ("%uD83D", "\ud83d"),
    ("%uDE00%uD83D", "\ude00\ud83d"),
    ("\ud83d%uDE00", "😀"),
    # malformed escapes are left as they are, as JavaScript leaves them
    ("%", "%"),
    ("100%", "100%"),
    ("%2", "%2"),
    ("%Z1", "%Z1"),
    ("%1Z", "%1Z"),
    ("%u12", "%u12"),
    ("%u004", "%u004"),
    ("%u12G4", "%u12G4"),
    ("%U20AC", "%U20AC"),
    ("%%41", "%A"),
    ("%u%41", "%uA"),
    ("%uZZ41", "%uZZ41"),
]


@pytest.mark.parametrize(("plain", "escaped"), ESCAPE_PAIRS)
def test_escape_known_pairs(plain: str, escaped: str) -> None:
    """escape() gives what JavaScript's escape() gives for a table of known strings."""
    assert escape(plain) == escaped


@pytest.mark.parametrize(("escaped", "plain"), UNESCAPE_PAIRS)
def test_unescape_known_pairs(escaped: str, plain: str) -> None:
    """unescape() gives what JavaScript's unescape() gives, malformed escapes kept."""
    assert unescape(escaped) == plain


@pytest.mark.parametrize(("plain", "escaped"), ESCAPE_PAIRS)
def test_unescape_inverts_known_pairs(plain: str, escaped: str) -> None:
    """unescape() turns every escaped form of the table back into its plain string."""
    assert unescape(escaped) == plain


@pytest.mark.parametrize("value", [None, b"abc", 1, ["a"]])
def test_escape_refuses_non_str(value: object) -> None:
    """escape() raises TypeError for an argument that is not a str."""
    with pytest.raises(TypeError):
        escape(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, b"%41", 1, ["a"]])
def test_unescape_refuses_non_str(value: object) -> None:
    """unescape() raises TypeError for an argument that is not a str."""
    with pytest.raises(TypeError):
        unescape(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, b"%41", 1])
def test_strict_unescape_refuses_non_str(value: object) -> None:
    """strict_unescape() raises TypeError for an argument that is not a str."""
    with pytest.raises(TypeError):
        strict_unescape(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("", ""),
        ("abc", "abc"),
        ("%20", " "),
        ("%e9%u20ac", "é€"),
        ("%uD83D%uDE00", "😀"),
        ("/a%20b/c", "/a b/c"),
    ],
)
def test_strict_unescape_accepts_well_formed(escaped: str, plain: str) -> None:
    """strict_unescape() unescapes a string whose every '%' starts a valid escape."""
    assert strict_unescape(escaped) == plain


@pytest.mark.parametrize(
    "escaped", ["%", "abc%", "%2", "%Z1", "%1Z", "%u12", "%u12G4", "%U20AC", "%%41", "%41%"]
)
def test_strict_unescape_refuses_malformed(escaped: str) -> None:
    """strict_unescape() returns None when any '%' starts a malformed escape."""
    assert strict_unescape(escaped) is None


def test_lone_surrogates_round_trip() -> None:
    """Lone and reversed surrogates survive escape then unescape unchanged."""
    for s in ["\ud800", "\udfff", "a\ud800b", "\udc00\ud800", "\ud800\ud800", "x\udc00"]:
        assert unescape(escape(s)) == s


def test_surrogate_pair_code_points_join() -> None:
    """A high+low surrogate pair held as two code points unescapes to one character."""
    assert escape("\ud83d\ude00") == escape("😀")
    assert unescape(escape("\ud83d\ude00")) == "😀"


def test_long_string() -> None:
    """A long string with many escapes round-trips and is checked as well-formed."""
    s = "é a€😀%/" * 5_000
    escaped = escape(s)
    assert unescape(escaped) == s
    assert strict_unescape(escaped) == s
    assert strict_unescape(escaped + "%") is None


# -- properties -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_text(s: str) -> None:
    """unescape(escape(s)) == s for any text without surrogates."""
    assert unescape(escape(s)) == s


@settings(max_examples=300, deadline=None)
@given(with_surrogates)
def test_round_trip_with_surrogates(s: str) -> None:
    """unescape(escape(s)) gives s back, as JavaScript sees it, even with lone surrogates."""
    assert unescape(escape(s)) == js_string(s)
    if not re.search("[\ud800-\udbff][\udc00-\udfff]", s):
        assert unescape(escape(s)) == s


@settings(max_examples=300, deadline=None)
@given(with_surrogates)
def test_escape_output_alphabet(s: str) -> None:
    """escape() output is ASCII: the JavaScript-safe characters and uppercase-hex escapes."""
    escaped = escape(s)
    assert escaped.isascii()
    assert set(escaped) <= JS_SAFE | {"%"}
    assert ESCAPED_FORM.match(escaped)
    assert strict_unescape(escaped) == js_string(s)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_escape_keeps_exactly_safe_characters(s: str) -> None:
    """escape(s) == s exactly when every character of s is in the JavaScript-safe set."""
    assert (escape(s) == s) == set(s).issubset(JS_SAFE)


@settings(max_examples=500, deadline=None)
@given(escapish)
def test_strict_unescape_none_exactly_on_malformed(s: str) -> None:
    """strict_unescape() returns None exactly when a '%' starts no well-formed escape."""
    result = strict_unescape(s)
    if well_formed(s):
        assert result == unescape(s)
    else:
        assert result is None


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_characters="%")))
def test_unescape_without_percent_is_identity(s: str) -> None:
    """unescape() leaves a string without '%' unchanged."""
    assert unescape(s) == s


# -- against node itself ----------------------------------------------------------------

_NODE_SCRIPT = """
const xs = JSON.parse(require("fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify({escape: xs.map(escape), unescape: xs.map(unescape)}));
"""


def run_node(strings: list[str]) -> tuple[list[str], list[str]]:
    """JavaScript's escape() and unescape() of every string, in one node process."""
    assert NODE is not None
    # ensure_ascii: lone surrogates travel as \\uXXXX escapes; node's JSON.stringify
    # escapes lone surrogates the same way on the way back.
    done = subprocess.run(
        [NODE, "-e", _NODE_SCRIPT],
        input=json.dumps(strings, ensure_ascii=True).encode("ascii"),
        capture_output=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout.decode("utf-8"))
    return result["escape"], result["unescape"]


def random_strings(seed: int, count: int) -> list[str]:
    """A fixed batch of random strings: ASCII, Latin-1, BMP, astral, lone surrogates, escapes."""
    rng = random.Random(seed)
    pools = [
        lambda: chr(rng.randrange(0x20, 0x7F)),
        lambda: chr(rng.randrange(0x00, 0x100)),
        lambda: chr(rng.choice([rng.randrange(0x100, 0xD800), rng.randrange(0xE000, 0x10000)])),
        lambda: chr(rng.randrange(0x10000, 0x110000)),
        lambda: chr(rng.randrange(0xD800, 0xE000)),
        lambda: rng.choice(["%", "%u", "u", "%4", "%41", "%e9", "%u20ac", "%uD83D", "%uDE00"]),
        lambda: rng.choice("0123456789abcdefABCDEFgGzZ"),
    ]
    out = []
    for _ in range(count):
        weights = [rng.random() for _ in pools]
        n = rng.randrange(0, 30)
        out.append("".join(rng.choices(pools, weights)[0]() for _ in range(n)))
    return out


@needs_node
def test_node_known_pairs() -> None:
    """node agrees with the tables of known pairs used above."""
    plains = [p for p, _ in ESCAPE_PAIRS]
    escapeds = [e for e, _ in UNESCAPE_PAIRS]
    js_escaped, _ = run_node(plains)
    _, js_unescaped = run_node(escapeds)
    assert js_escaped == [e for _, e in ESCAPE_PAIRS]
    assert js_unescaped == [p for _, p in UNESCAPE_PAIRS]


@needs_node
def test_node_agrees_on_random_strings() -> None:
    """escape() and unescape() agree with node on 3,000 random strings, in one process."""
    strings = random_strings(seed=20240601, count=3000)
    js_escaped, js_unescaped = run_node(strings)
    for s, js_e, js_u in zip(strings, js_escaped, js_unescaped, strict=True):
        assert escape(s) == js_e, ascii(s)
        assert js_string(unescape(s)) == js_string(js_u), ascii(s)
        assert unescape(js_e) == js_string(s), ascii(s)


@needs_node
@settings(max_examples=10, deadline=None)
@given(st.lists(st.one_of(with_surrogates, escapish), min_size=20, max_size=60))
def test_node_agrees_on_generated_batches(strings: list[str]) -> None:
    """escape() and unescape() agree with node on hypothesis batches, one process a batch."""
    js_escaped, js_unescaped = run_node(strings)
    assert [escape(s) for s in strings] == js_escaped
    assert [js_string(unescape(s)) for s in strings] == [js_string(u) for u in js_unescaped]
