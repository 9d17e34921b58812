"""``find_tokens``, the published pattern, the gitleaks rule and the pre-commit hook."""

from __future__ import annotations

import itertools
import json
import re
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import AuthToken, MemoryRepository, Security
from authtoken._codec import TokenCodec, checksum
from authtoken._scan import TOKEN_PATTERN, FoundToken, find_tokens
from authtoken.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
LEAKS = ROOT / "docs" / "leaks.md"
TOKEN_ALPHABET = string.ascii_letters + string.digits + "._-"

CODEC = TokenCodec("k")
TOKENS = [CODEC.issue(f"{c * 16}")[0] for c in "abcdefghijklmnopqrstuvwxyz234567"]
TOKEN = TOKENS[0]


def spans(text: str) -> list[tuple[str, int, int]]:
    return [(f.key, f.start, f.end) for f in find_tokens(text)]


def with_bad_checksum(token: str) -> str:
    """``token`` with its last checksum digit changed: the right shape, no token."""
    last = token[-1]
    return token[:-1] + ("1" if last == "0" else "0")


# -- where tokens are found ----------------------------------------------------------------


def test_found_in_plain_text_with_key_and_place() -> None:
    """A token in a sentence is found with its key, and text[start:end] is the string."""
    text = f"the token is {TOKEN} -- keep it safe"
    [found] = find_tokens(text)
    assert found == FoundToken("a" * 16, 13, 13 + len(TOKEN))
    assert text[found.start:found.end] == TOKEN
    assert found.key == TOKEN[4:20]


@pytest.mark.parametrize("template", [
    '{{"token": "{t}", "user": "alice"}}',
    "AUTHTOKEN_TOKEN={t}\n",
    "export AUTHTOKEN_TOKEN='{t}'\n",
    "Authorization: Bearer {t}\r\n",
    "https://example.org/run?token={t}&x=1",
    "token: {t}\n",
    "<input value=\"{t}\">",
    "{t}",
    "\t{t}\t",
    "é{t}é",
])
def test_found_in_common_settings(template: str) -> None:
    """JSON, a .env line, a header, a URL, YAML, HTML: the one token is found."""
    text = template.format(t=TOKEN)
    assert [text[f.start:f.end] for f in find_tokens(text)] == [TOKEN]


def test_found_in_json_dumps_of_a_structure() -> None:
    """Tokens inside a JSON document are found in order, once each."""
    doc = json.dumps({"jobs": [{"name": f"job{i}", "token": t} for i, t in
                               enumerate(TOKENS[:5])]}, indent=2)
    assert [f.key for f in find_tokens(doc)] == [t[4:20] for t in TOKENS[:5]]


@pytest.mark.parametrize("ch", TOKEN_ALPHABET)
def test_found_when_glued_to_token_characters(ch: str) -> None:
    """A token with any token character stuck before and after it is still found."""
    for text, start in ((ch + TOKEN, 1), (TOKEN + ch, 0), (ch * 3 + TOKEN + ch * 3, 3)):
        assert spans(text) == [(TOKEN[4:20], start, start + len(TOKEN))]


def test_adjacent_tokens_are_found_apart() -> None:
    """Tokens written back to back, with nothing between them, are each found."""
    text = "".join(TOKENS)
    found = find_tokens(text)
    assert [text[f.start:f.end] for f in found] == TOKENS
    assert all(a.end == b.start for a, b in itertools.pairwise(found))


def test_token_starting_inside_a_false_candidate_is_found() -> None:
    """A shape match with a bad checksum that swallows a real token's start hides nothing.

    The false candidate starts 44 characters earlier, so its dots fall on the real
    token's dots and its checksum part on the real signature's first characters.
    """
    real = next(t for t in (CODEC.issue("q" * 16)[0] for _ in range(500))
                if t.split(".")[2][:6].isalnum())
    text = "atk_" + "a" * 16 + "." + "B" * 23 + real
    assert re.match(TOKEN_PATTERN, text)  # the false candidate has the shape
    assert spans(text) == [("q" * 16, 44, 44 + len(real))]


def test_many_tokens_in_a_large_text() -> None:
    """Thousands of tokens among filler are all found, in order."""
    tokens = [TOKENS[i % len(TOKENS)] for i in range(3000)]
    pieces, expected, at = [], [], 0
    for i, token in enumerate(tokens):
        filler = f" line {i}: x=" + "atk_" * (i % 3)
        pieces += [filler, token]
        at += len(filler)
        expected.append((token[4:20], at, at + len(token)))
        at += len(token)
    assert spans("".join(pieces)) == expected


def test_tokens_issued_by_the_engine_are_found() -> None:
    """Strings from Security.authorize_token are found under their key."""
    security = Security(MemoryRepository(), secret_keys="k", clock=FakeClock())
    keys, strings = [], []
    for n in range(5):
        token = AuthToken("reports:read")
        strings.append(security.authorize_token(token, user=f"user{n}"))
        keys.append(token.key)
    assert [f.key for f in find_tokens("\n".join(strings))] == keys


# -- what is not found ----------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "",
    "no tokens here",
    "atk_",
    "atk_" * 1000,
    TOKEN[:-1],
    TOKEN[1:],
    TOKEN.upper(),
    TOKEN.replace("atk_", "ATK_"),
    TOKEN.rsplit(".", 1)[0],
    with_bad_checksum(TOKEN),
    TOKEN[:50] + "\n" + TOKEN[50:],
    "atk_legacylegacy2345.C4gpsFBmUfjMQBFBcEsDlrd6kXjtSBq06FCbYumFe7Y"
    ".8r_Fikr2HKwIsjGchNHmV279VMf2wY_azTwD0AY3vjc",
])
def test_nothing_found(text: str) -> None:
    """Empty text, cut, upper-cased, broken and earlier-format strings are not reported."""
    assert find_tokens(text) == []


