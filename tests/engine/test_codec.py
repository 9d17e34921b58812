"""Unit tests of ``authtoken._codec``: making, signing and reading token strings."""

from __future__ import annotations

import base64
import hashlib
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import BadSignature, Signer

from authtoken._codec import (
    PREFIX,
    TOKEN_LENGTH,
    TokenCodec,
    checksum,
    new_key,
    secret_digest,
)
from authtoken._errors import InvalidArgument, InvalidToken

TOKEN_ALPHABET = frozenset(string.ascii_letters + string.digits + "._-")
B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
# Pinned on purpose: changing the salt would invalidate every token already issued.
SALT = b"authtoken.token.v2"

CODEC = TokenCodec(["current-key"])
KEY = new_key()
TOKEN, DIGEST = CODEC.issue(KEY)
SIGNED = TOKEN.rsplit(".", 1)[0]  # what the signature covers, and its signature


def with_checksum(signed: str) -> str:
    """``signed`` (body, secret and signature) with its checksum: a string of the
    current format whatever signed it."""
    return signed + "." + checksum(signed.encode("ascii")).decode("ascii")


def signer(key: str) -> Signer:
    """An itsdangerous Signer configured as the codec documents its signatures."""
    return Signer(key, salt=SALT, sep=".", key_derivation="hmac", digest_method=hashlib.sha256)


def parts(token: str) -> tuple[str, str, str]:
    """The key, secret and signature parts of a token string (the checksum aside)."""
    body, secret, signature, _checksum = token.split(".")
    assert body.startswith(PREFIX)
    return body[len(PREFIX):], secret, signature


def same_bits_variants(char: str) -> list[str]:
    """The base64 characters that differ from ``char`` only in its two lowest bits."""
    index = B64.index(char)
    return [B64[index ^ flip] for flip in (1, 2, 3)]


def b64decode(text: str) -> bytes:
    """Decode unpadded URL-safe base64, as a lenient decoder would."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- issuing and reading -----------------------------------------------------------------------


def test_round_trip() -> None:
    """read() of an issued token gives back its key and the digest issue() returned."""
    assert CODEC.read(TOKEN) == (KEY, DIGEST)


def test_read_accepts_bytes_not_other_buffers() -> None:
    """read() accepts the token as ASCII bytes; bytearray and memoryview are TypeError."""
    assert CODEC.read(TOKEN.encode("ascii")) == (KEY, DIGEST)
    for buffer in (bytearray(TOKEN.encode("ascii")), memoryview(TOKEN.encode("ascii"))):
        with pytest.raises(TypeError):
            CODEC.read(buffer)


def test_token_shape() -> None:
    """A token starts 'atk_', uses only [A-Za-z0-9._-], and is at most 256 characters."""
    assert TOKEN.startswith("atk_")
    assert set(TOKEN) <= TOKEN_ALPHABET
    assert len(TOKEN) <= 256
    assert len(TOKEN) == TOKEN_LENGTH
    assert re.fullmatch(
        r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}\.[0-9A-Za-z]{6}", TOKEN)


def test_token_holds_key_and_256_bit_secret() -> None:
    """The token carries its key in clear and a secret of at least 256 bits."""
    key, secret, _ = parts(TOKEN)
    assert key == KEY
    assert len(b64decode(secret)) >= 32


def test_digest_is_sha256_of_secret() -> None:
    """The digest is SHA-256 of the secret part, so storage need not keep the secret."""
    _, secret, _ = parts(TOKEN)
    assert hashlib.sha256(secret.encode("ascii")).digest() == DIGEST
    assert secret_digest(secret.encode("ascii")) == DIGEST
    assert secret.encode() not in DIGEST


def test_issue_is_random() -> None:
    """Two tokens for the same key differ in secret and digest."""
    first, first_digest = CODEC.issue(KEY)
    second, second_digest = CODEC.issue(KEY)
    assert first != second
    assert first_digest != second_digest
    assert parts(first)[0] == parts(second)[0] == KEY


def test_new_key_shape() -> None:
    """new_key() gives distinct 16-character lowercase base32 keys."""
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"[a-z2-7]{16}", key)


def test_repr_holds_no_secret_key() -> None:
    """A codec's repr says how many keys it holds, never what they are."""
    codec = TokenCodec(["super-secret-key-1", "super-secret-key-2"])
    assert "super-secret" not in repr(codec)
    assert "2" in repr(codec)


# -- secret keys and rotation ----------------------------------------------------------------------


def test_str_and_bytes_keys_are_the_same_key() -> None:
    """A key given as str, bytes or a one-item list signs alike."""
    token, digest = TokenCodec("k").issue(KEY)
    for keys in (b"k", ["k"], [b"k"], ("k",)):
        assert TokenCodec(keys).read(token) == (KEY, digest)


def test_old_key_still_verifies() -> None:
    """A token signed with an old key verifies while that key is later in the list."""
    old_token, digest = TokenCodec(["old"]).issue(KEY)
    assert TokenCodec(["new", "old"]).read(old_token) == (KEY, digest)
    assert TokenCodec(["newer", "new", "old"]).read(old_token) == (KEY, digest)


