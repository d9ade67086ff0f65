"""One measured run of a workload on a stack: the stack started and stopped around it, the
figures every workload reports, and how they are printed.

Times are wall-clock seconds from the first `send_task` to the database timestamp of the last
row made final. Ideal = API calls x latency / calls in flight (threads x processes), and
efficiency = ideal / measured.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from bench.profiling import PROFILES, Profiler
from bench.stack import (
    FAILED,
    STACKS,
    BenchStack,
    SandboxProcess,
    add_lazop_account,
    authorize_lazop_account,
    machine_load,
    open_stack,
    own_cpu_seconds,
    warm_up,
)

Workload = Callable[[BenchStack, SandboxProcess, Any], dict[str, Any]]


class Run:
    """What every workload reports: timings, API calls, CPU and memory of the workers."""

    def __init__(
        self, workload: str, stack: BenchStack, sandbox: SandboxProcess, args: Any
    ) -> None:
        self.workload = workload
        self.stack = stack
        self.sandbox = sandbox
        self.in_flight = args.concurrency * args.processes
        self.figures: dict[str, Any] = {
            "workload": workload,
            "stack": stack.kind,
            "processes": args.processes,
            "poll_workers": args.poll_workers,
            "concurrency": args.concurrency,
            "latency_s": args.latency,
        }
        self.profiler: Profiler | None = None
        if getattr(args, "profile", False):
            name = workload.replace(" ", "-")
            self.profiler = Profiler(stack.worker_pids(), PROFILES / f"{name}-{stack.kind}")
        stack.sender()  # the producer connects now, not inside the timed run
        sandbox.reset_calls()  # count only this workload's calls
        self.worker_cpu = stack.worker_cpu_seconds()
        self.own_cpu = own_cpu_seconds()
        self.sandbox_cpu = sandbox.cpu_seconds()
        self.started = datetime.now(UTC)
        self.started_clock = time.monotonic()

    def enqueued(self) -> None:
        self.figures["enqueue_s"] = round(time.monotonic() - self.started_clock, 3)

    def finish(self, last_final: datetime, ideal: float | None, jobs: int) -> dict[str, Any]:
        """Record the figures once the last row is final (`last_final`: its DB timestamp)."""
        measured = (last_final - self.started).total_seconds()
        stats = self.sandbox.stats()
        figures = self.figures
        figures["measured_s"] = round(measured, 3)
        figures["observed_s"] = round(time.monotonic() - self.started_clock, 3)
        if ideal is not None:
            figures["ideal_s"] = round(ideal, 3)
            figures["efficiency"] = round(ideal / measured, 3) if measured > 0 else None
        figures["api_calls"] = stats["calls"]
        figures["api_calls_by_action"] = stats["calls_by_action"]
        figures["api_calls_by_outcome"] = stats["calls_by_outcome"]
        figures["api_calls_per_job"] = round(stats["calls"] / jobs, 3) if jobs else None
        figures["peak_calls_in_flight"] = stats["peak_calls_in_flight"]
        served = self.sandbox.calls()
        if served:
            # Where the time went: before the first call (recording the job, queueing) and
            # after the last one (recording its outcome).
            start = self.started.timestamp()
            figures["first_call_s"] = round(served[0].at - start, 3)
            figures["last_call_s"] = round(max(call.at for call in served) - start, 3)
        figures["worker_cpu_s"] = round(self.stack.worker_cpu_seconds() - self.worker_cpu, 2)
        figures["harness_cpu_s"] = round(own_cpu_seconds() - self.own_cpu, 2)
        figures["sandbox_cpu_s"] = round(self.sandbox.cpu_seconds() - self.sandbox_cpu, 2)
        figures["worker_rss_mib"] = round(self.stack.worker_rss_mib(), 1)
        if self.profiler is not None:
            figures["profile"] = self.profiler.stop()
        return figures


def bound(ideal: float, floor: float = 60.0) -> float:
    """How long a workload may take before it is called stuck: generous, but finite."""
    return max(floor, 10 * ideal)


def run_workload(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Start the sandbox and the stack, run one workload, stop everything.
    `args.sandbox_rate_limit`, if set, is the sandbox's own limit (E901 above)."""
    extra_env = {}
    if getattr(args, "poll_first", None) is not None:
        extra_env["LAZADA_POLL_FIRST"] = str(args.poll_first)
    if getattr(args, "poll_slack", None) is not None:
        extra_env["LAZADA_POLL_SLACK"] = str(args.poll_slack)
    if getattr(args, "rate_limit", None) is not None:
        extra_env["LAZADA_RATE_LIMIT"] = str(args.rate_limit)  # instead of the limit off
    if getattr(args, "webhook_url", None):
        # Events for a receiver (e.g. one that is down): their deliveries run on their own
        # queue and must not slow the API work.
        extra_env["LAZADA_WEBHOOK_URLS"] = args.webhook_url
        extra_env["LAZADA_WEBHOOK_SECRET"] = (
            "whsec_" + base64.b64encode(b"bench-secret-key-0123456789abcd").decode()
        )
    platform = getattr(args, "platform", "sellercenter")
    from cryptography.fernet import Fernet

    # A server database needs the deployment's secret key for stored accounts' secrets (a lazop
    # account, the fair scenarios' accounts).
    extra_env["LAZADA_SECRET_KEY"] = Fernet.generate_key().decode()
    load = machine_load()
    with ExitStack() as cleanup:
        sandbox = SandboxProcess(args.latency, platform, getattr(args, "sandbox_rate_limit", None))
        cleanup.callback(sandbox.stop)
        stack = cleanup.enter_context(open_stack(args.stack, sandbox, extra_env))
        if platform == "lazop":
            add_lazop_account(stack, sandbox)
        started = time.monotonic()
        if args.poll_workers:
            stack.start_workers(args.processes, args.concurrency, only="work")
            stack.start_workers(args.poll_workers, args.concurrency, only="polls")
        else:
            stack.start_workers(args.processes, args.concurrency)
        startup = round(time.monotonic() - started, 2)
        try:
            if not args.cold:
                warm_up_workers(stack, sandbox, args)
            figures = workload(stack, sandbox, args)
        except FAILED:
            print(stack.logs()[-4000:], file=sys.stderr)
            raise
        figures["worker_startup_s"] = startup
        figures["warmed_up"] = not args.cold
        figures["load_before"] = load
        figures["load_after"] = machine_load()
        return figures


