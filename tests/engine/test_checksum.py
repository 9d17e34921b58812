"""The keyless checksum at the end of a token string, and the strings issued before it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import re
import string
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import Signer

from authtoken import (
    AuthToken,
    InvalidToken,
    MemoryRepository,
    Repository,
    Security,
    SQLRepository,
)
from authtoken._codec import (
    LEGACY_TOKEN_LENGTH,
    TOKEN_LENGTH,
    TokenCodec,
    checksum,
    checksum_holds,
    secret_digest,
)
from authtoken._scan import TOKEN_PATTERN, find_tokens
from authtoken.testing import FakeClock

TOKEN_ALPHABET = string.ascii_letters + string.digits + "._-"
B32 = "abcdefghijklmnopqrstuvwxyz234567"
B64 = string.ascii_letters + string.digits + "-_"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase

CODEC = TokenCodec(["current-key", "older-key"])
TOKENS = [CODEC.issue(key)[0] for key in ("abcdefghijklmnop", "zzzzzzzzzzzzzzzz",
                                          "2345672345672345")]
TOKEN = TOKENS[0]

# Issued by the codec before the checksum existed (secret key "legacy-key"), pinned: a
# string users hold must keep reading however the codec changes.
LEGACY_KEY = "legacylegacy2345"
LEGACY = ("atk_legacylegacy2345.C4gpsFBmUfjMQBFBcEsDlrd6kXjtSBq06FCbYumFe7Y"
          ".8r_Fikr2HKwIsjGchNHmV279VMf2wY_azTwD0AY3vjc")


def crc_base62(body: str) -> str:
    """The checksum as docs/leaks.md defines it, computed independently of the codec."""
    value = zlib.crc32(body.encode("ascii"))
    digits = ""
    for _ in range(6):
        value, digit = divmod(value, 62)
        digits = B62[digit] + digits
    return digits


def legacy_sign(secret_key: str, body: str) -> str:
    """``atk_<key>.<secret>`` signed as the codec signed strings before the checksum."""
    signer = Signer(secret_key, salt=b"authtoken.token.v1", sep=".", key_derivation="hmac",
                    digest_method=hashlib.sha256)
    return signer.sign(body).decode("ascii")


def refused(token: str) -> bool:
    """Whether the codec refuses ``token`` with InvalidToken."""
    try:
        CODEC.read(token)
    except InvalidToken:
        return True
    return False


# -- the format ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", TOKENS)
def test_issued_string_ends_with_its_crc32_in_base62(token: str) -> None:
    """A string issued now is atk_<key>.<secret>.<signature>.<CRC32 of the rest, base62>."""
    assert re.fullmatch(r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}"
                        r"\.[0-9A-Za-z]{6}", token)
    body, digits = token.rsplit(".", 1)
    assert digits == crc_base62(body) == checksum(body.encode()).decode()
    assert checksum_holds(token)
    assert re.fullmatch(TOKEN_PATTERN, token)


@pytest.mark.parametrize("token", TOKENS)
def test_every_clause_on_token_strings_still_holds(token: str) -> None:
    """Prefix atk_, alphabet [A-Za-z0-9._-], at most 256 characters, 256 bits of secret."""
    assert token.startswith("atk_")
    assert set(token) <= set(TOKEN_ALPHABET)
    assert len(token) == TOKEN_LENGTH <= 256
    secret = token.split(".")[1]
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32


def test_checksum_is_fixed_width_and_zero_padded() -> None:
    """Checksums of small and of the largest CRC values keep six digits."""
    for body in (b"", b"a", b"atk_", TOKEN.rsplit(".", 1)[0].encode()):
        assert len(checksum(body)) == 6
        assert checksum(body).decode() == crc_base62(body.decode())
    assert checksum(b"") == b"000000"  # crc32(b"") == 0


@given(st.text(alphabet=string.printable, max_size=200))
def test_checksum_is_the_crc32_in_base62_for_any_body(body: str) -> None:
    """The codec's checksum (digit pairs looked up) is the documented one (six
    divisions) for any body, so every value of the CRC is written the same way."""
    assert checksum(body.encode("ascii")).decode() == crc_base62(body)


@pytest.mark.parametrize("text", ["", ".", "......", "atk_", "é" * 200, TOKEN[:-7],
                                  TOKEN + "x", TOKEN[:-1] + "\ud800", "." + TOKEN[-6:]])
def test_checksum_holds_refuses_text_that_is_not_a_checksummed_string(text: str) -> None:
    """Short, empty, non-ASCII or glued text never passes checksum_holds."""
    assert not checksum_holds(text)


def test_non_ascii_body_never_passes_even_with_a_matching_checksum() -> None:
    """A non-ASCII character is not read as an ASCII stand-in ('?') when checking."""
    body = TOKEN.rsplit(".", 1)[0]
    digits = crc_base62(body[:30] + "?" + body[31:])
    assert not checksum_holds(f"{body[:30]}é{body[31:]}.{digits}")
    assert checksum_holds(f"{body[:30]}?{body[31:]}.{digits}")


# -- mutations ------------------------------------------------------------------------------


def substitutions(token: str) -> Iterator[str]:
    for i, original in enumerate(token):
        for ch in TOKEN_ALPHABET:
            if ch != original:
                yield token[:i] + ch + token[i + 1:]


def adjacent_swaps(token: str) -> Iterator[str]:
    for i in range(len(token) - 1):
        if token[i] != token[i + 1]:
            yield token[:i] + token[i + 1] + token[i] + token[i + 2:]


@pytest.mark.parametrize("token", TOKENS)
def test_checksum_alone_catches_every_substitution_and_adjacent_swap(token: str) -> None:
    """CRC32 sees every one-character typo and every adjacent swap, anywhere in the string."""
    for mutated in [*substitutions(token), *adjacent_swaps(token)]:
        assert not checksum_holds(mutated)


def mutate(token: str, op: str, i: int, j: int, ch: str) -> str:
    """``token`` with one substitution, deletion, insertion or transposition."""
    i %= len(token)
    j %= len(token)
    if op == "substitute":
        return token[:i] + ch + token[i + 1:]
    if op == "delete":
        return token[:i] + token[i + 1:]
    if op == "insert":
        return token[:i] + ch + token[i:]
    chars = list(token)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TOKENS), st.sampled_from(["substitute", "delete", "insert", "swap"]),
       st.integers(0, 10_000), st.integers(0, 10_000),
       st.one_of(st.sampled_from(TOKEN_ALPHABET), st.characters()))
def test_no_one_character_mutation_passes_checksum_and_signature(
        token: str, op: str, i: int, j: int, ch: str) -> None:
    """A substitution, deletion, insertion or transposition never reads as a token."""
    mutated = mutate(token, op, i, j, ch)
    if mutated == token:
        return
    assert not (checksum_holds(mutated) and not refused(mutated))
    assert refused(mutated)


@settings(max_examples=200, deadline=None)
@given(st.text(B32, min_size=16, max_size=16), st.text(B64, min_size=43, max_size=43),
       st.text(B64, min_size=43, max_size=43))
def test_checksum_valid_forgery_is_invalid_token(key: str, secret: str, signature: str) -> None:
    """A made-up string whose checksum holds is still InvalidToken: the signature decides."""
    body = f"atk_{key}.{secret}.{signature}"
    forged = f"{body}.{crc_base62(body)}"
    assert checksum_holds(forged)
    assert refused(forged)


# -- random strings of the right shape -----------------------------------------------------


def random_shaped(rng: random.Random) -> str:
    return "atk_{}.{}.{}.{}".format(*("".join(rng.choices(alphabet, k=n)) for alphabet, n in
                                      ((B32, 16), (B64, 43), (B64, 43), (B62, 6))))


def test_random_strings_of_the_right_shape_almost_never_pass() -> None:
    """None of 2**17 random strings of the token's shape passes the checksum.

    The true rate is 62**-6 (about 2**-35.7), so the expected count is about 2**-18.7;
    a checksum with 17 bits of strength or less would let one through more often than
    not, one of 3 base62 digits over a hundred.
    """
    rng = random.Random(20261204)
    passed = sum(checksum_holds(random_shaped(rng)) for _ in range(2**17))
    assert passed == 0


def test_checksums_of_random_bodies_spread_over_32_bits() -> None:
    """2**16 random bodies give almost no two equal checksums, as 32 bits would.

    Birthday bound: about 0.5 pairs expected for 32 bits; a 24-bit checksum gives about
    128, a 16-bit one tens of thousands.
    """
    rng = random.Random(7)
    seen = [checksum(random_shaped(rng)[:-7].encode()) for _ in range(2**16)]
    assert len(seen) - len(set(seen)) <= 6


# -- the two formats -------------------------------------------------------------------------


def test_pinned_legacy_string_still_reads() -> None:
    """A string of the earlier format, issued by the earlier codec, reads to its key."""
    assert len(LEGACY) == LEGACY_TOKEN_LENGTH
    secret = LEGACY.split(".")[1]
    assert TokenCodec(["new-key", "legacy-key"]).read(LEGACY) == (
        LEGACY_KEY, secret_digest(secret.encode()))
    assert legacy_sign("legacy-key", LEGACY.rsplit(".", 1)[0]) == LEGACY
    with pytest.raises(InvalidToken):
        TokenCodec("another-key").read(LEGACY)


def test_legacy_strings_have_no_checksum_and_are_not_found() -> None:
    """An earlier string is not checksummed, so find_tokens does not report it."""
    assert find_tokens(f"TOKEN={LEGACY}\n") == []


def test_new_string_with_its_checksum_cut_off_is_refused() -> None:
    """Cutting the checksum off leaves an earlier-format string whose signature fails."""
    for token in TOKENS:
        cut = token.rsplit(".", 1)[0]
        assert len(cut) == LEGACY_TOKEN_LENGTH
        assert refused(cut)


def test_legacy_string_given_a_checksum_is_refused() -> None:
    """An earlier string with a valid checksum appended is not a new-format string."""
    body = legacy_sign("current-key", TOKEN.rsplit(".", 2)[0])
    assert not refused(body)  # the earlier format, same secret key: valid as it was
    assert refused(f"{body}.{crc_base62(body)}")
    assert checksum_holds(f"{body}.{crc_base62(body)}")


def test_new_signature_does_not_verify_as_legacy_and_back() -> None:
    """Each format's signature has its own salt: neither verifies in the other format."""
    key_secret, signature, digits = TOKEN.rsplit(".", 2)
    legacy_signature = legacy_sign("current-key", key_secret).rsplit(".", 1)[1]
    assert legacy_signature != signature
    swapped = f"{key_secret}.{legacy_signature}"
    assert refused(f"{swapped}.{crc_base62(swapped)}")
    assert refused(f"{key_secret}.{signature}")
    assert not refused(f"{key_secret}.{signature}.{digits}")


