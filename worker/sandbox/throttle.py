"""The account-wide rate limit (D8): calls beyond it are answered E901."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """A token bucket refilled at ``rate`` per second holding up to one second's worth (at
    least one call), i.e. "at most ``rate`` calls in any second". The rate is passed on each
    call because the sandbox's config may change while it runs."""

    def __init__(self) -> None:
        self._tokens: float | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def admit(self, rate: float) -> bool:
        capacity = max(1.0, rate)
        with self._lock:
            now = time.monotonic()
            if self._tokens is None:
                self._tokens = capacity
            else:
                self._tokens = min(capacity, self._tokens + (now - self._last) * rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
