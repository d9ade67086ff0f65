"""`lazada-worker demo`: the whole job on embedded defaults, against the local sandboxes.

Starts both sandboxes (the legacy Seller Center and the Lazada Open Platform), stores an
account on each (the lazop one authorized with the sandbox's code, as `accounts authorize`
does), starts a worker with beat (a child process, on SQLite and the embedded broker, in a
fresh folder), enqueues sample work of every kind for both accounts side by side, shows
progress, and prints a summary per account.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from worker.accounts import tokens
from worker.accounts.store import add_account
from worker.db.engine import get_engine
from worker.db.models import ApiCall, ImageJob, Order, OrderSync, RemovalJob
from worker.db.schema import ensure_schema
from worker.platforms.lazop.client import LazopClient
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.sellercenter import Sandbox, SandboxConfig
from worker.services import documents
from worker.services.documents import removal_progress
from worker.services.order_sync import sync_state
from worker.settings import Settings

DEMO_SKUS = [f"DEMO-SKU-{n:04d}" + ("-FAIL" if n % 40 == 0 else "") for n in range(1, 301)]
DEMO_ORDERS = [190, 1001, 1002, 1003, 900_000_001]  # the last one does not exist (E016)
DEMO_LISTED_ORDERS = 120
DEMO_IMAGES = [f"https://images.example.com/demo/{n}.jpg" for n in range(1, 11)] + [
    "https://images.example.com/demo/broken-link.jpg"
]


DEMO_ACCOUNT = "demo-sellercenter"  # the legacy sandbox's seller
DEMO_LAZOP_ACCOUNT = "demo-lazop"  # a seller of the LAZOP sandbox
DEMO_ACCOUNTS = {
    DEMO_ACCOUNT: "sellercenter: the legacy Seller Center API",
    DEMO_LAZOP_ACCOUNT: "lazop: the Lazada Open Platform",
}
ACCOUNT_VARIABLES = (
    "CELERY_BROKER_URL",
    "LAZADA_API_URL",
    "LAZADA_USER_ID",
    "LAZADA_API_KEY",
    "LAZADA_API_KEY_FILE",
    "LAZADA_DEFAULT_ACCOUNT",
    "LAZADA_SECRET_KEY",
    "LAZADA_SECRET_KEY_FILE",
)


def run_demo(concurrency: int = 8, timeout: float = 180.0) -> int:
    folder = Path(tempfile.mkdtemp(prefix="lazada-worker-demo-"))
    knobs: dict[str, Any] = {
        "latency": 0.05,
        "fault_rate": 0.05,
        # "slow" answers take longer than the client's read timeout: real, but dull to watch.
        "image_job_seconds": (2.0, 6.0),
        # Orders the sellers' listings hold, and new ones while the demo runs: they arrive
        # by order sync, without their ids being named.
        "listed_orders": DEMO_LISTED_ORDERS,
        "listed_days": 2.0,
        "order_churn": 0.5,
    }
    config = replace(
        SandboxConfig.from_env(),  # the account (LAZADA_SANDBOX_USER_ID, _API_KEY) and seed
        fault_kinds=("http500", "http502_html", "e006", "e901", "truncated"),
        **knobs,
    )
    lazop_config = LazopSandboxConfig(**knobs)
    with Sandbox(config) as sandbox, LazopSandbox(lazop_config, port=0) as lazop:
        # The embedded defaults in a folder of the demo's own, and no account but the demo's:
        # the shell's settings must not send the demo's work elsewhere.
        for variable in ACCOUNT_VARIABLES:
            os.environ.pop(variable, None)
        os.environ.update(
            {
                "DATABASE_URL": f"sqlite:///{folder / 'lazada-worker.sqlite3'}",
                "LAZADA_REDISPATCH_AFTER": "30",
                "LAZADA_DEFAULT_ACCOUNT": DEMO_ACCOUNT,
                "LAZADA_ORDER_SYNC_EVERY": "10",  # a sync every 10 s shows orders arrive
            }
        )
        print(
            f"sandboxes at {sandbox.url} (Seller Center) and {lazop.url} (Open Platform); "
            f"data in {folder}",
            file=sys.stderr,
        )
        _store_accounts(sandbox, lazop)
        worker = _start_worker(folder, concurrency)
        try:
            return _drive(
                {DEMO_ACCOUNT: sandbox, DEMO_LAZOP_ACCOUNT: lazop}, worker, timeout, folder
            )
        finally:
            _stop(worker)


def _store_accounts(sandbox: Any, lazop: Any) -> None:
    """The sandboxes' sellers as stored accounts (secrets encrypted with the key file the
    embedded defaults make beside the database); the lazop one authorized with a code from
    its sandbox, as `lazada-worker accounts authorize NAME --code CODE` does."""
    settings = Settings.from_env()
    ensure_schema(settings.database_url)
    sessions = sessionmaker(get_engine(settings.database_url), expire_on_commit=False)
    with sessions.begin() as session:
        add_account(
            session,
            settings,
            DEMO_ACCOUNT,
            "sellercenter",
            {"user_id": sandbox.user_id, "api_key": sandbox.api_key},
            api_url=sandbox.url,
        )
        add_account(
            session,
            settings,
            DEMO_LAZOP_ACCOUNT,
            "lazop",
            {"app_key": lazop.app_key, "app_secret": lazop.app_secret, "auth_url": lazop.auth_url},
            api_url=lazop.api_url,
        )
    seller = lazop.sellers[0]
    with LazopClient(
        lazop.api_url, lazop.app_key, lazop.app_secret, auth_url=lazop.auth_url
    ) as client:
        grant = client.create_token(lazop.authorization_code(seller))
    tokens.store_grant(sessions, settings, DEMO_LAZOP_ACCOUNT, grant)


def _start_worker(folder: Path, concurrency: int) -> subprocess.Popen[bytes]:
    log = (folder / "worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run", f"--concurrency={concurrency}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
        start_new_session=True,  # a kill takes its embedded beat too, not the worker alone
    )


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # Tasks still under way (a call waits up to its read timeout). The whole group is
            # killed: killing the worker alone would leave its embedded beat running.
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _drive(
    sandboxes: dict[str, Any], worker: subprocess.Popen[bytes], timeout: float, folder: Path
) -> int:
    # Imported here: the Celery app reads the environment as it loads, and it must read the
    # demo's own (set by run_demo), not the shell's.
    from worker.celery_app import app

    settings = Settings.from_env()
    sessions = sessionmaker(get_engine(settings.database_url), expire_on_commit=False)
    started = time.monotonic()
    for account in DEMO_ACCOUNTS:
        work = {"account": account}
        app.send_task(
            "lazada.remove_products", args=[DEMO_SKUS], kwargs={"key": "demo-removal", **work}
        )
        for order_id in DEMO_ORDERS:
            app.send_task("lazada.fetch_order", args=[order_id], kwargs=work)
        app.send_task(
            "lazada.migrate_images", args=[DEMO_IMAGES], kwargs={"key": "demo-images", **work}
        )
    print(
        f"enqueued for each of {', '.join(DEMO_ACCOUNTS)}: removal of {len(DEMO_SKUS)} SKUs, "
        f"{len(DEMO_ORDERS)} order fetches, migration of {len(DEMO_IMAGES)} images",
        file=sys.stderr,
    )
    with _DemoProgress() as shown:
        while True:
            progress = _progress(sessions, settings)
            shown.update(progress, time.monotonic() - started)
            if progress["done"]:
                break
            if worker.poll() is not None:
                print(f"the worker stopped (see {folder / 'worker.log'})", file=sys.stderr)
                return 1
            if time.monotonic() - started > timeout:
                print(f"not finished after {timeout:.0f}s (see {folder / 'worker.log'})")
                return 1
            time.sleep(0.5)
    print(f"\ndone in {time.monotonic() - started:.1f}s")
    for account, sandbox in sandboxes.items():
        _summary(sessions, settings, account, sandbox)
    # The demo opens nothing by itself; the console reads this same database.
    print(f"\nsee it all in the console: {console_command(settings)}")
    print("  then open http://127.0.0.1:8700/")
    return 0


class _DemoProgress:
    """Three bars (SKUs, orders, image jobs) on a terminal; a line every 2 s elsewhere."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_line: float | None = None
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            console=Console(file=sys.stderr),
            disable=not self.tty,
        )
        self.tasks = {
            name: self.progress.add_task(name, total=None, note="")
            for name in ("SKUs", "orders", "image jobs")
        }

    def __enter__(self) -> _DemoProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, progress: dict[str, Any], elapsed: float) -> None:
        parts = {
            "SKUs": (progress["skus_final"], len(DEMO_SKUS) * len(DEMO_ACCOUNTS)),
            "orders": (progress["orders_final"], len(DEMO_ORDERS) * len(DEMO_ACCOUNTS)),
            "image jobs": (progress["images_final"], progress["images_total"] or None),
        }
        calls = f"API calls {progress['api_calls']}"
        for name, (done, total) in parts.items():
            note = calls if name == "SKUs" else ""
            self.progress.update(self.tasks[name], completed=done, total=total, note=note)
        if self.tty or not (self.last_line is None or elapsed - self.last_line >= 2):
            return
        self.last_line = elapsed
        counts = " | ".join(f"{name} {n}/{total or '?'}" for name, (n, total) in parts.items())
        print(f"[{elapsed:5.1f}s] {counts} | {calls}", file=sys.stderr, flush=True)


