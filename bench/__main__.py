"""python -m bench SCENARIO [options]: see bench/__init__.py for the scenarios."""

from __future__ import annotations

import argparse
import sys

import bench
from bench import (
    beat_cost,
    call_cost,
    console,
    embedded_broker,
    fair,
    limiter,
    order_sync,
    overhead,
    plots,
    polling,
    profiling,
    quick,
    recovery,
    scale,
    throughput,
)
from bench.measure import header

FAMILIES = (
    beat_cost,
    call_cost,
    scale,
    console,
    throughput,
    overhead,
    fair,
    recovery,
    polling,
    embedded_broker,
    limiter,
    order_sync,
    quick,
    plots,
    profiling,
)


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per scenario, each with its own options."""
    main = argparse.ArgumentParser(
        prog="python -m bench",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scenarios = main.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for family in FAMILIES:
        family.register(scenarios)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.scenario != "bare-loop":
        header()
    return int(args.main(args))


if __name__ == "__main__":
    sys.exit(main())
