"""What a call costs the worker at the rate limit, against the same calls with the limit off
and against a bare client loop (issue 27, benchmark 1), on either platform.

    python -m bench call-cost [--platform sellercenter|lazop] [--stack redis]
                              [--accounts 20 --rate 5 --skus 3000]
                              [--processes 2 --concurrency 16 --latency 0.1 --rounds 1]
                              [--settled]

In each round, `--accounts` accounts at `--rate` calls/s are each sent one removal job of
`--skus` SKUs at once, then as many accounts whose rate is far above anything the workers
reach (the limit off; sandboxes without a limit) the same jobs; the order of the two
alternates from round to round, so that a slow spell of the shared machine slows both alike.
Last, the bare client loop (`bench bare-loop`: the platform's client alone, as many threads as
the workers have) makes as many calls against an unlimited sandbox of the same latency, in a
process of its own.

Seller Center accounts each have a sandbox process of their own that answers E901 above the
rate. Open Platform (`lazop`) accounts share one LAZOP sandbox process, each the seller who
authorized it, that answers ApiCallLimit above the rate per seller, as the real gateway
limits each seller; the sandbox's record names the seller of each call. The other scale
scenarios (bench/scale.py) run the same accounts.

Worker CPU is the user + system time of the worker process trees (/proc) over a run; per call,
divided by the API calls the sandboxes served in it. Figures per run: aggregate calls/s while
every account ran, against accounts x rate; Jain's index of the accounts' rates then, and of
each account's rate over its own calls; throttled answers (E901, ApiCallLimit); worker CPU per
call and the cores it used; transactions committed per call (PostgreSQL's count for the run's
database). CPU time is less disturbed by other load than wall time, but not immune: the load
averages are printed with every run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select, text

from bench.fair import in_window, jain, skus, wait_rows
from bench.measure import print_figures, printed, run_workload
from bench.stack import (
    BATCH_SIZE,
    REPO,
    STACKS,
    BenchError,
    BenchStack,
    SandboxProcess,
    machine_load,
)
from worker.db.models import RemovalJob

# PostgreSQL (15 and later) counts a backend's transactions in its shared statistics within
# about a second of the backend going idle.
STATS_FLUSH = 1.5

# Before a run the workers are let go quiet: the run before leaves work behind it (its last
# outcomes and events, the first order syncs of the accounts it added), which would slow this
# run's start and count in its idle figure.
QUIET_CORES = 0.05
QUIET_WAIT = 30.0
# `--settled`: the new accounts' first order syncs are let end before the run; they take
# longer than a run's leftovers (a sync call each, at the account's rate).
SETTLE_WAIT = 180.0


def wait_quiet(stack: BenchStack, limit: float = QUIET_WAIT) -> float:
    """Wait until the workers use less than QUIET_CORES over a second (at most `limit` s);
    returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        cpu = stack.worker_cpu_seconds()
        time.sleep(1.0)
        if stack.worker_cpu_seconds() - cpu < QUIET_CORES:
            break
    return time.monotonic() - started


def _commits(stack: BenchStack) -> int:
    """Transactions committed in the stack's database so far (-1: not PostgreSQL)."""
    if stack.kind == "embedded":
        return -1
    statement = text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    with stack.engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(conn.execute(statement).scalar_one())


class OwnSandboxes:
    """Seller Center: a sandbox process per account, each with its own UserID and, at the
    limit, its own rate (the legacy API limits each seller's UserID)."""

    def __init__(self, names: list[str], latency: float, rate: float | None) -> None:
        self.names = names

        def start(name: str) -> SandboxProcess:
            return SandboxProcess(latency, rate_limit=rate, user_id=f"{name}@lazada-worker.test")

        with ThreadPoolExecutor(8) as pool:
            self.sandboxes = list(pool.map(start, names))

    def add_accounts(self, stack: BenchStack, rate: float | None) -> None:
        from worker.accounts.store import add_account

        with stack.sessions.begin() as session:
            for name, own in zip(self.names, self.sandboxes, strict=True):
                credentials = {"user_id": own.user_id, "api_key": own.api_key}
                add_account(
                    session, stack.settings, name, "sellercenter", credentials, own.url, rate
                )

    def per_account(self) -> list[list[float]]:
        """Each account's call arrival times, sorted, in the order of `names`."""
        return [sorted(call.at for call in own.calls()) for own in self.sandboxes]

    def counts(self, by: str) -> Counter[str]:
        """The calls by "outcome" ("ok", "E901", ...) or by "action", all sandboxes together."""
        stats = [own.stats()[f"calls_by_{by}"] for own in self.sandboxes]
        return sum((Counter(counts) for counts in stats), Counter())

    def forget_calls(self) -> None:
        for own in self.sandboxes:
            own.reset_calls()

    def stop(self) -> None:
        for own in self.sandboxes:
            own.stop()