def test_only_first_key_signs() -> None:
    """A codec signs with its first key: the new key alone verifies, the old alone does not."""
    token, digest = TokenCodec(["new", "old"]).issue(KEY)
    assert TokenCodec(["new"]).read(token) == (KEY, digest)
    with pytest.raises(InvalidToken):
        TokenCodec(["old"]).read(token)


def test_dropped_key_no_longer_verifies() -> None:
    """A token signed by a key not in the list is InvalidToken."""
    old_token, _ = TokenCodec(["old"]).issue(KEY)
    with pytest.raises(InvalidToken):
        TokenCodec(["new"]).read(old_token)
    with pytest.raises(InvalidToken):
        TokenCodec(["new", "older"]).read(old_token)


@pytest.mark.parametrize("keys", ["", b"", [], [""], ["ok", b""], 1, None, [1], ["ok", None]])
def test_bad_secret_keys_are_invalid_argument(keys: object) -> None:
    """Empty or wrongly typed secret keys are an InvalidArgument."""
    with pytest.raises(InvalidArgument):
        TokenCodec(keys)


# -- itsdangerous agreement ----------------------------------------------------------------------


def test_itsdangerous_unsigns_our_tokens() -> None:
    """itsdangerous' Signer, configured alike, verifies an issued token."""
    body = SIGNED.rsplit(".", 1)[0]
    assert signer("current-key").unsign(SIGNED) == body.encode("ascii")
    assert signer("current-key").validate(SIGNED)


def test_itsdangerous_refuses_other_key() -> None:
    """itsdangerous' Signer with another key refuses the token, as the codec does."""
    with pytest.raises(BadSignature):
        signer("another-key").unsign(SIGNED)


def test_codec_reads_itsdangerous_signatures() -> None:
    """A body signed by itsdangerous with the right key is read by the codec."""
    body = SIGNED.rsplit(".", 1)[0]
    assert with_checksum(signer("current-key").sign(body).decode("ascii")) == TOKEN
    resigned = with_checksum(
        signer("current-key").sign(f"atk_{'a' * 16}.{'B' * 43}").decode("ascii"))
    assert CODEC.read(resigned) == ("a" * 16, secret_digest(b"B" * 43))


# -- garbage in ---------------------------------------------------------------------------------


def resigned_with(key: str) -> str:
    """TOKEN's body signed with another key, its checksum right."""
    return with_checksum(signer(key).sign(SIGNED.rsplit(".", 1)[0]).decode("ascii"))


def swapped_secret_and_signature() -> str:
    """TOKEN with its secret and signature parts swapped."""
    key, secret, signature = parts(TOKEN)
    return with_checksum(f"atk_{key}.{signature}.{secret}")


def other_token_signature() -> str:
    """TOKEN's body with the signature of another token of the same codec."""
    other, _ = CODEC.issue(KEY)
    return with_checksum(SIGNED.rsplit(".", 1)[0] + "." + parts(other)[2])


