"""Throughput with the rate limit out of the way: how close the worker comes to the calls its
threads could have in flight, and what a set limit lets through.

    python -m bench removal   --stack embedded|redis --skus 20000 --latency 0.1 --concurrency 16
                              [--processes 2] [--platform lazop] [--while-polling 200]
                              [--webhook-url http://127.0.0.1:9/]
    python -m bench orders    --stack redis --orders 10000 --latency 0.1 --concurrency 16
    python -m bench memory    --stack redis --concurrency 16
    python -m bench ratelimit --stack redis --rate-limit 20 --calls 400 --processes 2

Every run is bounded in time: a workload that does not finish within its bound stops with
exit status 1 and says so. Figures are printed, not asserted; `--json` prints them as JSON.
The workers run with LAZADA_RATE_LIMIT far above any rate here, except in `ratelimit`.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import uuid
from itertools import pairwise
from typing import Any

from sqlalchemy import func, select

from bench.measure import Run, bound, peak_in_window, stack_options, workload_defaults
from bench.polling import start_polling
from bench.stack import BATCH_SIZE, BenchError, BenchStack, SandboxProcess
from tests.support.processes import wait_for


def removal(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """One removal job of `--skus` SKUs; time from enqueue to the job's finished_at."""
    from worker.db.models import RemovalJob

    run_id = uuid.uuid4().hex[:8]
    skus = [f"BENCH-{run_id}-{i:07d}" for i in range(args.skus)]
    calls = math.ceil(args.skus / BATCH_SIZE)
    in_flight = args.concurrency * args.processes
    ideal = calls * args.latency / in_flight
    key = f"bench-{run_id}"
    polling_jobs = getattr(args, "while_polling", 0)
    if polling_jobs:
        start_polling(stack, run_id, polling_jobs, args.seed)
    run = Run("removal", stack, sandbox, args)
    stack.send("lazada.remove_products", skus, key=key)
    run.enqueued()
    query = select(RemovalJob.finished_at).where(RemovalJob.key == key)
    finished = wait_for(lambda: stack.scalar(query), bound(ideal, args.timeout), "the job", 0.1)
    figures = run.finish(finished, ideal if args.latency > 0 else None, jobs=1)
    figures.update(skus=args.skus, calls_needed=calls)
    figures["batches_per_s"] = round(calls / figures["measured_s"], 1)
    figures["skus_removed"] = sandbox.stats()["skus_removed"]
    if polling_jobs:
        figures["image_jobs_polling"] = polling_jobs
    return figures


def orders(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--orders` fetch_order tasks; time from the first send to the last order stored."""
    from worker.db.models import Order

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
        bound(ideal, args.timeout),
        "the orders",
        interval=0.25,
    )
    last = stack.scalar(select(func.max(Order.updated_at)))
    figures = run.finish(last, ideal if args.latency > 0 else None, jobs=args.orders)
    states = stack.rows(select(Order.state, func.count()).group_by(Order.state))
    figures.update(orders=args.orders, states=dict(states))  # type: ignore[arg-type]
    return figures


def memory(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """Worker RSS after the first job of `--skus`, then after `--steps` such jobs in a row."""
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
    per_run = argparse.Namespace(
        **{
            **vars(args),
            "skus": args.calls * BATCH_SIZE,
            "timeout": max(args.timeout, 3 * expected),
        }
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
    gaps = [b - a for a, b in pairwise(times)]
    figures.update(
        calls_recorded=len(times),
        call_span_s=round(span, 3),
        achieved_rate=round(len(times) / span, 3),  # calls / (last - first)
        achieved_rate_intervals=round((len(times) - 1) / span, 3),  # intervals / span
        achieved_share_of_limit=round(len(times) / span / args.rate_limit, 3),
        peak_calls_1s_window=peak_in_window(times),
        peak_calls_calendar_second=sandbox.stats()["peak_calls_per_second"],
        min_gap_s=round(min(gaps), 4),
        median_gap_s=round(statistics.median(gaps), 4),
    )
    return figures


def register(scenarios: Any) -> None:
    def add(name: str, help_: str, latency: float) -> argparse.ArgumentParser:
        p = scenarios.add_parser(
            name,
            help=help_,
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        stack_options(p, latency)
        return p

    p = add("removal", "one removal job, the rate limit off", 0.1)
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
    p.set_defaults(**workload_defaults(removal))

    p = add("orders", "fetch_order tasks", 0.1)
    p.add_argument("--orders", type=int, default=10_000)
    p.set_defaults(**workload_defaults(orders))

    p = add("memory", "worker RSS after one removal job and after ten", 0.0)
    p.add_argument("--skus", type=int, default=10_000, help="SKUs per job")
    p.add_argument("--steps", type=int, default=10, help="jobs in a row")
    p.set_defaults(**workload_defaults(memory))

    p = add("ratelimit", "a removal with LAZADA_RATE_LIMIT below the workers' capacity", 0.1)
    p.add_argument("--rate-limit", type=float, default=20.0, help="LAZADA_RATE_LIMIT, calls/s")
    p.add_argument("--calls", type=int, default=400, help="RemoveProduct calls (50 SKUs each)")
    p.set_defaults(**workload_defaults(ratelimit))
