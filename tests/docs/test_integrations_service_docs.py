"""docs/integrations/services.md quotes its example program faithfully, and the program
runs, says what it did and prints no token string; the admin page's section on
introspection and revocation says what the application does.  The marking of excerpts
and output is the one test_docs_excerpts reads."""

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

PAGE = DOCS / "integrations" / "services.md"
PROGRAM = "examples/service_check.py"
# What the program must print: one phrase per step that matters.
PHRASES = (
    "introspect for script 7: 200 active=True sub=alice",
    "members: active, authtoken_key, chain, exp, iat, run_id, scope, sub, token_type",
    "cache-control: no-store / pragma: no-cache",
    "introspect for script 8: 200 {'active': False}",
    "a forged string: 200 {'active': False}",
    "the service revokes alice's token: 403",
    "no credential: 401",
    "alice revokes it: 200, body b''",
    "introspect after revocation: 200 {'active': False}",
    "the auth shows only the key: True",
    "plain http to another host: InvalidArgument before sending",
    "the job token was used 1 time(s) of 100",
    "done",
)


def blocks() -> list[Block]:
    return marked_blocks(PAGE)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def test_page_quotes_its_program() -> None:
    """The page marks excerpts and output of its own program only, and links to it."""
    found = blocks()
    assert {(b.kind, b.program) for b in found} >= {("excerpt", PROGRAM), ("output", PROGRAM)}
    assert {b.program for b in found} == {PROGRAM}
    assert f"(../{PROGRAM})" in PAGE.read_text(encoding="utf-8")


def test_page_names_the_rules_a_service_relies_on() -> None:
    """The outage rule, the one inactive answer, and where the token may be sent."""
    text = PAGE.read_text(encoding="utf-8")
    for phrase in ('`200 {"active": false}`', "**503**", "never\n`active: false`",
                   "Go", "Java", "`authtoken.httpx.DelegationAuth`",
                   "`authtoken.requests.DelegationAuth`", "over `https://`"):
        assert phrase in text, phrase
    admin = (DOCS / "admin.md").read_text(encoding="utf-8")
    assert "### Introspection and revocation for services" in admin
    assert "(integrations/services.md)" in admin
    assert "**never** `{\"active\": false}`" in admin


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
def test_program_says_what_it_did(home: Path) -> None:
    """The program exits 0 and prints no token string (printed_by checks both), prints
    each step's phrase, and leaves the home folder alone."""
    printed = "\n".join(printed_by(PROGRAM, home))
    for phrase in PHRASES:
        assert phrase in printed, f"{PROGRAM} did not print {phrase!r}:\n{printed}"
    assert not (home / "data" / "authtoken").exists(), "wrote to the default data dir"
