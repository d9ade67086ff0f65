"""Order sync: a first sync against the fewest calls, a steady state, a sync beside a removal.

`order-sync-first`: a sandbox of each platform whose listing holds N orders updated over
the days before (no two in one second more than chance puts there), a worker on the embedded
stack, the account's rate limit and the sandbox's latency as given; `lazada.sync_orders` sent,
the sync timed from the send until the account's sync point is past the send. The fewest
calls: N/100 listing pages (and the short page that ends the listing) and, on the Open
Platform, N/50 items calls; the fewest seconds: those calls at the rate.

`order-sync-steady`: N accounts, a LAZOP sandbox each, whose listings gain a new or changed
order every second while beat syncs them every `--every` s: for each change, the time from the
second the sandbox stamped on it to its `order.created`/`order.updated` event row (`events.at`);
and the worker's CPU (its whole process group: the events worker too) per order event, against
a fetch by id's per order on the same stack with the sync off.

`order-sync-beside-removal`: one account at its rate limit, a removal of 20,000 SKUs and, once
it is under way, a first sync of 3,000 orders: the removal's calls/s while the sync runs and
after it ends, from the sandbox's record of the calls it served.

The sandboxes run in this process (their threads share its interpreter with the polling of
the database only, which is light); the worker is a `lazada-worker run` child process.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from bench.measure import percentile, printed
from bench.stack import BATCH_SIZE
from tests.support.processes import WorkerProcess, plain_celery, wait_for
from worker.accounts import tokens
from worker.accounts.store import add_account
from worker.db.engine import get_engine
from worker.db.models import Event, Order, OrderSync, RemovalJob
from worker.db.schema import ensure_schema
from worker.platforms.lazop.client import LazopClient
from worker.sandbox.lazop import LazopSandbox, LazopSandboxConfig
from worker.sandbox.sellercenter import Sandbox, SandboxConfig
from worker.settings import Settings

ACCOUNT = "bench-shop"
LISTING = {"sellercenter": "GetOrders", "lazop": "/orders/get"}


def worker_env(url: str, rate: float, every: float, lookback: float) -> dict[str, str]:
    """The worker's environment: this process's, without any LAZADA_/CELERY_ setting of its
    own, on the SQLite database `url` and the embedded broker."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
        },
        "DATABASE_URL": url,
        "LAZADA_QUEUE": "bench-sync",
        "LAZADA_RATE_LIMIT": str(rate),
        "LAZADA_ORDER_SYNC_EVERY": str(every),
        "LAZADA_ORDER_SYNC_LOOKBACK": str(lookback),
    }


def lazop_account(
    sessions: sessionmaker[Any], settings: Settings, name: str, config: LazopSandboxConfig
) -> LazopSandbox:
    """A LAZOP sandbox started with `config`, and the account `name` stored and authorized by
    its first seller; the seller's listing is filled before the return."""
    sandbox = LazopSandbox(config, port=0).start()
    with sessions.begin() as session:
        add_account(
            session,
            settings,
            name,
            "lazop",
            {
                "app_key": sandbox.app_key,
                "app_secret": sandbox.app_secret,
                "auth_url": sandbox.auth_url,
            },
            api_url=sandbox.api_url,
        )
    with LazopClient(
        sandbox.api_url, sandbox.app_key, sandbox.app_secret, auth_url=sandbox.auth_url
    ) as client:
        grant = client.create_token(sandbox.authorization_code(sandbox.sellers[0]))
    tokens.store_grant(sessions, settings, name, grant)
    sandbox.listed_order_ids(sandbox.sellers[0])
    return sandbox