# -- logging in with an earlier string -------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    """A memory store and a real SQLite file."""
    if request.param == "memory":
        yield MemoryRepository()
    else:
        yield SQLRepository(f"sqlite:///{tmp_path / 'tokens.db'}")


def _stored_as(security: Security, make: Callable[[], AuthToken], key: str,
               digest: bytes) -> None:
    """Store a token under ``key`` with ``digest``, as the earlier codec's authorize did."""
    token = make()
    security.authorize_token(token, user="alice")
    record = security.repository.get(token.key or "")
    assert record is not None
    security.repository.insert(dataclasses.replace(record, key=key, secret_hash=digest))


def test_earlier_strings_still_log_in(repository: Repository) -> None:
    """An earlier-format string logs in on memory and SQLite; new strings stay checksummed."""
    with Security(repository, secret_keys=["new-key", "legacy-key"],
                  clock=FakeClock()) as security:
        digest = secret_digest(LEGACY.split(".")[1].encode())
        _stored_as(security, lambda: AuthToken("reports:read"), LEGACY_KEY, digest)
        principal = security.login_by_auth_token(LEGACY)
        assert (principal.token_key, principal.user) == (LEGACY_KEY, "alice")
        assert principal.has_scope("reports:read")

        fresh = security.authorize_token(AuthToken("jobs:run"), user="bob")
        assert checksum_holds(fresh)
        assert security.login_by_auth_token(fresh).user == "bob"
        # The same token's secret in the earlier format needs the secret key to sign it;
        # cut from the new string, it is refused.
        with pytest.raises(InvalidToken):
            security.login_by_auth_token(fresh.rsplit(".", 1)[0])
        security.revoke_auth_token(LEGACY)
        assert security.get_auth_token(LEGACY_KEY).revoked_at is not None
