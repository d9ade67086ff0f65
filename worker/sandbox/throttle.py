"""The rate limit: calls beyond it get the platform's throttling answer (E901, ApiCallLimit).

The rate is passed on each call because the sandbox's config may change while it runs.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """A token bucket refilled at ``rate`` per second holding up to one second's worth (at
    least one call), i.e. "at most ``rate`` calls in any second"."""

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


class Throttle:
    """One :class:`TokenBucket` per key: the whole account (one key), each seller of an app,
    the app itself. Thread-safe."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def admit(self, key: str, rate: float) -> bool:
        """Whether one more call counted against `key` fits in `rate` calls per second."""
        with self._lock:
            bucket = self._buckets.setdefault(key, TokenBucket())
        return bucket.admit(rate)
