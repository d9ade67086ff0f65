"""Order sync: the first sync of an account's orders, against the fewest calls it can take.

`order-sync-first`: a sandbox of each platform whose listing holds N orders updated over
the days before (no two in one second more than chance puts there), a worker on the embedded
stack, the account's rate limit and the sandbox's latency as given; `lazada.sync_orders` sent,
the sync timed from the send until the account's sync point is past the send. The fewest
calls: N/100 listing pages (and the short page that ends the listing) and, on the Open
Platform, N/50 items calls; the fewest seconds: those calls at the rate.

The sandboxes run in this process (their threads share its interpreter with the polling of
the database only, which is light); the worker is a `lazada-worker run` child process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tests.support.processes import WorkerProcess, plain_celery, wait_for
from worker.accounts import tokens
from worker.accounts.store import add_account
from worker.db.engine import get_engine
from worker.db.models import OrderSync
from worker.db.schema import ensure_schema
from worker.platforms.lazop.client import LazopClient
from worker.sandbox.lazop import LazopSandbox, LazopSandboxConfig
from worker.sandbox.sellercenter import Sandbox, SandboxConfig
from worker.settings import Settings

ACCOUNT = "bench-shop"
LISTING = {"sellercenter": "GetOrders", "lazop": "/orders/get"}


def first_sync(platform: str, orders: int, rate: float, latency: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="lazada-bench-sync-"))
    url = f"sqlite:///{folder / 'results.sqlite3'}"
    ensure_schema(url)
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
        },
        "DATABASE_URL": url,
        "LAZADA_QUEUE": "bench-sync",
        "LAZADA_RATE_LIMIT": str(rate),
        "LAZADA_ORDER_SYNC_EVERY": "0",
        "LAZADA_ORDER_SYNC_LOOKBACK": str(10 * 86400),
    }
    settings = Settings.from_env(env)
    sessions = sessionmaker(get_engine(url), expire_on_commit=False)
    knobs = {"latency": latency, "listed_orders": orders, "listed_days": 5.0}
    sandbox: Any
    if platform == "lazop":
        sandbox = LazopSandbox(LazopSandboxConfig(**knobs), port=0).start()
        with sessions.begin() as session:
            add_account(
                session,
                settings,
                ACCOUNT,
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
        tokens.store_grant(sessions, settings, ACCOUNT, grant)
        sandbox.listed_order_ids(sandbox.sellers[0])
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

        def synced() -> bool:
            with sessions() as session:
                row = session.scalars(select(OrderSync)).first()
            return bool(
                row is not None
                and row.run_until is None
                and row.synced_through is not None
                and row.synced_through >= sent
            )

        wait_for(synced, 900, "the first sync", interval=0.05)
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
    }


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