def _progress(sessions: Any, settings: Any) -> dict[str, Any]:
    with sessions() as session:
        jobs = session.scalars(select(RemovalJob).where(RemovalJob.key == "demo-removal")).all()
        progress = [removal_progress(session, a, "demo-removal") for a in DEMO_ACCOUNTS]
        skus_final = sum(p[0] for p in progress if p is not None)
        orders = session.execute(
            select(Order.state, Order.next_attempt_at).where(Order.order_id.in_(DEMO_ORDERS))
        ).all()
        syncs = session.scalars(
            select(OrderSync).where(OrderSync.synced_through.is_not(None))
        ).all()
        images = list(session.scalars(select(ImageJob.state)))
        api_calls = session.scalar(select(func.count()).select_from(ApiCall))
    orders_final = sum(1 for state, due in orders if state != "pending" and due is None)
    images_final = sum(1 for state in images if state != "pending")
    return {
        "skus_final": skus_final,
        "orders_final": orders_final,
        "images_final": images_final,
        "images_total": len(images),
        "api_calls": api_calls or 0,
        "done": len(jobs) == len(DEMO_ACCOUNTS)
        and all(job.finished_at is not None for job in jobs)
        and orders_final == len(DEMO_ORDERS) * len(DEMO_ACCOUNTS)
        and images
        and images_final == len(images)
        and len(syncs) == len(DEMO_ACCOUNTS),
    }


