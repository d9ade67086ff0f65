"""The sandbox's knobs, and their wiring to environment variables and command-line options.

Every knob can be set three ways: in code (``SandboxConfig(...)``, or by assigning to
``sandbox.config`` while it runs), from ``LAZADA_SANDBOX_*`` environment variables, and from
``lazada-worker sandbox`` options (which default to the environment). Observers in other
processes change knobs with ``POST /_sandbox/config`` (see :meth:`SandboxConfig.updated`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

FAULT_KINDS: tuple[str, ...] = ("http500", "http502_html", "e006", "e901", "truncated", "slow")
"""Every kind of transient fault the sandbox can inject."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
ENV_PREFIX = "LAZADA_SANDBOX_"


class KnobSet:
    """The parts of a sandbox config that do not depend on the platform: run-time updates,
    JSON, the environment and the checks of the shared knobs. Subclasses are dataclasses that
    name their environment prefix, their parsers and their secret fields."""

    ENV_PREFIX: ClassVar[str] = ENV_PREFIX
    PARSERS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    SECRETS: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        raise NotImplementedError

    def validate_shared(self, known_faults: tuple[str, ...]) -> None:
        """The checks of the knobs every sandbox has (latency, faults, rate, bodies)."""
        values: Any = self
        _check(_finite(values.latency) and values.latency >= 0, "latency must be >= 0 seconds")
        _check(0.0 <= values.fault_rate <= 1.0, "fault_rate must be between 0 and 1")
        _check(bool(values.fault_kinds), "fault_kinds must name at least one kind")
        unknown = [kind for kind in values.fault_kinds if kind not in known_faults]
        _check(
            not unknown,
            f"unknown fault kind {', '.join(unknown)!s} (known: {', '.join(known_faults)})",
        )
        _check(
            _finite(values.slow_seconds) and values.slow_seconds >= 0, "slow_seconds must be >= 0"
        )
        _check(
            values.rate_limit is None or (_finite(values.rate_limit) and values.rate_limit > 0),
            "rate_limit must be a positive number of calls per second (or none)",
        )
        _check(
            _finite(values.max_clock_skew) and values.max_clock_skew >= 0,
            "max_clock_skew must be >= 0 seconds",
        )
        _check(values.max_body_bytes > 0, "max_body_bytes must be positive")
        _check(values.max_recorded_calls >= 0, "max_recorded_calls must be >= 0")

    def updated(self, values: Mapping[str, Any]) -> Self:
        """A validated copy with ``values`` (JSON-ish: lists, numbers, strings, null) applied."""
        known = {field.name: field for field in fields(self)}  # type: ignore[arg-type]
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown sandbox setting {name!r}")
            changes[name] = _coerce(name, value, self.PARSERS)
        new = dataclasses.replace(self, **changes)  # type: ignore[type-var]
        new.validate()
        return new

    def to_json(self) -> dict[str, Any]:
        """The knobs as a JSON-able dict; secrets only as "set", like `config --json`."""
        document = dataclasses.asdict(self)  # type: ignore[call-overload]
        for name in self.SECRETS:
            document[name] = "set" if document[name] else "missing"
        for name, value in document.items():
            if isinstance(value, tuple):
                document[name] = list(value)
        return dict(document)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        """Defaults overridden by ``<ENV_PREFIX><KNOB>`` variables (e.g. ``..._FAULT_RATE``).

        Lists are comma-separated (``LAZADA_SANDBOX_FAULT_KINDS=e006,slow``,
        ``LAZADA_SANDBOX_IMAGE_JOB_SECONDS=2,6``); ``LAZADA_SANDBOX_RATE_LIMIT=none`` disables
        the limit. A bad value raises ValueError naming the variable.
        """
        changes: dict[str, Any] = {}
        for field in fields(cls):  # type: ignore[arg-type]
            variable = cls.ENV_PREFIX + field.name.upper()
            raw = environ.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                changes[field.name] = _coerce(field.name, raw, cls.PARSERS)
            except ValueError as error:
                raise ValueError(f"{variable}: {error}") from None
        config = cls(**changes)
        config.validate()
        return config

    @classmethod
    def from_args(cls, args: argparse.Namespace, names: Iterable[str]) -> Self:
        """The config of the environment with the options of `names` given in `args` (parsed
        into ``sandbox_<name>``) over it; ValueError naming the option on a bad value."""
        base = cls.from_env()
        changes: dict[str, Any] = {}
        for name in names:
            raw = getattr(args, "sandbox_" + name, None)
            if raw is None:
                continue
            try:
                changes[name] = _coerce(name, raw, cls.PARSERS)
            except ValueError as error:
                raise ValueError(f"--{name.replace('_', '-')}: {error}") from None
        try:
            return base.updated(changes)
        except ValueError as error:
            raise ValueError(f"bad sandbox option: {error}") from None