def first_sync(platform: str, orders: int, rate: float, latency: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="lazada-bench-sync-"))
    url = f"sqlite:///{folder / 'results.sqlite3'}"
    ensure_schema(url)
    env = worker_env(url, rate, every=0, lookback=10 * 86400)
    settings = Settings.from_env(env)
    sessions = sessionmaker(get_engine(url), expire_on_commit=False)
    knobs: dict[str, Any] = {"latency": latency, "listed_orders": orders, "listed_days": 5.0}
    sandbox: Any
    if platform == "lazop":
        sandbox = lazop_account(sessions, settings, ACCOUNT, LazopSandboxConfig(**knobs))
    else:
        sandbox = Sandbox(SandboxConfig(**knobs), port=0).start()
        with sessions.begin() as session:
            add_account(
                session,
                settings,
                ACCOUNT,
                "sellercenter",
                {"user_id": sandbox.user_id, "api_key": sandbox.api_key},
                api_url=sandbox.url,
            )
        sandbox.listed_order_ids()
    worker = WorkerProcess(env, folder / "worker.log", concurrency=8).start()
    try:
        wait_for(worker.ready, 60, "the worker ready")
        sandbox.reset_calls()
        sent = datetime.now(UTC)
        started = time.monotonic()
        app = plain_celery(settings.broker_url, settings.broker_transport_options())
        app.send_task("lazada.sync_orders", kwargs={"account": ACCOUNT}, queue=settings.queue)

        reader = _reader(url)
        wait_for(lambda: _synced_since(reader, sent), 900, "the first sync", interval=0.05)
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
        sandbox.stop()
    calls = [c for c in sandbox.calls() if c.action != "/auth/token/create"]
    pages = sum(1 for c in calls if c.action == LISTING[platform])
    fewest = orders // 100 + 1 + (math.ceil(orders / 50) if platform == "lazop" else 0)
    return {
        "platform": platform,
        "orders": orders,
        "rate": rate,
        "latency": latency,
        "calls": len(calls),
        "listing_calls": pages,
        "fewest_calls": fewest,
        "calls_ratio": round(len(calls) / fewest, 3),
        "seconds": round(elapsed, 2),
        "fewest_seconds": round(fewest / rate, 2),
        "time_ratio": round(elapsed / (fewest / rate), 3),
        # Where the time went: before the first call (the message, the run's start), between
        # the first call and the last (against the calls at the rate), after the last.
        "first_call_s": round(calls[0].at - sent.timestamp(), 2) if calls else None,
        "calls_span_s": round(calls[-1].at - calls[0].at, 2) if calls else None,
        "gap_p50_s": _gap(calls, 0.5),
        "gap_p95_s": _gap(calls, 0.95),
        "gap_max_s": _gap(calls, 1.0),
        # Gaps of more than two slots: when into the calls, s, and how long.
        "long_gaps": [
            [round(a.at - calls[0].at, 2), round(b.at - a.at, 3)]
            for a, b in itertools.pairwise(calls)
            if b.at - a.at > 2 / rate
        ],
        "span_ratio": (
            round((calls[-1].at - calls[0].at) / ((len(calls) - 1) / rate), 3)
            if len(calls) > 1
            else None
        ),
    }


def _reader(url: str) -> sessionmaker[Any]:
    """Sessions for the bench's polls, on an engine whose reads take no lock: the project's
    SQLite engine begins every transaction IMMEDIATE, and a poll through it waits for the
    write lock behind the worker's writes (the events worker's, thousands), so it would see
    a sync's end late."""
    return sessionmaker(create_engine(url), expire_on_commit=False)


def _synced_since(reader: sessionmaker[Any], sent: datetime) -> bool:
    """Whether the account's sync has ended, its sync point at or past `sent`."""
    with reader() as session:
        row = session.scalars(select(OrderSync)).first()
    return bool(
        row is not None
        and row.run_until is None
        and row.synced_through is not None
        and _aware(row.synced_through) >= sent
    )


def _gap(calls: list[Any], share: float) -> float | None:
    """The `share` quantile (nearest rank) of the times between one call and the next."""
    gaps = sorted(b.at - a.at for a, b in itertools.pairwise(calls))
    if not gaps:
        return None
    return round(gaps[min(len(gaps) - 1, max(0, math.ceil(share * len(gaps)) - 1))], 3)


def first_syncs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "syncs": [
            first_sync(platform, args.orders, args.rate_limit, args.latency)
            for platform in args.platforms
        ]
    }


def show(figures: dict[str, Any]) -> None:
    for r in figures["syncs"]:
        print(
            f"{r['platform']}: {r['orders']} orders, {r['calls']} calls "
            f"(fewest {r['fewest_calls']}, x{r['calls_ratio']}), {r['seconds']} s "
            f"(fewest {r['fewest_seconds']} s at {r['rate']}/s, x{r['time_ratio']})"
        )


def main(args: argparse.Namespace) -> int:
    figures = first_syncs(args)
    if args.json:
        print(json.dumps(figures["syncs"], indent=2))
    else:
        show(figures)
    return 0


