"""The web-framework pages (docs/integrations/fastapi.md, starlette.md, django.md) quote
their example programs faithfully, and the programs run, say what they did and print no
token string.  The marking of excerpts and output is the one test_docs_excerpts reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_docs_excerpts import (
    DOCS,
    Block,
    marked_blocks,
    occurs,
    pieces,
    printed_by,
    runs_within,
)

PAGES = {
    "fastapi.md": "examples/fastapi_app.py",
    "starlette.md": "examples/starlette_app.py",
    "django.md": "examples/django_drf.py",
}
# What each program must print: one phrase per step that matters.
PHRASES = {
    "examples/fastapi_app.py": (
        "whoami as alice: 200",
        "reports with no header: 401",
        "WWW-Authenticate: Bearer error=\"insufficient_scope\"",
        "a token in the query string: 401",
        "reports after revocation: 401 {'detail': 'the token was revoked'}",
        "OpenAPI security scheme: type=http scheme=bearer",
        "alice's token was used 3 times",
        "done",
    ),
    "examples/starlette_app.py": (
        "whoami as alice: 200",
        "anonymous whoami: 200 {'user': None}",
        "reports as bob (no reports:read): 403",
        "a forged token: 401",
        "done",
    ),
    "examples/django_drf.py": (
        "whoami as alice: 200",
        "reports with no header: 401",
        "insufficient_scope",
        "a token of a user with no account: 401",
        "reports after revocation: 401",
        "done",
    ),
}


def blocks() -> list[Block]:
    return [b for page in PAGES for b in marked_blocks(DOCS / "integrations" / page)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_quotes_its_program(page: str) -> None:
    """Each page marks at least one excerpt and one output block of its own program,
    and links to that program."""
    found = marked_blocks(DOCS / "integrations" / page)
    assert {(b.kind, b.program) for b in found} >= {
        ("excerpt", PAGES[page]), ("output", PAGES[page])}
    assert {b.program for b in found} == {PAGES[page]}
    text = (DOCS / "integrations" / page).read_text(encoding="utf-8")
    assert f"(../{PAGES[page]})" in text


@pytest.mark.parametrize("block", [b for b in blocks() if b.kind == "excerpt"],
                         ids=lambda b: b.where)
def test_excerpt_is_in_its_program(block: Block) -> None:
    """Each piece of an excerpt is copied verbatim from the program it names."""
    assert block.program is not None
    source = (DOCS / block.program).read_text(encoding="utf-8").splitlines()
    assert pieces(block.lines), f"{block.where}: an empty excerpt"
    for piece in pieces(block.lines):
        assert occurs(piece, source), f"{block.where}: not in {block.program}:\n" + \
            "\n".join(piece)


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in blocks() if b.kind == "output"],
                         ids=lambda b: b.where)
def test_output_is_what_its_program_prints(block: Block, home: Path) -> None:
    """A marked output block is a run of consecutive lines its program prints."""
    assert block.program is not None
    assert block.lines, f"{block.where}: an empty output block"
    assert runs_within(block.lines, printed_by(block.program, home)), (
        f"{block.where}: {block.program} does not print these lines together:\n"
        + "\n".join(block.lines))


@pytest.mark.slow
@pytest.mark.parametrize("program", sorted(PHRASES))
def test_program_says_what_it_did(program: str, home: Path) -> None:
    """The program exits 0 (printed_by checks), prints no token string (printed_by
    checks) and prints each step's phrase; it leaves the home folder alone."""
    printed = "\n".join(printed_by(program, home))
    for phrase in PHRASES[program]:
        assert phrase in printed, f"{program} did not print {phrase!r}:\n{printed}"
    assert not (home / "data" / "authtoken").exists(), "wrote to the default data dir"