def warm_up_workers(stack: BenchStack, sandbox: SandboxProcess, args: argparse.Namespace) -> None:
    """A removal job of one batch per thread before the measured run, so that the workers
    have their database and HTTP connections open, as a worker that has been running does
    (the bare loop, too, connects before its clock starts). `--cold` measures without it."""
    warm_up(stack, sandbox, args.concurrency * args.processes, args.timeout)
    if sandbox.platform == "lazop":
        from worker.accounts.platforms import ACCOUNT_TTL

        authorize_lazop_account(stack, sandbox)  # the reset forgot the account's tokens
        time.sleep(ACCOUNT_TTL + 0.5)  # the workers read the account, and its new token, again


def stack_options(p: argparse.ArgumentParser, latency: float) -> None:
    """The options of every workload that runs on a stack of worker processes."""
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--stack", choices=STACKS, default="embedded")
    p.add_argument("--latency", type=float, default=latency, help="sandbox latency, s")
    p.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    p.add_argument("--processes", type=int, default=1, help="worker processes")
    p.add_argument(
        "--poll-workers",
        type=int,
        default=0,
        help="processes serving only image-job polls (the others then serve the rest)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0, help="minimum time bound, s")
    p.add_argument("--profile", action="store_true", help="sample the workers with py-spy")
    p.add_argument("--cold", action="store_true", help="measure without a warm-up job")


# -- printing -------------------------------------------------------------------------------


def header() -> None:
    """When, on what, and how busy the machine was: to stderr, before any run."""
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"python {sys.version.split()[0]}, load {machine_load()}",
        file=sys.stderr,
    )


def top_of_profile(figures: dict[str, Any]) -> None:
    """For JSON output: a profile's 20 busiest leaf frames in place of its counters."""
    profile = figures.pop("profile", None)
    if profile:
        figures["profile_top"] = profile["own"].most_common(20)


def print_figures(figures: dict[str, Any]) -> None:
    profile = figures.pop("profile", None)
    figures.pop("per_job", None)  # per-job data: JSON only
    title = f"== {figures.pop('workload')} on {figures.pop('stack')} =="
    print(title)
    for key, value in figures.items():
        print(f"  {key:26s} {value}")
    if profile:
        total = profile["samples"] or 1
        print(f"  profile: {profile['samples']} samples of on-CPU worker threads")
        print("    own time (leaf frames):")
        for frame, count in profile["own"].most_common(15):
            print(f"      {100 * count / total:5.1f}%  {frame}")
        print("    inclusive (a frame anywhere in the stack):")
        for frame, count in profile["inclusive"].most_common(40):
            print(f"      {100 * count / total:5.1f}%  {frame}")
    sys.stdout.flush()


def as_json(results: list[dict[str, Any]] | dict[str, Any]) -> str:
    for figures in results if isinstance(results, list) else [results]:
        top_of_profile(figures)
    return json.dumps(results, indent=2, default=str)


def printed(
    measure: Callable[[argparse.Namespace], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
) -> Callable[[argparse.Namespace], int]:
    """A scenario's `main` from its `figures` and `show` hooks (those `bench quick` calls):
    measure, then print the figures, as JSON where the scenario has --json and it is given;
    a run that failed prints why and exits 1."""

    def main(args: argparse.Namespace) -> int:
        try:
            figures = measure(args)
        except FAILED as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        if getattr(args, "json", False):
            print(as_json(figures))
        else:
            show(figures)
        return 0

    return main


def workload_defaults(workload: Workload) -> dict[str, Any]:
    """What a sub-command of a workload on a stack runs: `main` prints its figures (with
    --json a list of one figures object), `figures` and `show` are for `bench quick`."""
    return {
        "main": lambda args: run_and_print(workload, args),
        "figures": lambda args: run_workload(workload, args),
        "show": lambda figures: print_figures(dict(figures)),
    }


def run_and_print(workload: Workload, args: argparse.Namespace) -> int:
    """Run one workload; print its figures, or with --json a list of one figures object."""
    try:
        figures = run_workload(workload, args)
    except FAILED as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(as_json([figures]))
    else:
        print_figures(dict(figures))
    return 0


# -- reading figures ------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def peak_in_window(times: list[float], width: float = 1.0) -> int:
    """The most of the sorted `times` in any half-open window [at, at + width) that starts at
    one of them: the busiest second, wherever it falls."""
    peak, end = 0, 0
    for start, at in enumerate(times):
        while end < len(times) and times[end] < at + width:
            end += 1
        peak = max(peak, end - start)
    return peak
