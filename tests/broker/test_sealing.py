"""Sealing upstream tokens at rest: round trips, tampering, moved blobs, key rotation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import MemoryRepository, Security
from authtoken._sealing import FIELDS, PURPOSE, Sealer, Unsealable

TOKEN = "refresh-token-sentinel-3b1f"


def sealer(*keys: str) -> Sealer:
    """A sealer over the engine's derived keys for ``keys`` (newest first)."""
    security = Security(MemoryRepository(), secret_keys=list(keys))
    return Sealer(security.derive_keys(PURPOSE))


NEW = sealer("key-one")
users = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(min_size=1, max_size=40))
names = st.text(min_size=1, max_size=40)
tokens = st.text(max_size=300)


@settings(max_examples=200, deadline=None)
@given(token=tokens, user=users, name=names, field=st.sampled_from(FIELDS))
def test_round_trip(token: str, user: int | str, name: str, field: str) -> None:
    """Any token sealed for a link opens for that link, and the blob does not hold it."""
    blob = NEW.seal(token, user=user, name=name, field=field)
    assert NEW.open(blob, user=user, name=name, field=field) == token
    if len(token) >= 4:
        assert token.encode() not in blob


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_tampering_is_refused(data: st.DataObject) -> None:
    """Changing, cutting or extending any byte of a blob makes it refuse to open."""
    blob = bytearray(NEW.seal(TOKEN, user="alice", name="space", field="refresh"))
    how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=20))
    with pytest.raises(Unsealable) as info:
        NEW.open(bytes(blob), user="alice", name="space", field="refresh")
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(("user", "name", "field"), [
    ("bob", "space", "refresh"),       # another user's row
    ("alice", "spatium", "refresh"),   # another link of the user
    ("alice", "space", "access"),      # the other column of the row
    (42, "space", "refresh"),          # the integer user, not the string "42"
])
def test_a_moved_blob_does_not_open(user: int | str, name: str, field: str) -> None:
    """A blob copied into another row or column is refused."""
    blob = NEW.seal(TOKEN, user="42" if user == 42 else "alice", name="space",
                    field="refresh")
    with pytest.raises(Unsealable):
        NEW.open(blob, user=user, name=name, field=field)


def test_key_rotation_keeps_blobs_readable() -> None:
    """After a rotation (new key first, old listed) old blobs open; new ones use the new key."""
    old_blob = sealer("key-one").seal(TOKEN, user=1, name="n", field="access")
    rotated = sealer("key-two", "key-one")
    assert rotated.open(old_blob, user=1, name="n", field="access") == TOKEN
    assert not rotated.sealed_by_newest(old_blob)
    new_blob = rotated.seal(TOKEN, user=1, name="n", field="access")
    assert rotated.sealed_by_newest(new_blob)
    with pytest.raises(Unsealable) as info:  # the old key alone cannot open the new blob
        sealer("key-one").open(new_blob, user=1, name="n", field="access")
    assert "no longer listed" in str(info.value)
    with pytest.raises(Unsealable):  # nor the new key alone the old one
        sealer("key-two").open(old_blob, user=1, name="n", field="access")


def test_each_seal_uses_a_fresh_nonce() -> None:
    """Sealing the same token twice gives two different blobs."""
    one = NEW.seal(TOKEN, user=1, name="n", field="access")
    two = NEW.seal(TOKEN, user=1, name="n", field="access")
    assert one != two and one[9:21] != two[9:21]


def test_reprs_hold_no_key() -> None:
    """The sealer's repr names only how many keys it holds."""
    assert repr(sealer("key-two", "key-one")) == "Sealer(<2 key(s)>)"


def test_derive_keys_newest_first() -> None:
    """``derive_keys`` gives one key per secret key, the first being ``derive_key``'s."""
    security = Security(MemoryRepository(), secret_keys=["a", "b"])
    keys = security.derive_keys("x")
    assert len(keys) == 2 and keys[0] == security.derive_key("x") != keys[1]
    assert Security(MemoryRepository(), secret_keys=["b"]).derive_key("x") == keys[1]
    with pytest.raises(TypeError):
        security.derive_keys(3)  # type: ignore[arg-type]
