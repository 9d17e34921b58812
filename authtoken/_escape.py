"""JavaScript's global ``escape`` / ``unescape``, exactly.

JavaScript strings are sequences of UTF-16 code units, Python strings of code points.
``escape`` therefore works on the UTF-16 code units of its argument (a character above
U+FFFF becomes two ``%uXXXX`` escapes, as in JavaScript), and ``unescape`` joins the code
units it produces back into code points, keeping lone surrogates as they are.
"""

from __future__ import annotations

import re

__all__ = ["escape", "strict_unescape", "unescape"]

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@*_+-./")
_ESCAPED = re.compile(r"%u([0-9A-Fa-f]{4})|%([0-9A-Fa-f]{2})")
_WELL_FORMED = re.compile(r"(?:[^%]|%u[0-9A-Fa-f]{4}|%[0-9A-Fa-f]{2})*\Z", re.DOTALL)


def _unit(code: int) -> str:
    if code in _SAFE:
        return chr(code)
    if code < 256:
        return f"%{code:02X}"
    return f"%u{code:04X}"


def _code_units(s: str) -> list[int]:
    data = s.encode("utf-16-le", "surrogatepass")
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def _from_code_units(units: list[int]) -> str:
    data = b"".join(u.to_bytes(2, "little") for u in units)
    # surrogatepass joins valid pairs into one code point and keeps lone halves.
    return data.decode("utf-16-le", "surrogatepass")


def escape(s: str) -> str:
    """Return ``s`` escaped as JavaScript's ``escape(s)`` would.

    Raises ``TypeError`` when ``s`` is not a ``str``.
    """
    if not isinstance(s, str):
        raise TypeError(f"escape() takes a str, not {type(s).__name__}")
    if s.isascii():
        return "".join(_unit(ord(c)) for c in s)
    return "".join(_unit(u) for u in _code_units(s))


def unescape(s: str) -> str:
    """Return ``s`` unescaped as JavaScript's ``unescape(s)`` would.

    Malformed escapes are left as they are, as JavaScript leaves them.
    Raises ``TypeError`` when ``s`` is not a ``str``.
    """
    if not isinstance(s, str):
        raise TypeError(f"unescape() takes a str, not {type(s).__name__}")
    if "%" not in s:
        return s
    units: list[int] = []
    pos = 0
    for m in _ESCAPED.finditer(s):
        units.extend(_code_units(s[pos:m.start()]))
        units.append(int(m.group(1) or m.group(2), 16))
        pos = m.end()
    units.extend(_code_units(s[pos:]))
    return _from_code_units(units)


def strict_unescape(s: str) -> str | None:
    """Unescape ``s``, or return ``None`` when it holds a malformed ``%`` escape."""
    if _WELL_FORMED.match(s) is None:
        return None
    return unescape(s)
