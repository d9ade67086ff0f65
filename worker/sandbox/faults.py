"""Transient faults: which calls get one, and what the faults every sandbox knows look like.

A platform adds its own kinds (an error answer of its API) to :data:`SERVER_FAULTS` and answers
them in ``SandboxServer._fault_reply``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

from worker.sandbox.replies import TEXT_CONTENT_TYPE, Reply

SERVER_FAULTS: tuple[str, ...] = ("http500", "http502_html", "truncated", "slow")
"""The kinds the shared server injects itself: two transport failures, an answer cut in half, and
a wait longer than a client's read timeout (``slow_seconds``)."""

HTTP500_BODY = b"Internal Server Error\n"
BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class FaultInjector:
    """Draws faults from ``random.Random(seed)`` under a lock, so a run is reproducible for a
    given order of calls. One number is drawn per call even when the rate is 0, so changing the
    rate mid-run does not shift which later calls fault."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, rate: float, kinds: Sequence[str]) -> str | None:
        with self._lock:
            if self._rng.random() >= rate or not kinds:
                return None
            return self._rng.choice(kinds)


def http500() -> Reply:
    return Reply(500, TEXT_CONTENT_TYPE, HTTP500_BODY)


def http502_html() -> Reply:
    """What a proxy in front of the API answers when the API is down."""
    return Reply(502, "text/html", BAD_GATEWAY_HTML)


def truncated(reply: Reply) -> Reply:
    """The first half of a valid answer, sent as if complete (Content-Length of the cut)."""
    return Reply(reply.status, reply.content_type, reply.body[: len(reply.body) // 2])
