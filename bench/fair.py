"""Fairness at the real rate limit: how the calls an account may make are shared.

    python -m bench fair-single   [--stack embedded|redis] [--skus 3000]
    python -m bench fair-mixed    [--skus 3000 --every 5]  # small jobs and orders meanwhile
    python -m bench fair-images   [--jobs 200]             # image jobs polling meanwhile
    python -m bench fair-four     [--jobs 4 --skus 1000]   # removal jobs started together
    python -m bench fair-accounts [--accounts 20 --processes 2] [--throttled-account] [--profile]

Each takes `--json`, and `--quick` for a smaller variant. The worker's LAZADA_RATE_LIMIT and
the sandbox's rate_limit are the same (`--rate-limit`, 5 calls/s): above it the sandbox
answers E901. Shares and rates come from the sandbox's record of the calls (arrival times);
the SKUs in a RemoveProduct body (a prefix per job) tell which job a call was for. A share of
the limit is calls / (last call - first call) / limit. Work is sent by task name over the
broker, as the shop backend sends it; every wait is bounded.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from bench.measure import (
    Run,
    Workload,
    as_json,
    bound,
    peak_in_window,
    percentile,
    print_figures,
    run_workload,
)
from bench.polling import detection_delay, detection_target, start_polling
from bench.profiling import PROFILES, Profiler
from bench.stack import (
    BATCH_SIZE,
    FAILED,
    STACKS,
    BenchError,
    BenchStack,
    SandboxProcess,
)
from tests.support.processes import wait_for
from worker.db.models import ImageJob, Order, RemovalJob

POLL = 0.02  # seconds between looks at the database while work is arriving
REMOVE = "RemoveProduct"


# -- reading the sandbox's record -----------------------------------------------------------


def removal_calls(calls: Iterable[SimpleNamespace]) -> list[SimpleNamespace]:
    return [call for call in calls if call.action == REMOVE]


def calls_of(calls: Iterable[SimpleNamespace], prefix: str) -> list[float]:
    """Sorted arrival times of the RemoveProduct calls whose SKUs start with `prefix`."""
    return sorted(call.at for call in removal_calls(calls) if prefix in call.body)


def limit_use(times: Sequence[float], limit: float) -> dict[str, Any]:
    """Calls, their span and the share of the limit they used, first call to last."""
    if len(times) < 2:
        return {"calls": len(times), "span_s": None, "share_of_limit": None}
    span = times[-1] - times[0]
    gaps = sorted(b - a for a, b in pairwise(times))
    return {
        "calls": len(times),
        "span_s": round(span, 3),
        "gap_s_min_median_p95_max": [
            round(gaps[0], 3),
            round(statistics.median(gaps), 3),
            round(percentile(gaps, 95), 3),
            round(gaps[-1], 3),
        ],
        "share_of_limit": round(len(times) / span / limit, 3),
        # (calls - 1) / span: the same without counting the first call's whole interval.
        "share_of_limit_intervals": round((len(times) - 1) / span / limit, 3),
    }


def e901(stats: dict[str, Any]) -> int:
    return int(stats["calls_by_outcome"].get("E901", 0))


def in_window(times: Iterable[float], start: float, end: float) -> int:
    return sum(start <= at <= end for at in times)


def over_limit(times: Sequence[float], limit: float) -> int:
    """How many of the sorted `times` come less than a second after the call `limit` calls
    before them: each makes a 1-s window with one call more than the limit."""
    n = math.floor(limit)
    return sum(1 for i in range(n, len(times)) if times[i] - times[i - n] < 1.0)


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index: 1 when all are equal, 1/n when one has everything."""
    squares = sum(value * value for value in values)
    return sum(values) ** 2 / (len(values) * squares) if squares else None


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / max (nearest rank), rounded for printing."""
    if not values:
        return {}
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(list(values), 95), 3),
        "max": round(max(values), 3),
    }


def skus(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(count)]


def finished_at(stack: BenchStack, key: str) -> datetime | None:
    value = stack.scalar(select(RemovalJob.finished_at).where(RemovalJob.key == key))
    return value if isinstance(value, datetime) else None


def wait_finished(stack: BenchStack, key: str, bound: float, what: str) -> datetime:
    """The job's finished_at, once it has one (BenchError after `bound` s)."""
    done = wait_for(lambda: finished_at(stack, key), bound, what, interval=0.1)
    assert done is not None
    return done


