"""The repository explains itself: nothing in it points a reader to a document it lacks.

The code, tests and docs once cited design documents that never shipped with the
package.  Whatever a reader needs from them lives in ``docs/`` now (the wire formats in
``docs/reference/``), so a mention of those documents is a dangling reference.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("authtoken", "docs", "tests", "benchmarks")
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".html", ".mako", ".sql",
                 ".sh", ".json", ".yaml", ".yml", ".rst"}
# Built from pieces so that this file does not match itself.
FORBIDDEN = re.compile(
    "|".join((
        r"CONTRACT" + r"\.md",
        r"contract" + r"(?:'s)?\s*§",
        r"\bthe\s+" + r"contract\b",
        r"\bseeds?" + r"\s+0\d",
        r"\bseeds" + r"/",
        # A section sign after "(" or "as"/"see"/...: a standard's ("RFC 6749 §5.1") is fine.
        r"(?:\(|\b(?:as|see|in|per|by)\s+)" + r"§\s*\d",
    )),
    re.IGNORECASE,
)
REFERENCE = ROOT / "docs" / "reference"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES \
                    and "__pycache__" not in path.parts:
                files.append(path)
    return files


def test_no_file_cites_documents_outside_the_repository() -> None:
    """No source, test, benchmark or doc mentions the unshipped design documents."""
    found = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = FORBIDDEN.search(line)
            if match:
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r}")
    assert not found, "references to documents not in the repository:\n" + "\n".join(found)


def test_pattern_catches_the_forms_it_is_for() -> None:
    """The pattern matches each way such a reference was written, and not plain prose."""
    caught = ["see CONTRACT" + ".md", "(contract \u00a78)", "The " + "contract says",
              "Seed" + " 004, step 1", "seeds" + " 003/004", "the seeds" + "/ folder",
              "the con" + "tract's 10 s", "as \u00a71 draws it", "within 10 s (\u00a74)"]
    for text in caught:
        assert FORBIDDEN.search(text), text
    fine = ["the repository protocol every backend implements", "random.Random(seed)",
            "seed=20240601", "RFC 6749 §5.1", "OpenID Connect Discovery §4.3",
            "  §3.3, the next line of a citation"]
    for text in fine:
        assert not FORBIDDEN.search(text), text


def test_docs_links_resolve() -> None:
    """Every relative link in README.md and docs/ names a file that exists."""
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = match.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_reference_pages_are_linked_from_the_index() -> None:
    """docs/index.md links the reference index and each reference page."""
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in sorted(REFERENCE.glob("*.md")):
        assert f"(reference/{page.name})" in index, f"docs/index.md does not link {page.name}"


def test_spatium_reference_names_every_endpoint() -> None:
    """docs/reference/spatium.md documents every path the adapter and test authority use."""
    from authtoken.testing._spatium import PATHS

    page = (REFERENCE / "spatium.md").read_text(encoding="utf-8")
    missing = [path for path in PATHS if f"`{path}`" not in page]
    assert not missing, f"docs/reference/spatium.md lacks {missing}"
