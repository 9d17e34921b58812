"""What the pages quote is what the programs say: excerpts, printed output, runnable blocks.

A page marks a code block it copied from an example with a comment on the line before:
``<!-- excerpt: examples/NAME.py -->`` before a ``python`` block (a line holding only
``...`` separates the pieces taken from different places), ``<!-- output:
examples/NAME.py -->`` before a ``text`` block of what the program prints.  README.md
marks the blocks a reader can paste into ``python`` as they are with ``<!-- runnable -->``.
These tests run the programs and the blocks and hold each marked block to them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MARKER = re.compile(r"<!-- (?P<kind>excerpt|output): (?P<program>examples/[\w-]+\.py) -->")
RUNNABLE = "<!-- runnable -->"
# A token string, with the checksum strings carry now or without it (earlier ones).
TOKEN_STRING = re.compile(
    r"atk_[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}(?:\.[0-9A-Za-z]{6})?")
FENCE = {"excerpt": "```python", "output": "```text"}
TIMEOUT = 120


class Block(NamedTuple):
    page: Path
    line: int  # 1-based line of the marker
    kind: str  # excerpt, output or runnable
    program: str | None  # examples/NAME.py, relative to docs/
    lines: list[str]

    @property
    def where(self) -> str:
        return f"{shown(self.page)}:{self.line}"


def shown(page: Path) -> str:
    """``page`` as messages name it: relative to the repository when inside it."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def marked_blocks(page: Path) -> list[Block]:
    """The marked code blocks of ``page``; a marker not followed by its kind of block
    fails here."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for number, line in enumerate(lines):
        match = MARKER.fullmatch(line.strip())
        if match is not None:
            kind, program, fence = match["kind"], match["program"], FENCE[match["kind"]]
        elif line.strip() == RUNNABLE:
            kind, program, fence = "runnable", None, "```python"
        else:
            continue
        where = f"{shown(page)}:{number + 1}"
        assert number + 1 < len(lines) and lines[number + 1].strip() == fence, \
            f"{where}: the marker must be followed by a {fence} block"
        ends = [i for i in range(number + 2, len(lines)) if lines[i].strip() == "```"]
        assert ends, f"{where}: the block never ends"
        end = ends[0]
        blocks.append(Block(page, number + 1, kind, program, lines[number + 2:end]))
    return blocks


def all_blocks() -> list[Block]:
    return [block for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
            for block in marked_blocks(page)]


def pieces(lines: list[str]) -> list[list[str]]:
    """An excerpt cut at its ``...`` lines, each piece dedented, blank edges dropped."""
    found: list[list[str]] = [[]]
    for line in lines:
        if line.strip() == "...":
            found.append([])
        else:
            found[-1].append(line)
    out = []
    for piece in found:
        text = textwrap.dedent("\n".join(piece)).strip("\n")
        if text:
            out.append(text.splitlines())
    return out


def occurs(piece: list[str], source: list[str]) -> bool:
    """Whether ``piece`` is a run of ``source``'s lines, all indented alike."""
    first = piece[0]
    for start, line in enumerate(source):
        if not line.endswith(first) or line[:len(line) - len(first)].strip():
            continue
        indent = line[:len(line) - len(first)]
        window = source[start:start + len(piece)]
        if len(window) == len(piece) and all(
                (got.rstrip() == indent + want.rstrip()) if want.strip() else not got.strip()
                for got, want in zip(window, piece, strict=True)):
            return True
    return False


def runs_within(lines: list[str], printed: list[str]) -> bool:
    """Whether ``lines`` are consecutive lines of ``printed``."""
    return any(printed[start:start + len(lines)] == lines
               for start in range(len(printed) - len(lines) + 1))


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AUTHTOKEN_") and k not in ("PYTHONPATH",)}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PYTHONUNBUFFERED="1")
    return env


