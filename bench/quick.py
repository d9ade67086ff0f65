"""Every scenario family, briefly: what CI runs so that the benchmarks keep working.

    python -m bench quick [--json]

Small versions, on the embedded stack (SQLite and the file broker) unless a scenario needs
PostgreSQL and Redis (the console's, beat's cost): a removal, orders, image-job polling, the
overhead against the bare loop, the CPU cost per call (and at the rate limit against the limit
off, on each platform), many accounts at low rates, the ceiling of calls/s per core, beat's
cost per tick, three fairness scenarios at the rate limit, a recovery after
kill -9, the embedded broker's transports, the slot calendar, the console's pages and push
receiver, and the order sync (a first sync, a steady state of churning accounts, a sync beside
a removal). Figures are printed, never asserted: on a shared CI machine they say only that
each scenario ran. Exit status 1 if any scenario failed to run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from typing import Any

from bench.stack import FAILED, say

SMALL = ["--latency", "0.05", "--concurrency", "8"]
# A short lease and dispatch deadline, so that the recovery takes seconds, not minutes (a
# lease must outlast a whole API call, hence the short read timeout).
SHORT_WAITS = ["--lease", "12", "--read-timeout", "2", "--redispatch-after", "3"]
# Each a command line of `python -m bench`, sized to take seconds.
PLAN: list[list[str]] = [
    ["removal", "--skus", "500", *SMALL],
    ["removal", "--platform", "lazop", "--skus", "500", *SMALL],  # a stored, authorized account
    ["orders", "--orders", "100", *SMALL],
    ["polling", "--jobs", "30", "--min-duration", "1", "--max-duration", "5", *SMALL],
    ["overhead", "--skus", "500", "--concurrency", "8"],
    ["cost", "--stack", "embedded", "--batches", "40", "--rounds", "2"],
    [
        "call-cost",
        *("--stack", "embedded", "--accounts", "2", "--skus", "100", "--processes", "1"),
        *("--concurrency", "4", "--idle", "0.2", "--timeout", "30"),
    ],
    [
        "call-cost",
        *("--platform", "lazop", "--stack", "embedded", "--accounts", "2", "--skus", "100"),
        *("--processes", "1", "--concurrency", "4", "--idle", "0.2", "--timeout", "30"),
    ],
    [
        "scale-accounts",
        *("--stack", "embedded", "--sizes", "2x5", "10x1", "--seconds", "4"),
        *("--processes", "1", "--concurrency", "4", "--idle", "0.2", "--timeout", "30"),
    ],
    [
        "ceiling",
        *("--stack", "embedded", "--accounts", "5", "--rate", "20", "--skus", "500"),
        *("--bare-calls", "100", "--processes", "1", "--concurrency", "4", "--idle", "0.2"),
        *("--timeout", "30"),
    ],
    ["beat-cost", "--accounts", "5", "50", "--ticks", "2"],
    ["fair-single", "--quick"],
    ["fair-mixed", "--quick"],
    ["fair-accounts", "--quick"],
    ["recovery", "--skus", "10000", *SMALL, *SHORT_WAITS],
    ["embedded-broker", "--messages", "200"],
    ["slot-calendar", "--seconds", "10"],
    ["console-pages", "--skus", "2000", "--orders", "200", "--accounts", "10", "--audit", "2000"],
    ["console-push", "--rate", "20", "--seconds", "3"],
    ["order-sync-first", "--orders", "300", "--rate-limit", "20", "--latency", "0.05"],
    [
        "order-sync-steady",
        *("--accounts", "2", "--every", "2", "--seconds", "3", "--churn", "2"),
        *("--listed-orders", "20", "--fetches", "6", "--rate-limit", "20", "--latency", "0.02"),
    ],
    [
        "order-sync-beside-removal",
        *("--skus", "1500", "--orders", "300", "--removal-head-start", "5"),
        *("--rate-limit", "20", "--latency", "0.02"),
    ],
]


def quick(args: argparse.Namespace) -> int:
    from bench.__main__ import parser

    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for argv in PLAN:
        command = "python -m bench " + shlex.join(argv)
        say(command)
        step = parser().parse_args(argv)
        # Each step as it runs alone: one that sets the process's environment for its own
        # clients (CELERY_BROKER_URL, which Celery prefers to any URL it is given) must not
        # send the next step's messages elsewhere.
        environment = dict(os.environ)
        try:
            figures = step.figures(step)
        except FAILED as exc:
            print(f"bench: {command}: {exc}", file=sys.stderr)
            failed.append(command)
            continue
        except Exception:  # a scenario that broke: the others still run, and CI fails
            traceback.print_exc()
            failed.append(command)
            continue
        finally:
            os.environ.clear()
            os.environ.update(environment)
        if figures.get("finished") is False:  # a recovery that did not end
            failed.append(command)
        if args.json:
            results.append({"command": command, **figures})
        else:
            step.show(figures)
    if args.json:
        from bench.measure import as_json

        print(as_json(results))
    for command in failed:
        print(f"bench: failed: {command}", file=sys.stderr)
    return 1 if failed else 0


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "quick",
        help="every scenario family briefly, on the embedded stack (CI)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(main=quick)
