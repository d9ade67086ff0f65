"""Image jobs polled until they finish: how many GetResponse calls a job costs and how late
the worker sees it done.

    python -m bench polling --stack redis --jobs 2000 --max-duration 120 [--poll-workers 2]

Each job is one migrate_images task of one URL whose `sandbox_duration` fixes how long the
sandbox takes (durations uniform between --min-duration and --max-duration). Detection delay
= finished_at - (started_at + duration); its target is 20% of the duration + 5 s.
`--json` also holds `per_job`: [duration s, polls, delay s] for each job, for `bench plots`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bench.measure import Run, percentile, stack_options, workload_defaults
from bench.stack import BenchStack, SandboxProcess
from tests.support.processes import wait_for


def image_url(run_id: str, n: int, seconds: float) -> str:
    """An image the sandbox takes `seconds` to migrate."""
    return f"https://images.example.test/bench/{run_id}/{n}.jpg?sandbox_duration={seconds:.3f}"


def start_polling(
    stack: BenchStack,
    run_id: str,
    jobs: int,
    seed: int,
    durations: tuple[float, float] = (30.0, 90.0),
    timeout: float = 60.0,
) -> None:
    """Image jobs of 30-90 s (`durations`), each polled while another workload runs: waiting
    holds no slot. Returns once every job has been polled once (within `timeout` s)."""
    from worker.db.models import ImageJob

    rng = random.Random(seed)
    for i in range(jobs):
        url = image_url(run_id, i, rng.uniform(*durations))
        stack.send("lazada.migrate_images", [url], key=f"bench-{run_id}-img-{i}")
    polled = select(func.count()).select_from(ImageJob).where(ImageJob.polls > 0)
    wait_for(lambda: stack.scalar(polled) >= jobs, timeout, "the image jobs to be polling", 0.1)


def detection_delay(url: str, started_at: datetime, finished_at: datetime) -> tuple[float, float]:
    """(the job's duration as its URL set it, the detection delay): how long after the job
    ended (started_at + duration) the worker recorded it (finished_at)."""
    seconds = float(url.rsplit("sandbox_duration=", 1)[1])
    return seconds, (finished_at - started_at).total_seconds() - seconds


def detection_target(seconds: float) -> float:
    """The detection delay a job of `seconds` may have: 20% of its duration + 5 s."""
    return 0.2 * seconds + 5.0


def polling(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--jobs` image jobs lasting uniformly between --min-duration and --max-duration s."""
    from worker.db.models import ImageJob

    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:8]
    durations = [rng.uniform(args.min_duration, args.max_duration) for _ in range(args.jobs)]
    run = Run("polling", stack, sandbox, args)
    for i, seconds in enumerate(durations):
        stack.send(
            "lazada.migrate_images", [image_url(run_id, i, seconds)], key=f"bench-{run_id}-{i}"
        )
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
        # One [duration s, polls, detection delay s] per job, for `bench plots` (JSON only).
        per_job=sorted(per_job),
    )
    return figures


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "polling",
        help="image jobs of random durations, polled until done",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stack_options(p, 0.1)
    p.add_argument("--jobs", type=int, default=2_000)
    p.add_argument("--min-duration", type=float, default=1.0)
    p.add_argument("--max-duration", type=float, default=120.0)
    p.add_argument("--poll-first", type=float, default=None, help="LAZADA_POLL_FIRST")
    p.add_argument("--poll-slack", type=float, default=None, help="LAZADA_POLL_SLACK")
    p.set_defaults(**workload_defaults(polling))
