"""Many accounts at their rate limits (issue 27, benchmarks 2 and 3).

    python -m bench scale-accounts [--sizes 20x5 200x0.5 1000x0.1] [--seconds 80]
                                   [--platform lazop] [--stack redis]
                                   [--processes 2 --concurrency 16 --latency 0.1]
                                   [--settled]
    python -m bench ceiling [--accounts 100 --rate 5 --skus 6000] [--platform lazop]
                            [--stack redis] [--processes 2 --concurrency 16 --latency 0.1]

`scale-accounts`: for each size ACCOUNTSxRATE in turn, that many accounts at that many calls/s
each, every one sent one removal job at once, sized so that each account's calls at its rate
take about `--seconds` (at least two calls each); the default sizes all want 100 calls/s
together. Figures per size are those of `call-cost` at the limit (bench/call_cost.py): the
aggregate calls/s while every account ran against accounts x rate, Jain's index of the
accounts' rates, the worker's CPU per call; and the CPU per call against the first size's.
The new accounts' first order syncs (beat starts them as soon as they are added) are part of a
run's work, unless `--settled`: then the run starts once they have ended (the workers quiet
again), and their calls are not counted.

`ceiling`: `--accounts` accounts each at `--rate` calls/s, far above what the workers reach
together, each sent one job of `--skus` SKUs at once: the calls/s the workers sustained while
every account ran, the worker CPU cores that used, and calls per second per core of worker CPU
(calls / worker CPU seconds), against the bare client loop's calls per CPU second (its client
alone, on an unlimited sandbox of the same platform and latency, as many threads as the
workers have).

On the Open Platform (the default) one LAZOP sandbox process serves every account, each the
seller who authorized it, and answers ApiCallLimit above the rate per seller; the per-account
figures come from its record of the calls, grouped by seller. Seller Center starts a sandbox
process per account: for a few accounts only.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from bench.call_cost import SANDBOXES, SETTLED_HELP, accounts_run, bare_run
from bench.measure import print_figures, printed, run_workload
from bench.stack import (
    BATCH_SIZE,
    FAILED,
    STACKS,
    BenchError,
    BenchStack,
    SandboxProcess,
    say,
)


def size(text: str) -> tuple[int, float]:
    """ACCOUNTSxRATE, e.g. ``1000x0.1``."""
    accounts, _, rate = text.partition("x")
    try:
        parsed = int(accounts), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ACCOUNTSxRATE") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: accounts and rate must be positive")
    return parsed


def scale_accounts(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """One run at the limit for each of `args.sizes`."""
    runs: list[dict[str, Any]] = []
    unfinished = None
    for accounts, rate in args.sizes:
        calls = max(2, math.ceil(rate * args.seconds))
        sized = argparse.Namespace(**vars(args))
        sized.accounts, sized.rate, sized.skus = accounts, rate, calls * BATCH_SIZE
        try:
            profile_to = f"scale-{accounts}x{rate}" if args.profile else None
            runs.append(accounts_run(stack, sized, limited=True, profile_to=profile_to))
            # Each size takes minutes: its figures are shown as soon as it ends.
            say(f"{accounts} accounts at {rate}/s: {json.dumps(runs[-1])}")
        except FAILED as exc:
            # The sizes before keep their figures; the workers still hold this one's work,
            # which would disturb any size after it.
            unfinished = {"accounts": accounts, "rate": rate, "error": str(exc)}
            break
    if not runs:
        raise BenchError(f"the first size did not finish: {unfinished}")
    reference = runs[0]["worker_cpu_ms_per_call"]
    for run in runs:
        run["cpu_per_call_over_first"] = round(run["worker_cpu_ms_per_call"] / reference, 2)
        target = run["target_calls_per_s"]
        if run["calls_per_s_all_running"] is not None:
            run["share_of_target"] = round(run["calls_per_s_all_running"] / target, 3)
    return {
        "workload": "scale accounts",
        "stack": stack.kind,
        "platform": args.platform,
        "seconds_per_account": args.seconds,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "runs": runs,
        "unfinished": unfinished,
    }


def ceiling(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """The accounts far above the workers' reach, then the bare loop."""
    run = accounts_run(stack, args, limited=True)
    threads = args.processes * args.concurrency
    bare = bare_run(args, args.bare_calls, threads)
    per_core = run["api_calls"] / run["worker_cpu_s"]
    bare_per_core = bare["api_calls"] / bare["cpu_s"]
    return {
        "workload": "ceiling",
        "stack": stack.kind,
        "platform": args.platform,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "run": run,
        "bare_loop": bare,
        "sustained_calls_per_s": run["calls_per_s_all_running"],
        "worker_cores": run["worker_cores"],
        "calls_per_s_per_core": round(per_core, 1),
        "bare_calls_per_s_per_core": round(bare_per_core, 1),
        "over_bare": round(per_core / bare_per_core, 3),
    }


def scale_figures(args: argparse.Namespace) -> dict[str, Any]:
    args.poll_workers = 0
    return run_workload(scale_accounts, args)


def ceiling_figures(args: argparse.Namespace) -> dict[str, Any]:
    args.poll_workers = 0
    return run_workload(ceiling, args)


def show_scale(result: dict[str, Any]) -> None:
    result = dict(result)
    for run in result.pop("runs"):
        title = f"{run['accounts']} accounts at {run.pop('limit')}"
        print_figures({"workload": title, "stack": result["stack"], **run})
    print_figures(result)


def show_ceiling(result: dict[str, Any]) -> None:
    result = dict(result)
    run, bare = result.pop("run"), result.pop("bare_loop")
    title = f"{run['accounts']} accounts at {run.pop('limit')}"
    print_figures({"workload": title, "stack": result["stack"], **run})
    print_figures({"workload": "bare loop", "stack": "client alone", **bare})
    print_figures(result)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--stack", choices=STACKS, default="redis")
    p.add_argument("--platform", choices=tuple(SANDBOXES), default="lazop")
    p.add_argument("--latency", type=float, default=0.1, help="sandbox latency, s")
    p.add_argument("--processes", type=int, default=2, help="worker processes")
    p.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    p.add_argument("--timeout", type=float, default=60.0, help="minimum time bound, s")
    p.add_argument("--idle", type=float, default=2.0, help="s the idle workers' CPU is read")
    p.add_argument("--cold", action="store_true", help="measure without a warm-up job")
    p.add_argument("--settled", action="store_true", help=SETTLED_HELP)


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "scale-accounts",
        help="many accounts at low rates: aggregate, fairness and CPU per call",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _options(p)
    p.add_argument(
        "--sizes",
        type=size,
        nargs="+",
        default=[(20, 5.0), (200, 0.5), (1000, 0.1)],
        metavar="ACCOUNTSxRATE",
        help="runs in turn; CPU per call is compared with the first's",
    )
    p.add_argument("--seconds", type=float, default=80.0, help="each account's calls at its rate")
    p.add_argument("--profile", action="store_true", help="sample the workers with py-spy")
    p.set_defaults(main=printed(scale_figures, show_scale), figures=scale_figures, show=show_scale)

    p = scenarios.add_parser(
        "ceiling",
        help="the most calls/s the workers sustain, per core, against a bare loop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _options(p)
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--rate", type=float, default=5.0, help="each account's calls/s")
    p.add_argument("--skus", type=int, default=6000, help="SKUs of each account's job")
    p.add_argument("--bare-calls", type=int, default=3000, help="calls of the bare loop")
    p.set_defaults(
        main=printed(ceiling_figures, show_ceiling), figures=ceiling_figures, show=show_ceiling
    )
