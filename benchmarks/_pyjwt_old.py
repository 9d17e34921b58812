"""A second PyJWT, measured in a subprocess of the same run: the ``--pyjwt-old`` column.

PyJWT's speed changes a lot between releases (2.15 checks base64url characters in Python
and screens HMAC keys on every decode), so ``scale.py`` compares against the current one
and, when a second interpreter with PyJWT 2.10.1 is named, against that one too.  Two
versions of one package cannot share a process, hence the subprocess: it runs the same
loop as the benchmark's own PyJWT row (``jwt.decode`` of 1,024 distinct HS256 tokens,
round-robin), one timed round each time the parent asks, so its rounds are interleaved
with every other case's.  The tokens and the key come through its standard input.

``make_venv(DIR)`` builds such an interpreter: ``python -m venv DIR`` with this Python,
then ``DIR/bin/python -m pip install PyJWT==2.10.1``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OLD_VERSION = "2.10.1"

# The child: the same round-robin loop as the parent's PyJWT row, timed per round.
_CHILD = r"""
import gc, json, sys, time
import jwt
config = json.loads(sys.stdin.readline())
tokens, key, batch = config["tokens"], config["key"], config["batch"]
decode, n = jwt.decode, len(tokens)
print(json.dumps({"version": jwt.__version__}), flush=True)
pos = 0
def step():
    global pos
    for token in tokens[pos:pos + batch]:
        decode(token, key, algorithms=["HS256"])
    pos = (pos + batch) % n
for line in sys.stdin:
    seconds = float(line)
    gc.collect()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        calls += batch
    print(json.dumps({"rate": calls / (time.perf_counter() - start)}), flush=True)
"""


class OldPyJWT:
    """A running child interpreter that times ``jwt.decode`` rounds on request."""

    def __init__(self, python: str, tokens: list[str], key: str) -> None:
        self.python = python
        self._child = subprocess.Popen(
            [python, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        batch = min(256, len(tokens))  # tokens[pos:pos + batch] never wraps short
        tokens = tokens[: len(tokens) - len(tokens) % batch] or tokens
        self._send(json.dumps({"tokens": tokens, "key": key, "batch": batch}))
        self.version: str = self._answer()["version"]

    def _send(self, line: str) -> None:
        assert self._child.stdin is not None
        self._child.stdin.write(line + "\n")
        self._child.stdin.flush()

    def _answer(self) -> dict[str, object]:
        assert self._child.stdout is not None
        line = self._child.stdout.readline()
        if not line:
            assert self._child.stderr is not None
            lines = self._child.stderr.read().strip().splitlines() or ["no output"]
            raise RuntimeError(f"{self.python}: {lines[-1]}")
        answer: dict[str, object] = json.loads(line)
        return answer

    def round(self, seconds: float) -> float:
        """Decodes per second over one round of ``seconds``."""
        self._send(repr(seconds))
        return float(self._answer()["rate"])  # type: ignore[arg-type]

    def close(self) -> None:
        if self._child.stdin is not None:
            self._child.stdin.close()
        try:
            self._child.wait(10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


def make_venv(folder: str) -> str:
    """A virtual environment in ``folder`` with PyJWT 2.10.1; returns its interpreter.

    Reused when it is already there with that version (the folder is named by whoever
    runs the benchmark).  Raises ``subprocess.CalledProcessError`` when pip fails.
    """
    python = Path(folder) / "bin" / "python"
    if python.exists():
        done = subprocess.run([str(python), "-c", "import jwt; print(jwt.__version__)"],
                              capture_output=True, text=True, check=False)
        if done.stdout.strip() == OLD_VERSION:
            return str(python)
    subprocess.run([sys.executable, "-m", "venv", folder], check=True, capture_output=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    f"PyJWT=={OLD_VERSION}"], check=True, capture_output=True)
    return str(python)


def interpreter(python: str | None, make: str | None) -> tuple[str | None, str | None]:
    """The old PyJWT's interpreter -- ``python``, or made in the folder ``make`` -- or
    ``None`` and why there is none."""
    if make:
        try:
            return make_venv(make), None
        except (OSError, subprocess.CalledProcessError) as exc:
            return None, f"could not make {make}: {exc}"
    if python:
        return python, None
    return None, f"no --pyjwt-old PYTHON with PyJWT {OLD_VERSION}"
