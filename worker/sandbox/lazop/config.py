"""The LAZOP sandbox's knobs and its own command-line options.

Set in code (``LazopSandboxConfig(...)`` or ``sandbox.configure``), from
``LAZADA_LAZOP_SANDBOX_*`` environment variables, or from ``lazada-worker sandbox --platform
lazop`` options; see :class:`~worker.sandbox.knobs.KnobSet`. The knobs both Lazada sandboxes
have keep the same names and parsers, and their options are the legacy sandbox's
(``worker.sandbox.sellercenter.config.add_arguments``). The app secret is the sandbox's own test
value, never a real one.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import ClassVar

from worker.sandbox.knobs import (
    SHARED_PARSERS,
    KnobSet,
    Option,
    add_knob_arguments,
    check,
    finite,
    given_options,
    number,
    pair,
    words,
)
from worker.sandbox.sellercenter.config import OWN_OPTIONS as LEGACY_OWN_OPTIONS

FAULT_KINDS: tuple[str, ...] = (
    "http500",
    "http502_html",
    "http429",
    "service_timeout",
    "internal_error",
    "api_call_limit",
    "truncated",
    "slow",
)
"""The transient faults of decision L5 the sandbox injects."""

RUNNING_ANSWERS = ("empty", "1000", "both")
TOKEN_ANSWERS = ("", "no_refresh_token", "not_json")
ENV_PREFIX = "LAZADA_LAZOP_SANDBOX_"


@dataclass
class LazopSandboxConfig(KnobSet):
    """How the LAZOP sandbox behaves. Mutable: handlers read it afresh for every call."""

    ENV_PREFIX: ClassVar[str] = ENV_PREFIX
    SECRETS: ClassVar[tuple[str, ...]] = ("app_secret",)

    app_key: str = "100001"
    app_secret: str = "lazop-sandbox-app-secret"  # noqa: S105 (the sandbox's own)
    sellers: tuple[str, ...] = ("seller-a", "seller-b")
    """Sellers who may authorize the app; each has its own catalogue, orders and tokens."""
    access_token_seconds: float = 7 * 86400.0
    refresh_token_seconds: float = 30 * 86400.0
    """Absolute: refreshing does not extend it (decision L3: refresh tokens have an absolute
    lifetime)."""
    token_expires_in: str = ""
    """How token answers write ``expires_in``: "" the access token's seconds, "missing" leave
    it out, anything else that JSON text as it stands (``null``, ``"604800.0"``, ``1e30``)."""
    token_answer: str = ""
    """What a token call that took effect answers: "" the whole grant, "no_refresh_token" the
    grant without its refresh token, "not_json" an HTML page with HTTP 200 (the new pair is
    issued, and the old refresh token made invalid, either way)."""
    latency: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    slow_seconds: float = 35.0
    slow_applies: bool = True
    rate_limit: float | None = None
    """Calls per second per seller (token calls: per app) before ``ApiCallLimit``."""
    failing_skus: tuple[str, ...] = ("*FAIL*",)
    image_job_seconds: tuple[float, float] = (2.0, 6.0)
    running_answer: str = "both"
    """While an image job runs: "empty" data, code "1000", or "both" in turn (L8)."""
    missing_order_from: int = 900_000_000
    removal_error_code: str = "503"
    """The code of a removal answer naming SKUs that could not be removed (L6); any text, to
    answer one longer than a worker's column."""
    answer_text: str = ""
    """When set, the free text of answers: a failing SKU's message and an order's buyer first
    name (a lone surrogate goes out as its JSON escape, as a careless API may send it)."""
    migrate_batch_id: str = ""
    """When set, the ``batch_id`` every ``/images/migrate`` answers (an API that repeats one)."""
    max_clock_skew: float = 7200.0
    max_body_bytes: int = 1_000_000
    listed_orders: int = 0
    """Orders each seller's listing (order sync) holds at start, updated over `listed_days`."""
    listed_days: float = 3.0
    order_churn: float = 0.0
    """Listed orders added or changed per second (half each) while the sandbox runs."""
    seed: int = 0
    max_recorded_calls: int = 200_000

    def __post_init__(self) -> None:
        self.sellers = tuple(self.sellers)
        self.fault_kinds = tuple(self.fault_kinds)
        self.failing_skus = tuple(self.failing_skus)
        self.image_job_seconds = pair(tuple(self.image_job_seconds))

    def validate(self) -> None:
        """Raise ValueError with a one-line message naming the first bad knob."""
        check(bool(self.app_key), "app_key must not be empty")
        check(bool(self.app_secret), "app_secret must not be empty")
        check(bool(self.sellers), "sellers must name at least one seller")
        check(
            all(seller.strip() == seller and seller for seller in self.sellers),
            "sellers must be non-empty names without surrounding spaces",
        )
        for name in ("access_token_seconds", "refresh_token_seconds"):
            value = getattr(self, name)
            check(finite(value) and value > 0, f"{name} must be a positive number of seconds")
        if self.token_expires_in not in ("", "missing"):
            try:
                json.loads(self.token_expires_in)
            except ValueError:
                raise ValueError("token_expires_in must be JSON text, 'missing' or empty") from None
        check(
            self.token_answer in TOKEN_ANSWERS,
            f"token_answer must be one of {', '.join(repr(a) for a in TOKEN_ANSWERS)}",
        )
        self.validate_shared(FAULT_KINDS)
        low, high = self.image_job_seconds
        check(
            finite(low) and finite(high) and 0 <= low <= high,
            "image_job_seconds must be two numbers 0 <= low <= high",
        )
        check(
            self.running_answer in RUNNING_ANSWERS,
            f"running_answer must be one of {', '.join(RUNNING_ANSWERS)}",
        )
        check(self.missing_order_from > 0, "missing_order_from must be a positive order id")
        check(bool(self.removal_error_code), "removal_error_code must not be empty")
        check(self.listed_orders >= 0, "listed_orders must be >= 0")
        check(finite(self.listed_days) and self.listed_days > 0, "listed_days must be > 0")
        check(finite(self.order_churn) and self.order_churn >= 0, "order_churn must be >= 0")


