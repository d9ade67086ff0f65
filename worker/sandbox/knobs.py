"""The knob machinery every sandbox's config is built on, and its wiring to the outside.

A config is a dataclass subclassing :class:`KnobSet`. Every knob can then be set three ways: in
code (the dataclass, or ``sandbox.configure`` while it runs), from ``<ENV_PREFIX><KNOB>``
environment variables, and from command-line options (which default to the environment).
Observers in other processes change knobs with ``POST /_sandbox/config`` (see
:meth:`KnobSet.updated`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, ClassVar, Self

from worker.sandbox.faults import SERVER_FAULTS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SERVER_ENV_PREFIX = "LAZADA_SANDBOX_"
"""Where ``--host`` and ``--port`` default from, whichever platform is served."""

Option = tuple[str, str, str]
"""A knob's command-line option: (knob name, metavar, help text)."""


class KnobSet:
    """The parts of a sandbox config that do not depend on the platform: run-time updates,
    JSON, the environment and the checks of the shared knobs. Subclasses are dataclasses that
    name their environment prefix, their parsers and their secret fields, and implement
    :meth:`validate`."""

    ENV_PREFIX: ClassVar[str]
    PARSERS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    """Per knob, how a string (environment, option) or JSON value becomes its value; knobs
    not named here are plain strings."""
    SECRETS: ClassVar[tuple[str, ...]] = ()
    """Knobs shown only as "set" or "missing" by :meth:`to_json`."""

    def validate(self) -> None:
        """Raise ValueError with a one-line message naming the first bad knob."""
        raise NotImplementedError("a sandbox config must implement validate")

    def validate_shared(self, known_faults: tuple[str, ...]) -> None:
        """The checks of the knobs the shared server reads (latency, faults, rate, bodies), and
        of the clock skew for a config that has one."""
        values: Any = self
        check(finite(values.latency) and values.latency >= 0, "latency must be >= 0 seconds")
        check(0.0 <= values.fault_rate <= 1.0, "fault_rate must be between 0 and 1")
        check(bool(values.fault_kinds), "fault_kinds must name at least one kind")
        unknown = [kind for kind in values.fault_kinds if kind not in known_faults]
        check(
            not unknown,
            f"unknown fault kind {', '.join(unknown)!s} (known: {', '.join(known_faults)})",
        )
        check(finite(values.slow_seconds) and values.slow_seconds >= 0, "slow_seconds must be >= 0")
        check(
            values.rate_limit is None or (finite(values.rate_limit) and values.rate_limit > 0),
            "rate_limit must be a positive number of calls per second (or none)",
        )
        if hasattr(values, "max_clock_skew"):
            check(
                finite(values.max_clock_skew) and values.max_clock_skew >= 0,
                "max_clock_skew must be >= 0 seconds",
            )
        check(values.max_body_bytes > 0, "max_body_bytes must be positive")
        check(values.max_recorded_calls >= 0, "max_recorded_calls must be >= 0")

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


