"""What each of beat's periodic tasks costs a tick with idle accounts (issue 27, benchmark 2's
beat part): SQL statements and CPU per tick, at each `--accounts` count, with no work.

    python -m bench beat-cost [--accounts 20 1000] [--ticks 20]

A fresh PostgreSQL database holds only the accounts (legacy Seller Center accounts: stored,
ready, nothing to do) and order sync is off (LAZADA_ORDER_SYNC_EVERY=0). Each task of
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


def measure(accounts: int, ticks: int) -> dict[str, Any]:
    """Statements and CPU per tick of every beat task with `accounts` idle accounts."""
    from cryptography.fernet import Fernet

    with fresh_postgres_database(POSTGRES_URL) as database_url:
        os.environ.update(
            {
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": REDIS_URL,
                "LAZADA_ORDER_SYNC_EVERY": "0",
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
        return results


def figures(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {"ticks": args.ticks, "load_before": machine_load()}
    for accounts in args.accounts:
        # A process for each: the tasks keep their settings and engines for their process.
        command = [sys.executable, "-m", "bench.beat_cost", str(accounts), str(args.ticks)]
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
    p.set_defaults(main=main, figures=figures, show=show)


if __name__ == "__main__":  # one count of accounts (main runs each so)
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
