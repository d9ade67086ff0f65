"""Benchmarks of the worker against the sandbox; prints figures (see bench/RESULTS.md).

    python bench/run.py removal  --stack embedded|redis --skus 20000 --latency 0.1 --concurrency 16
    python bench/run.py orders   --stack redis --orders 10000 --latency 0.1 --concurrency 16
    python bench/run.py polling  --stack redis --jobs 2000 --max-duration 120
    python bench/run.py overhead --stack redis --skus 20000 --concurrency 16
    python bench/run.py memory   --stack redis --concurrency 16
    python bench/run.py ratelimit --stack redis --rate-limit 20 --calls 400 --processes 2
    python bench/run.py quick    (small versions of each on the embedded stack, for CI)

Every run is bounded in time: a workload that does not finish within its bound stops with
exit status 1 and says so. Figures are printed, not asserted; `--json` prints them as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BATCH_SIZE,
    STACKS,
    BenchError,
    BenchStack,
    Profiler,
    SandboxProcess,
    add_lazop_account,
    authorize_lazop_account,
    open_stack,
    own_cpu_seconds,
    start_sandbox,
    wait_for,
)
from harness import warm_up as warm_up_removal
from sqlalchemy import func, select

from worker.db.models import ImageJob, Order, RemovalJob

PROFILES = Path(__file__).resolve().parent / "profiles"


# -- one measured run -----------------------------------------------------------------------


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
            self.profiler = Profiler(stack.worker_pids(), PROFILES / f"{workload}-{stack.kind}")
        stack.sender()  # the harness's producer connects now, not inside the timed run
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


def _bound(ideal: float, floor: float = 60.0) -> float:
    """How long a workload may take before it is called stuck: generous, but finite."""
    return max(floor, 10 * ideal)


# -- workloads ------------------------------------------------------------------------------


def removal(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """One removal job of `--skus` SKUs; time from enqueue to the job's finished_at."""
    run_id = uuid.uuid4().hex[:8]
    skus = [f"BENCH-{run_id}-{i:07d}" for i in range(args.skus)]
    calls = math.ceil(args.skus / BATCH_SIZE)
    in_flight = args.concurrency * args.processes
    ideal = calls * args.latency / in_flight
    key = f"bench-{run_id}"
    polling_jobs = getattr(args, "while_polling", 0)
    if polling_jobs:
        _start_polling(stack, run_id, polling_jobs, args.seed)
    run = Run("removal", stack, sandbox, args)
    stack.send("lazada.remove_products", skus, key=key)
    run.enqueued()
    query = select(RemovalJob.finished_at).where(RemovalJob.key == key)
    finished = wait_for(lambda: stack.scalar(query), _bound(ideal, args.timeout), "the job")
    figures = run.finish(finished, ideal if args.latency > 0 else None, jobs=1)
    figures.update(skus=args.skus, calls_needed=calls)
    figures["batches_per_s"] = round(calls / figures["measured_s"], 1)
    figures["skus_removed"] = sandbox.stats()["skus_removed"]
    if polling_jobs:
        figures["image_jobs_polling"] = polling_jobs
    return figures


def _start_polling(
    stack: BenchStack,
    run_id: str,
    jobs: int,
    seed: int,
    durations: tuple[float, float] = (30.0, 90.0),
    timeout: float = 60.0,
) -> None:
    """Image jobs of 30-90 s (`durations`), each polled while the removal runs: waiting holds
    no slot. Returns once every job has been polled once (within `timeout` s)."""
    rng = random.Random(seed)
    for i in range(jobs):
        seconds = rng.uniform(*durations)
        url = f"https://images.example.test/bench/{run_id}/{i}.jpg?sandbox_duration={seconds:.3f}"
        stack.send("lazada.migrate_images", [url], key=f"bench-{run_id}-img-{i}")
    polled = select(func.count()).select_from(ImageJob).where(ImageJob.polls > 0)
    wait_for(lambda: stack.scalar(polled) >= jobs, timeout, "the image jobs to be polling")


def detection_delay(url: str, started_at: datetime, finished_at: datetime) -> tuple[float, float]:
    """(the job's duration as its URL set it, the detection delay): how long after the job
    ended (started_at + duration) the worker recorded it (finished_at)."""
    seconds = float(url.rsplit("sandbox_duration=", 1)[1])
    return seconds, (finished_at - started_at).total_seconds() - seconds


def detection_target(seconds: float) -> float:
    """The detection delay a job of `seconds` may have: 20% of its duration + 5 s."""
    return 0.2 * seconds + 5.0