@dataclass
class SandboxConfig(KnobSet):
    """How the legacy sandbox behaves. Mutable: handlers read it afresh for every call."""

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
    seed: int = 0
    max_recorded_calls: int = 200_000
    """Calls kept for :meth:`Sandbox.calls`; counters in stats() stay exact beyond it."""

    def __post_init__(self) -> None:
        # Accept lists (JSON, hand-written configs) where tuples are meant.
        self.fault_kinds = tuple(self.fault_kinds)
        self.failing_skus = tuple(self.failing_skus)
        self.image_job_seconds = _pair(tuple(self.image_job_seconds))

    def validate(self) -> None:
        """Raise ValueError with a one-line message naming the first bad knob."""
        _check(bool(self.user_id), "user_id must not be empty")
        _check(bool(self.api_key), "api_key must not be empty")
        self.validate_shared(FAULT_KINDS)
        low, high = self.image_job_seconds
        _check(
            _finite(low) and _finite(high) and 0 <= low <= high,
            "image_job_seconds must be two numbers 0 <= low <= high",
        )
        _check(self.missing_order_from > 0, "missing_order_from must be a positive order id")
        _check(
            _finite(self.order_advance_seconds) and self.order_advance_seconds >= 0,
            "order_advance_seconds must be >= 0",
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options to a (sub)command parser; unset ones fall back to the env."""
    env = os.environ
    parser.add_argument(
        "--host",
        default=env.get(ENV_PREFIX + "HOST", DEFAULT_HOST),
        help=f"address to listen on (env {ENV_PREFIX}HOST, default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env.get(ENV_PREFIX + "PORT", str(DEFAULT_PORT)),
        help=f"port, 0 for any free one (env {ENV_PREFIX}PORT, default {DEFAULT_PORT})",
    )
    defaults = SandboxConfig()
    for name, metavar, text in _OPTIONS:
        # The account's defaults are shown: they are what a worker is pointed at the sandbox with.
        shown = f", default: {getattr(defaults, name)}" if name in ("user_id", "api_key") else ""
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest="sandbox_" + name,
            metavar=metavar,
            default=None,
            help=f"{text} (env {ENV_PREFIX}{name.upper()}{shown})",
        )


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """The config from parsed options over the environment; ValueError on a bad value."""
    return SandboxConfig.from_args(args, (name for name, _metavar, _text in _OPTIONS))


_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("user_id", "ID", "the only UserID that is accepted"),
    ("api_key", "KEY", "the API key requests must be signed with"),
    ("latency", "SECONDS", "delay added to every answer"),
    ("fault_rate", "P", "probability (0..1) of answering with a transient fault"),
    ("fault_kinds", "K,K", f"comma list of fault kinds out of {','.join(FAULT_KINDS)}"),
    ("slow_seconds", "SECONDS", "how long a 'slow' fault waits before answering"),
    ("rate_limit", "PER_SECOND", "calls per second before E901, or 'none'"),
    ("failing_skus", "PATTERN,PATTERN", "fnmatch patterns of SellerSkus whose removal fails"),
    ("image_job_seconds", "LOW,HIGH", "range of image job durations"),
    ("missing_order_from", "ORDER_ID", "order ids from this one up answer E016"),
    ("order_advance_seconds", "SECONDS", "an open order advances one status this often"),
    ("max_clock_skew", "SECONDS", "Timestamp tolerance before E003"),
    ("max_body_bytes", "BYTES", "bigger request bodies answer E011"),
    ("seed", "N", "seed of every random choice (orders, faults, image jobs)"),
)


def _coerce(name: str, value: Any, parsers: Mapping[str, Callable[[Any], Any]]) -> Any:
    """Turn a string (env, argv) or JSON value into the field's type; ValueError if it can't."""
    parser: Callable[[Any], Any] = parsers.get(name) or _text
    try:
        return parser(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"bad value {value!r} for {name}: {error}") from None


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    number = float(value)
    if not _finite(number):
        raise ValueError("expected a finite number")
    return number


def _integer(value: Any) -> int:
    if isinstance(value, (bool, float)):
        raise ValueError("expected an integer")
    return int(value)


def _optional_number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    return _number(value)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _words(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _pair(value: Any) -> tuple[float, float]:
    items = value.split(",") if isinstance(value, str) else list(value)
    numbers = [_number(item) for item in items]
    if len(numbers) == 1:
        return (numbers[0], numbers[0])
    if len(numbers) != 2:
        raise ValueError("expected LOW,HIGH")
    return (numbers[0], numbers[1])


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


SHARED_PARSERS: dict[str, Callable[[Any], Any]] = {
    "latency": _number,
    "fault_rate": _number,
    "fault_kinds": _words,
    "slow_seconds": _number,
    "slow_applies": _flag,
    "rate_limit": _optional_number,
    "failing_skus": _words,
    "image_job_seconds": _pair,
    "missing_order_from": _integer,
    "max_clock_skew": _number,
    "max_body_bytes": _integer,
    "seed": _integer,
    "max_recorded_calls": _integer,
}
"""Parsers of the knobs both sandboxes have, under the same names."""
SandboxConfig.PARSERS = {**SHARED_PARSERS, "order_advance_seconds": _number}


def _finite(number: float) -> bool:
    return math.isfinite(number)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
