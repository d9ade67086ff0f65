"""Recovery after kill -9: a worker killed a third of the way into a removal job, another
started at once; how long until the job is final, what was sent twice, and what was lost.

    python -m bench recovery --stack embedded|redis|rabbitmq [--json]
        [--skus 140000] [--lease S] [--redispatch-after S] [--read-timeout S]
        [--rate-limit 5] [--timeout 420]

One worker of 16 threads with beat (as `lazada-worker run` starts it), the sandbox at 0.1 s
a call, the rate limit out of the way unless `--rate-limit` sets one. After a warm-up, one
removal job of `--skus` SKUs; once a third of its batches are done, the worker's process
group (main process and beat) gets SIGKILL and a new worker starts.

Figures: `recovery_s` (from the restart to the job's finished_at), `remaining_calls_s` (what
the batches not done at the kill take at the pace before it) and
`recovery_beyond_remaining_calls_s` (the difference: the wait for the dead worker's batches),
`orphans_sent_after_restart_s` (when the sweeper sent the dead worker's leased
batches again, its heartbeat stopped), `batches_sent_twice` (the
sandbox saw the same RemoveProduct body more than once), `skus_lost` (SKUs of the job not
removed, by the results database and by the sandbox: must be 0), the lease and redispatch
settings in effect, and when the calls after the restart came (the pause is what the
recovery waited for). A job still not final `--timeout` s after the restart is reported "not
finished" (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.stack import (
    BATCH_SIZE,
    FAILED,
    STACKS,
    BenchStack,
    SandboxProcess,
    machine_load,
    open_stack,
    say,
    warm_up,
)
from tests.support.processes import wait_for
from worker.db.models import RemovalBatch, RemovalJob

_SWEPT = re.compile(r"sweeper: (\d+) removal batch\(es\) sent again")
# The sweep that sends the dead worker's leased batches again (Celery's text log lines).
_ORPHANS_SENT = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): [^\]]*\] sweeper: \d+ removal "
    r"batch\(es\) sent again .*; ([1-9]\d*) held by a worker that stopped beating",
    re.MULTILINE,
)


def recovery(args: argparse.Namespace) -> dict[str, Any]:
    """Start the sandbox and the stack, run the crash, stop everything."""
    extra_env = {"LAZADA_RATE_LIMIT": str(args.rate_limit)}
    if args.lease is not None:
        extra_env["LAZADA_LEASE_SECONDS"] = f"{args.lease:g}"
    if args.redispatch_after is not None:
        extra_env["LAZADA_REDISPATCH_AFTER"] = f"{args.redispatch_after:g}"
    if args.read_timeout is not None:
        # A lease must outlast a whole API call: a short lease needs a short read timeout.
        extra_env["LAZADA_READ_TIMEOUT"] = f"{args.read_timeout:g}"
    with ExitStack() as cleanup:
        sandbox = SandboxProcess(args.latency)
        cleanup.callback(sandbox.stop)
        stack = cleanup.enter_context(open_stack(args.stack, sandbox, extra_env))
        stack.start_workers(1, args.concurrency)
        try:
            warm_up(stack, sandbox, args.concurrency, 60.0)
            return crash_and_recover(stack, sandbox, args)
        except FAILED:
            print(stack.logs()[-4000:], file=sys.stderr)
            raise


def crash_and_recover(
    stack: BenchStack, sandbox: SandboxProcess, args: argparse.Namespace
) -> dict[str, Any]:
    settings = stack.settings
    run_id = uuid.uuid4().hex[:8]
    key = f"recovery-{run_id}"
    skus = [f"RECOVERY-{run_id}-{i:07d}" for i in range(args.skus)]
    batches: int = math.ceil(args.skus / BATCH_SIZE)
    figures: dict[str, Any] = {
        "stack": stack.kind,
        "skus": args.skus,
        "batches": batches,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "rate_limit": settings.rate_limit,
        "lease_seconds": settings.lease_seconds,
        "redispatch_after_s": settings.redispatch_after,
        "load_before": machine_load(),
    }
    if stack.kind == "redis":  # when Redis gives an unacknowledged message back
        figures["visibility_timeout_s"] = settings.broker_transport_options()["visibility_timeout"]

    stack.sender()  # connected before the clock starts
    sent = time.time()
    stack.send("lazada.remove_products", skus, key=key)
    job_query = select(RemovalJob.id, RemovalJob.created_at).where(RemovalJob.key == key)
    job = wait_for(lambda: stack.rows(job_query), 120.0, "the job to be recorded", 0.1)[0]
    pending_query = select(RemovalJob.pending_batches).where(RemovalJob.id == job.id)

    def done_batches() -> int:
        return batches - int(stack.scalar(pending_query))

    kill_at = math.ceil(batches * args.kill_at)
    wait_for(lambda: done_batches() >= kill_at, 300.0, f"{kill_at} batches", interval=0.02)

    stack.kill_worker(stack.workers[0])
    killed = time.time()
    leased = select(func.count()).where(
        RemovalBatch.job_id == job.id,
        RemovalBatch.state == "pending",
        RemovalBatch.lease_until > datetime.fromtimestamp(killed, UTC),
    )
    figures["killed_after_s"] = round(killed - sent, 2)
    figures["batches_done_at_kill"] = done_at_kill = done_batches()
    figures["batches_leased_at_kill"] = stack.scalar(leased)
    first_call = min(call.at for call in sandbox.calls())
    figures["batches_per_s_before_kill"] = round(done_at_kill / (killed - first_call), 1)
    say(f"killed the worker at {done_at_kill}/{batches} batches; starting another")

    restarted = time.time()
    stack.start_workers(1, args.concurrency)
    figures["worker_ready_s"] = round(time.time() - restarted, 2)
    # The earliest the sweeper may send the job's batches again: their dispatch deadline.
    deadline = job.created_at.timestamp() + settings.redispatch_after
    figures["dispatch_deadline_after_restart_s"] = round(deadline - restarted, 1)

    finished_query = select(RemovalJob.finished_at).where(RemovalJob.id == job.id)
    finished = _wait_final(stack, finished_query, done_batches, restarted, args.timeout)
    figures["finished"] = finished is not None
    if finished is None:
        figures["recovery_s"] = f"not finished after {args.timeout:g} s"
        figures["batches_done"] = done_batches()
    else:
        figures["recovery_s"] = round(finished.timestamp() - restarted, 2)
        figures["total_s"] = round(finished.timestamp() - sent, 2)
        # What the calls left at the kill need at the pace before it: the recovery's goal is
        # within 15 s of that (a dead worker's leases freed by its stopped heartbeat).
        remaining = (batches - done_at_kill) / figures["batches_per_s_before_kill"]
        figures["remaining_calls_s"] = round(remaining, 2)
        figures["recovery_beyond_remaining_calls_s"] = round(figures["recovery_s"] - remaining, 2)
    figures.update(_calls_after(sandbox, restarted))
    figures["sweeper_resent_batches"] = sum(
        int(count) for worker in stack.workers for count in _SWEPT.findall(worker.log())
    )
    figures.update(_orphans_sent(stack.workers[-1].log(), restarted))
    figures.update(_losses(stack, sandbox, key, skus, finished is not None))
    figures["load_after"] = machine_load()
    return figures


def _orphans_sent(log: str, restarted: float) -> dict[str, Any]:
    """When the new worker's sweeper sent the dead worker's leased batches again (its
    heartbeat three beats old), from the restart; the log's clock is this machine's."""
    found = _ORPHANS_SENT.search(log)
    if found is None:
        return {"orphans_sent_after_restart_s": None}
    at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone()
    return {
        "orphans_sent_after_restart_s": round(at.timestamp() - restarted, 2),
        "orphans_sent": int(found.group(2)),
    }


def _wait_final(
    stack: BenchStack, query: Any, done: Any, restarted: float, timeout: float
) -> datetime | None:
    """The job's finished_at, waiting at most `timeout` s from `restarted`; None if not final.
    Says how far it is every 30 s (the wait is minutes long on the defaults)."""
    said = time.monotonic()
    while time.time() - restarted < timeout:
        finished = stack.scalar(query)
        if finished is not None:
            return finished  # type: ignore[no-any-return]
        if time.monotonic() - said >= 30:
            say(f"{time.time() - restarted:.0f} s after the restart: {done()} batches done")
            said = time.monotonic()
        time.sleep(0.1)
    return None


def _calls_after(sandbox: SandboxProcess, restarted: float) -> dict[str, Any]:
    """Which batches were sent twice, and when the calls after the restart came."""
    calls = [call for call in sandbox.calls() if call.action == "RemoveProduct"]
    by_body = Counter(call.body for call in calls)
    after = sorted(call.at - restarted for call in calls if call.at >= restarted)
    figures: dict[str, Any] = {
        "api_calls": len(calls),
        "batches_sent_twice": sum(1 for n in by_body.values() if n > 1),
        "calls_after_restart": len(after),
    }
    if after:
        start, end = max(pairwise([0.0, *after]), key=lambda gap: gap[1] - gap[0])
        figures["first_call_after_restart_s"] = round(after[0], 2)
        figures["calls_before_longest_pause"] = sum(1 for at in after if at <= start)
        figures["longest_pause_s"] = [round(start, 2), round(end, 2)]  # after the restart
    return figures


def _losses(
    stack: BenchStack, sandbox: SandboxProcess, key: str, skus: list[str], final: bool
) -> dict[str, Any]:
    """SKUs of the job not removed: by the results database and by the sandbox's count."""
    from worker.services import documents

    stats = sandbox.stats()
    with Session(stack.engine) as session:
        job = documents.removal_job(session, stack.settings.account, key)
    assert job is not None
    removed = {sku["sku"] for sku in job["skus"] if sku["state"] == "removed"}
    figures: dict[str, Any] = {
        "skus_removed_twice": stats["skus_removed_more_than_once"],
        "skus_removed_db": len(removed),
        "skus_failed_db": job["failed"],
        "skus_removed_api": stats["skus_removed"],
    }
    if final:
        figures["skus_lost"] = max(len(set(skus) - removed), len(skus) - stats["skus_removed"])
    else:
        figures["skus_pending"] = job["pending"]
    return figures


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "recovery",
        help="kill -9 a worker a third into a removal job, start another",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--stack", choices=STACKS, default="embedded")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--skus", type=int, default=140_000, help="SKUs in the job (about 20 s of work)")
    p.add_argument("--kill-at", type=float, default=1 / 3, help="share of batches done")
    p.add_argument("--lease", type=float, help="LAZADA_LEASE_SECONDS (default 90)")
    p.add_argument("--redispatch-after", type=float, help="LAZADA_REDISPATCH_AFTER (default 300)")
    p.add_argument("--read-timeout", type=float, help="LAZADA_READ_TIMEOUT (default 30)")
    p.add_argument(
        "--timeout", type=float, default=420.0, help="s after the restart; then 'not finished'"
    )
    p.add_argument("--latency", type=float, default=0.1, help="sandbox latency, s")
    p.add_argument("--concurrency", type=int, default=16, help="threads of the worker")
    p.add_argument(
        "--rate-limit", type=float, default=100_000, help="LAZADA_RATE_LIMIT (100000: off)"
    )
    p.set_defaults(main=main, figures=recovery, show=print_recovery)


def print_recovery(figures: dict[str, Any]) -> None:
    figures = dict(figures)
    print(f"== recovery after kill -9 on {figures.pop('stack')} ==")
    for name, value in figures.items():
        print(f"  {name:34s} {value}")
    sys.stdout.flush()


def main(args: argparse.Namespace) -> int:
    say(f"recovery on {args.stack}: {args.skus} SKUs, timeout {args.timeout:g} s")
    try:
        figures = recovery(args)
    except FAILED as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
    else:
        print_recovery(figures)
    return 0 if figures.get("finished") else 1
