"""docs/pinning.md: its example runs as printed, and its sample identifier parses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from authtoken._scopes import code_bindings_of, parse_scope

PAGE = Path(__file__).resolve().parents[2] / "docs" / "pinning.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)


def blocks(language: str) -> list[str]:
    text = PAGE.read_text(encoding="utf-8")
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def test_example_prints_what_the_page_says(tmp_path: Path) -> None:
    """The page's program, run in a fresh interpreter, prints exactly the lines shown
    after "It prints:" and never a token string."""
    (program,) = blocks("python")
    text = PAGE.read_text(encoding="utf-8")
    printed = text.split("It prints:", 1)[1]
    expected = BLOCK.search(printed)
    assert expected is not None
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected.group(2)
    assert "atk_" not in done.stdout + done.stderr


def test_sample_identifier_is_a_code_binding() -> None:
    """The identifier the page shows is a well-formed code binding."""
    (sample,) = [body.strip() for body in blocks("") if body.strip().startswith("sha256:")]
    assert code_bindings_of(parse_scope(sample)) == (sample,)
