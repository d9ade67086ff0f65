"""Fixtures for the worker's tests: databases, settings, sessions, a client, whole stacks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.databases import migrated_postgres, migrated_sqlite
from tests.support.processes import (
    WorkerProcess,
    plain_celery,
    service_url,
)
from worker.accounts.platforms import PlatformFor
from worker.accounts.store import add_account
from worker.db.audit import record_call
from worker.db.engine import get_engine
from worker.db.schema import ensure_schema
from worker.platforms.sellercenter import SellerCenterClient, SellerCenterPlatform
from worker.sandbox.sellercenter import Sandbox
from worker.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated results database: SQLite, and PostgreSQL where CI gives its URL."""
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path / "results.sqlite3")
        return
    with migrated_postgres() as url:
        yield url


def sandbox_env(sandbox: Sandbox) -> dict[str, str]:
    return {
        "LAZADA_API_URL": sandbox.url,
        "LAZADA_USER_ID": sandbox.user_id,
        "LAZADA_API_KEY": sandbox.api_key,
    }


@pytest.fixture
def settings(database_url: str, sandbox: Sandbox) -> Settings:
    env = {"DATABASE_URL": database_url, **sandbox_env(sandbox)}
    # Short waits so that retries and polls happen within a test.
    return replace(
        Settings.from_env(env),
        retry_ladder=(0.05, 0.1, 0.2),
        poll_first=0.1,
        poll_slack=0.1,
        redispatch_after=1.0,
    )


@pytest.fixture
def sessions(settings: Settings) -> sessionmaker[Session]:
    return sessionmaker(get_engine(settings.database_url), expire_on_commit=False)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[SellerCenterClient]:
    with SellerCenterClient(
        sandbox.url, sandbox.user_id, sandbox.api_key, read_timeout=3.0, after_call=record_call
    ) as api:
        yield api


@pytest.fixture
def platforms(client: SellerCenterClient) -> PlatformFor:
    """Every account's platform: the legacy client on the sandbox (services take a PlatformFor)."""
    platform = SellerCenterPlatform(client)
    return lambda _account: platform


BATCH = SellerCenterPlatform.max_skus_per_call  # SKUs a removal call takes (the legacy API's)
URLS_PER_CALL = SellerCenterPlatform.max_urls_per_call


@dataclass
class Stack:
    """A broker, a database, the sandbox, and worker processes started on demand."""

    name: str
    env: dict[str, str]
    settings: Settings
    sessions: sessionmaker[Session]
    sandbox: Sandbox
    tmp_path: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, concurrency: int = 8, only: str = "all") -> WorkerProcess:
        log = self.tmp_path / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.env, log, concurrency, only).start()
        self.workers.append(worker)
        return worker

    def sender(self) -> Any:
        """The shop backend's view: a plain Celery app that sends tasks by name."""
        return plain_celery(self.settings.broker_url, self.settings.broker_transport_options())

    def send(self, name: str, *args: Any, task_id: str | None = None, **kwargs: Any) -> str:
        app = self.sender()
        result = app.send_task(
            name, args=list(args), kwargs=kwargs, queue=self.settings.queue, task_id=task_id
        )
        return str(result.id)

    def logs(self) -> str:
        return "\n".join(w.log()[-20000:] for w in self.workers)


STACKS = {
    "embedded+sqlite": (None, "sqlite"),
    "redis+postgresql": ("redis", "postgresql"),
    "rabbitmq+postgresql": ("amqp", "postgresql"),
}


def _check_broker(url: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=2)


@pytest.fixture(params=list(STACKS))
def stack(request: pytest.FixtureRequest, tmp_path: Path, sandbox: Sandbox) -> Iterator[Stack]:
    broker, database = STACKS[request.param]
    broker_url = service_url(broker) if broker else None
    if broker_url:
        _check_broker(broker_url)
    if database == "postgresql":
        with migrated_postgres() as url:
            yield from _stack(request.param, url, broker_url, tmp_path, sandbox)
    else:
        url = migrated_sqlite(tmp_path / "results.sqlite3")
        yield from _stack(request.param, url, broker_url, tmp_path, sandbox)


def _stack(
    name: str, database_url: str, broker_url: str | None, tmp_path: Path, sandbox: Sandbox
) -> Iterator[Stack]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }
    env.update(sandbox_env(sandbox))
    env.update(
        {
            "DATABASE_URL": database_url,
            "LAZADA_QUEUE": f"lw-test-{uuid.uuid4().hex[:10]}",
            "LAZADA_REDISPATCH_AFTER": "3",
            "LAZADA_RETRY_LADDER": "0.2,0.5,1",
            "LAZADA_POLL_FIRST": "0.3",
            "LAZADA_POLL_SLACK": "0.3",
            "LAZADA_RATE_LIMIT": "50",
            # Beat's order syncs only where a test turns them on: the others count calls.
            "LAZADA_ORDER_SYNC_EVERY": "0",
        }
    )
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    if not database_url.startswith("sqlite"):
        # A server database needs the deployment's key; the embedded defaults make a key file.
        from cryptography.fernet import Fernet

        env["LAZADA_SECRET_KEY"] = Fernet.generate_key().decode()
    ensure_schema(database_url)
    settings = Settings.from_env(env)
    sessions = sessionmaker(get_engine(database_url), expire_on_commit=False)
    stack = Stack(name, env, settings, sessions, sandbox, tmp_path)
    try:
        yield stack
    finally:
        for worker in stack.workers:
            worker.stop()
        if broker_url:
            with stack.sender().connection_for_write() as conn:
                for queue in (settings.queue, settings.poll_queue):
                    conn.default_channel.queue_delete(queue)


def add_sellercenter_account(stack: Stack, sandbox: Sandbox, name: str) -> None:
    """A legacy account of the sandbox's seller, stored on the stack's database."""
    with stack.sessions.begin() as session:
        add_account(
            session,
            stack.settings,
            name,
            "sellercenter",
            {"user_id": sandbox.user_id, "api_key": sandbox.api_key},
            api_url=sandbox.url,
        )
