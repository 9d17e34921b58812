"""Where the login benchmark's PostgreSQL comes from.

In this order: the ``--postgres URL`` argument, the ``AUTHTOKEN_BENCH_POSTGRES``
environment variable, or -- if PostgreSQL server binaries are installed
(``/usr/lib/postgresql/*/bin`` or ``initdb``/``pg_ctl`` on ``PATH``) -- a throwaway
cluster started for the run with the test suite's ``tests/support/pgcluster.py`` (initdb and
pg_ctl in a temporary folder, a free port on 127.0.0.1, ``fsync = off``; run as the
``postgres`` user when we are root) and stopped and removed afterwards.  Otherwise the
PostgreSQL rows are skipped, and ``Source.skipped`` says why.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa

ENV = "AUTHTOKEN_BENCH_POSTGRES"
PGCLUSTER = Path(__file__).resolve().parents[1] / "tests" / "support" / "pgcluster.py"


@dataclass(frozen=True)
class Source:
    """A PostgreSQL URL and where it came from, or ``url=None`` and why not."""

    url: str | None
    origin: str = ""  # e.g. "--postgres", "$AUTHTOKEN_BENCH_POSTGRES", "throwaway cluster"
    skipped: str | None = None
    throwaway: bool = False  # ours: no need to tidy up inside it

    @property
    def shown_url(self) -> str | None:
        """The URL with its password hidden, for printing."""
        if self.url is None:
            return None
        return sa.make_url(self.url).render_as_string(hide_password=True)


def conninfo(url: str) -> str:
    """``url`` (``postgresql://`` or ``postgresql+psycopg://``) as a libpq connection URI."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _load_pgcluster() -> ModuleType | None:
    """``tests/support/pgcluster.py``, loaded from its file (``sys.path`` is left alone)."""
    if not PGCLUSTER.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_authtoken_bench_pgcluster", PGCLUSTER)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _why(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        lines = [line for line in err.strip().splitlines() if line.strip()]
        return f"{Path(str(exc.cmd[-1] if exc.cmd else '?')).name}: " + (
            lines[-1] if lines else f"exit status {exc.returncode}"
        )
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def postgres(url: str | None) -> Iterator[Source]:
    """The PostgreSQL to benchmark; a throwaway cluster lives as long as the context."""
    if url:
        yield Source(url, "--postgres")
        return
    if os.environ.get(ENV):
        yield Source(os.environ[ENV], f"${ENV}")
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield Source(None, skipped='psycopg is not installed (pip install -e ".[postgres]")')
        return
    pgcluster = _load_pgcluster()
    if pgcluster is None:
        yield Source(None, skipped=f"no URL (--postgres or ${ENV}) and no {PGCLUSTER} "
                                   "to start a throwaway cluster with")
        return
    bindir = pgcluster.find_bindir()
    if bindir is None:
        yield Source(None, skipped=f"no URL (--postgres or ${ENV}) and no PostgreSQL "
                                   "server binaries (initdb, pg_ctl) in "
                                   "/usr/lib/postgresql/*/bin or on PATH")
        return
    try:
        cluster = pgcluster.Cluster(bindir)
    except (OSError, subprocess.SubprocessError) as exc:
        yield Source(None, skipped=f"could not start a throwaway cluster from {bindir} "
                                   f"({_why(exc)})")
        return
    try:
        yield Source(cluster.url, f"throwaway cluster from {bindir}", throwaway=True)
    finally:
        cluster.destroy()
