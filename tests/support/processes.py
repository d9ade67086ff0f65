"""Test support: real databases, brokers and worker processes.

The URLs of the services come from the environment (.ci/run always sets them):
LAZADA_TEST_POSTGRES_URL, LAZADA_TEST_REDIS_URL, LAZADA_TEST_AMQP_URL. A test that needs one
that is not set is skipped with the reason shown; one that is set but unreachable fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def service_url(name: str) -> str:
    variable = f"LAZADA_TEST_{name.upper()}_URL"
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set (.ci/run sets it)")
    return _own_redis_database(url) if name == "redis" else url


def _own_redis_database(url: str) -> str:
    """Each test process (pytest -n) its own Redis database, counting down from the URL's: the
    rate limit's calendar is keyed by account name, and two tests running at once with one
    name (a lazop test's account) must not share an account's slots."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) - int(worker.removeprefix("gw") or 0)
    return urlunsplit(parts._replace(path=f"/{database % 16}"))


@contextmanager
def fresh_postgres_database(
    server_url: str | None = None, template: str | None = None
) -> Iterator[str]:
    """A new PostgreSQL database for one test (or one benchmark run), dropped afterwards:
    empty, or a copy of the database named `template` (which nobody may be connected to).

    `server_url` names the server and the credentials; by default the tests' own.
    """
    import psycopg

    base = make_url(server_url or service_url("postgres"))
    name = f"lw_test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        forget_engines(name)
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def forget_engines(database: str) -> None:
    """Close this process's connections to the database named `database`."""
    from worker.db.engine import _engines

    for url, engine in list(_engines.items()):
        if make_url(url).database == database:
            engine.dispose()
            del _engines[url]


def wait_for(
    condition: Callable[[], T],
    timeout: float = 60.0,
    what: str = "condition",
    interval: float = 0.2,
) -> T:
    """Poll every `interval` s until `condition()` is truthy; a liveness deadline, not a timing
    assertion (a benchmark that times the moment something happens looks more often)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(interval)


class WorkerProcess:
    """`lazada-worker run` in a child process, with its log kept for failing tests."""

    def __init__(
        self, env: dict[str, str], log_path: Path, concurrency: int = 8, only: str = "all"
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.only = only
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        command = ["run", f"--concurrency={self.concurrency}", f"--only={self.only}"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
            start_new_session=True,  # kill() takes the whole process group
        )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """kill -9, as a crash would: no shutdown, no message given back."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        """Celery logs "<nodename> ready." once the consumer is attached to its queues."""
        return " ready." in self.log()

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None


def plain_celery(broker_url: str, transport_options: dict[str, Any]) -> Any:
    """A Celery app that knows nothing of this project: how the shop backend enqueues."""
    from celery import Celery

    app = Celery("shop-backend", broker=broker_url)
    app.conf.broker_transport_options = transport_options
    app.conf.task_serializer = "json"
    return app
