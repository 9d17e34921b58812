"""The one place that reads the system's clock; everything else takes a ``clock``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["Clock", "system_clock"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)
