"""The console on a large PostgreSQL database.

    python -m bench console-pages [--skus 1000000] [--orders 100000] [--accounts 1000]
        [--audit 1000000] [--requests 40]
    python -m bench console-push [--rate 100] [--seconds 60]

`console-pages`: a fresh database filled with generate_series (a removal job per account, its
SKUs as rows, some jobs still running; orders; API call rows), then `/metrics` and `/` asked
for `--requests` times each over HTTP from a `web` process's app: p50 and p95 of each, and the
database's own time for them (pg_stat_statements is not assumed: the time spent in the
driver's execute calls, summed per request).

`console-push`: a lazop account with a seller id, the console, and a worker (`lazada-worker
run`) consuming the fetches the pushes enqueue (they fail at the API, which is not there: the
worker's work is real); signed trade order pushes at `--rate` a second for `--seconds`, each
for a new order: p50, p99 and the slowest answer.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import event, text

from bench.measure import percentile, printed
from bench.stack import POSTGRES_URL, REDIS_URL


def _database() -> tuple[str, Any]:
    """A fresh PostgreSQL database (dropped by the caller)."""
    from sqlalchemy import create_engine

    name = f"lw_console_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    return url, admin


def _drop(admin: Any, url: str) -> None:
    from worker.db.engine import dispose_engines

    dispose_engines()
    name = url.rsplit("/", 1)[1]
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _fill(url: str, key: str, skus: int, orders: int, accounts: int, audit: int) -> None:
    from cryptography.fernet import Fernet

    from worker.db.engine import get_engine
    from worker.db.schema import ensure_schema

    ensure_schema(url)
    secret = Fernet(key.encode()).encrypt(b"bench-api-key").decode()
    per_job = max(skus // accounts, 1)
    statements = [
        # Accounts: legacy ones (no tokens), every tenth needing authorization.
        """INSERT INTO accounts (name, platform, api_url, credentials, state, secret, created_at,
               updated_at)
           SELECT 'acct-' || n, 'sellercenter', 'https://api.example.com/',
                  json_build_object('user_id', 'u' || n || '@example.com'),
                  CASE WHEN n % 10 = 0 THEN 'needs_authorization' ELSE 'ready' END,
                  :secret, now(), now()
           FROM generate_series(1, :accounts) n""",
        # A job per account; one in twenty still running (unfinished, SKUs partly done).
        """INSERT INTO removal_jobs (account, key, total, pending_batches, created_at,
               finished_at)
           SELECT 'acct-' || n, 'job-' || n, :per_job,
                  CASE WHEN n % 20 = 0 THEN 1 ELSE 0 END,
                  now() - (n || ' seconds')::interval,
                  CASE WHEN n % 20 = 0 THEN NULL ELSE now() END
           FROM generate_series(1, :accounts) n""",
        """INSERT INTO removal_batches (account, job_id, state, attempts, next_attempt_at,
               first_position)
           SELECT j.account, j.id, CASE WHEN j.finished_at IS NULL THEN 'pending' ELSE 'done' END,
                  0, now(), 0
           FROM removal_jobs j""",
        """INSERT INTO removal_skus (account, job_id, batch_id, position, sku, state, attempts,
               updated_at)
           SELECT j.account, j.id, b.id, p, 'SKU-' || j.id || '-' || p,
                  CASE WHEN j.finished_at IS NULL AND p % 2 = 0 THEN 'pending'
                       WHEN p % 50 = 0 THEN 'failed' ELSE 'removed' END,
                  1, now()
           FROM removal_jobs j JOIN removal_batches b ON b.job_id = j.id,
                generate_series(0, :per_job - 1) p""",
        """INSERT INTO orders (account, order_id, state, statuses, is_open, address_billing,
               address_shipping, extra_attributes, raw, attempts, next_attempt_at, created_at,
               updated_at)
           SELECT 'acct-' || (1 + n % :accounts), n, 'fetched', '["pending"]', true, '{}', '{}',
                  '{}', '{}', 1, NULL, now(), now() - (n || ' seconds')::interval
           FROM generate_series(1, :orders) n""",
        """INSERT INTO api_calls (account, at, action, outcome, duration_ms)
           SELECT 'acct-' || (1 + n % :accounts), now() - (n || ' seconds')::interval,
                  'RemoveProduct', CASE WHEN n % 100 = 0 THEN 'api_error' ELSE 'ok' END, 120
           FROM generate_series(1, :audit) n""",
        # What the transactions that record calls add to (worker.db.audit).
        """INSERT INTO api_call_counts (account, outcome, calls)
           SELECT account, outcome, count(*) FROM api_calls GROUP BY account, outcome""",
        "ANALYZE",
    ]
    values = {
        "secret": secret,
        "accounts": accounts,
        "per_job": per_job,
        "orders": orders,
        "audit": audit,
    }
    engine = get_engine(url)
    for statement in statements:
        with engine.begin() as connection:
            used = {k: v for k, v in values.items() if f":{k}" in statement}
            connection.execute(text(statement), used)


def _serve(app: Any) -> tuple[str, Any]:
    import waitress

    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def pages(args: argparse.Namespace) -> dict[str, Any]:
    """The p50 and p95 of `/metrics` and `/`, and the database's p95 share of them."""
    from cryptography.fernet import Fernet

    from worker.db.engine import get_engine
    from worker.settings import Settings
    from worker.web.app import Console

    key = Fernet.generate_key().decode()
    url, admin = _database()
    try:
        started = time.monotonic()
        _fill(url, key, args.skus, args.orders, args.accounts, args.audit)
        print(f"filled in {time.monotonic() - started:.0f} s")
        settings = Settings.from_env(
            {"DATABASE_URL": url, "LAZADA_SECRET_KEY": key, "CELERY_BROKER_URL": REDIS_URL}
        )
        engine = get_engine(url)
        spent = threading.local()

        @event.listens_for(engine, "before_cursor_execute")
        def _before(*_: Any) -> None:
            spent.started = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(*_: Any) -> None:
            spent.total = getattr(spent, "total", 0.0) + time.perf_counter() - spent.started

        console = Console(settings, "http://127.0.0.1:8700", send=lambda m: None)
        database_ms: dict[str, list[float]] = {"/metrics": [], "/": []}

        def app(environ: dict[str, Any], start: Any) -> Any:
            spent.total = 0.0
            body = list(console(environ, start))
            database_ms[environ["PATH_INFO"]].append(spent.total * 1000)
            return body

        base, server = _serve(app)
        figures: dict[str, Any] = {}
        with requests.Session() as session:
            for path in ("/metrics", "/"):
                session.get(base + path, timeout=60).raise_for_status()  # warm
                database_ms[path].clear()
                times = []
                for _ in range(args.requests):
                    at = time.perf_counter()
                    session.get(base + path, timeout=60).raise_for_status()
                    times.append((time.perf_counter() - at) * 1000)
                figures[path] = {
                    "p50_ms": round(percentile(times, 50), 1),
                    "p95_ms": round(percentile(times, 95), 1),
                    "database_p95_ms": round(percentile(database_ms[path], 95), 1),
                }
        server.close()
    finally:
        _drop(admin, url)
    return figures


