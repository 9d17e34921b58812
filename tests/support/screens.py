"""Screenshots, overflow and keyboard checks of a page open in Selenium's Chromium.

Use::

    from support.screens import overflows, save_screenshot, set_width, tab_order

    path = save_screenshot(chrome, "token-list", 1280)  # sets the width; a full-page PNG
    set_width(chrome, 390)                               # as a phone: no scrollbar
    assert overflows(chrome) == []                       # nothing wider than 390 px
    assert "Sign out" in tab_order(chrome, 12)           # what Tab reaches, by name

Screenshots go to ``$AUTHTOKEN_ARTIFACTS/screenshots/`` (by default
``build/artifacts/screenshots/`` of the repository), named ``<name>-<width>.png``; a CI
run keeps that directory as its artefacts.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
#: The height a window is given before a full-page capture; the capture itself takes the
#: whole document however tall it is.
WINDOW_HEIGHT = 1000

_OVERFLOWS = """
const width = document.documentElement.clientWidth;
const clipping = new Set(["auto", "scroll", "hidden", "clip"]);
function selector(element) {
    const parts = [];
    for (let e = element; e && e.nodeType === 1 && e !== document.documentElement;
         e = e.parentElement) {
        if (e.id) { parts.unshift(e.localName + "#" + CSS.escape(e.id)); break; }
        let part = e.localName;
        const classes = [...e.classList].map(c => "." + CSS.escape(c)).join("");
        part += classes;
        const parent = e.parentElement;
        if (parent) {
            const same = [...parent.children].filter(c => c.localName === e.localName);
            if (same.length > 1) part += ":nth-of-type(" + (same.indexOf(e) + 1) + ")";
        }
        parts.unshift(part);
    }
    return parts.join(" > ");
}
function clipped(element) {   // inside a box that scrolls or clips it: no page overflow
    for (let e = element.parentElement; e && e !== document.body; e = e.parentElement) {
        if (clipping.has(getComputedStyle(e).overflowX)) return true;
    }
    return false;
}
function over(element) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return false;
    return box.right > width + 0.5 || box.left < -0.5;
}
const found = [];
for (const element of document.body.querySelectorAll("*")) {
    if (!over(element) || clipped(element)) continue;
    const parent = element.parentElement;   // the outermost one: its children follow it
    if (parent && parent !== document.body && over(parent) && !clipped(parent)) continue;
    const box = element.getBoundingClientRect();
    found.push(selector(element) + " (" + Math.round(box.left) + " to "
               + Math.round(box.right) + " px of " + width + ")");
}
if (document.documentElement.scrollWidth > width && found.length === 0) {
    found.push("html (scrolls sideways: " + document.documentElement.scrollWidth
               + " px wide at " + width + ")");
}
return found;
"""

_FOCUS_START = """
const body = document.body;
if (document.activeElement) document.activeElement.blur();
const had = body.hasAttribute("tabindex");
if (!had) body.setAttribute("tabindex", "-1");
body.focus();
if (!had) body.removeAttribute("tabindex");
window.scrollTo(0, 0);
"""

_FOCUSED = """
const e = document.activeElement;
if (!e || e === document.body || e === document.documentElement) return null;
return e.localName + (e.id ? "#" + e.id : "") + (e.name ? "[name=" + e.name + "]" : "");
"""


def artifacts_dir() -> Path:
    """Where a test run keeps what it makes: ``$AUTHTOKEN_ARTIFACTS`` or ``build/artifacts``
    of the repository."""
    configured = os.environ.get("AUTHTOKEN_ARTIFACTS")
    return Path(configured) if configured else REPOSITORY / "build" / "artifacts"


def set_width(driver: Any, width: int, height: int = WINDOW_HEIGHT) -> None:
    """Make the page ``width`` CSS px wide, all of it for content: the window is sized,
    and scrollbars are hidden (a phone's overlay), so a tall page keeps every pixel."""
    driver.execute_cdp_cmd("Emulation.setScrollbarsHidden", {"hidden": True})
    driver.set_window_size(width, height)
    inner = driver.execute_script("return document.documentElement.clientWidth")
    assert inner == width, f"the page is {inner} px wide in a window sized {width} px"


def save_screenshot(driver: Any, name: str, width: int) -> Path:
    """Set the page ``width`` px wide (``set_width``), capture the whole of it (beyond
    the window, and as wide as its content, so an overflow shows) as a PNG; its path."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"screenshot name {name!r}: use letters, digits, '.', '_', '-'")
    set_width(driver, width)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    content = metrics.get("cssContentSize") or metrics["contentSize"]
    clip = {"x": 0, "y": 0, "scale": 1,
            "width": max(int(content["width"]), 1), "height": max(int(content["height"]), 1)}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": clip})
    folder = artifacts_dir() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{width}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def overflows(driver: Any) -> list[str]:
    """The elements that reach past the window's left or right edge at its current width,
    each as a CSS selector with its extent: the outermost of a nest, and none inside a box
    that scrolls or clips sideways (a wide table in such a box is allowed).  ``[]`` when
    the page fits."""
    found: list[str] = driver.execute_script(_OVERFLOWS)
    return found


def focused(driver: Any) -> str | None:
    """A short description of the focused element (``tag#id[name=...]``), ``None`` when
    nothing but the document has the focus."""
    description: str | None = driver.execute_script(_FOCUSED)
    return description


_FOCUS_SHOWN = """
const e = document.activeElement, style = getComputedStyle(e);
const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
return outline || style.boxShadow !== "none";
"""


#: Tab presses one control may take (a date field's day, month, year and picker) before
#: its focus counts as trapped.
INNER_STOPS = 8


def _walk(driver: Any, n: int) -> Iterator[str]:
    """Press Tab from the top of the page until ``n`` focus stops were reached, yielding
    the accessible name of each (see ``tab_order``)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script(_FOCUS_START)
    previous: Any = None
    for _ in range(n):
        for _ in range(INNER_STOPS):
            ActionChains(driver).send_keys(Keys.TAB).perform()
            element = None if focused(driver) is None else driver.switch_to.active_element
            if element is None or element != previous:
                break
        else:  # Tab keeps the focus in one element
            yield f"<trapped in {previous.accessible_name or focused(driver)}>"
            return
        previous = element
        yield "<document>" if element is None else element.accessible_name or ""


def tab_order(driver: Any, n: int) -> list[str]:
    """Press Tab from the top of the page until it reached ``n`` elements; the
    accessible name (as Chromium computes it for assistive technology) of each: ``""``
    for a control without a name, ``"<document>"`` when the focus left the page's
    controls (past the last one), and, last, ``"<trapped in NAME>"`` when Tab did not
    get out of a control.  A control with parts (a date field's day, month and year)
    counts once."""
    return list(_walk(driver, n))


def unmarked_focus(driver: Any, n: int) -> list[str]:
    """Press Tab from the top of the page through ``n`` elements; the names of those
    whose focus shows no outline or shadow (a keyboard user cannot see where they are)."""
    return [name for name in _walk(driver, n)
            if name != "<document>" and not name.startswith("<trapped in ")
            and not driver.execute_script(_FOCUS_SHOWN)]


def tab_to(driver: Any, name: str, *, limit: int = 60) -> Any:
    """Press Tab from the top of the page until the control named ``name`` has the
    focus; that element.  ``AssertionError`` with the names passed when Tab never
    reaches it -- a control the keyboard cannot get to."""
    seen = []
    for reached in _walk(driver, limit):
        if reached == name:
            return driver.switch_to.active_element
        seen.append(reached)
        if reached == "<document>":
            break
    raise AssertionError(f"Tab does not reach {name!r}; it reaches {seen}")