def orders(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--orders` fetch_order tasks; time from the first send to the last order stored."""
    first = random.Random(args.seed).randrange(1_000, 100_000_000)
    order_ids = range(first, first + args.orders)
    ideal = args.orders * args.latency / (args.concurrency * args.processes)
    run = Run("orders", stack, sandbox, args)
    for order_id in order_ids:
        stack.send("lazada.fetch_order", order_id)
    run.enqueued()
    final = select(func.count()).select_from(Order).where(Order.state != "pending")
    wait_for(
        lambda: stack.scalar(final) >= args.orders,
        _bound(ideal, args.timeout),
        "the orders",
        interval=0.25,
    )
    last = stack.scalar(select(func.max(Order.updated_at)))
    figures = run.finish(last, ideal if args.latency > 0 else None, jobs=args.orders)
    states = stack.rows(select(Order.state, func.count()).group_by(Order.state))
    figures.update(orders=args.orders, states=dict(states))  # type: ignore[arg-type]
    return figures


def polling(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--jobs` image jobs lasting uniformly between --min-duration and --max-duration s.

    Each job is one migrate_images task of one URL whose `sandbox_duration` fixes how long
    the sandbox takes. Detection delay = finished_at - (started_at + duration): how long after
    the job ended the worker recorded it.
    """
    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:8]
    durations = [rng.uniform(args.min_duration, args.max_duration) for _ in range(args.jobs)]
    run = Run("polling", stack, sandbox, args)
    for i, seconds in enumerate(durations):
        url = f"https://images.example.test/bench/{run_id}/{i}.jpg?sandbox_duration={seconds:.3f}"
        stack.send("lazada.migrate_images", [url], key=f"bench-{run_id}-{i}")
    run.enqueued()
    done = select(func.count()).select_from(ImageJob).where(ImageJob.state != "pending")
    wait_for(
        lambda: stack.scalar(done) >= args.jobs,
        args.max_duration + max(60.0, args.timeout),
        "the image jobs",
        interval=0.5,
    )
    rows = stack.rows(
        select(
            ImageJob.urls, ImageJob.polls, ImageJob.started_at, ImageJob.finished_at, ImageJob.state
        )
    )
    last = max(row.finished_at for row in rows)
    figures = run.finish(last, args.max_duration, jobs=args.jobs)
    polls = sorted(row.polls for row in rows)
    delays, shares, per_job = [], [], []
    for row in rows:
        seconds, delay = detection_delay(row.urls[0], row.started_at, row.finished_at)
        delays.append(delay)
        shares.append(delay / detection_target(seconds))  # <= 1: within the target
        per_job.append([round(seconds, 3), row.polls, round(delay, 3)])
    get_response = figures["api_calls_by_action"].get("GetResponse", 0)
    figures.update(
        jobs=args.jobs,
        duration_range_s=[args.min_duration, args.max_duration],
        states=dict(Counter(row.state for row in rows)),
        polls_median=statistics.median(polls),
        polls_p95=percentile(polls, 95),
        polls_max=polls[-1],
        get_response_per_job=round(get_response / args.jobs, 2),
        delay_median_s=round(statistics.median(delays), 2),
        delay_p95_s=round(percentile(delays, 95), 2),
        delay_max_s=round(max(delays), 2),
        delay_share_of_bound_p95=round(percentile(shares, 95), 3),
        jobs_within_bound=round(sum(share <= 1 for share in shares) / len(shares), 3),
        # One [duration s, polls, detection delay s] per job, for bench/plots.py (JSON only).
        per_job=sorted(per_job),
    )
    return figures


def overhead(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """Batches per second through the worker at zero latency, against a bare loop of the same
    RemoveProduct calls at the same concurrency (no Celery, no database) in its own process."""
    figures = removal(stack, sandbox, args)
    figures["workload"] = "overhead"
    calls = figures["calls_needed"]
    sandbox.reset()
    command = [sys.executable, __file__, "bare-loop", sandbox.url, sandbox.user_id]
    command += [str(calls), str(args.concurrency * args.processes)]
    started = time.monotonic()
    result = subprocess.run(
        command,
        input=sandbox.api_key,
        capture_output=True,
        text=True,
        timeout=_bound(0, args.timeout),
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"the bare loop failed:\n{result.stderr[-2000:]}")
    bare = json.loads(result.stdout)
    figures["bare_loop_s"] = bare["seconds"]
    figures["bare_loop_process_s"] = round(time.monotonic() - started, 3)
    figures["bare_batches_per_s"] = round(calls / bare["seconds"], 1)
    figures["overhead_ratio"] = round(figures["batches_per_s"] / figures["bare_batches_per_s"], 3)
    return figures


def bare_loop(url: str, user_id: str, calls: int, concurrency: int) -> None:
    """The reference for `overhead`: the client alone, `concurrency` threads, one call each
    of 50 SKUs; prints {"seconds": ...}. The API key comes on standard input."""
    from worker.platforms.sellercenter import SellerCenterClient

    api_key = sys.stdin.read().strip()
    prefix = uuid.uuid4().hex[:8]
    batches = [[f"BARE-{prefix}-{n:05d}-{i:02d}" for i in range(BATCH_SIZE)] for n in range(calls)]
    with SellerCenterClient(url, user_id, api_key) as client:
        client.remove_products(batches[0][:1])  # connect once, as a running worker would have
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(client.remove_products, batches))
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": round(seconds, 3)}))


def memory(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """Worker RSS after 10,000 SKUs, then after 100,000 in all (jobs of 10,000 in a row)."""
    step = args.skus
    per_step = argparse.Namespace(**{**vars(args), "skus": step})
    first = removal(stack, sandbox, per_step)
    after_first = first["worker_rss_mib"]
    measured = first["measured_s"]
    for _ in range(args.steps - 1):
        measured += removal(stack, sandbox, per_step)["measured_s"]
    after_all = stack.worker_rss_mib()
    return {
        "workload": "memory",
        "stack": stack.kind,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "skus_first": step,
        "skus_total": step * args.steps,
        "measured_s": round(measured, 2),
        "worker_rss_mib_first": after_first,
        "worker_rss_mib_total": round(after_all, 1),
        "rss_ratio": round(after_all / after_first, 3),
    }


def ratelimit(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """A removal of `--calls` RemoveProduct calls with LAZADA_RATE_LIMIT=`--rate-limit` set
    below what the workers could do; the achieved rate and the busiest 1-second window come
    from the sandbox's record of the calls (arrival times)."""
    expected = args.calls / args.rate_limit  # seconds the limit allows for the calls
    bound = max(args.timeout, 3 * expected)
    per_run = argparse.Namespace(
        **{**vars(args), "skus": args.calls * BATCH_SIZE, "timeout": bound}
    )
    figures = removal(stack, sandbox, per_run)
    figures["workload"] = "ratelimit"
    figures["rate_limit"] = args.rate_limit
    figures["ideal_s"] = round(expected, 3)  # at the limit, not at the threads' capacity
    figures["efficiency"] = round(expected / figures["measured_s"], 3)
    times = sorted(call.at for call in sandbox.calls())
    if len(times) < 2:
        raise BenchError(f"the sandbox recorded {len(times)} calls")
    span = times[-1] - times[0]
    peak = peak_in_window(times)
    gaps = [b - a for a, b in pairwise(times)]
    figures.update(
        calls_recorded=len(times),
        call_span_s=round(span, 3),
        achieved_rate=round(len(times) / span, 3),  # calls / (last - first)
        achieved_rate_intervals=round((len(times) - 1) / span, 3),  # intervals / span
        achieved_share_of_limit=round(len(times) / span / args.rate_limit, 3),
        peak_calls_1s_window=peak,
        peak_calls_calendar_second=sandbox.stats()["peak_calls_per_second"],
        min_gap_s=round(min(gaps), 4),
        median_gap_s=round(statistics.median(gaps), 4),
    )
    return figures


def peak_in_window(times: list[float], width: float = 1.0) -> int:
    """The most of the sorted `times` in any half-open window [at, at + width) that starts at
    one of them: the busiest second, wherever it falls."""
    peak, end = 0, 0
    for start, at in enumerate(times):
        while end < len(times) and times[end] < at + width:
            end += 1
        peak = max(peak, end - start)
    return peak


WORKLOADS = {
    "ratelimit": ratelimit,
    "removal": removal,
    "orders": orders,
    "polling": polling,
    "overhead": overhead,
    "memory": memory,
}


# -- running and printing -------------------------------------------------------------------


Workload = Callable[[BenchStack, SandboxProcess, Any], dict[str, Any]]


def run_workload(
    name: str, args: argparse.Namespace, workloads: Mapping[str, Workload] = WORKLOADS
) -> dict[str, Any]:
    """Start the sandbox and the stack, run one workload (of `workloads`, by name), stop
    everything. `args.sandbox_rate_limit`, if set, is the sandbox's own limit (E901 above)."""
    extra_env = {}
    if getattr(args, "poll_first", None) is not None:
        extra_env["LAZADA_POLL_FIRST"] = str(args.poll_first)
    if getattr(args, "poll_slack", None) is not None:
        extra_env["LAZADA_POLL_SLACK"] = str(args.poll_slack)
    if getattr(args, "rate_limit", None) is not None:
        extra_env["LAZADA_RATE_LIMIT"] = str(args.rate_limit)  # instead of the harness's 100000
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
    # account, bench.fair's accounts).
    extra_env["LAZADA_SECRET_KEY"] = Fernet.generate_key().decode()
    with ExitStack() as cleanup:
        sandbox = start_sandbox(args.latency, platform, getattr(args, "sandbox_rate_limit", None))
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
        if not args.cold:
            warm_up(stack, sandbox, args)
        try:
            figures = workloads[name](stack, sandbox, args)
        except BenchError:
            print(stack.logs()[-4000:], file=sys.stderr)
            raise
        figures["worker_startup_s"] = startup
        figures["warmed_up"] = not args.cold
        return figures


def warm_up(stack: BenchStack, sandbox: SandboxProcess, args: argparse.Namespace) -> None:
    """A removal job of one batch per thread before the measured run, so that the workers
    have their database and HTTP connections open, as a worker that has been running does
    (the bare loop, too, connects before its clock starts). `--cold` measures without it."""
    warm_up_removal(stack, sandbox, args.concurrency * args.processes, args.timeout)
    if sandbox.platform == "lazop":
        from worker.accounts.platforms import ACCOUNT_TTL

        authorize_lazop_account(stack, sandbox)  # the reset forgot the account's tokens
        time.sleep(ACCOUNT_TTL + 0.5)  # the workers read the account, and its new token, again


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


def quick(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Small versions of every workload on the embedded stack (for CI: it keeps working)."""
    base = {"stack": "embedded", "processes": 1, "concurrency": 8, "seed": 0, "timeout": 60.0}
    base["poll_workers"] = 0
    plans = [
        ("removal", {"skus": 500, "latency": 0.05}),
        ("orders", {"orders": 100, "latency": 0.05}),
        ("polling", {"jobs": 30, "min_duration": 1.0, "max_duration": 5.0, "latency": 0.05}),
        ("overhead", {"skus": 500, "latency": 0.0}),
    ]
    results = []
    for name, plan in plans:
        namespace = argparse.Namespace(**{**base, **plan, "profile": False, "cold": False})
        results.append(run_workload(name, namespace))
        if not args.json:
            print_figures(dict(results[-1]))
    return results


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, latency: float) -> None:
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

    p = sub.add_parser("removal", help="one removal job")
    common(p, 0.1)
    p.add_argument("--skus", type=int, default=20_000)
    p.add_argument(
        "--webhook-url",
        metavar="URL",
        help="LAZADA_WEBHOOK_URLS for the workers (e.g. an unreachable one: http://127.0.0.1:9/)",
    )
    p.add_argument(
        "--platform",
        choices=("sellercenter", "lazop"),
        default="sellercenter",
        help="the account's platform (lazop: an Open Platform account on the LAZOP sandbox)",
    )
    p.add_argument(
        "--while-polling", type=int, default=0, metavar="JOBS", help="image jobs polling meanwhile"
    )
    p = sub.add_parser("orders", help="fetch_order tasks")
    common(p, 0.1)
    p.add_argument("--orders", type=int, default=10_000)
    p = sub.add_parser("polling", help="image jobs of random durations")
    common(p, 0.1)
    p.add_argument("--jobs", type=int, default=2_000)
    p.add_argument("--min-duration", type=float, default=1.0)
    p.add_argument("--max-duration", type=float, default=120.0)
    p.add_argument("--poll-first", type=float, default=None, help="LAZADA_POLL_FIRST")
    p.add_argument("--poll-slack", type=float, default=None, help="LAZADA_POLL_SLACK")
    p = sub.add_parser("overhead", help="worker vs a bare client loop at zero latency")
    common(p, 0.0)
    p.add_argument("--skus", type=int, default=20_000)
    p = sub.add_parser("memory", help="worker RSS after 10,000 and 100,000 SKUs")
    common(p, 0.0)
    p.add_argument("--skus", type=int, default=10_000, help="SKUs per step")
    p.add_argument("--steps", type=int, default=10)
    p = sub.add_parser("ratelimit", help="a removal with LAZADA_RATE_LIMIT below the capacity")
    common(p, 0.1)
    p.add_argument("--rate-limit", type=float, default=20.0, help="LAZADA_RATE_LIMIT, calls/s")
    p.add_argument("--calls", type=int, default=400, help="RemoveProduct calls (50 SKUs each)")
    sub.add_parser("quick", help="small versions of each on the embedded stack")
    p = sub.add_parser("bare-loop", help=argparse.SUPPRESS)
    p.add_argument("url")
    p.add_argument("user_id")
    p.add_argument("calls", type=int)
    p.add_argument("concurrency", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bare-loop":
        bare_loop(args.url, args.user_id, args.calls, args.concurrency)
        return 0
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"python {sys.version.split()[0]}",
        file=sys.stderr,
    )
    try:
        if args.command == "quick":
            results = quick(args)
        else:
            results = [run_workload(args.command, args)]
            if not args.json:
                print_figures(dict(results[0]))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for figures in results:
            top_of_profile(figures)
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