class SharedGateway:
    """The Open Platform: one LAZOP sandbox process whose sellers are the accounts, each
    seller limited to its own rate as the real gateway limits each seller; every account
    authorized by its seller. The latency and the limit are set once all are authorized, so
    that the token calls (counted against the app) are neither slow nor refused."""

    def __init__(self, names: list[str], latency: float, rate: float | None) -> None:
        self.names, self.latency, self.rate = names, latency, rate
        self.sandbox = SandboxProcess(0.0, "lazop", sellers=names)

    def add_accounts(self, stack: BenchStack, rate: float | None) -> None:
        from worker.accounts import tokens
        from worker.accounts.store import add_account
        from worker.platforms.lazop import LazopClient
        from worker.sandbox.lazop.config import LazopSandboxConfig

        config = LazopSandboxConfig()
        api_url, auth_url = f"{self.sandbox.url}rest", f"{self.sandbox.url}auth/rest"
        credentials = {"app_key": config.app_key, "app_secret": config.app_secret}
        with stack.sessions.begin() as session:
            for name in self.names:
                add_account(
                    session,
                    stack.settings,
                    name,
                    "lazop",
                    {**credentials, "auth_url": auth_url},
                    api_url,
                    rate,
                )
        with LazopClient(api_url, config.app_key, config.app_secret, auth_url=auth_url) as client:

            def authorize(name: str) -> None:
                grant = client.create_token(self.sandbox.authorization_code(name))
                tokens.store_grant(stack.sessions, stack.settings, name, grant)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(authorize, self.names))
        self.sandbox.configure({"latency": self.latency, "rate_limit": self.rate})
        self.sandbox.reset_calls()

    def per_account(self) -> list[list[float]]:
        """Each account's call arrival times, sorted, in the order of `names` (the sandbox
        records the seller a call was made for)."""
        times: dict[str, list[float]] = {name: [] for name in self.names}
        for call in self.sandbox.calls():
            if call.account in times:
                times[call.account].append(call.at)
        return [sorted(times[name]) for name in self.names]

    def counts(self, by: str) -> Counter[str]:
        """The calls by "outcome" ("ok", "ApiCallLimit", ...) or by "action", token calls
        left out."""
        return Counter(getattr(call, by) for call in self.sandbox.calls() if call.account)

    def forget_calls(self) -> None:
        self.sandbox.reset_calls()

    def stop(self) -> None:
        self.sandbox.stop()


AccountSandboxes = OwnSandboxes | SharedGateway
SANDBOXES: dict[str, type[OwnSandboxes] | type[SharedGateway]] = {
    "sellercenter": OwnSandboxes,
    "lazop": SharedGateway,
}


