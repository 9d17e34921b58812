"""``FailureLimiter``: failed authentications per client address, in a sliding window.

The admin API and the token page consult the same limiter before they look at a
caller's credentials (``AdminContext.retry_after``) and count every refusal in it
(``AdminContext.authenticated``), so guessing stops paying on either face.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from .._errors import InvalidArgument

__all__ = ["FailureLimiter"]


class FailureLimiter:
    """Failed authentications per client address, in a sliding window.

    An address is blocked once it failed more than ``limit`` times (1..100) within
    ``window`` seconds, until enough of those failures are older than the window.  Only
    the latest ``limit + 1`` failures of an address are kept, and at most
    ``max_addresses`` addresses (the least recently failing one is forgotten first), so
    memory stays bounded whatever arrives.  ``clock`` returns monotonic seconds.
    Thread-safe.
    """

    def __init__(self, limit: int = 20, window: float = 60.0, *,
                 max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidArgument("limit must be an integer from 1 to 100")
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not window > 0:
            raise InvalidArgument("window must be a positive number of seconds")
        if isinstance(max_addresses, bool) or not isinstance(max_addresses, int) \
                or max_addresses < 1:
            raise InvalidArgument("max_addresses must be a positive integer")
        self.limit = limit
        self.window = float(window)
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FailureLimiter(limit={self.limit}, window={self.window})"

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or ``None`` if it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if times is None or len(times) <= self.limit:
                return None
            # Blocked until the oldest kept failure leaves the window.
            return max(times[0] + self.window - now, 0.0)

    def failed(self, address: str) -> None:
        """Count one failed authentication of ``address``."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if times is None:
                times = self._failures[address] = deque(maxlen=self.limit + 1)
            else:
                self._failures.move_to_end(address)
            times.append(now)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def reset(self, address: str | None = None) -> None:
        """Forget the failures of ``address`` (of every address if ``None``)."""
        with self._lock:
            if address is None:
                self._failures.clear()
            else:
                self._failures.pop(address, None)
