"""axe-core (npm) run inside a real browser page through Selenium, for accessibility tests.

``tests/support/axe/`` pins axe-core in its ``package-lock.json``; ``.ci/run`` installs it
(``npm ci --prefix tests/support/axe``).  Use::

    from support.axe import format_violations, run_axe

    violations = run_axe(chrome)                   # the whole page open in ``chrome``
    assert violations == [], format_violations(violations)
    run_axe(chrome, context="#tokens")             # or one part of it

``run_axe`` checks the rules tagged WCAG 2.0 and 2.1, levels A and AA, plus axe's
best practices (``TAGS``).  The page's Content-Security-Policy does not stand in the way:
WebDriver runs its scripts through the DevTools protocol, which CSP does not govern, and
``run_axe`` makes sure axe really loaded (``axe.version``) before trusting an empty answer.

Without Node or the ``npm ci`` install the tests that need axe skip with the reason --
except in CI (``CI`` set), where a missing install fails them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

AXE_DIR = Path(__file__).with_name("axe")
AXE_SCRIPT = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
#: The rule tags ``run_axe`` checks: WCAG 2.0 and 2.1 at levels A and AA, best practice.
TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as tests/conftest.py reads it
_SCRIPT_TIMEOUT = 60  # seconds; axe takes well under one on these pages

_RUN = """
const [context, options, done] = arguments;
if (typeof axe === "undefined") { done({error: "axe-core is not loaded in this page"}); return; }
axe.run(context === null ? document : context, options).then(
    results => done({violations: results.violations, version: axe.version}),
    error => done({error: String(error && error.stack || error)}));
"""


def unavailable_reason() -> str | None:
    """Why axe cannot run here (no ``npm ci`` in ``tests/support/axe``), or ``None``."""
    if not AXE_SCRIPT.is_file():
        return ("axe-core is not installed: npm ci --prefix tests/support/axe "
                "(.ci/run does it; Node.js and npm from apt install nodejs npm)")
    return None


def require_axe() -> None:
    """Skip the calling test when axe is not installed -- or fail it, in CI."""
    reason = unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"axe-core is required in CI: {reason}")
    pytest.skip(reason)


def inject_axe(driver: Any) -> str:
    """Load axe into the page open in ``driver`` (once per page); its version.

    Raises ``RuntimeError`` when the script ran but left no ``axe`` behind, so a page
    that blocks it cannot pass for a page without violations (nor for an expected
    failure: that is an ``AssertionError``)."""
    require_axe()
    version = driver.execute_script(
        "return typeof axe === 'undefined' ? null : axe.version")
    if version is None:
        source = AXE_SCRIPT.read_text(encoding="utf-8")
        version = driver.execute_script(
            source + "\n;return typeof axe === 'undefined' ? null : axe.version")
    if not isinstance(version, str) or not version:
        raise RuntimeError(f"axe-core did not load into {driver.current_url!r}")
    return version


def run_axe(driver: Any, *, context: str | Mapping[str, Any] | None = None,
            tags: Iterable[str] = TAGS) -> list[dict[str, Any]]:
    """axe's violations on the page open in ``driver`` (``[]`` when there are none).

    ``context``: a CSS selector, or axe's ``{"include": [...], "exclude": [...]}``;
    ``None`` checks the whole document.  Each violation is axe's own dict: ``id``,
    ``impact``, ``help``, ``helpUrl`` and ``nodes`` (each with ``target``, ``html``,
    ``failureSummary``).  ``format_violations`` renders them for an assertion message."""
    inject_axe(driver)
    options = {"runOnly": {"type": "tag", "values": list(tags)},
               "resultTypes": ["violations"]}
    driver.set_script_timeout(_SCRIPT_TIMEOUT)
    answer = driver.execute_async_script(
        _RUN, None if context is None else context, options)
    if not isinstance(answer, dict) or "error" in answer:
        raise RuntimeError(f"axe.run failed on {driver.current_url!r}: "
                             f"{answer.get('error') if isinstance(answer, dict) else answer}")
    violations: list[dict[str, Any]] = answer["violations"]
    return violations


def format_violations(violations: Iterable[Mapping[str, Any]]) -> str:
    """A readable account of axe's violations: per rule its id, impact and help, then
    each failing element's selector, markup and what axe says would fix it."""
    lines: list[str] = []
    for violation in violations:
        nodes = violation.get("nodes", [])
        lines.append(f"{violation.get('id')} ({violation.get('impact')}): "
                     f"{violation.get('help')} -- {len(nodes)} element(s), "
                     f"{violation.get('helpUrl')}")
        for node in nodes:
            target = " ".join(json.dumps(t) if not isinstance(t, str) else t
                              for t in node.get("target", []))
            html = " ".join(str(node.get("html", "")).split())
            if len(html) > 160:
                html = html[:157] + "..."
            lines.append(f"  at {target}: {html}")
            for summary in str(node.get("failureSummary", "")).splitlines():
                if summary.strip():
                    lines.append(f"    {summary.strip()}")
    return "\n".join(lines) if lines else "no violations"