def accounts_run(
    stack: BenchStack, args: Any, limited: bool, profile_to: str | None = None
) -> dict[str, Any]:
    """One run: `args.accounts` accounts of `args.platform` at `args.rate` calls/s (or with
    the limit off) each sent one job of `args.skus` SKUs at once; figures of their calls (from
    the sandboxes' record) and of the workers' CPU."""
    quiet_after = wait_quiet(stack)  # before this run's accounts: their first syncs count
    run_id = uuid.uuid4().hex[:8]
    mode = "on" if limited else "off"
    names = [f"cost-{mode}-{run_id}-{n:04d}" for n in range(args.accounts)]
    # The limit off: sandboxes without a limit, accounts with no rate of their own (the
    # deployment's, far above any run).
    rate = args.rate if limited else None
    sandboxes: AccountSandboxes = SANDBOXES[args.platform](names, args.latency, rate)
    try:
        sandboxes.add_accounts(stack, rate)
        settled = None
        if args.settled:
            settled = wait_quiet(stack, SETTLE_WAIT)
            sandboxes.forget_calls()
        needed = math.ceil(args.skus / BATCH_SIZE)
        # Each account's calls at its rate, or all of them at a pace no worker falls under.
        wait_bound = max(args.timeout, 3 * needed / args.rate, args.accounts * needed / 10)
        key = f"cost-{run_id}"
        profiler = None
        if profile_to is not None:
            from bench.profiling import PROFILES, Profiler

            profiler = Profiler(stack.worker_pids(), PROFILES / profile_to)
        load = machine_load()
        # What the workers use doing nothing (beat, heartbeats, the broker's polling): part of
        # every run's CPU, and of a small run's a large part.
        idle_from, idle_cpu = time.monotonic(), stack.worker_cpu_seconds()
        time.sleep(args.idle)
        idle = (stack.worker_cpu_seconds() - idle_cpu) / (time.monotonic() - idle_from)
        commits = _commits(stack)
        marks = stack.log_marks()
        worker_cpu = stack.worker_cpu_seconds()
        sent = time.monotonic()
        for n, name in enumerate(names):
            stack.send(
                "lazada.remove_products",
                skus(f"COST-{run_id}-A{n:04d}-", args.skus),
                key=key,
                account=name,
            )
        ended = select(RemovalJob.account).where(
            RemovalJob.key == key, RemovalJob.finished_at.is_not(None)
        )
        wait_rows(stack, ended, len(names), wait_bound, "every account's job")
        cpu = stack.worker_cpu_seconds() - worker_cpu
        elapsed = time.monotonic() - sent
        profile = profiler.stop() if profiler is not None else None
        time.sleep(STATS_FLUSH)
        commits = _commits(stack) - commits if commits >= 0 else -1
        sent_again = stack.sent_again(marks)
        per_account = sandboxes.per_account()
        outcomes, actions = sandboxes.counts("outcome"), sandboxes.counts("action")
        _remove_accounts(stack, names)
    finally:
        sandboxes.stop()
    if not all(per_account):
        raise BenchError("an account's sandbox recorded no calls")
    calls = sum(len(times) for times in per_account)
    # While every account ran: from the last account's first call to the first one's last.
    start_at = max(times[0] for times in per_account)
    end_at = min(times[-1] for times in per_account)
    window = end_at - start_at
    rates = (
        [in_window(times, start_at, end_at) / window for times in per_account] if window > 0 else []
    )
    # Each account's rate over its own calls (intervals over their span): at a low rate an
    # account makes few calls while all run, and its count there is a coarse measure.
    own = [(len(t) - 1) / (t[-1] - t[0]) for t in per_account if len(t) > 1 and t[-1] > t[0]]
    first = min(times[0] for times in per_account)
    last = max(times[-1] for times in per_account)
    figures: dict[str, Any] = {
        "limit": f"{args.rate}/s" if limited else "off",
        "accounts": args.accounts,
        "api_calls": calls,
        "calls_per_account": round(calls / args.accounts, 1),
        "all_running_s": round(window, 2),
        "calls_per_s_all_running": round(sum(rates), 2) if rates else None,
        "target_calls_per_s": round(args.accounts * args.rate, 2) if limited else None,
        "calls_per_s_first_to_last": round(calls / (last - first), 2) if last > first else None,
        "jain_all_running": round(jain(rates) or 0.0, 3) if rates else None,
        "own_rate_min_median_max": (
            [round(min(own), 3), round(statistics.median(own), 3), round(max(own), 3)]
            if own
            else None
        ),
        "jain_own_rates": round(jain(own) or 0.0, 3) if own else None,
        "throttled": outcomes["E901"] + outcomes["ApiCallLimit"],
        "calls_by_outcome": dict(outcomes),
        # Removals, and the first order sync of each new account (the worker's beat).
        "calls_by_action": dict(actions),
        "seconds": round(elapsed, 2),
        "worker_cpu_s": round(cpu, 2),
        "worker_cores": round(cpu / elapsed, 2),
        "worker_cpu_ms_per_call": round(1000 * cpu / calls, 2),
        # Transactions the database committed (the workers': the benchmark's reads commit none).
        "db_commits_per_call": round(commits / calls, 2) if commits >= 0 else None,
        "idle_worker_cpu_ms_per_s": round(1000 * idle, 1),
        "quiet_after_s": round(quiet_after, 1),
        # `--settled`: how long the new accounts' first order syncs took to end before the run.
        "settled_after_s": round(settled, 1) if settled is not None else None,
        # Rows the sweepers took for lost and sent again (each a task more, and its calls).
        "sent_again": sent_again,
        "load": load,
    }
    if profile is not None:
        figures["profile"] = profile
    return figures


def _remove_accounts(stack: BenchStack, names: list[str]) -> None:
    """Remove a run's accounts once it is measured, as an operator removes a shop that left:
    kept, their order syncs would go on against a stopped sandbox in the next runs."""
    from worker.accounts.store import remove_account

    with stack.sessions.begin() as session:
        for name in names:
            remove_account(session, stack.settings, name)