def wait_rows(stack: BenchStack, statement: Any, count: int, bound: float, what: str) -> list[Any]:
    """The rows of `statement` once there are `count` of them."""

    def rows() -> list[Any] | None:
        found = stack.rows(statement)
        return found if len(found) >= count else None

    return wait_for(rows, bound, what, interval=0.25) or []


# -- the scenarios --------------------------------------------------------------------------


def single(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """One account, one removal job of `--skus` SKUs, nothing else."""
    run_id = uuid.uuid4().hex[:8]
    key, needed = f"fair-{run_id}-big", math.ceil(args.skus / BATCH_SIZE)
    ideal = needed / args.rate_limit
    run = Run("fair single", stack, sandbox, args)
    stack.send("lazada.remove_products", skus(f"FAIR-{run_id}-B-", args.skus), key=key)
    run.enqueued()
    done = wait_finished(stack, key, bound(ideal, args.timeout), "the job")
    figures = run.finish(done, ideal, jobs=1)
    times = sorted(call.at for call in removal_calls(sandbox.calls()))
    figures.update(rate_limit=args.rate_limit, skus=args.skus, calls_needed=needed)
    figures.update(limit_use(times, args.rate_limit))
    figures["e901_answers"] = e901(sandbox.stats())
    figures["time_to_final_s"] = figures["measured_s"]
    return figures


def mixed(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """The big job, and every `--every` s while it runs a 50-SKU job and one order fetch:
    their time from send to final state (jobs: finished_at; orders: first seen final)."""
    run_id = uuid.uuid4().hex[:8]
    big_key, needed = f"fair-{run_id}-big", math.ceil(args.skus / BATCH_SIZE)
    ideal = needed / args.rate_limit
    first_order = random.Random(args.seed).randrange(1_000, 100_000_000)
    small_sent: dict[str, datetime] = {}
    small_final: dict[str, datetime] = {}
    orders_sent: dict[int, datetime] = {}
    orders_final: dict[int, datetime] = {}
    run = Run("fair mixed", stack, sandbox, args)
    stack.send("lazada.remove_products", skus(f"FAIR-{run_id}-B-", args.skus), key=big_key)
    run.enqueued()
    started = time.monotonic()
    deadline = started + bound(ideal, args.timeout) + 60.0
    next_send = started + args.every
    big_done: datetime | None = None
    while True:
        now = time.monotonic()
        if big_done is None:
            big_done = finished_at(stack, big_key)
        if big_done is None and now >= next_send:
            key = f"fair-{run_id}-small-{len(small_sent)}"
            order_id = first_order + len(orders_sent)
            small_sent[key] = datetime.now(UTC)
            stack.send("lazada.remove_products", skus(f"FAIR-{run_id}-S-", 50), key=key)
            orders_sent[order_id] = datetime.now(UTC)
            stack.send("lazada.fetch_order", order_id)
            next_send += args.every
        pending_small = [key for key in small_sent if key not in small_final]
        if pending_small:
            rows = stack.rows(
                select(RemovalJob.key, RemovalJob.finished_at).where(
                    RemovalJob.key.in_(pending_small), RemovalJob.finished_at.is_not(None)
                )
            )
            small_final.update({row.key: row.finished_at for row in rows})
        pending_orders = [order for order in orders_sent if order not in orders_final]
        if pending_orders:
            seen = datetime.now(UTC)
            rows = stack.rows(
                select(Order.order_id).where(
                    Order.order_id.in_(pending_orders), Order.state != "pending"
                )
            )
            orders_final.update({row.order_id: seen for row in rows})
        everything_final = len(small_final) == len(small_sent) and len(orders_final) == len(
            orders_sent
        )
        if big_done is not None and everything_final:
            break
        if now > deadline:
            raise BenchError("gave up waiting for the big job, the small jobs and the orders")
        time.sleep(POLL)
    assert big_done is not None
    figures = run.finish(big_done, ideal, jobs=1 + len(small_sent) + len(orders_sent))
    calls = sandbox.calls()
    big = limit_use(calls_of(calls, f"FAIR-{run_id}-B-"), args.rate_limit)
    small_s = [(small_final[key] - sent).total_seconds() for key, sent in small_sent.items()]
    order_s = [(orders_final[o] - sent).total_seconds() for o, sent in orders_sent.items()]
    figures.update(
        rate_limit=args.rate_limit,
        skus=args.skus,
        every_s=args.every,
        big_time_to_final_s=figures["measured_s"],
        big_calls=big["calls"],
        big_share_of_limit=big["share_of_limit"],
        small_jobs=len(small_s),
        small_job_s=spread(small_s),
        orders=len(order_s),
        order_s=spread(order_s),
        e901_answers=e901(sandbox.stats()),
    )
    return figures


def images(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--jobs` image jobs polling (sent first; the big job once all have been polled once),
    then the big job. Detection delay = finished_at - (started_at + duration), target 20% of
    the duration + 5 s; shares of the limit over the big job's span (first to last removal)."""
    run_id = uuid.uuid4().hex[:8]
    big_key, needed = f"fair-{run_id}-big", math.ceil(args.skus / BATCH_SIZE)
    ideal = needed / args.rate_limit
    durations = (args.min_duration, args.max_duration)
    # A submission and a first poll per job, at the limit: the least that takes.
    polling_bound = max(args.timeout, 3 * 2 * args.jobs / args.rate_limit)
    start_polling(stack, run_id, args.jobs, args.seed, durations, polling_bound)
    run = Run("fair images", stack, sandbox, args)
    stack.send("lazada.remove_products", skus(f"FAIR-{run_id}-B-", args.skus), key=big_key)
    run.enqueued()
    waiting = bound(ideal, args.timeout) + polling_bound
    big_done = wait_finished(stack, big_key, waiting, "the big job")
    done = select(func.count()).select_from(ImageJob).where(ImageJob.state != "pending")
    wait_for(
        lambda: stack.scalar(done) >= args.jobs,
        args.max_duration + waiting,
        "the image jobs",
        interval=0.5,
    )
    figures = run.finish(big_done, ideal, jobs=1 + args.jobs)
    calls = sandbox.calls()
    removal_times = sorted(call.at for call in removal_calls(calls))
    first, last = removal_times[0], removal_times[-1]
    span = last - first
    during = in_window((call.at for call in calls), first, last)
    rows = stack.rows(select(ImageJob.urls, ImageJob.started_at, ImageJob.finished_at))
    excess, within = [], 0
    for row in rows:
        if row.started_at is None or row.finished_at is None:
            raise BenchError("an image job ended without being submitted")
        seconds, delay = detection_delay(row.urls[0], row.started_at, row.finished_at)
        excess.append(delay - detection_target(seconds))
        within += delay <= detection_target(seconds)
    figures.update(
        rate_limit=args.rate_limit,
        skus=args.skus,
        image_jobs=args.jobs,
        duration_range_s=list(durations),
        big_time_to_final_s=figures["measured_s"],
        removal_span_s=round(span, 3),
        share_of_limit_overall=round(during / span / args.rate_limit, 3) if span else None,
        share_of_limit_removal=(
            round(len(removal_times) / span / args.rate_limit, 3) if span else None
        ),
        image_jobs_within_target=round(within / len(rows), 3),
        delay_excess_p95_s=round(percentile(excess, 95), 2),
        delay_excess_max_s=round(max(excess), 2),
        e901_answers=e901(sandbox.stats()),
    )
    return figures


def four(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--jobs` removal jobs of `--skus` SKUs sent together. While all run (the first call to
    the first job's last call), each job's share of the calls / (1 / jobs): target 0.9-1.1."""
    run_id = uuid.uuid4().hex[:8]
    prefixes = [f"FAIR-{run_id}-J{n}-" for n in range(args.jobs)]
    keys = [f"fair-{run_id}-job-{n}" for n in range(args.jobs)]
    ideal = args.jobs * math.ceil(args.skus / BATCH_SIZE) / args.rate_limit
    run = Run("fair four", stack, sandbox, args)
    for prefix, key in zip(prefixes, keys, strict=True):
        stack.send("lazada.remove_products", skus(prefix, args.skus), key=key)
    run.enqueued()
    ended = select(RemovalJob.key, RemovalJob.finished_at).where(
        RemovalJob.key.in_(keys), RemovalJob.finished_at.is_not(None)
    )
    rows = wait_rows(stack, ended, len(keys), bound(ideal, args.timeout), "the jobs")
    figures = run.finish(max(row.finished_at for row in rows), ideal, jobs=args.jobs)
    calls = sandbox.calls()
    per_job = [calls_of(calls, prefix) for prefix in prefixes]
    start, end = min(times[0] for times in per_job), min(times[-1] for times in per_job)
    counts = [in_window(times, start, end) for times in per_job]
    fair_share = 1 / args.jobs
    ratios = [round(count / sum(counts) / fair_share, 3) for count in counts]
    final = {row.key: row.finished_at for row in rows}
    figures.update(
        rate_limit=args.rate_limit,
        jobs=args.jobs,
        skus_per_job=args.skus,
        all_running_s=round(end - start, 3),
        calls_while_all_run=counts,
        share_over_fair_share=ratios,
        share_ratio_min_max=[min(ratios), max(ratios)],
        jobs_within_0_9_1_1=sum(0.9 <= ratio <= 1.1 for ratio in ratios),
        time_to_final_s=[round((final[key] - run.started).total_seconds(), 2) for key in keys],
        e901_answers=e901(sandbox.stats()),
    )
    figures.update(limit_use(sorted(call.at for call in removal_calls(calls)), args.rate_limit))
    # Which job each call was for, in the order the sandbox served them.
    served = sorted((at, n) for n, times in enumerate(per_job) for at in times)
    figures["call_order"] = "".join(str(n) for _, n in served)
    return figures


def accounts(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--accounts` accounts, each with a sandbox process of its own limiting at
    `--rate-limit` (with `--throttled-account`, the last one at `--throttle-rate`), each sent
    one removal job of `--skus` at once. "All busy": from the first call to the first
    account's last one, while every account has calls left; Jain's index is of the accounts'
    rates then. Shares (min, median, max) leave the throttled account out."""
    run_id = uuid.uuid4().hex[:8]
    # Names of this run: an account's limiter state (a throttle's halved rate) outlives a run.
    names = [f"fair-{run_id}-{n:02d}" for n in range(args.accounts)]
    throttled = names[-1] if args.throttled_account else None

    def start(name: str) -> SandboxProcess:
        limit = args.throttle_rate if name == throttled else args.rate_limit
        return SandboxProcess(args.latency, rate_limit=limit, user_id=f"{name}@lazada-worker.test")

    with ThreadPoolExecutor(8) as pool:
        sandboxes = list(pool.map(start, names))
    try:
        from worker.accounts.store import add_account

        with stack.sessions.begin() as session:
            for name, own in zip(names, sandboxes, strict=True):
                credentials = {"user_id": own.user_id, "api_key": own.api_key}
                add_account(session, stack.settings, name, "sellercenter", credentials, own.url)
        needed = math.ceil(args.skus / BATCH_SIZE)
        # The worst case: all accounts' calls at one account's rate (every wait is bounded).
        bound = max(args.timeout, 3 * args.accounts * needed / args.rate_limit)
        key = f"fair-{run_id}"
        for own in sandboxes:
            own.reset_calls()
        profiler = (
            Profiler(stack.worker_pids(), PROFILES / "fair-accounts") if args.profile else None
        )
        worker_cpu = stack.worker_cpu_seconds()
        sent = datetime.now(UTC)
        for n, name in enumerate(names):
            job_skus = skus(f"FAIR-{run_id}-A{n:02d}-", args.skus)
            stack.send("lazada.remove_products", job_skus, key=key, account=name)
        sends_took = (datetime.now(UTC) - sent).total_seconds()
        ended = select(RemovalJob.account, RemovalJob.created_at, RemovalJob.finished_at).where(
            RemovalJob.key == key, RemovalJob.finished_at.is_not(None)
        )
        rows = wait_rows(stack, ended, len(names), bound, "every account's job")
        profile = profiler.stop() if profiler is not None else None
        per_account = [sorted(call.at for call in own.calls()) for own in sandboxes]
        if not all(per_account):
            raise BenchError("an account's sandbox recorded no calls")
        stats = [own.stats() for own in sandboxes]
    finally:
        for own in sandboxes:
            own.stop()
    final = {row.account: row.finished_at for row in rows}
    created = [(row.created_at - sent).total_seconds() for row in rows]
    first = min(times[0] for times in per_account)
    last = max(times[-1] for times in per_account)
    end = min(times[-1] for times in per_account)
    window = end - first
    rates = [in_window(times, first, end) / window for times in per_account]
    since_sent = [len(times) / (times[-1] - sent.timestamp()) for times in per_account]
    others = [n for n, name in enumerate(names) if name != throttled]
    total = sum(len(times) for times in per_account)
    figures: dict[str, Any] = {
        "workload": "fair accounts" + (" (one throttled)" if throttled else ""),
        "stack": stack.kind,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "rate_limit": args.rate_limit,
        "accounts": args.accounts,
        "skus_per_account": args.skus,
        "throttled_account": throttled and f"{throttled} at {args.throttle_rate}/s",
        "measured_s": round((max(final.values()) - sent).total_seconds(), 3),
        "api_calls": total,
        "total_calls_per_s": round(total / (last - first), 2),
        "target_calls_per_s": args.accounts * args.rate_limit,
        "all_busy_s": round(window, 3),
        "calls_per_s_all_busy": round(sum(rates), 2),
        "max_account_calls_1s": max(peak_in_window(times) for times in per_account),
        # Calls that were one more than the limit within a second of the limit's calls before.
        "calls_over_limit_1s": sum(over_limit(times, args.rate_limit) for times in per_account),
        "calls_over_limit_1s_by_account": {
            name: count
            for name, times in zip(names, per_account, strict=True)
            if (count := over_limit(times, args.rate_limit))
        },
        # How far under a second the closest limit+1 calls of one account came (over: < 1).
        "shortest_span_of_limit_plus_one_calls_s": round(
            min(
                times[i] - times[i - math.floor(args.rate_limit)]
                for times in per_account
                for i in range(math.floor(args.rate_limit), len(times))
            ),
            4,
        ),
        "min_gap_any_account_s": round(
            min(b - a for times in per_account for a, b in pairwise(times)), 4
        ),
        "jain_index": round(jain(rates) or 0.0, 3),
        # Accounts start one after the other (a task records each job): from the last
        # account's first call to the first account's last one, every account is running.
        "first_call_after_first_s_min_med_max": _min_median_max(
            [times[0] - first for times in per_account]
        ),
        "calls_per_s_all_running": _all_running_rate(per_account),
        # The bench sends the jobs one after the other, as a shop would.
        "last_send_after_first_s": round(sends_took, 3),
        # When each job was recorded (its remove_products task), from the send.
        "job_recorded_after_send_s_min_med_max": _min_median_max(created),
        "first_call_after_send_s_min_med_max": _min_median_max(
            [times[0] - sent.timestamp() for times in per_account]
        ),
        # Each account's calls / (its last call - the send) / its limit: waiting counts.
        "share_sent_min_med_max": _min_median_max(
            [since_sent[n] / args.rate_limit for n in others]
        ),
        "share_busy_min_med_max": _min_median_max([rates[n] / args.rate_limit for n in others]),
        # Each account's calls from its own first call to its last (intervals / time): its
        # rate while it runs; the worker's spacing (SPACING) caps it.
        "share_own_min_med_max": _min_median_max(
            [_own_rate(per_account[n]) / args.rate_limit for n in others]
        ),
        # Each account's calls while every account runs (the start-up spread left out).
        "share_all_running_min_med_max": _min_median_max(
            [_running_rate(per_account, per_account[n]) / args.rate_limit for n in others]
        ),
        "final_s_min_med_max": _min_median_max(
            [(final[names[n]] - sent).total_seconds() for n in others]
        ),
        "e901_answers": sum(e901(own) for own in stats),
        "worker_cpu_s": round(stack.worker_cpu_seconds() - worker_cpu, 2),
    }
    if profile is not None:
        figures["profile"] = profile
    if throttled:
        n = names.index(throttled)
        figures["throttled_calls_e901"] = [len(per_account[n]), e901(stats[n])]
        figures["throttled_time_to_final_s"] = round((final[throttled] - sent).total_seconds(), 2)
    return figures


def _all_running(per_account: Sequence[Sequence[float]]) -> tuple[float, float]:
    """From when every account has started to when the first one finished."""
    return max(times[0] for times in per_account), min(times[-1] for times in per_account)


def _all_running_rate(per_account: Sequence[Sequence[float]]) -> float | None:
    """Calls a second of all accounts together while every one of them has started and
    none has finished (None: no such time)."""
    start, end = _all_running(per_account)
    if end - start <= 0:
        return None
    return round(sum(in_window(times, start, end) for times in per_account) / (end - start), 2)


def _running_rate(per_account: Sequence[Sequence[float]], times: Sequence[float]) -> float:
    """One account's calls a second while every account has started and none has finished
    (0.0: no such time)."""
    start, end = _all_running(per_account)
    return in_window(times, start, end) / (end - start) if end > start else 0.0


def _own_rate(times: Sequence[float]) -> float:
    """An account's calls a second from its first call to its last (intervals over time)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def _min_median_max(values: Sequence[float]) -> list[float]:
    return [round(min(values), 3), round(statistics.median(values), 3), round(max(values), 3)]


SCENARIOS = {
    "single": single,
    "mixed": mixed,
    "images": images,
    "four": four,
    "accounts": accounts,
}

HELP = {
    "single": "one account, one removal job at the rate limit",
    "mixed": "a big job, with a small job and an order every --every s",
    "images": "a big job while image jobs poll",
    "four": "removal jobs of one account started together",
    "accounts": "many accounts at once, each with a sandbox of its own",
}

# Per scenario: its defaults, then what --quick changes (small: checks that the scenario runs).
DEFAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "single": ({"skus": 3000}, {"skus": 500}),
    "mixed": ({"skus": 3000, "every": 5.0}, {"skus": 1000, "every": 2.0}),
    "images": (
        {"skus": 3000, "jobs": 200, "min_duration": 30.0, "max_duration": 90.0},
        {"skus": 500, "jobs": 20, "min_duration": 5.0, "max_duration": 15.0},
    ),
    "four": ({"skus": 1000, "jobs": 4}, {"skus": 250}),
    "accounts": ({"skus": 1000, "accounts": 20, "processes": 2}, {"skus": 500, "accounts": 5}),
}


def _options(p: argparse.ArgumentParser, scenario: str) -> None:
    p.add_argument("--stack", choices=STACKS, default="embedded")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quick", action="store_true", help="a smaller variant")
    p.add_argument(
        "--rate-limit",
        type=float,
        default=5.0,
        help="calls/s: the worker's LAZADA_RATE_LIMIT and the sandbox's limit (E901 above)",
    )
    p.add_argument("--latency", type=float, default=0.1, help="sandbox latency, s")
    p.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    p.add_argument("--processes", type=int, help="worker processes (accounts: 2, else 1)")
    p.add_argument("--skus", type=int, help="SKUs of the big job (four, accounts: each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0, help="minimum time bound, s")
    p.add_argument("--cold", action="store_true", help="measure without a warm-up job")
    if scenario in ("images", "four"):
        p.add_argument("--jobs", type=int, help="images: image jobs (200); four: jobs (4)")
    if scenario == "mixed":
        p.add_argument("--every", type=float, help="seconds between small sends (5)")
    if scenario == "images":
        p.add_argument("--min-duration", type=float, help="shortest job, s (30)")
        p.add_argument("--max-duration", type=float, help="longest job, s (90)")
    if scenario == "accounts":
        p.add_argument("--accounts", type=int, help="how many (20)")
        p.add_argument(
            "--throttled-account",
            action="store_true",
            help="the last account's sandbox limits at --throttle-rate",
        )
        p.add_argument("--throttle-rate", type=float, default=2.0, help="calls/s (2)")
        p.add_argument("--profile", action="store_true", help="sample the workers with py-spy")


def fair_figures(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one scenario with its defaults (or its --quick variant) for what args leaves unset."""
    defaults, quick = DEFAULTS[scenario]
    for name, value in {**defaults, **(quick if args.quick else {})}.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.processes is None:
        args.processes = 1
    args.sandbox_rate_limit = args.rate_limit  # the same limit at both ends
    args.poll_workers = 0
    workload: Workload = SCENARIOS[scenario]
    figures = run_workload(workload, args)
    figures["quick"] = args.quick
    return figures


def main(scenario: str, args: argparse.Namespace) -> int:
    try:
        figures = fair_figures(scenario, args)
    except FAILED as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(as_json(figures))
    else:
        print_figures(dict(figures))
    return 0


def register(scenarios: Any) -> None:
    for scenario in SCENARIOS:
        p = scenarios.add_parser(
            f"fair-{scenario}",
            help=HELP[scenario],
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _options(p, scenario)
        p.set_defaults(
            main=lambda args, scenario=scenario: main(scenario, args),
            figures=lambda args, scenario=scenario: fair_figures(scenario, args),
            show=lambda figures: print_figures(dict(figures)),
        )