def test_right_shape_with_a_forged_checksum_digit_is_not_found() -> None:
    """Every other value of the last checksum digit is refused."""
    for digit in string.digits + string.ascii_letters:
        text = TOKEN[:-1] + digit
        assert (find_tokens(text) != []) == (text == TOKEN)


def test_a_made_up_string_with_a_good_checksum_is_found() -> None:
    """find_tokens checks only the checksum: a forgery that has one is reported."""
    body = "atk_" + "z" * 16 + "." + "A" * 43 + "." + "B" * 43
    forged = f"{body}.{checksum(body.encode()).decode()}"
    assert spans(forged) == [("z" * 16, 0, len(forged))]


def test_non_str_is_type_error() -> None:
    """Bytes and other objects are a TypeError, not an empty answer."""
    for value in (TOKEN.encode(), None, 1, [TOKEN]):
        with pytest.raises(TypeError):
            find_tokens(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("hostile", [
    "atk_" * 500_000,
    ("atk_" + "a" * 16 + ".") * 100_000,
    ("atk_" + "a" * 16 + "." + "B" * 43 + ".") * 20_000,
    with_bad_checksum(TOKEN) * 10_000,
    "a" * 2_000_000,
    ("atk_" + "a" * 16 + "." + "B" * 23) * 20_000,
])
def test_hostile_large_texts(hostile: str) -> None:
    """Megabytes of near-misses give nothing, and a real token after them is found."""
    assert find_tokens(hostile) == []
    text = hostile + " " + TOKEN
    assert spans(text) == [(TOKEN[4:20], len(hostile) + 1, len(text))]


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=30), st.sampled_from(TOKENS)), max_size=6),
       st.text(max_size=30))
def test_finds_exactly_the_tokens_put_in(pieces: list[tuple[str, str]], tail: str) -> None:
    """Tokens put between arbitrary text are found at their places, and nothing else."""
    text, expected = "", []
    for filler, token in pieces:
        text += filler
        expected.append((token[4:20], len(text), len(text) + len(token)))
        text += token
    text += tail
    assert spans(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(TOKEN_ALPHABET + " \n\"'=:", max_size=400))
def test_random_text_holds_no_tokens(text: str) -> None:
    """Text over the token alphabet and common separators yields no token."""
    assert find_tokens(text) == []


def test_repr_shows_the_key_never_the_string() -> None:
    """A FoundToken's repr, and a list's, hold the key but no secret or signature."""
    found = find_tokens(f"x={TOKEN}")
    shown = repr(found) + str(found[0])
    _, secret, signature, _ = TOKEN[4:].split(".")
    assert TOKEN[4:20] in shown
    for part in (TOKEN, secret, signature, secret[:10], signature[:10]):
        assert part not in shown


# -- the published pattern and the gitleaks rule ------------------------------------------


def _block_after(marker: str) -> str:
    """The fenced block that follows ``<!-- marker -->`` in docs/leaks.md."""
    page = LEAKS.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {marker} -->\n```[a-z]*\n(.*?)\n```", page, re.DOTALL)
    assert m is not None, f"docs/leaks.md has no block after <!-- {marker} -->"
    return m.group(1)


def test_documented_pattern_is_the_constant() -> None:
    """The regular expression docs/leaks.md publishes is TOKEN_PATTERN, character for
    character."""
    assert _block_after("token-pattern") == TOKEN_PATTERN


def test_pattern_matches_tokens_issued_now_and_uses_only_portable_syntax() -> None:
    """The pattern matches issued strings whole and holds nothing RE2 lacks (no lookaround,
    backreference or group), nor any open-ended repetition."""
    for token in TOKENS:
        assert re.fullmatch(TOKEN_PATTERN, token)
        assert re.search(TOKEN_PATTERN, f"KEY={token}\n").group() == token  # type: ignore[union-attr]
    assert "(" not in TOKEN_PATTERN and "\\1" not in TOKEN_PATTERN
    assert not re.search(r"[*+]|\{\d*,\d*\}", TOKEN_PATTERN)


def test_gitleaks_rule_parses_and_uses_the_pattern() -> None:
    """The documented gitleaks rule is valid TOML whose regex is TOKEN_PATTERN and whose
    keyword every token holds."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    config = tomllib.loads(_block_after("gitleaks-rule"))
    assert config["extend"] == {"useDefault": True}
    [rule] = config["rules"]
    assert rule["id"] == "authtoken-token"
    assert rule["regex"] == TOKEN_PATTERN
    assert rule["keywords"] == ["atk_"]
    for token in TOKENS:
        assert re.search(rule["regex"], f'"{token}"')
        assert all(k in token for k in rule["keywords"])


# -- the pre-commit hook ------------------------------------------------------------------


HOOKS = ROOT / ".pre-commit-hooks.yaml"


def test_pre_commit_hook_declares_authtoken_scan() -> None:
    """The hook runs 'authtoken scan' on the staged files, installed as a Python package."""
    text = HOOKS.read_text(encoding="utf-8")
    for line in ("- id: authtoken-scan", "  entry: authtoken scan", "  language: python",
                 "  pass_filenames: true"):
        assert line in text.splitlines()
    yaml = pytest.importorskip("yaml")
    [hook] = yaml.safe_load(text)
    assert hook["id"] == "authtoken-scan"
    assert (hook["entry"], hook["language"], hook["pass_filenames"]) == (
        "authtoken scan", "python", True)
    assert "id: authtoken-scan" in LEAKS.read_text(encoding="utf-8")
