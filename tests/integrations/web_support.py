"""What the web-framework tests share: a real SQLite-backed engine, a repository whose
login read waits to be released, and the check that no token string got out."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path

from authtoken import Security, SQLRepository
from authtoken.testing import FakeClock

SECRET_KEYS = ["web-test-key"]
# A token string, with its checksum or without (the earlier format).
TOKEN_STRING = re.compile(
    r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}(?:\.[0-9A-Za-z]{6})?")
# A held login gives up after this long, so a broken test fails instead of hanging.
HOLD_LIMIT = 20.0


class HeldRepository(SQLRepository):
    """A real SQLite repository whose login read, once ``hold()`` is called, waits in
    the calling thread until ``release()``: storage that is slow to answer."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.holding = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.released.set()

    def login_row(self, key: str):  # type: ignore[no-untyped-def]
        if self.holding:
            self.entered.set()
            assert self.released.wait(HOLD_LIMIT), "the held login was never released"
        return super().login_row(key)


def sqlite_security(tmp_path: Path, clock: FakeClock, *, held: bool = False) -> Security:
    """A ``Security`` over a fresh SQLite file in ``tmp_path`` with ``clock``."""
    url = f"sqlite:///{tmp_path / 'web.db'}"
    repository = HeldRepository(url) if held else SQLRepository(url)
    return Security(repository, secret_keys=SECRET_KEYS, clock=clock)


def forged(token: str) -> str:
    """``token`` with one character of its secret changed: the same shape, refused."""
    dot = token.index(".") + 5
    return token[:dot] + ("A" if token[dot] != "A" else "B") + token[dot + 1:]


def assert_no_token(texts: Iterable[str], *tokens: str) -> None:
    """No text holds a token string, nor any of ``tokens`` (nor their secret part)."""
    for text in texts:
        assert TOKEN_STRING.search(text) is None, "a token string got out"
        for token in tokens:
            assert token not in text, "a token got out"
            secret = token.split(".")[1]
            assert secret not in text, "a token's secret got out"