@cache
def printed_by(program: str, home: Path) -> list[str]:
    """What ``docs/<program>`` prints, run once per test session."""
    done = subprocess.run([sys.executable, str(DOCS / program)], cwd=home,
                          env=clean_env(home), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, f"{program} failed:\n{done.stdout}{done.stderr}"
    assert TOKEN_STRING.search(done.stdout + done.stderr) is None, f"{program} printed a token"
    return done.stdout.splitlines()


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    """``block`` run by a fresh interpreter in ``folder`` (also its home)."""
    return subprocess.run([sys.executable, "-c", "\n".join(block.lines)], cwd=folder,
                          env=clean_env(folder), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def test_the_scheduler_page_marks_its_excerpts_and_output() -> None:
    """docs/scheduler.md quotes its example through marked blocks, code and output both."""
    kinds = [(b.kind, b.program) for b in marked_blocks(DOCS / "scheduler.md")]
    assert kinds.count(("excerpt", "examples/scheduler.py")) >= 6
    assert kinds.count(("output", "examples/scheduler.py")) >= 6


def test_readme_jobs_block_shows_each_refusal(tmp_path: Path) -> None:
    """README.md has a runnable block with run tokens, use limits, renewal and a policy,
    and running it shows the replay refused and the finished run's token revoked."""
    jobs = [b for b in marked_blocks(ROOT / "README.md") if b.kind == "runnable" and all(
        word in "\n".join(b.lines)
        for word in ("run_token(", "max_uses=", "renew_auth_token(", "Policy("))]
    assert len(jobs) == 1
    done = run_block(jobs[0], tmp_path)
    assert done.stdout.splitlines() == [
        "the second login is refused: its one use is spent",
        "the run is over: its token is revoked",
    ], done.stdout + done.stderr


def test_readme_leaks_block_shows_pinning_scan_and_explain(tmp_path: Path) -> None:
    """README.md has a runnable block with a pinned script, find_tokens and explain_login,
    and running it shows the edited script refused, explained, and only the real string
    found."""
    leaks = [b for b in marked_blocks(ROOT / "README.md") if b.kind == "runnable" and all(
        word in "\n".join(b.lines)
        for word in ("Script.for_file(", "find_tokens(", "explain_login(", "digest_binding("))]
    assert len(leaks) == 1
    done = run_block(leaks[0], tmp_path)
    assert done.stdout.splitlines() == [
        "the edited script is refused",
        "False ScriptNotAuthorized",
        "[True]",
        "[]",
    ], done.stdout + done.stderr


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.kind == "excerpt"],
                         ids=lambda b: b.where)
def test_excerpt_is_in_its_program(block: Block) -> None:
    """Each piece of a marked excerpt is copied verbatim from the program it names."""
    assert block.program is not None
    source = (DOCS / block.program).read_text(encoding="utf-8").splitlines()
    found = pieces(block.lines)
    assert found, f"{block.where}: an empty excerpt"
    for piece in found:
        assert occurs(piece, source), \
            f"{block.where}: not in {block.program}:\n" + "\n".join(piece)


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.kind == "output"],
                         ids=lambda b: b.where)
def test_output_is_what_its_program_prints(block: Block, home: Path) -> None:
    """A marked output block is a run of consecutive lines the program prints."""
    assert block.program is not None
    printed = printed_by(block.program, home)
    assert block.lines, f"{block.where}: an empty output block"
    assert runs_within(block.lines, printed), (
        f"{block.where}: {block.program} does not print these lines together:\n"
        + "\n".join(block.lines))


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.kind == "runnable"],
                         ids=lambda b: b.where)
def test_runnable_block_runs(block: Block, tmp_path: Path) -> None:
    """A runnable block runs as it is, in a fresh interpreter, exits 0 and prints no token."""
    done = run_block(block, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.where}:\n{output}"
    assert TOKEN_STRING.search(output) is None, f"{block.where} printed a token string"
    assert "Traceback" not in output
    assert not (tmp_path / "data" / "authtoken").exists(), "wrote to the default data dir"


# -- the checks themselves -----------------------------------------------------------
SOURCE = '''\
def run(x):
    with session.run_token(x) as run:
        launch(run.token)

    return x
'''.splitlines()


def test_an_excerpt_matches_only_what_the_source_holds() -> None:
    """Pieces match at any one indentation, with blank lines; a changed line, a changed
    indentation inside the piece, or lines out of order do not match."""
    assert occurs(["with session.run_token(x) as run:", "    launch(run.token)"], SOURCE)
    assert occurs(["launch(run.token)", "", "return x"][:1], SOURCE)
    assert occurs(["    launch(run.token)", "", "return x"], SOURCE)
    assert not occurs(["with session.run_token(y) as run:"], SOURCE)
    assert not occurs(["with session.run_token(x) as run:", "launch(run.token)"], SOURCE)
    assert not occurs(["return x", "def run(x):"], SOURCE)
    assert not occurs(["token)"], SOURCE)  # a line's tail is not the line


def test_excerpt_pieces_split_at_ellipsis_lines_and_dedent() -> None:
    """``...`` lines cut an excerpt into pieces, each dedented, blank edges dropped."""
    lines = ["    a = 1", "        b = 2", "    ...", "", "    c = 3", "..."]
    assert pieces(lines) == [["a = 1", "    b = 2"], ["c = 3"]]
    assert pieces(["...", ""]) == []