class ChurnLog:
    """Every order the sandbox's `order_churn` adds or changes, with the second it stamps on
    the change: the moment the change is in the listing for any call that reads it. The book
    applies churn when a call reads it, stamping each change with the second it was due, so a
    change is logged by the call that first could see it."""

    def __init__(self, sandbox: LazopSandbox) -> None:
        # The book is the sandbox's own (in this process): the sandbox has no record of which
        # orders its churn touched, and the measurement needs each one's moment.
        book = sandbox._service.book
        self.changes: list[tuple[int, datetime]] = []
        insert, bump = book._insert, book._bump

        def logged_insert(seller: str, updated_at: datetime, rng: Any) -> Any:
            entry = insert(seller, updated_at, rng)
            self.changes.append((entry.order_id, entry.updated_at))
            return entry

        def logged_bump(entry: Any, at: datetime) -> None:
            bump(entry, at)
            self.changes.append((entry.order_id, entry.updated_at))

        # After the listing is filled (populate also inserts): from here on, churn only.
        setattr(book, "_insert", logged_insert)  # noqa: B010 (an instance's method replaced)
        setattr(book, "_bump", logged_bump)  # noqa: B010


def group_cpu(pgid: int) -> float:
    """User + system CPU seconds of every live process of the group `pgid` (the worker, its
    events worker and anything else it started), with the children they have reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # Fields after the command name (which may hold spaces), from the third: state, ppid,
        # pgrp, ..., utime (14th), stime, cutime, cstime.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) != pgid:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / tick


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _order_events(sessions: sessionmaker[Any], since: datetime) -> list[tuple[str, int, Any, Any]]:
    """(account, order id, the order's updated_at, recorded at) of each order event since."""
    with sessions() as session:
        rows = session.execute(
            select(Event.account, Event.at, Event.data).where(
                Event.type.in_(["order.created", "order.updated"]), Event.at >= since
            )
        ).all()
    return [
        (
            account,
            int(data["order_id"]),
            _aware(datetime.fromisoformat(data["updated_at"])),
            _aware(at),
        )
        for account, at, data in rows
        if data.get("updated_at")
    ]


def _latencies(
    logs: dict[str, ChurnLog],
    events: list[tuple[str, int, Any, Any]],
    since: datetime,
    until: datetime,
) -> tuple[list[float], int]:
    """For each change stamped in [since, until]: seconds from its stamp to the first event
    that announces that version of the order or a later one; and how many have none."""
    announced: dict[tuple[str, int], list[tuple[datetime, datetime]]] = {}
    for account, order_id, updated, at in events:
        announced.setdefault((account, order_id), []).append((at, updated))
    for versions in announced.values():
        versions.sort()
    waits: list[float] = []
    missing = 0
    for account, log in logs.items():
        for order_id, stamp in list(log.changes):
            if not since <= stamp <= until:
                continue
            first = next(
                (at for at, updated in announced.get((account, order_id), []) if updated >= stamp),
                None,
            )
            if first is None:
                missing += 1
            else:
                waits.append((first - stamp).total_seconds())
    return waits, missing


def steady(args: argparse.Namespace) -> dict[str, Any]:
    """`--accounts` LAZOP accounts, one sandbox each (a book's churn clock is shared by its
    sellers), each with `--churn` new or changed orders a second and beat syncing every
    `--every` s, for `--seconds`; then a worker without sync fetching `--fetches` orders by id."""
    folder = Path(tempfile.mkdtemp(prefix="lazada-bench-steady-"))
    url = f"sqlite:///{folder / 'results.sqlite3'}"
    ensure_schema(url)
    env = worker_env(url, args.rate_limit, every=args.every, lookback=86400)
    settings = Settings.from_env(env)
    sessions = sessionmaker(get_engine(url), expire_on_commit=False)
    sandboxes: dict[str, LazopSandbox] = {}
    logs: dict[str, ChurnLog] = {}
    try:
        for index in range(args.accounts):
            name = f"bench-steady-{index:02d}"
            config = LazopSandboxConfig(
                latency=args.latency,
                listed_orders=args.listed_orders,
                listed_days=1.0,
                order_churn=args.churn,
                sellers=(f"seller-{index:02d}",),
            )
            sandboxes[name] = lazop_account(sessions, settings, name, config)
            logs[name] = ChurnLog(sandboxes[name])
        figures = _steady_run(args, env, settings, sessions, folder, sandboxes, logs)
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
    return figures


def _steady_run(
    args: argparse.Namespace,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Any],
    folder: Path,
    sandboxes: dict[str, LazopSandbox],
    logs: dict[str, ChurnLog],
) -> dict[str, Any]:
    worker = WorkerProcess(env, folder / "worker.log", concurrency=args.concurrency).start()
    try:
        wait_for(worker.ready, 60, "the worker ready")
        assert worker.process is not None
        # Changes from here on count: the worker is up and beat sends its first syncs now.
        since = datetime.now(UTC).replace(microsecond=0)
        cpu_start = group_cpu(worker.process.pid)
        time.sleep(args.seconds)
        until = datetime.now(UTC)

        def covered() -> bool:
            # Every account synced through the end, and every change up to it announced.
            with sessions() as session:
                rows = session.scalars(select(OrderSync)).all()
            if len(rows) < len(sandboxes) or any(
                r.synced_through is None or _aware(r.synced_through) < until for r in rows
            ):
                return False
            return _latencies(logs, _order_events(sessions, since), since, until)[1] == 0

        with contextlib.suppress(AssertionError):  # what is still missing is reported
            wait_for(
                covered,
                2 * args.every + 60,
                "every change announced",
                interval=min(3.0, args.every / 4),
            )
        settled = datetime.now(UTC)
        cpu_sync = group_cpu(worker.process.pid) - cpu_start
    finally:
        worker.stop()
    events = _order_events(sessions, since)
    waits, missing = _latencies(logs, events, since, until)
    stored = sum(1 for e in events if e[3] <= settled)
    calls = [c for s in sandboxes.values() for c in s.calls() if c.action != "/auth/token/create"]
    fetch = _fetch_by_id(args, env, settings, sessions, folder, sandboxes)
    per_order = cpu_sync / stored if stored else None
    return {
        "accounts": args.accounts,
        "churn_per_s": args.churn,
        "every_s": args.every,
        "seconds": args.seconds,
        "changes": len(waits) + missing,
        "announced": len(waits),
        "missing": missing,
        "p50_s": round(percentile(waits, 50), 1) if waits else None,
        "p95_s": round(percentile(waits, 95), 1) if waits else None,
        "max_s": round(max(waits), 1) if waits else None,
        "target_s": args.every + 5,
        "sync_calls": len(calls),
        "order_events": stored,
        "worker_cpu_s": round(cpu_sync, 2),
        "cpu_ms_per_stored_order": round(per_order * 1000, 2) if per_order else None,
        **fetch,
        "cpu_ratio_sync_to_fetch": (
            round(per_order * 1000 / fetch["fetch_cpu_ms_per_order"], 3)
            if per_order and fetch["fetch_cpu_ms_per_order"]
            else None
        ),
    }


