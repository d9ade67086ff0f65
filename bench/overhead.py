"""What the worker costs beside the API call itself.

    python -m bench overhead --stack redis|embedded --skus 20000 --concurrency 16 [--processes 2]
    python -m bench cost     --stack redis|embedded [--batches 400] [--rounds 10]

`overhead`: batches per second through the worker at zero latency, against a bare loop of the
same RemoveProduct calls at the same concurrency (the client alone: no Celery, no database,
no rate limiter) in a process of its own; the ratio is the worker's share of the bare rate.

`cost`: the CPU time of the thread doing the work (time.thread_time), one thread, no Celery,
the sandbox in another process at zero latency. End-to-end runs vary from run to run on a
shared machine, and a machine of another kind can be twice as slow; this is repeatable, and
its ratios to the bare client call carry over between machines. It runs each kind in turn, in
rounds, so that a slow spell of the machine slows every kind alike, and prints JSON:

- bare call: SellerCenterClient.remove_products alone (sign, send, parse; no limiter, no audit);
- worker call: the same through the worker's client (the rate limiter's reservation, the audit);
- removal batch: worker.services.removal.process_batch (claim, call, record the outcome), on
  a batch that holds its SKUs in its row (as every new batch does);
- removal batch, SKU rows: the same on a batch whose SKUs are rows already (as every batch would
  be with one way to store a SKU's outcome), plus "SKU rows written": writing those 50 rows,
  which that design pays when the job is recorded;
- order fetch: worker.services.orders.fetch_order (claim, GetOrder, store order and items).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from bench import throughput
from bench.measure import bound, stack_options, workload_defaults
from bench.stack import (
    BATCH_SIZE,
    FAILED,
    REPO,
    STACKS,
    BenchError,
    BenchStack,
    SandboxProcess,
    open_stack,
)


def overhead(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """A removal at zero latency, then the bare loop of as many calls on as many threads."""
    figures = throughput.removal(stack, sandbox, args)
    figures["workload"] = "overhead"
    calls = figures["calls_needed"]
    sandbox.reset()
    command = [sys.executable, "-m", "bench", "bare-loop", sandbox.url, sandbox.user_id]
    command += [str(calls), str(args.concurrency * args.processes)]
    started = time.monotonic()
    result = subprocess.run(
        command,
        input=sandbox.api_key,
        capture_output=True,
        text=True,
        timeout=bound(0, args.timeout),
        check=False,
        cwd=REPO,
    )
    if result.returncode != 0:
        raise BenchError(f"the bare loop failed:\n{result.stderr[-2000:]}")
    bare = json.loads(result.stdout)
    figures["bare_loop_s"] = bare["seconds"]
    figures["bare_loop_process_s"] = round(time.monotonic() - started, 3)
    figures["bare_batches_per_s"] = round(calls / bare["seconds"], 1)
    figures["overhead_ratio"] = round(figures["batches_per_s"] / figures["bare_batches_per_s"], 3)
    return figures


def bare_loop(url: str, user_id: str, calls: int, concurrency: int, code: str | None = None) -> int:
    """The reference for `overhead` and `call-cost`: the client alone, `concurrency` threads,
    one call each of 50 SKUs; prints {"seconds": ..., "cpu_s": ...} (this process's CPU time
    over the calls). The secret comes on standard input: the API key, or with `code` (an
    authorization code of the LAZOP sandbox at `url`) the app secret, `user_id` then being the
    app key and the calls LazopClient's for the code's seller."""
    from worker.platforms.lazop import LazopClient
    from worker.platforms.sellercenter import SellerCenterClient

    secret = sys.stdin.read().strip()
    prefix = uuid.uuid4().hex[:8]
    batches = [[f"BARE-{prefix}-{n:05d}-{i:02d}" for i in range(BATCH_SIZE)] for n in range(calls)]
    client: Any
    if code is None:
        client = SellerCenterClient(url, user_id, secret)
        remove = client.remove_products
    else:
        client = LazopClient(f"{url}rest", user_id, secret, auth_url=f"{url}auth/rest")
        token = client.create_token(code).access_token
        remove = functools.partial(client.remove_products, token)
    with client:
        remove(batches[0][:1])  # connect once, as a running worker would have
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(remove, batches))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": round(seconds, 3), "cpu_s": round(cpu, 3)}))
    return 0


def _batches_of(sessions: Any, job_id: int) -> list[int]:
    from worker.db.models import RemovalBatch

    with sessions() as session:
        return list(
            session.scalars(
                select(RemovalBatch.id)
                .where(RemovalBatch.job_id == job_id)
                .order_by(RemovalBatch.id)
            )
        )


def cpu_ms(work: Callable[[], object], repeat: int) -> list[float]:
    """The CPU time of this thread, in ms, of each of `repeat` runs of `work`."""
    times = []
    for _ in range(repeat):
        started = time.thread_time()
        work()
        times.append(1000 * (time.thread_time() - started))
    return times


def measure(stack_kind: str, batches: int, rounds: int) -> dict[str, Any]:
    """Median CPU ms of each kind of work over `rounds` rounds of `batches // rounds` each."""
    from worker.accounts.platforms import forget_platforms, platforms
    from worker.db.engine import core_transaction, get_engine
    from worker.db.models import RemovalBatch, RemovalJob
    from worker.platforms.sellercenter import SellerCenterClient
    from worker.services import orders, removal

    # One batch a call: a runner would otherwise go on to the job's next batches (all of them,
    # at zero latency), and the rest of the measured calls would find nothing to do.
    removal.RUNNER_SECONDS = 0.0
    # Jobs of exactly the batches the rounds take, so that both jobs end.
    per_round = max(1, batches // rounds)
    batches = per_round * rounds
    sandbox = SandboxProcess(0.0)
    try:
        with open_stack(stack_kind, sandbox) as stack:
            settings = stack.settings
            sessions = sessionmaker(get_engine(settings.database_url), expire_on_commit=False)
            run_id = uuid.uuid4().hex[:8]

            def skus(n: int) -> list[str]:
                return [f"COST-{run_id}-{n:05d}-{i:02d}" for i in range(BATCH_SIZE)]

            bare = SellerCenterClient(sandbox.url, sandbox.user_id, sandbox.api_key)
            worker_platforms = platforms(sessions, settings)
            account = worker_platforms.account(None).name
            worker_platform = worker_platforms(account)
            bare.remove_products(skus(0)[:1])  # connections opened outside the measurement
            worker_platform.remove_skus(skus(0)[:1])
            all_skus = [f"COST-{run_id}-job-{i:06d}" for i in range(batches * BATCH_SIZE)]
            job_id, _ = removal.create_job(
                sessions, settings, account, f"cost-{run_id}", all_skus, BATCH_SIZE
            )
            rows_skus = [f"COST-{run_id}-rows-{i:06d}" for i in range(batches * BATCH_SIZE)]
            rows_job, _ = removal.create_job(
                sessions, settings, account, f"cost-rows-{run_id}", rows_skus, BATCH_SIZE
            )
            batch_ids, rows_batch_ids = (_batches_of(sessions, job) for job in (job_id, rows_job))
            to_write = iter(rows_batch_ids)
            written: list[int] = []

            def write_rows() -> None:
                batch_id = next(to_write)
                with core_transaction(sessions) as connection:
                    row = connection.execute(
                        select(
                            RemovalBatch.job_id,
                            RemovalBatch.account,
                            RemovalBatch.first_position,
                            RemovalBatch.skus,
                        ).where(RemovalBatch.id == batch_id)
                    ).one()
                    work = removal._Claim(
                        batch_id, row.job_id, row.account, json.loads(row.skus), row.first_position
                    )
                    removal._write_skus(connection, work, datetime.now(UTC))
                written.append(batch_id)

            first_order = 10_000_000 + int(run_id, 16) % 10_000_000
            calls = iter(range(1, 10**9))
            pending = iter(batch_ids)
            order_ids = iter(range(first_order, 2 * first_order))
            kinds: dict[str, Callable[[], object]] = {
                "bare_call": lambda: bare.remove_products(skus(next(calls))),
                "worker_call": lambda: worker_platform.remove_skus(skus(next(calls))),
                "removal_batch": lambda: removal.process_batch(
                    sessions, worker_platforms, settings, next(pending)
                ),
                "sku_rows_written": write_rows,
                "removal_batch_sku_rows": lambda: removal.process_batch(
                    sessions, worker_platforms, settings, written.pop(0)
                ),
                "order_fetch": lambda: orders.fetch_order(
                    sessions, worker_platforms, settings, account, next(order_ids), None
                ),
            }
            # Rounds of each kind in turn: a slow spell of the machine then slows every kind
            # alike, and the median round's ratio to the bare call stays put.
            means: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for kind, work in kinds.items():
                    means[kind].append(statistics.fmean(cpu_ms(work, per_round)))
            with sessions() as session:
                finished = session.scalars(
                    select(RemovalJob.finished_at).where(RemovalJob.id.in_([job_id, rows_job]))
                ).all()
            if len(finished) != 2 or None in finished:
                raise BenchError("a removal job did not finish: the figures would be wrong")
            figures: dict[str, Any] = {
                "stack": stack_kind,
                "rounds": rounds,
                "per_round": per_round,
            }
            for kind, values in means.items():
                ratios = [v / b for v, b in zip(values, means["bare_call"], strict=True)]
                figures[kind] = {
                    "median_ms": round(statistics.median(values), 3),
                    "min_ms": round(min(values), 3),
                    "x_bare_call": round(statistics.median(ratios), 2),
                }
            bare.close()
            forget_platforms()
            return figures
    finally:
        sandbox.stop()


def cost(args: argparse.Namespace) -> int:
    try:
        figures = measure(args.stack, args.batches, args.rounds)
    except FAILED as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2))
    return 0


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "overhead",
        help="the worker against a bare client loop at zero latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stack_options(p, 0.0)
    p.add_argument("--skus", type=int, default=20_000)
    p.set_defaults(**workload_defaults(overhead))

    p = scenarios.add_parser(
        "cost",
        help="CPU per call of the worker's own work, one thread, no Celery (JSON)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--stack", choices=STACKS, default="redis")
    p.add_argument("--batches", type=int, default=400, help="removal batches (50 SKUs)")
    p.add_argument("--rounds", type=int, default=10, help="rounds of each kind in turn")
    p.set_defaults(
        main=cost,
        figures=lambda args: measure(args.stack, args.batches, args.rounds),
        show=lambda figures: print(json.dumps(figures, indent=2)),
    )

    # The bare loop runs in a process of its own, started by `overhead`.
    p = scenarios.add_parser("bare-loop")
    p.add_argument("url")
    p.add_argument("user_id", help="the UserID (LAZOP: the app key)")
    p.add_argument("calls", type=int)
    p.add_argument("concurrency", type=int)
    p.add_argument("--code", help="LAZOP: an authorization code of the sandbox's seller")
    p.set_defaults(
        main=lambda args: bare_loop(args.url, args.user_id, args.calls, args.concurrency, args.code)
    )