def test_output_must_be_consecutive_lines() -> None:
    """Output lines match only together, in order, and whole."""
    printed = ["one", "two", "three"]
    assert runs_within(["two", "three"], printed)
    assert not runs_within(["one", "three"], printed)
    assert not runs_within(["three", "two"], printed)
    assert not runs_within(["tw"], printed)


def test_a_marker_without_its_block_is_refused(tmp_path: Path) -> None:
    """A marker followed by anything but its kind of fenced block fails the page."""
    page = tmp_path / "page.md"
    page.write_text("<!-- output: examples/scheduler.py -->\n```python\nx\n```\n",
                    encoding="utf-8")
    with pytest.raises(AssertionError, match="must be followed by a ```text block"):
        marked_blocks(page)
    page.write_text("<!-- excerpt: examples/scheduler.py -->\n```python\nx = 1\n",
                    encoding="utf-8")
    with pytest.raises(AssertionError, match="never ends"):
        marked_blocks(page)


# -- the scheduler page's shell commands, run by the real command ---------------------------
def page_commands(page: Path) -> list[str]:
    """The ``authtoken`` commands of ``page``: those in ``sh`` blocks (continuation lines
    joined) and those quoted inline, as written."""
    text = page.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("authtoken "):
                found.append(" ".join(command.split()))
    found += [" ".join(c.split()) for c in re.findall(r"`(authtoken [^`]+)`", text)]
    return found


def authtoken_command(home: Path, url: str, command: str,
                      stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``command`` (``authtoken ...`` as a page writes it, a redirect to a file dropped)
    run by the installed console script, on ``url`` with a throwaway key."""
    args = shlex.split(command.split(" > ", 1)[0])
    assert args[0] == "authtoken"
    script = Path(sys.executable).with_name("authtoken")
    env = clean_env(home)
    env.update(AUTHTOKEN_DATABASE_URL=url, AUTHTOKEN_SECRET_KEYS="docs-test-key-0123456789")
    return subprocess.run([str(script), *args[1:]], env=env, cwd=home, input=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def test_scheduler_page_commands_do_what_it_says(tmp_path: Path) -> None:
    """The page's authorize makes a renewable standing token, ``renew KEY`` renews it,
    and ``list --run ID --all`` lists exactly the run token of that run, revoked."""
    from authtoken import Script, ScriptRunner, open_security

    commands = page_commands(DOCS / "scheduler.md")
    authorize = [c for c in commands if c.startswith("authtoken authorize ")]
    listing = [c for c in commands if c.startswith("authtoken list --run ")]
    assert len(authorize) == 1 and len(listing) == 1, commands
    assert "authtoken renew KEY" in commands
    url = f"sqlite:///{tmp_path / 'tokens.db'}"

    made = authtoken_command(tmp_path, url, authorize[0])
    assert made.returncode == 0, made.stderr
    standing = made.stdout.strip()
    assert TOKEN_STRING.fullmatch(standing)

    run_id = shlex.split(listing[0])[3]
    with open_security(url, secret_keys="docs-test-key-0123456789") as security:
        session = ScriptRunner(security, Script(key=42)).login_by_auth_token(standing)
        assert session.principal is not None
        key = session.principal.token_key
        with session.run_token(run_id, scope="reports:export vfs:ikey?42") as run:
            pass
        session.run_token("another-run", scope="reports:export vfs:ikey?42").revoke()
        shown = security.get_auth_token(key)
        assert shown.max_lifetime is not None and shown.data == '{"report": "sales"}'

    renewed = authtoken_command(tmp_path, url, "authtoken renew KEY".replace("KEY", key))
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.startswith(f"renewed {key}: expires ")

    listed = authtoken_command(tmp_path, url, listing[0] + " --json")
    assert listed.returncode == 0, listed.stderr
    tokens = json.loads(listed.stdout)["tokens"]
    assert [(t["key"], t["run_id"], t["revoked_at"] is not None) for t in tokens] == [
        (run.key, run_id, True)]
    assert made.stdout == standing + "\n"  # the string once, and nothing else
    for done in (renewed, listed):
        assert TOKEN_STRING.search(done.stdout) is None
    for done in (made, renewed, listed):
        assert TOKEN_STRING.search(done.stderr) is None


def test_page_commands_are_found_in_blocks_and_inline(tmp_path: Path) -> None:
    """Commands are taken whole from sh blocks (continuations joined) and inline code."""
    page = tmp_path / "page.md"
    page.write_text("Run `authtoken list --run r1 --all` now.\n\n```sh\numask 077\n"
                    "authtoken authorize --user a \\\n    --scope x > f\n```\n",
                    encoding="utf-8")
    assert page_commands(page) == ["authtoken authorize --user a --scope x > f",
                                   "authtoken list --run r1 --all"]
