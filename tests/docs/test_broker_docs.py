"""docs/broker.md tells the broker's story by quoting its example program faithfully, and
the program runs, says what it did and prints no token; the page keeps the rules a
reader relies on (the scope, sealing, one refresh per link, the states, the audit
event) and points to the command line and the admin API, whose page documents the
upstream routes.  The marking of excerpts and output is the one test_docs_excerpts
reads."""

from __future__ import annotations

import ast
import re
import sys

import pytest
from test_docs_excerpts import (
    DOCS,
    ROOT,
    Block,
    marked_blocks,
)

from authtoken.broker import LINK_STATES

PAGE = DOCS / "broker.md"
PROGRAM = "examples/broker_lessons.py"
# What the program must print: one phrase per step that matters.
PHRASES = (
    "alice links her space account: {'space': 'ok'}",
    "the job's environment: AUTHTOKEN_DATABASE_URL, AUTHTOKEN_SECRET_KEYS, AUTHTOKEN_TOKEN",
    "neither the password nor a refresh token is in it: True",
    "job: lesson 1 of space 1 read as 'alice'",
    "token requests: password grant 1, refresh grant 0 -- the stored token served",
    "token requests: password grant 1, refresh grant 1 -- one refresh",
    "refresh tokens presented twice: 0",
    "job: refused: TokenRevoked",
    "job: refused: SessionExpired",
    "alice sees {'space': 'needs_relink'}",
    "alice links again: {'space': 'ok'}",
    "the database holds no password, refresh token or JWT in clear: True",
    "first token, upstream:space, refused, TokenRevoked: 1",
    "no token, password or JWT in any event: True",
    "done",
)


def blocks() -> list[Block]:
    return marked_blocks(PAGE)


def test_page_quotes_its_program() -> None:
    """The page marks excerpts and output of its own program only, and links to it."""
    found = blocks()
    assert [b.kind for b in found].count("excerpt") >= 3
    assert [b.kind for b in found].count("output") >= 4
    assert {b.program for b in found} == {PROGRAM}
    assert f"({PROGRAM})" in PAGE.read_text(encoding="utf-8")


def test_page_keeps_the_rules_a_reader_relies_on() -> None:
    """The scope, the errors, sealing and rotation, the lease, every state, the audit
    event; the command line's and the admin API's sections with their links."""
    text = PAGE.read_text(encoding="utf-8")
    for phrase in ("`upstream:<name>`", "`PermissionDenied`", "`TokenRevoked`",
                   "`SessionNotEstablished`", "`SessionExpired`", "`IssuerError`",
                   "AES-GCM", "HKDF", "key rotation", "*lease*", "exactly once",
                   "action `upstream`", "`link_password(user, name, username, password)`",
                   "`link_refresh_token(user, name, refresh_token)`",
                   "## From the command line", "(cli.md#upstream)",
                   "`authtoken upstream link`", "## In the admin API",
                   "`GET /upstreams[?user=U]`", "`DELETE /upstreams/{name}[?user=U]`",
                   "(admin.md#upstream-links)"):
        assert phrase in text, phrase
    states = re.search(r"## States\n(.*?)\n## ", text, flags=re.DOTALL)
    assert states is not None
    assert {f"| `{s}` |" in states.group(1) for s in LINK_STATES} == {True}


def test_the_admin_page_documents_the_upstream_routes() -> None:
    """docs/admin.md lists both routes, has the section broker.md links to, and says who
    may act for whom and that an unlink is not on the audit trail."""
    admin = (DOCS / "admin.md").read_text(encoding="utf-8")
    assert "### Upstream links" in admin
    for phrase in ("`GET /upstreams[?user=U]`", "`DELETE /upstreams/{name}[?user=U]`",
                   "broker=broker", "(broker.md)", "`_upstreams.py`", "needs an admin",
                   "not an audit event"):
        assert phrase in admin, phrase


def test_the_program_needs_only_the_extras_it_names() -> None:
    """The docstring names one ``pip install "authtoken[...]"``; each extra exists, and
    every package the program imports besides the standard library and authtoken is
    in one of them."""
    source = (DOCS / PROGRAM).read_text(encoding="utf-8")
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree) or ""
    installs = re.findall(r'pip install "authtoken\[([a-z0-9,-]+)\]"', docstring)
    assert installs == ["broker,testing"], installs
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["optional-dependencies"]
    wanted = installs[0].split(",")
    assert set(wanted) <= set(extras)
    brought = {re.split(r"[\[<>=~!; ]", requirement, maxsplit=1)[0].lower()
               for extra in wanted for requirement in extras[extra]}
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "authtoken"}
    assert third_party and third_party <= brought, (third_party, brought)


# The page's excerpts and output blocks are held to the program by test_docs_excerpts
# (it reads every page of docs/), and the program's phrases by test_docs_examples, which
# runs it where only its extras are installed: running it here again would add nothing.