def _summary(sessions: Any, settings: Any, account: str, sandbox: Any) -> None:
    with sessions() as session:
        job = documents.removal_job(session, account, "demo-removal")
        orders = [documents.order(session, account, o) for o in DEMO_ORDERS]
        images = documents.image_jobs(session, account, key="demo-images")
        calls = Counter(
            f"{action} {outcome}"
            for action, outcome in session.execute(
                select(ApiCall.action, ApiCall.outcome).where(ApiCall.account == account)
            )
        )
        failures = documents.failures(session, account)
    assert job is not None
    print(f"\n== account {account} ({DEMO_ACCOUNTS[account]})")
    print(f"removal job {job['key']}: {job['removed']} removed, {job['failed']} failed")
    failed = [sku for sku in job["skus"] if sku["state"] == "failed"]
    for reason, count in documents.failure_reasons(failed):
        print(f"  {count} SKU(s) failed: {reason}")
    print(
        "orders (GetOrder gives each item group's status: one status is the order's; an open "
        f"order is fetched again every {settings.order_refresh_after:g} s until all are final):"
    )
    for order in orders:
        if order is None:
            continue
        if order["state"] == "fetched":
            print(
                f"  order {order['order_id']} (#{order['order_number']}): fetched; "
                f"{documents.order_status_text(order)}; "
                f"{order['customer_first_name']} {order['customer_last_name']}, {order['price']}"
            )
        else:
            code = documents.error_code_text(order["error_code"])
            print(f"  order {order['order_id']}: {order['state']}: {code} {order['message']}")
    with sessions() as session:
        state = sync_state(session, account)
        synced = session.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.account == account, Order.order_id.not_in(DEMO_ORDERS))
        )
    through = state["orders_synced_through"]
    print(
        f"order sync: {synced} orders arrived without their ids being named (synced through "
        f"{through.isoformat() if through else '-'}; `lazada-worker orders --account {account}`)"
    )
    for image in images:
        print(
            f"image job {image['request_id']}: {image['state']}, {len(image['images'])} "
            f"image(s), {len(image['errors'])} error(s) after {image['polls']} poll(s)"
        )
        for error in image["errors"]:
            print(f"  {error['original_url']}: {error['message']}")
    print("API calls: " + ", ".join(f"{name}: {n}" for name, n in sorted(calls.items())))
    stats = sandbox.stats()
    print(
        f"sandbox: {stats['calls']} calls served, "
        f"{sum(stats['faults_injected'].values())} transient faults injected, "
        f"{stats['skus_removed_more_than_once']} SKUs removed more than once"
    )
    print(f"{len(failures)} failure(s) recorded; see them with:")
    print(f"  {failures_command(settings, account)}")


def console_command(settings: Any) -> str:
    """The shell command that serves the console on the demo's database, as printed."""
    return failures_command(settings, "").replace(" failures --account ''", " web")


def failures_command(settings: Any, account: str) -> str:
    """The shell command that lists the demo's failures, as printed: failures are per account,
    so it names the account as well as the database; and it names the console script beside
    this interpreter, which need not be on PATH (`.venv/bin`)."""
    script = Path(sys.executable).parent / "lazada-worker"
    program = [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]
    env = f"DATABASE_URL={shlex.quote(settings.database_url)}"
    return " ".join([env, shlex.join([*program, "failures", "--account", account])])
