"""What each of beat's periodic tasks costs a tick with idle accounts (issue 27, benchmark 2's
beat part): SQL statements and CPU per tick, at each `--accounts` count, with no work.

    python -m bench beat-cost [--accounts 20 1000] [--ticks 20] [--sync-every S]

A fresh PostgreSQL database holds only the accounts (legacy Seller Center accounts: stored,
ready, nothing to do) and order sync is off (LAZADA_ORDER_SYNC_EVERY=0), or, with
`--sync-every S`, on every S seconds with each account synced a moment ago (none due during
the ticks); then every account is made due once and the starts of their syncs are measured
(`order_sync.due_syncs` called directly: its messages are counted, not sent), which is what
order sync costs beat per account per interval. Each task of
celeryconfig.beat_schedule is run in this process as beat's message would run it (the task's
own function, no broker round trip), `--ticks` times; statements are counted by a SQLAlchemy
event listener on the worker's engine, CPU is this thread's (time.thread_time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from bench.stack import POSTGRES_URL, REDIS_URL, REPO, BenchError, machine_load
from tests.support.processes import fresh_postgres_database


@contextmanager
def counting(engine: Any) -> Iterator[list[str]]:
    """The statements `engine` runs meanwhile."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _tasks() -> dict[str, Callable[[], Any]]:
    """Each beat entry's task, by its schedule name, runnable without a message."""
    import importlib

    import celeryconfig
    from worker.celery_app import app

    for module in celeryconfig.include:  # registers the tasks, as a worker does
        importlib.import_module(module)
    return {
        name: app.tasks[entry["task"]].run for name, entry in celeryconfig.beat_schedule.items()
    }


def measure(accounts: int, ticks: int, sync_every: float = 0.0) -> dict[str, Any]:
    """Statements and CPU per tick of every beat task with `accounts` idle accounts."""
    from cryptography.fernet import Fernet

    with fresh_postgres_database(POSTGRES_URL) as database_url:
        os.environ.update(
            {
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": REDIS_URL,
                "LAZADA_ORDER_SYNC_EVERY": str(sync_every),
                "LAZADA_SECRET_KEY": Fernet.generate_key().decode(),
            }
        )
        from sqlalchemy.orm import sessionmaker

        from worker.accounts.store import add_account
        from worker.db.engine import get_engine
        from worker.db.schema import ensure_schema
        from worker.settings import Settings

        ensure_schema(database_url)
        settings = Settings.from_env()
        engine = get_engine(database_url)
        with sessionmaker(engine).begin() as session:
            for n in range(accounts):
                credentials = {"user_id": f"idle-{n}@lazada-worker.test", "api_key": "k" * 40}
                add_account(
                    session,
                    settings,
                    f"idle-{n:05d}",
                    "sellercenter",
                    credentials,
                    "http://127.0.0.1:9/",
                )
        if sync_every:
            _synced_now(engine)
        results: dict[str, Any] = {}
        for name, run in _tasks().items():
            run()  # once untimed: imports, the engine's connections, compiled statements
            statements: list[int] = []
            cpu: list[float] = []
            for _ in range(ticks):
                with counting(engine) as seen:
                    started = time.thread_time()
                    run()
                    cpu.append(1000 * (time.thread_time() - started))
                statements.append(len(seen))
            results[name] = {
                "statements_per_tick": max(statements),
                "cpu_ms_per_tick_median": round(statistics.median(cpu), 2),
            }
        if sync_every:
            results["every account due once"] = _all_due(engine, settings, accounts)
        return results


def _synced_now(engine: Any) -> None:
    """Every account's sync finished a moment ago: none is due for `--sync-every` s."""
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO order_syncs (account, synced_through, synced_at, follow, cursor_ids,"
                " in_second, second_offset, second_found, pending, chunk, run_new, run_changed,"
                " last_new, last_changed, attempts, created_at, updated_at)"
                " SELECT name, now(), now(), false, '[]', false, 0, false, '[]', 0, 0, 0, 0, 0,"
                " 0, now(), now() FROM accounts"
            )
        )


def _all_due(engine: Any, settings: Any, accounts: int) -> dict[str, Any]:
    """One tick at which every account's sync is due: statements, CPU and messages, in all
    and per account."""
    from sqlalchemy import text
    from sqlalchemy.orm import sessionmaker

    from worker.services import order_sync

    with engine.begin() as connection:
        connection.execute(text("UPDATE order_syncs SET synced_through = now() - interval '1 day'"))
    with counting(engine) as seen:
        started = time.thread_time()
        messages = order_sync.due_syncs(sessionmaker(engine), settings)
        cpu_ms = 1000 * (time.thread_time() - started)
    return {
        "messages": len(messages),
        "statements": len(seen),
        "cpu_ms": round(cpu_ms, 1),
        "statements_per_account": round(len(seen) / accounts, 2),
        "cpu_ms_per_account": round(cpu_ms / accounts, 3),
    }


def figures(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {"ticks": args.ticks, "load_before": machine_load()}
    for accounts in args.accounts:
        # A process for each: the tasks keep their settings and engines for their process.
        command = [sys.executable, "-m", "bench.beat_cost", str(accounts), str(args.ticks)]
        command.append(str(args.sync_every))
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
        if result.returncode != 0:
            raise BenchError(f"beat-cost with {accounts} accounts failed:\n{result.stderr[-3000:]}")
        found[f"{accounts} accounts"] = json.loads(result.stdout)
    found["load_after"] = machine_load()
    return found


def show(found: dict[str, Any]) -> None:
    print(json.dumps(found, indent=2))


def main(args: argparse.Namespace) -> int:
    try:
        show(figures(args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "beat-cost",
        help="statements and CPU per tick of each beat task, idle accounts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--accounts", type=int, nargs="+", default=[20, 1000])
    p.add_argument("--ticks", type=int, default=20)
    p.add_argument(
        "--sync-every",
        type=float,
        default=0.0,
        help="order sync on, every S seconds (default 0: off)",
    )
    p.set_defaults(main=main, figures=figures, show=show)


if __name__ == "__main__":  # one count of accounts (main runs each so)
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))))
