"""The legacy sandbox's knobs, and their command-line options.

Set in code (``SandboxConfig(...)``, or by assigning to ``sandbox.config`` while it runs), from
``LAZADA_SANDBOX_*`` environment variables, or from ``lazada-worker sandbox`` options (which
default to the environment); see :class:`~worker.sandbox.knobs.KnobSet`. The options of the
knobs both Lazada sandboxes have are added here, once, for either platform.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar

from worker.sandbox.knobs import (
    SHARED_PARSERS,
    KnobSet,
    Option,
    add_knob_arguments,
    add_server_arguments,
    check,
    finite,
    number,
    pair,
)

FAULT_KINDS: tuple[str, ...] = ("http500", "http502_html", "e006", "e901", "truncated", "slow")
"""Every kind of transient fault the legacy sandbox can inject: the shared server's, and the
API's own error answers E006 and E901."""

ENV_PREFIX = "LAZADA_SANDBOX_"


@dataclass
class SandboxConfig(KnobSet):
    """How the legacy sandbox behaves. Mutable: handlers read it afresh for every call."""

    ENV_PREFIX: ClassVar[str] = ENV_PREFIX
    SECRETS: ClassVar[tuple[str, ...]] = ("api_key",)

    user_id: str = "demo@lazada-worker.test"
    api_key: str = "sandbox-secret-key"
    latency: float = 0.0
    """Seconds added to every API answer."""
    fault_rate: float = 0.0
    """Probability that an API call is answered with a transient fault instead."""
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    slow_seconds: float = 35.0
    """How long a "slow" fault waits: longer than a client's read timeout."""
    slow_applies: bool = True
    """Whether a "slow" call is processed (with its effect) once the wait is over, as a real
    server that was merely slow would. False makes it answer E006 with no effect instead."""
    rate_limit: float | None = None
    """Calls per second across all actions (token bucket, burst of one second); excess: E901."""
    failing_skus: tuple[str, ...] = ("*FAIL*",)
    """fnmatch patterns (case-sensitive) of SellerSkus whose removal fails with E503."""
    image_job_seconds: tuple[float, float] = (2.0, 6.0)
    missing_order_from: int = 900_000_000
    """Order ids from this one up answer E016."""
    order_advance_seconds: float = 60.0
    """An open order moves one status further this often (0: never), so refreshes find news."""
    max_clock_skew: float = 300.0
    max_body_bytes: int = 1_000_000
    listed_orders: int = 0
    """Orders each seller's listing (order sync) holds at start, updated over `listed_days`."""
    listed_days: float = 3.0
    order_churn: float = 0.0
    """Listed orders added or changed per second (half each) while the sandbox runs."""
    seed: int = 0
    max_recorded_calls: int = 200_000
    """Calls kept for :meth:`Sandbox.calls`; counters in stats() stay exact beyond it."""

    def __post_init__(self) -> None:
        # Accept lists (JSON, hand-written configs) where tuples are meant.
        self.fault_kinds = tuple(self.fault_kinds)
        self.failing_skus = tuple(self.failing_skus)
        self.image_job_seconds = pair(tuple(self.image_job_seconds))

    def validate(self) -> None:
        """Raise ValueError with a one-line message naming the first bad knob."""
        check(bool(self.user_id), "user_id must not be empty")
        check(bool(self.api_key), "api_key must not be empty")
        self.validate_shared(FAULT_KINDS)
        low, high = self.image_job_seconds
        check(
            finite(low) and finite(high) and 0 <= low <= high,
            "image_job_seconds must be two numbers 0 <= low <= high",
        )
        check(self.missing_order_from > 0, "missing_order_from must be a positive order id")
        check(self.listed_orders >= 0, "listed_orders must be >= 0")
        check(finite(self.listed_days) and self.listed_days > 0, "listed_days must be > 0")
        check(finite(self.order_churn) and self.order_churn >= 0, "order_churn must be >= 0")
        check(
            finite(self.order_advance_seconds) and self.order_advance_seconds >= 0,
            "order_advance_seconds must be >= 0",
        )


SandboxConfig.PARSERS = {**SHARED_PARSERS, "order_advance_seconds": number}

OWN_OPTIONS: tuple[str, ...] = ("user_id", "api_key", "order_advance_seconds")
"""The options only the legacy sandbox knows (an error with another platform)."""

_OPTIONS: tuple[Option, ...] = (
    ("user_id", "ID", "the only UserID that is accepted"),
    ("api_key", "KEY", "the API key requests must be signed with"),
    ("latency", "SECONDS", "time every answer takes from its request"),
    ("fault_rate", "P", "probability (0..1) of answering with a transient fault"),
    ("fault_kinds", "K,K", f"comma list of fault kinds out of {','.join(FAULT_KINDS)}"),
    ("slow_seconds", "SECONDS", "how long a 'slow' fault waits before answering"),
    ("rate_limit", "PER_SECOND", "calls per second before E901, or 'none'"),
    ("failing_skus", "PATTERN,PATTERN", "fnmatch patterns of SellerSkus whose removal fails"),
    ("image_job_seconds", "LOW,HIGH", "range of image job durations"),
    ("missing_order_from", "ORDER_ID", "order ids from this one up answer E016"),
    ("order_advance_seconds", "SECONDS", "an open order advances one status this often"),
    ("max_clock_skew", "SECONDS", "Timestamp tolerance before E003"),
    ("listed_orders", "N", "orders the order listing holds at start (per seller)"),
    ("listed_days", "DAYS", "the days before start the listed orders' updates spread over"),
    ("order_churn", "PER_SECOND", "listed orders added or changed per second while running"),
    ("max_body_bytes", "BYTES", "bigger request bodies answer E011"),
    ("seed", "N", "seed of every random choice (orders, faults, image jobs)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port`` and the sandbox's options to a (sub)command parser; unset ones
    fall back to the environment."""
    add_server_arguments(parser)
    defaults = SandboxConfig()
    # The account's defaults are shown: they are what a worker is pointed at the sandbox with.
    shown = {"user_id": defaults.user_id, "api_key": defaults.api_key}
    add_knob_arguments(parser, _OPTIONS, ENV_PREFIX, shown)


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """The config from parsed options over the environment; ValueError on a bad value."""
    return SandboxConfig.from_args(args, (name for name, _metavar, _text in _OPTIONS))