def _fetch_by_id(
    args: argparse.Namespace,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Any],
    folder: Path,
    sandboxes: dict[str, LazopSandbox],
) -> dict[str, Any]:
    """`--fetches` orders of the accounts' listings fetched by id (`lazada.fetch_order`) by a
    worker of the same stack with the sync off: its CPU from ready to the last one stored."""
    worker = WorkerProcess(
        {**env, "LAZADA_ORDER_SYNC_EVERY": "0"}, folder / "fetch-worker.log", args.concurrency
    ).start()
    names = list(sandboxes)
    wanted = [
        (name, order_id)
        for index, name in enumerate(names)
        for order_id in sandboxes[name].listed_order_ids(sandboxes[name].sellers[0])[
            : args.fetches // len(names) + (1 if index < args.fetches % len(names) else 0)
        ]
    ]
    try:
        wait_for(worker.ready, 60, "the fetch worker ready")
        assert worker.process is not None
        app = plain_celery(settings.broker_url, settings.broker_transport_options())
        sent = datetime.now(UTC)
        cpu_start = group_cpu(worker.process.pid)
        started = time.monotonic()
        # Paced: each account is sent fetches at half its rate (a fetch is an order call and an
        # items call), so the figure is a fetch's own cost; `--fetch-burst` sends them all at
        # once, and the fetches waiting for their account's slots cost more task runs. The
        # accounts' listings number their orders alike: by id, the accounts take turns.
        pace = 0.0 if args.fetch_burst else 1.0 / (args.rate_limit / 2 * len(names))
        for index, (name, order_id) in enumerate(sorted(wanted, key=lambda w: w[1])):
            delay = started + index * pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            app.send_task(
                "lazada.fetch_order",
                args=[order_id],
                kwargs={"account": name},
                queue=settings.queue,
            )

        def fetched() -> bool:
            with sessions() as session:
                done = session.scalar(
                    select(func.count()).select_from(Order).where(Order.fetched_at >= sent)
                )
            return int(done or 0) >= len(wanted)

        wait_for(fetched, 120 + len(wanted), "the fetches", interval=0.2)
        cpu = group_cpu(worker.process.pid) - cpu_start
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    runs = sum(
        1
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if "Task lazada.fetch_order[" in line and " succeeded " in line
    )
    return {
        "fetches": len(wanted),
        "fetch_burst": bool(args.fetch_burst),
        "fetch_task_runs": runs,
        "fetch_seconds": round(elapsed, 1),
        "fetch_cpu_s": round(cpu, 2),
        "fetch_cpu_ms_per_order": round(cpu / len(wanted) * 1000, 2) if wanted else None,
    }