def bare_run(args: Any, calls: int, threads: int) -> dict[str, Any]:
    """The bare client loop of `args.platform` (its client alone, `calls` calls on `threads`
    threads) against a sandbox of its own with no limit and the same latency."""
    sandbox = SandboxProcess(args.latency, args.platform)
    try:
        if args.platform == "lazop":
            from worker.sandbox.lazop.config import LazopSandboxConfig

            config = LazopSandboxConfig()
            user, secret = config.app_key, config.app_secret
            code = ["--code", sandbox.authorization_code(config.sellers[0])]
        else:
            user, secret, code = sandbox.user_id, sandbox.api_key, []
        command = [sys.executable, "-m", "bench", "bare-loop", sandbox.url, user]
        command += [str(calls), str(threads), *code]
        load = machine_load()
        result = subprocess.run(
            command,
            input=secret,
            capture_output=True,
            text=True,
            timeout=max(args.timeout, 10 * calls * args.latency / threads),
            check=False,
            cwd=REPO,
        )
    finally:
        sandbox.stop()
    if result.returncode != 0:
        raise BenchError(f"the bare loop failed:\n{result.stderr[-2000:]}")
    bare = json.loads(result.stdout)
    return {
        "api_calls": calls,
        "threads": threads,
        "seconds": bare["seconds"],
        "calls_per_s": round(calls / bare["seconds"], 1),
        "cpu_s": bare["cpu_s"],
        "cpu_ms_per_call": round(1000 * bare["cpu_s"] / calls, 2),
        "load": load,
    }


def call_cost(stack: BenchStack, sandbox: SandboxProcess, args: Any) -> dict[str, Any]:
    """`--rounds` rounds of the limit on and off, interleaved; then the bare loop."""
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for limited in order:
            profile_to = f"call-cost-{'on' if limited else 'off'}" if args.profile else None
            runs.append(accounts_run(stack, args, limited, profile_to))
    calls = math.ceil(args.skus / BATCH_SIZE) * args.accounts
    bare = bare_run(args, calls, args.processes * args.concurrency)
    on = [run["worker_cpu_ms_per_call"] for run in runs if run["limit"] != "off"]
    off = [run["worker_cpu_ms_per_call"] for run in runs if run["limit"] == "off"]
    return {
        "workload": "call cost",
        "stack": stack.kind,
        "platform": args.platform,
        "accounts": args.accounts,
        "rate": args.rate,
        "skus_per_account": args.skus,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "runs": runs,
        "bare_loop": bare,
        "cpu_ms_per_call_on_median": round(statistics.median(on), 2),
        "cpu_ms_per_call_off_median": round(statistics.median(off), 2),
        "on_over_off": round(statistics.median(on) / statistics.median(off), 2),
        "on_over_bare": round(statistics.median(on) / bare["cpu_ms_per_call"], 2),
    }


def figures(args: argparse.Namespace) -> dict[str, Any]:
    args.poll_workers = 0
    return run_workload(call_cost, args)


def show(result: dict[str, Any]) -> None:
    result = dict(result)
    runs = result.pop("runs")
    bare = result.pop("bare_loop")
    for run in runs:
        profile = run.pop("profile", None)
        print_figures({"workload": f"limit {run.pop('limit')}", "stack": result["stack"], **run})
        if profile is not None:
            print_figures({"workload": "profile", "stack": result["stack"], "profile": profile})
    print_figures({"workload": "bare loop", "stack": "client alone", **bare})
    print_figures(result)


SETTLED_HELP = "let the new accounts' first order syncs end before the run, their calls not counted"


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "call-cost",
        help="worker CPU per call at the rate limit, limit off and a bare loop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--stack", choices=STACKS, default="redis")
    p.add_argument("--platform", choices=tuple(SANDBOXES), default="sellercenter")
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--rate", type=float, default=5.0, help="each account's calls/s")
    p.add_argument("--skus", type=int, default=3000, help="SKUs of each account's job")
    p.add_argument("--latency", type=float, default=0.1, help="sandbox latency, s")
    p.add_argument("--processes", type=int, default=2, help="worker processes")
    p.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    p.add_argument("--rounds", type=int, default=1, help="rounds of limit on and off")
    p.add_argument("--timeout", type=float, default=60.0, help="minimum time bound, s")
    p.add_argument("--idle", type=float, default=2.0, help="s the idle workers' CPU is read")
    p.add_argument("--cold", action="store_true", help="measure without a warm-up job")
    p.add_argument("--settled", action="store_true", help=SETTLED_HELP)
    p.add_argument("--profile", action="store_true", help="sample the workers with py-spy")
    p.set_defaults(main=printed(figures, show), figures=figures, show=show)