LazopSandboxConfig.PARSERS = {
    **SHARED_PARSERS,
    "sellers": words,
    "access_token_seconds": number,
    "refresh_token_seconds": number,
}

_OWN_OPTIONS: tuple[Option, ...] = (
    ("app_key", "KEY", "the app key calls must carry (LAZOP sandbox)"),
    ("app_secret", "SECRET", "the app secret calls are signed with (LAZOP sandbox)"),
    ("sellers", "NAME,NAME", "the sellers who may authorize the app (LAZOP sandbox)"),
    ("access_token_seconds", "SECONDS", "access token lifetime (LAZOP sandbox)"),
    ("refresh_token_seconds", "SECONDS", "refresh token lifetime, absolute (LAZOP sandbox)"),
    ("token_expires_in", "JSON|missing", "expires_in of token answers, as given (LAZOP sandbox)"),
    (
        "token_answer",
        "no_refresh_token|not_json",
        "token answers broken after the call took effect (LAZOP sandbox)",
    ),
    ("running_answer", "empty|1000|both", "a running image job's answer (LAZOP sandbox)"),
    ("removal_error_code", "CODE", "code of a failing removal's answer (LAZOP sandbox)"),
    ("answer_text", "TEXT", "SKU failure messages and buyer names answered (LAZOP sandbox)"),
    ("migrate_batch_id", "ID", "batch_id every image migration answers (LAZOP sandbox)"),
)
_SHARED_OPTIONS = (
    "latency",
    "fault_rate",
    "fault_kinds",
    "slow_seconds",
    "rate_limit",
    "failing_skus",
    "image_job_seconds",
    "missing_order_from",
    "max_clock_skew",
    "max_body_bytes",
    "seed",
    "listed_orders",
    "listed_days",
    "order_churn",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the LAZOP-only options; the shared ones come from the legacy ``add_arguments``."""
    add_knob_arguments(parser, _OWN_OPTIONS, ENV_PREFIX)


def config_from_args(args: argparse.Namespace) -> LazopSandboxConfig:
    """The config from parsed options over ``LAZADA_LAZOP_SANDBOX_*``; ValueError if bad."""
    names = [name for name, _metavar, _text in _OWN_OPTIONS] + list(_SHARED_OPTIONS)
    return LazopSandboxConfig.from_args(args, names)


def legacy_only_options(args: argparse.Namespace) -> list[str]:
    """Options given that only the legacy sandbox knows (an error with --platform lazop)."""
    return given_options(args, LEGACY_OWN_OPTIONS)


def lazop_only_options(args: argparse.Namespace) -> list[str]:
    """Options given that only the LAZOP sandbox knows (an error with the legacy platform)."""
    return given_options(args, (name for name, _metavar, _text in _OWN_OPTIONS))
