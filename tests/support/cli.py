"""Running the command line in process: one database, output captured."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from authtoken._cli import main

TOKEN_RE = re.compile(
    r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}(?:\.[0-9A-Za-z]{6})?")
SECRET_KEY = "test-secret-key-for-the-cli-tests-0123456789"


class Result(NamedTuple):
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> object:
        return json.loads(self.out)


class FakeTerminal(io.StringIO):
    """Standard input that is a terminal: whatever it holds must not be read."""

    def isatty(self) -> bool:
        return True


class BareReader:
    """Standard input with ``read`` but neither ``isatty`` nor ``buffer``."""

    def __init__(self, text: str) -> None:
        self._text = text

    def read(self, size: int = -1) -> str:
        text, self._text = self._text, ""
        return text if size < 0 else text[:size]


class Cli:
    """Runs ``main`` in process against one SQLite database, capturing its output."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 url: str) -> None:
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.url = url

    def raw(self, *args: str, stdin: object = None) -> Result:
        self.capsys.readouterr()
        self.monkeypatch.setattr("sys.stdin", FakeTerminal() if stdin is None else stdin)
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def __call__(self, *args: str, stdin: str | object | None = None) -> Result:
        """Run ``authtoken --database URL *args``; a ``str`` stdin is piped in."""
        feed = io.StringIO(stdin) if isinstance(stdin, str) else stdin
        return self.raw("--database", self.url, *args, stdin=feed)

    def authorize(self, user: str = "7", scope: str = "reports:read", *extra: str) -> str:
        result = self("authorize", "--user", user, "--scope", scope, *extra)
        assert result.code == 0, result.err
        return result.out.strip()

    def view(self, key: str) -> dict[str, object]:
        result = self("--json", "show", key)
        assert result.code == 0, result.err
        view = result.json()
        assert isinstance(view, dict)
        return view



def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []
