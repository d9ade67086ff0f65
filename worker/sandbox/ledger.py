"""The record of served API calls: a bounded log plus exact counters for stats()."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_RECORDED_BODY = 64 * 1024
"""Bodies are kept up to this size (the prefix), so a long run's memory stays bounded."""


@dataclass(frozen=True)
class ServedCall:
    """One API call as the sandbox saw and answered it. Never holds the Signature."""

    at: float
    """time.time() when the request arrived."""
    action: str
    method: str
    params: Mapping[str, str]
    body: bytes
    http_status: int
    error_code: int | str | None
    """The legacy API's number (16) or the Open Platform's string ("IllegalAccessToken")."""
    fault: str | None
    account: str | None = None
    """The account the call was made for, when the platform knows it (a LAZOP seller)."""

    @property
    def outcome(self) -> str:
        """ "ok", "E016", "ApiCallLimit" ... or "fault:http500": stats()'s calls_by_outcome."""
        if self.fault and self.fault != "slow":
            return f"fault:{self.fault}"
        if isinstance(self.error_code, int):
            return f"E{self.error_code:03d}"
        if self.error_code is not None:
            return self.error_code
        return "ok" if self.http_status == 200 else f"http{self.http_status}"

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": self.action,
            "method": self.method,
            "params": dict(self.params),
            "body": self.body.decode("utf-8", errors="replace"),
            "http_status": self.http_status,
            "error_code": self.error_code,
            "fault": self.fault,
            "outcome": self.outcome,
            "account": self.account,
        }


class CallLedger:
    """Thread-safe; keeps the last ``capacity`` calls, counts all of them."""

    def __init__(self, capacity: int) -> None:
        self._calls: deque[ServedCall] = deque(maxlen=capacity)
        self._by_action: Counter[str] = Counter()
        self._by_outcome: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._total = 0
        self._second = -1
        self._in_second = 0
        self._peak = 0
        self._lock = threading.Lock()

    def record(self, call: ServedCall) -> None:
        if len(call.body) > MAX_RECORDED_BODY:
            call = ServedCall(**{**call.__dict__, "body": call.body[:MAX_RECORDED_BODY]})
        second = int(call.at)
        with self._lock:
            self._calls.append(call)
            self._total += 1
            self._by_action[call.action] += 1
            self._by_outcome[call.outcome] += 1
            if call.fault:
                self._faults[call.fault] += 1
            # Calendar-second buckets: cheap, and what "peak calls per second" means to a reader.
            if second == self._second:
                self._in_second += 1
            elif second > self._second:
                self._second, self._in_second = second, 1
            self._peak = max(self._peak, self._in_second)

    def calls(self) -> list[ServedCall]:
        with self._lock:
            return list(self._calls)

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self._total,
                "calls_by_action": dict(self._by_action),
                "calls_by_outcome": dict(self._by_outcome),
                "faults_injected": dict(self._faults),
                "peak_calls_per_second": self._peak,
            }