# -- command-line options ------------------------------------------------------------------------


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--host`` and ``--port``, defaulting to ``LAZADA_SANDBOX_HOST`` and ``_PORT``."""
    env = os.environ
    parser.add_argument(
        "--host",
        default=env.get(SERVER_ENV_PREFIX + "HOST", DEFAULT_HOST),
        help=f"address to listen on (env {SERVER_ENV_PREFIX}HOST, default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env.get(SERVER_ENV_PREFIX + "PORT", str(DEFAULT_PORT)),
        help=f"port, 0 for any free one (env {SERVER_ENV_PREFIX}PORT, default {DEFAULT_PORT})",
    )


def add_knob_arguments(
    parser: argparse.ArgumentParser,
    options: Iterable[Option],
    env_prefix: str,
    shown_defaults: Mapping[str, Any] | None = None,
) -> None:
    """One option per knob, parsed into ``sandbox_<name>`` and None when not given (so the
    environment applies, see :meth:`KnobSet.from_args`); ``shown_defaults`` are written in the
    help of their options."""
    for name, metavar, text in options:
        shown = ""
        if shown_defaults is not None and name in shown_defaults:
            shown = f", default: {shown_defaults[name]}"
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest="sandbox_" + name,
            metavar=metavar,
            default=None,
            help=f"{text} (env {env_prefix}{name.upper()}{shown})",
        )


def given_options(args: argparse.Namespace, names: Iterable[str]) -> list[str]:
    """The options of knobs `names` that were given on the command line, as ``--name``."""
    return [
        "--" + name.replace("_", "-")
        for name in names
        if getattr(args, "sandbox_" + name, None) is not None
    ]


# -- parsers and checks ---------------------------------------------------------------------------


def _coerce(name: str, value: Any, parsers: Mapping[str, Callable[[Any], Any]]) -> Any:
    """Turn a string (env, argv) or JSON value into the field's type; ValueError if it can't."""
    parser: Callable[[Any], Any] = parsers.get(name) or text
    try:
        return parser(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"bad value {value!r} for {name}: {error}") from None


def number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    result = float(value)
    if not finite(result):
        raise ValueError("expected a finite number")
    return result


def integer(value: Any) -> int:
    if isinstance(value, (bool, float)):
        raise ValueError("expected an integer")
    return int(value)


def optional_number(value: Any) -> float | None:
    """A number, or None for "", "none" and "off" (a knob that can be turned off)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    return number(value)


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def words(value: Any) -> tuple[str, ...]:
    """A comma-separated string or a list, as a tuple of non-empty stripped strings."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def pair(value: Any) -> tuple[float, float]:
    """``LOW,HIGH`` (or one number for both) as two floats."""
    items = value.split(",") if isinstance(value, str) else list(value)
    numbers = [number(item) for item in items]
    if len(numbers) == 1:
        return (numbers[0], numbers[0])
    if len(numbers) != 2:
        raise ValueError("expected LOW,HIGH")
    return (numbers[0], numbers[1])


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def finite(value: float) -> bool:
    return math.isfinite(value)


def check(condition: bool, message: str) -> None:
    """Raise ValueError(message) unless `condition`: a config's validate() is a list of these."""
    if not condition:
        raise ValueError(message)


SERVER_PARSERS: dict[str, Callable[[Any], Any]] = {
    "latency": number,
    "fault_rate": number,
    "fault_kinds": words,
    "slow_seconds": number,
    "slow_applies": flag,
    "rate_limit": optional_number,
    "max_body_bytes": integer,
    "seed": integer,
    "max_recorded_calls": integer,
}
"""Parsers of the knobs the shared server reads (see ``http_server.Knobs``)."""
SHARED_PARSERS: dict[str, Callable[[Any], Any]] = {
    **SERVER_PARSERS,
    "failing_skus": words,
    "image_job_seconds": pair,
    "missing_order_from": integer,
    "max_clock_skew": number,
    "listed_orders": integer,
    "listed_days": number,
    "order_churn": number,
}
"""The server's parsers and those of the knobs both Lazada sandboxes have under the same names."""


@dataclasses.dataclass
class ServerKnobs(KnobSet):
    """A new sandbox's config starts here: the knobs the shared server reads, with their
    defaults (no latency, no faults, no rate limit), and their checks. A subclass names its
    ENV_PREFIX and SECRETS and adds its platform's knobs. (The two Lazada sandboxes declare
    these knobs themselves, in the order their config documents have always shown.)"""

    ENV_PREFIX: ClassVar[str] = "SANDBOX_"
    PARSERS: ClassVar[Mapping[str, Callable[[Any], Any]]] = SERVER_PARSERS

    latency: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = SERVER_FAULTS
    slow_seconds: float = 35.0
    slow_applies: bool = True
    rate_limit: float | None = None
    max_body_bytes: int = 1024 * 1024
    seed: int = 0
    max_recorded_calls: int = 100_000

    def validate(self) -> None:
        self.validate_shared(SERVER_FAULTS)