GARBAGE: list[object] = [
    "",
    " ",
    "atk_",
    "atk_.",
    "atk_..",
    "x" * TOKEN_LENGTH,
    "A" * 100_000,
    "é" * TOKEN_LENGTH,
    "\x00" * TOKEN_LENGTH,
    "\ud800" * TOKEN_LENGTH,
    TOKEN[:-1],
    TOKEN[:50],
    TOKEN[1:],
    TOKEN + "A",
    TOKEN + "=",
    TOKEN + "\n",
    " " + TOKEN,
    "\t" + TOKEN,
    TOKEN[:-1] + "é",
    TOKEN[:-1] + "\ud800",
    TOKEN.upper(),
    TOKEN.replace("atk_", "ATK_", 1),
    TOKEN.replace("atk_", "atk-", 1),
    TOKEN.replace(".", "_"),
    TOKEN[:-1] + "+",
    TOKEN[:-1] + "/",
    TOKEN.rsplit(".", 1)[0],
    TOKEN.rsplit(".", 1)[0] + ".",
    TOKEN.rsplit(".", 1)[0] + "." + parts(TOKEN)[2] + "=",
    swapped_secret_and_signature(),
    other_token_signature(),
    resigned_with("another-key"),
    TokenCodec(["another-key"]).issue(KEY)[0],
    b"",
    b"\xff" * TOKEN_LENGTH,
    bytes(range(256)),
    bytes(TOKEN_LENGTH),
    TOKEN.encode("ascii")[:-1] + b"\xff",
    TOKEN.encode("utf-16-le"),
    b"atk_" + b"a" * (TOKEN_LENGTH - 4),
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_invalid_token(garbage: object) -> None:
    """Empty, huge, binary, non-ASCII, truncated, re-signed or re-ordered input is InvalidToken."""
    with pytest.raises(InvalidToken):
        CODEC.read(garbage)


@pytest.mark.parametrize("value", [None, 1, 1.5, [TOKEN], (TOKEN,), {TOKEN: 1},
                                   memoryview(TOKEN.encode()), object()])
def test_non_string_is_type_error(value: object) -> None:
    """A token that is neither str nor bytes is a TypeError."""
    with pytest.raises(TypeError):
        CODEC.read(value)


@pytest.mark.parametrize("part", [1, 2])
def test_unused_bits_of_last_base64_character(part: int) -> None:
    """A secret or signature whose last character differs only in unused bits is refused."""
    pieces = SIGNED.split(".")
    last = pieces[part][-1]
    for variant in same_bits_variants(last):
        mutated_part = pieces[part][:-1] + variant
        # A lenient decoder reads the same bytes: only the canonical text is valid --
        # refused for that, not for its checksum, which is made right here.
        assert b64decode(mutated_part) == b64decode(pieces[part])
        mutated = with_checksum(".".join([*pieces[:part], mutated_part, *pieces[part + 1:]]))
        assert mutated != TOKEN
        with pytest.raises(InvalidToken):
            CODEC.read(mutated)


def test_every_single_character_substitution() -> None:
    """Every substitution of one character by another token character is InvalidToken."""
    for i, original in enumerate(TOKEN):
        for ch in TOKEN_ALPHABET - {original}:
            with pytest.raises(InvalidToken):
                CODEC.read(TOKEN[:i] + ch + TOKEN[i + 1:])


def test_every_single_character_deletion_and_insertion() -> None:
    """Every deletion of one character and every insertion of one is InvalidToken."""
    for i in range(len(TOKEN)):
        with pytest.raises(InvalidToken):
            CODEC.read(TOKEN[:i] + TOKEN[i + 1:])
    for i in range(len(TOKEN) + 1):
        for ch in TOKEN_ALPHABET:
            with pytest.raises(InvalidToken):
                CODEC.read(TOKEN[:i] + ch + TOKEN[i:])


def test_every_adjacent_swap() -> None:
    """Swapping any two adjacent distinct characters is InvalidToken."""
    for i in range(len(TOKEN) - 1):
        if TOKEN[i] != TOKEN[i + 1]:
            swapped = TOKEN[:i] + TOKEN[i + 1] + TOKEN[i] + TOKEN[i + 2:]
            with pytest.raises(InvalidToken):
                CODEC.read(swapped)


# -- properties ----------------------------------------------------------------------------------

any_char = st.one_of(st.characters(), st.sampled_from(sorted(TOKEN_ALPHABET)),
                     st.integers(0xD800, 0xDFFF).map(chr))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, TOKEN_LENGTH - 1), any_char)
def test_substitution_property(index: int, ch: str) -> None:
    """Any single-character substitution of a valid token is InvalidToken."""
    mutated = TOKEN[:index] + ch + TOKEN[index + 1:]
    if mutated == TOKEN:
        assert CODEC.read(mutated) == (KEY, DIGEST)
        return
    with pytest.raises(InvalidToken):
        CODEC.read(mutated)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, TOKEN_LENGTH), any_char)
def test_insertion_property(index: int, ch: str) -> None:
    """Any single-character insertion into a valid token is InvalidToken."""
    with pytest.raises(InvalidToken):
        CODEC.read(TOKEN[:index] + ch + TOKEN[index:])


@settings(max_examples=150, deadline=None)
@given(st.integers(0, TOKEN_LENGTH - 1))
def test_deletion_property(index: int) -> None:
    """Any single-character deletion from a valid token is InvalidToken."""
    with pytest.raises(InvalidToken):
        CODEC.read(TOKEN[:index] + TOKEN[index + 1:])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.text(min_size=TOKEN_LENGTH, max_size=TOKEN_LENGTH),
                 st.text(sorted(TOKEN_ALPHABET), min_size=TOKEN_LENGTH,
                         max_size=TOKEN_LENGTH)))
def test_arbitrary_text_is_invalid_token(text: str) -> None:
    """Arbitrary text, of any length or of exactly a token's length, is InvalidToken."""
    with pytest.raises(InvalidToken):
        CODEC.read(text)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(), st.binary(min_size=TOKEN_LENGTH, max_size=TOKEN_LENGTH)))
def test_arbitrary_bytes_are_invalid_token(data: bytes) -> None:
    """Arbitrary bytes, of any length or of exactly a token's length, are InvalidToken."""
    with pytest.raises(InvalidToken):
        CODEC.read(data)


@settings(max_examples=200, deadline=None)
@given(st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=16, max_size=16),
       st.text(B64, min_size=43, max_size=43), st.text(B64, min_size=43, max_size=43))
def test_well_shaped_forgeries_are_invalid_token(key: str, secret: str, signature: str) -> None:
    """A string of exactly the right shape but a made-up signature is InvalidToken."""
    with pytest.raises(InvalidToken):
        CODEC.read(f"atk_{key}.{secret}.{signature}")


@settings(max_examples=50, deadline=None)
@given(st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=16, max_size=16))
def test_round_trip_property(key: str) -> None:
    """Any well-formed key round-trips through issue() and read()."""
    token, digest = CODEC.issue(key)
    assert CODEC.read(token) == (key, digest)
    assert set(token) <= TOKEN_ALPHABET