def show_steady(figures: dict[str, Any]) -> None:
    f = figures
    print(
        f"{f['accounts']} accounts x {f['churn_per_s']} changes/s, sync every {f['every_s']} s, "
        f"{f['seconds']} s: {f['changes']} changes, {f['missing']} not announced; listing to "
        f"event p50 {f['p50_s']} s, p95 {f['p95_s']} s, max {f['max_s']} s "
        f"(target p95 <= {f['target_s']} s); {f['sync_calls']} calls"
    )
    print(
        f"worker CPU {f['worker_cpu_s']} s for {f['order_events']} order events: "
        f"{f['cpu_ms_per_stored_order']} ms each; fetch by id: {f['fetches']} orders "
        f"({'at once' if f['fetch_burst'] else 'paced'}, {f['fetch_task_runs']} task runs), "
        f"{f['fetch_cpu_s']} s CPU, {f['fetch_cpu_ms_per_order']} ms each "
        f"(sync/fetch x{f['cpu_ratio_sync_to_fetch']})"
    )


REMOVE = "/product/remove"
SYNC_CALLS = ("/orders/get", "/orders/items/get")


def beside_removal(args: argparse.Namespace) -> dict[str, Any]:
    """One account at `--rate-limit`: a removal of `--skus` SKUs, and once it has made
    `--removal-head-start` calls, a first sync of `--orders` orders; calls/s per kind from the
    sandbox's record of the calls."""
    folder = Path(tempfile.mkdtemp(prefix="lazada-bench-beside-"))
    url = f"sqlite:///{folder / 'results.sqlite3'}"
    ensure_schema(url)
    env = worker_env(url, args.rate_limit, every=0, lookback=10 * 86400)
    settings = Settings.from_env(env)
    sessions = sessionmaker(get_engine(url), expire_on_commit=False)
    config = LazopSandboxConfig(latency=args.latency, listed_orders=args.orders, listed_days=5.0)
    sandbox = lazop_account(sessions, settings, ACCOUNT, config)
    worker = WorkerProcess(env, folder / "worker.log", concurrency=args.concurrency).start()
    key = f"bench-beside-{os.getpid()}-{int(time.time())}"
    skus = [f"{key}-{i:06d}" for i in range(args.skus)]
    removal_calls = math.ceil(args.skus / BATCH_SIZE)
    try:
        wait_for(worker.ready, 60, "the worker ready")
        sandbox.reset_calls()
        app = plain_celery(settings.broker_url, settings.broker_transport_options())
        app.send_task(
            "lazada.remove_products",
            args=[skus],
            kwargs={"key": key, "account": ACCOUNT},
            queue=settings.queue,
        )

        def removing() -> bool:
            return sum(1 for c in sandbox.calls() if c.action == REMOVE) >= int(
                args.removal_head_start
            )

        wait_for(removing, 120, "the removal under way", interval=0.1)
        sent = datetime.now(UTC)
        app.send_task("lazada.sync_orders", kwargs={"account": ACCOUNT}, queue=settings.queue)

        reader = _reader(url)
        bound = 120 + (removal_calls + args.orders / 30) / args.rate_limit * 2
        wait_for(lambda: _synced_since(reader, sent), bound, "the sync", interval=0.2)

        def removed() -> bool:
            with sessions() as session:
                return bool(
                    session.scalar(select(RemovalJob.finished_at).where(RemovalJob.key == key))
                )

        wait_for(removed, bound, "the removal", interval=0.2)
    finally:
        worker.stop()
        sandbox.stop()
    with sessions() as session:
        orders_stored = int(session.scalar(select(func.count()).select_from(Order)) or 0)
    calls = sorted(sandbox.calls(), key=lambda c: c.at)
    removes = [c.at for c in calls if c.action == REMOVE]
    syncs = [c.at for c in calls if c.action in SYNC_CALLS]
    sync_start, sync_end = syncs[0], syncs[-1]
    removal_end = removes[-1]

    def rate(times: list[float], start: float, end: float) -> float | None:
        if end - start <= 0:
            return None
        return round(sum(1 for t in times if start <= t < end) / (end - start), 2)

    during = rate(removes, sync_start, sync_end)
    after = rate(removes, sync_end, removal_end) if removal_end > sync_end + 1 else None
    # The removal's worst 5-second window while the sync ran: a share that holds throughout.
    windows = [
        rate(removes, at, at + 5.0) or 0.0
        for at in [sync_start + 5.0 * k for k in range(int((sync_end - sync_start) // 5))]
    ]
    return {
        "skus": args.skus,
        "orders": args.orders,
        "rate_limit": args.rate_limit,
        "latency": args.latency,
        "removal_calls": len(removes),
        "removal_calls_needed": removal_calls,
        "sync_calls": len(syncs),
        "orders_stored": orders_stored,
        "sync_seconds": round(sync_end - sync_start, 1),
        "sync_calls_per_s": rate(syncs, sync_start, sync_end),
        "removal_calls_per_s_before": rate(removes, removes[0], sync_start),
        "removal_calls_per_s_during": during,
        "removal_share_during": round(during / args.rate_limit, 3) if during else None,
        "removal_worst_5s_share_during": (
            round(min(windows) / args.rate_limit, 3) if windows else None
        ),
        "removal_calls_per_s_after": after,
        "removal_share_after": round(after / args.rate_limit, 3) if after else None,
        "total_seconds": round(removal_end - removes[0], 1),
    }


def show_beside(figures: dict[str, Any]) -> None:
    f = figures
    print(
        f"removal of {f['skus']} SKUs ({f['removal_calls']} calls) beside a first sync of "
        f"{f['orders']} orders ({f['sync_calls']} calls, {f['orders_stored']} stored in "
        f"{f['sync_seconds']} s, {f['sync_calls_per_s']} calls/s) at {f['rate_limit']}/s"
    )
    print(
        f"removal calls/s: before the sync {f['removal_calls_per_s_before']}, during "
        f"{f['removal_calls_per_s_during']} (share {f['removal_share_during']}, worst 5 s "
        f"{f['removal_worst_5s_share_during']}; target >= 0.45), after "
        f"{f['removal_calls_per_s_after']} (share {f['removal_share_after']}; target 1.0)"
    )


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "order-sync-first",
        help="the first order sync of an account, against the fewest calls and seconds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=10_000)
    p.add_argument("--rate-limit", type=float, default=5.0, help="the account's calls/s")
    p.add_argument("--latency", type=float, default=0.1, help="sandbox latency, s")
    p.add_argument(
        "--platforms", nargs="+", default=["lazop", "sellercenter"], choices=sorted(LISTING)
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(main=main, figures=first_syncs, show=show)

    p = scenarios.add_parser(
        "order-sync-steady",
        help="accounts whose orders change every second, synced by beat: listing-to-event delay "
        "and worker CPU per order against a fetch by id",
        description=steady.__doc__,
    )
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--churn", type=float, default=1.0, help="new or changed orders/s per account")
    p.add_argument("--every", type=float, default=60.0, help="LAZADA_ORDER_SYNC_EVERY, s")
    p.add_argument("--seconds", type=float, default=300.0, help="how long orders change, s")
    p.add_argument("--listed-orders", type=int, default=100, help="orders listed at the start")
    p.add_argument("--fetches", type=int, default=200, help="orders fetched by id afterwards")
    p.add_argument("--fetch-burst", action="store_true", help="send the fetches at once, not paced")
    p.add_argument("--rate-limit", type=float, default=5.0, help="each account's calls/s")
    p.add_argument("--latency", type=float, default=0.1, help="sandbox latency, s")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--json", action="store_true")
    p.set_defaults(main=printed(steady, show_steady), figures=steady, show=show_steady)

    p = scenarios.add_parser(
        "order-sync-beside-removal",
        help="a first order sync beside a removal of the same account: each one's calls/s",
        description=beside_removal.__doc__,
    )
    p.add_argument("--skus", type=int, default=20_000)
    p.add_argument("--orders", type=int, default=3_000)
    p.add_argument("--removal-head-start", type=int, default=25, help="removal calls first")
    p.add_argument("--rate-limit", type=float, default=5.0, help="the account's calls/s")
    p.add_argument("--latency", type=float, default=0.1, help="sandbox latency, s")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--json", action="store_true")
    p.set_defaults(
        main=printed(beside_removal, show_beside), figures=beside_removal, show=show_beside
    )
