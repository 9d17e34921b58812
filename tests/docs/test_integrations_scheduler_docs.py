"""The scheduler pages (docs/integrations/celery.md, apscheduler.md) quote their example
programs faithfully, and the programs run, say what they did and print no token string.
The marking of excerpts and output is the one test_docs_excerpts reads."""

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
    "celery.md": "examples/celery_job.py",
    "apscheduler.md": "examples/apscheduler_job.py",
}
# What each program must print: one phrase per step that matters.
PHRASES = {
    "examples/celery_job.py": (
        "export ran as 'alice' for 2030-01-01",
        "run id is the task's id: True",
        "its run token: child of the standing token: True, revoked: True",
        "token strings in them: 0",
        "FAILURE: TokenRevoked('the token was revoked')",
        "the worker's log names the task: True; token strings in it: 0",
        "done",
    ),
    "examples/apscheduler_job.py": (
        "export of 2030-01-01 ran as 'alice'",
        "run id is the job's id and its scheduled time: True",
        "its run token: child of the standing token: True, revoked: True",
        "the job store holds func='apscheduler_job:export' args=('yesterday',); "
        "token strings in it: 0",
        "export of yesterday ran as 'alice'",
        "EVENT_JOB_ERROR: True, exception TokenRevoked('the token was revoked')",
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