def push(args: argparse.Namespace) -> dict[str, Any]:
    """The push receiver's answer times at a steady rate, beside a working worker."""
    from cryptography.fernet import Fernet

    from worker.accounts.store import add_account
    from worker.db.engine import get_engine
    from worker.db.models import Account
    from worker.db.schema import ensure_schema
    from worker.settings import Settings
    from worker.web.app import Console

    key = Fernet.generate_key().decode()
    url, admin = _database()
    folder = Path(tempfile.mkdtemp(prefix="lw-push-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LAZADA_", "CELERY_"))},
        "DATABASE_URL": url,
        "LAZADA_SECRET_KEY": key,
        "CELERY_BROKER_URL": REDIS_URL,
        "LAZADA_QUEUE": f"lw-push-{uuid.uuid4().hex[:8]}",
    }
    worker = None
    try:
        ensure_schema(url)
        settings = Settings.from_env(env)
        from sqlalchemy.orm import sessionmaker

        sessions = sessionmaker(get_engine(url))
        with sessions.begin() as session:
            add_account(
                session,
                settings,
                "shop",
                "lazop",
                {"app_key": "100200", "app_secret": "bench-secret", "country": "sg"},
            )
            session.query(Account).filter_by(name="shop").one().seller_id = "555"
        log = open(folder / "worker.log", "w")  # noqa: SIM115 (open while the worker runs)
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run", "--concurrency", "4"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        os.environ.update({k: env[k] for k in ("CELERY_BROKER_URL", "LAZADA_QUEUE")})
        console = Console(settings, "http://127.0.0.1:8700")
        base, server = _serve(console)
        time.sleep(5)  # the worker starts
        warm = b'{"message_type": 1}'  # verified, not an order: loads the secrets and the app
        requests.post(
            base + "/lazada/push",
            data=warm,
            headers={
                "Authorization": hmac.new(b"bench-secret", b"100200" + warm, "sha256").hexdigest()
            },
            timeout=30,
        ).raise_for_status()
        times: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        senders = 8  # each sends every senders-th push on its own schedule: the rate holds
        total = int(args.rate * args.seconds)
        started = time.monotonic() + 0.5

        def send(first: int) -> None:
            with requests.Session() as http:
                for n in range(first, total, senders):
                    time.sleep(max(0.0, started + n / args.rate - time.monotonic()))
                    body = json.dumps(
                        {
                            "message_type": 0,
                            "seller_id": "555",
                            "timestamp": int(time.time()),
                            "data": {"trade_order_id": str(10_000_000 + n), "order_status": "paid"},
                        }
                    ).encode()
                    signature = hmac.new(
                        b"bench-secret", b"100200" + body, hashlib.sha256
                    ).hexdigest()
                    at = time.perf_counter()
                    answer = http.post(
                        base + "/lazada/push",
                        data=body,
                        headers={"Authorization": signature},
                        timeout=10,
                    )
                    took_ms = (time.perf_counter() - at) * 1000
                    with lock:
                        times.append(took_ms)
                        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
        server.close()
        return {
            "pushes": len(times),
            "seconds": round(took, 1),
            "statuses": statuses,
            "p50_ms": round(percentile(times, 50), 1),
            "p99_ms": round(percentile(times, 99), 1),
            "max_ms": round(max(times), 1),
            "worker_running_at_end": worker.poll() is None,
        }
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        _drop(admin, url)


def show(figures: dict[str, Any]) -> None:
    print(json.dumps(figures, indent=2))


def register(scenarios: Any) -> None:
    p = scenarios.add_parser("console-pages", help="/metrics and / on a large database")
    p.add_argument("--skus", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--accounts", type=int, default=1_000)
    p.add_argument("--audit", type=int, default=1_000_000)
    p.add_argument("--requests", type=int, default=40)
    p.set_defaults(main=printed(pages, show), figures=pages, show=show)
    p = scenarios.add_parser("console-push", help="the push receiver beside a worker")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.set_defaults(main=printed(push, show), figures=push, show=show)
