"""What a benchmark runs on: the sandbox in a process of its own, and a broker, a results
database and worker processes (the tests' own: tests/support/processes.py).

The sandbox is a child process (`python -m worker.sandbox`: a real HTTP server on a free port,
with a set latency); workers are `python -m worker.cli run` child processes, as an operator
runs them; work is sent by task name through a plain Celery app, as the shop backend sends
it; completion is read from the results database, the source of truth.

Stacks:
- ``embedded``: SQLite and the default embedded broker, in a temporary folder.
- ``redis``: Redis and a fresh PostgreSQL database created and dropped here, with queue names
  of its own so that nothing else on the broker is touched.
- ``rabbitmq``: RabbitMQ (guest on the default vhost) and a fresh PostgreSQL database, with
  queue names of their own, deleted at the end.

LAZADA_BENCH_REDIS_URL, LAZADA_BENCH_AMQP_URL and LAZADA_BENCH_POSTGRES_URL name other
servers. The default Redis database is not one the tests use (they count down from 15, one
per test process), so a benchmark and a test run at once share no account's rate-limit slots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import (
    REPO,
    WorkerProcess,
    fresh_postgres_database,
    plain_celery,
    wait_for,
)

REDIS_URL = os.environ.get("LAZADA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
POSTGRES_URL = os.environ.get(
    "LAZADA_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
AMQP_URL = os.environ.get("LAZADA_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
BROKERS = {"redis": REDIS_URL, "rabbitmq": AMQP_URL}  # the embedded stack's is a folder
STACKS = ("embedded", "redis", "rabbitmq")
BATCH_SIZE = 50  # SKUs per RemoveProduct call (SellerCenterPlatform.max_skus_per_call)
# Far above any benchmark's rate, so that the limiter never binds unless a scenario sets one.
LIMIT_OFF = "100000"
# The sweepers' INFO line when they send rows again (worker.services.sweepers).
_SENT_AGAIN = re.compile(r"sweeper: (\d+) ")


class BenchError(RuntimeError):
    """A benchmark could not run or did not finish in its time bound; the message says why."""


# A wait that gave up (tests.support.processes.wait_for raises AssertionError) or a benchmark
# that could not run: either ends the run with its message and the workers' logs.
FAILED = (BenchError, AssertionError)


class SandboxProcess:
    """The sandbox in a process of its own, every answer delayed by `latency` s.

    Like the real API, it does not share the benchmark's interpreter: in-process, its threads
    would compete with the sending for one GIL and stretch the latency it was set to. Figures
    and the call record come from its /_sandbox/ control endpoints.
    """

    def __init__(
        self,
        latency: float,
        platform: str = "sellercenter",
        rate_limit: float | None = None,
        user_id: str | None = None,
        sellers: list[str] | None = None,
    ) -> None:
        """`rate_limit`: calls/s before the sandbox answers E901 (None: no limit); `user_id`:
        the only UserID it accepts (legacy sandbox; one per account, so accounts differ);
        `sellers`: the sellers who may authorize the app (LAZOP; its rate limit is per seller)."""
        from worker.sandbox.sellercenter import SandboxConfig

        config = SandboxConfig()
        self.platform = platform
        self.user_id, self.api_key = user_id or config.user_id, config.api_key
        command = [sys.executable, "-m", "worker.sandbox", "--port", "0"]
        command += ["--latency", str(latency)]
        if rate_limit is not None:
            command += ["--rate-limit", str(rate_limit)]
        if platform == "lazop":
            command += ["--platform", "lazop"]
            if sellers:
                command += ["--sellers", ",".join(sellers)]
        else:
            # Orders never advance by themselves: a benchmark measures fetches, not refreshes.
            command += ["--order-advance-seconds", "0", "--user-id", self.user_id]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            self.stop()
            raise BenchError("the sandbox did not start")

    def authorization_code(self, seller: str) -> str:
        """LAZOP: a fresh code for the seller, as its consent page would give."""
        return str(self._control(f"authorization-code?seller={seller}", method="POST")["code"])

    def _control(self, endpoint: str, method: str = "GET", body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        url = urljoin(self.url, f"/_sandbox/{endpoint}")
        request = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def configure(self, values: dict[str, Any]) -> None:
        """Change the sandbox's knobs while it runs (latency, rate_limit, ...)."""
        self._control("config", method="POST", body=values)

    def stats(self) -> dict[str, Any]:
        return dict(self._control("stats"))

    def calls(self) -> list[SimpleNamespace]:
        """The calls served since the last reset, oldest first (`.at`: arrival, epoch s)."""
        return [SimpleNamespace(**call) for call in self._control("calls")]

    def reset(self) -> None:
        """Forget everything: calls, removals, orders and image jobs."""
        self._control("reset", method="POST")

    def reset_calls(self) -> None:
        """Forget the calls so far; jobs started before (image jobs polling) keep running."""
        self._control("reset-calls", method="POST")

    def cpu_seconds(self) -> float:
        return process_tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


LAZOP_ACCOUNT = "bench-lazop"


def add_lazop_account(stack: BenchStack, sandbox: SandboxProcess) -> None:
    """Store and authorize an Open Platform account on the LAZOP sandbox, as an operator
    does with `accounts add` and `accounts authorize --code`, and make it the stack's default
    account (LAZADA_DEFAULT_ACCOUNT, for the workers started after this)."""
    from worker.accounts.store import add_account
    from worker.sandbox.lazop.config import LazopSandboxConfig

    config = LazopSandboxConfig()
    credentials = {
        "app_key": config.app_key,
        "app_secret": config.app_secret,
        "auth_url": f"{sandbox.url}auth/rest",
    }
    with stack.sessions.begin() as session:
        add_account(
            session,
            stack.settings,
            LAZOP_ACCOUNT,
            "lazop",
            credentials,
            api_url=f"{sandbox.url}rest",
        )
    authorize_lazop_account(stack, sandbox)
    stack.env["LAZADA_DEFAULT_ACCOUNT"] = LAZOP_ACCOUNT


def authorize_lazop_account(stack: BenchStack, sandbox: SandboxProcess) -> None:
    """New tokens from a fresh code (also after `sandbox.reset()`, which forgets them)."""
    from worker.accounts import tokens
    from worker.platforms.lazop.client import LazopClient
    from worker.sandbox.lazop.config import LazopSandboxConfig

    config = LazopSandboxConfig()
    api_url, auth_url = f"{sandbox.url}rest", f"{sandbox.url}auth/rest"
    with LazopClient(api_url, config.app_key, config.app_secret, auth_url=auth_url) as client:
        grant = client.create_token(sandbox.authorization_code(config.sellers[0]))
    tokens.store_grant(stack.sessions, stack.settings, LAZOP_ACCOUNT, grant)


@dataclass
class BenchStack:
    """A broker, a results database and the worker processes started on it."""

    kind: str
    env: dict[str, str]
    settings: Any  # worker.settings.Settings
    folder: Path
    engine: Engine  # for the benchmark's reads: never holds SQLite's write lock
    workers: list[WorkerProcess] = field(default_factory=list)
    killed: list[WorkerProcess] = field(default_factory=list)  # by kill_worker; logs kept
    _sender: Any = None

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on the reading engine, for what a benchmark stores before it starts
        (accounts): the worker's own engine would be opened in the benchmark's process."""
        return sessionmaker(self.engine, expire_on_commit=False)

    def start_workers(
        self, processes: int, concurrency: int, only: str = "all", timeout: float = 90.0
    ) -> None:
        """Start `processes` workers of `concurrency` threads each, serving `only` (see
        `lazada-worker run --only`); return once all are ready."""
        for _ in range(processes):
            log_path = self.folder / f"worker-{len(self.workers) + len(self.killed)}.log"
            self.workers.append(WorkerProcess(self.env, log_path, concurrency, only).start())

        def all_ready() -> bool:
            for worker in self.workers:
                if worker.exited():
                    raise BenchError(f"a worker exited at start:\n{worker.log()[-3000:]}")
            return all(worker.ready() for worker in self.workers)

        wait_for(all_ready, timeout, "the workers to be ready", interval=0.1)

    def sender(self) -> Any:
        """A plain Celery app that knows nothing of the project: the shop backend's view,
        connected before any clock starts (a shop backend's producer is already connected)."""
        if self._sender is None:
            app = plain_celery(self.settings.broker_url, self.settings.broker_transport_options())
            with app.producer_or_acquire() as producer:
                producer.connection.ensure_connection(max_retries=3)
            self._sender = app
        return self._sender

    def send(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Enqueue a task by name on the stack's queue."""
        self.sender().send_task(name, args=list(args), kwargs=kwargs, queue=self.settings.queue)

    def scalar(self, statement: Any) -> Any:
        """One value from the results database (a plain read: no write lock on SQLite)."""
        with self.engine.connect() as conn:
            return conn.execute(statement).scalar()

    def rows(self, statement: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(statement))

    def worker_pids(self) -> list[int]:
        return [worker.process.pid for worker in self.workers if worker.process is not None]

    def worker_rss_mib(self) -> float:
        """Resident memory of the worker process trees (main processes and beat), in MiB."""
        return sum(process_tree_rss_kib(pid) for pid in self.worker_pids()) / 1024

    def worker_cpu_seconds(self) -> float:
        """User + system CPU time used so far by the worker process trees."""
        return sum(process_tree_cpu_seconds(pid) for pid in self.worker_pids())

    def kill_worker(self, worker: WorkerProcess) -> None:
        """kill -9 `worker`'s process group; it leaves `workers` (its log stays in `logs()`)."""
        worker.kill()
        self.workers.remove(worker)
        self.killed.append(worker)

    def logs(self) -> str:
        return "\n".join(worker.log()[-5000:] for worker in [*self.killed, *self.workers])

    def log_marks(self) -> list[int]:
        """Where each worker's log ends now (for `sent_again`)."""
        return [len(worker.log()) for worker in self.workers]

    def sent_again(self, marks: list[int]) -> int:
        """Rows the sweepers sent again since `marks` (their INFO lines in the workers' logs)."""
        return sum(
            int(found)
            for worker, mark in zip(self.workers, marks, strict=False)
            for found in _SENT_AGAIN.findall(worker.log()[mark:])
        )

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()


@contextmanager
def open_stack(
    kind: str, sandbox: SandboxProcess, extra_env: dict[str, str] | None = None
) -> Iterator[BenchStack]:
    """A fresh stack of `kind` talking to `sandbox`; everything it made is removed on exit."""
    from tests.support.worker_stack import sandbox_env
    from worker.db.schema import ensure_schema
    from worker.settings import Settings

    if kind not in STACKS:
        raise BenchError(f"unknown stack {kind!r} (choose from {', '.join(STACKS)})")
    folder = Path(tempfile.mkdtemp(prefix=f"lw-bench-{kind}-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }
    env.update(sandbox_env(sandbox))  # type: ignore[arg-type]
    env["LAZADA_QUEUE"] = f"lw-bench-{uuid.uuid4().hex[:10]}"
    env["LAZADA_RATE_LIMIT"] = LIMIT_OFF
    env.update(extra_env or {})
    stack: BenchStack | None = None
    with ExitStack() as cleanup:
        cleanup.callback(_remove_folder, folder)
        if kind == "embedded":
            database_url = f"sqlite:///{folder / 'results.sqlite3'}"
        else:
            try:
                database_url = cleanup.enter_context(fresh_postgres_database(POSTGRES_URL))
            except Exception as exc:
                raise BenchError(f"PostgreSQL at {POSTGRES_URL} is not usable: {exc}") from None
            env["CELERY_BROKER_URL"] = BROKERS[kind]
        env["DATABASE_URL"] = database_url
        cleanup.callback(_dispose_project_engines, database_url)
        ensure_schema(database_url)
        settings = Settings.from_env(env)
        if kind in BROKERS:
            _check_broker(settings.broker_url)
        stack = BenchStack(kind, env, settings, folder, _reading_engine(database_url))
        try:
            yield stack
        finally:
            stack.stop_workers()
            stack.engine.dispose()
            if kind in BROKERS:
                _delete_queues(stack)


def _remove_folder(folder: Path) -> None:
    if os.environ.get("LAZADA_BENCH_KEEP"):
        print(f"kept {folder}", file=sys.stderr)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _reading_engine(url: str) -> Engine:
    # Not worker.db.engine.get_engine: that one begins SQLite transactions IMMEDIATE, which
    # would take the write lock from the workers every time the benchmark looks.
    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"timeout": 60})
    return create_engine(url, pool_size=2)


def _dispose_project_engines(database_url: str) -> None:
    from worker.db.engine import _engines

    engine = _engines.pop(database_url, None)
    if engine is not None:
        engine.dispose()


def _check_broker(url: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=2)
    except Exception as exc:
        raise BenchError(f"broker at {url} is not reachable: {exc}") from None


def _delete_queues(stack: BenchStack) -> None:
    from kombu import Exchange, Queue

    settings = stack.settings
    try:
        with stack.sender().connection_for_write() as conn:
            channel = conn.default_channel
            # Celery binds the three queues to an exchange of the main queue's name.
            exchange = Exchange(settings.queue, type="direct")
            for name in (settings.queue, settings.poll_queue, settings.events_queue):
                queue = Queue(name, exchange, routing_key=settings.queue)(channel)
                if stack.kind == "redis":
                    # kombu's Redis channel deletes the bindings this channel declared only
                    # (a plain queue_delete left the queue and its messages): declare first.
                    queue.declare()
                queue.delete()
            if stack.kind == "rabbitmq":
                exchange(channel).delete()
    except Exception as exc:  # cleanup only: report, do not mask the run's own outcome
        print(f"could not delete queue {stack.settings.queue}: {exc}", file=sys.stderr)
    if stack.kind == "redis" and stack.killed:
        _forget_unacked(stack)


def _forget_unacked(stack: BenchStack) -> None:
    """Drop a killed worker's unacknowledged messages for this stack's queues from kombu's
    `unacked` hash: left there, a worker on this Redis database would put them back on the
    deleted queues once the visibility timeout passed."""
    import redis

    settings = stack.settings
    queues = {settings.queue, settings.poll_queue, settings.events_queue}
    try:
        client = redis.Redis.from_url(settings.broker_url)
        for tag, raw in client.hscan_iter("unacked"):
            try:
                _, exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if exchange in queues or routing_key in queues:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
        client.close()
    except Exception as exc:  # cleanup only, as above
        print(f"could not drop the unacknowledged messages: {exc}", file=sys.stderr)


def warm_up(stack: BenchStack, sandbox: SandboxProcess, threads: int, timeout: float) -> None:
    """A removal job of one batch per thread (`threads` in all workers) before a measured run,
    so that the workers have their database and HTTP connections open, as a worker that has
    been running does; then the sandbox forgets it."""
    from worker.db.models import RemovalJob

    key = f"warm-up-{uuid.uuid4().hex[:8]}"
    skus = [f"{key}-{i:05d}" for i in range(threads * BATCH_SIZE)]
    stack.send("lazada.remove_products", skus, key=key)
    query = select(RemovalJob.finished_at).where(RemovalJob.key == key)
    wait_for(lambda: stack.scalar(query), timeout, "the warm-up job", interval=0.1)
    sandbox.reset()


# -- processes ------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children = _children()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def process_tree_rss_kib(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def process_tree_cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def own_cpu_seconds() -> float:
    """CPU time of this process: the sender and the polling of the database."""
    times = os.times()
    return times.user + times.system


def machine_load() -> str:
    """The load averages (1, 5, 15 min), printed with every run: figures on a shared machine
    are read against what else was running."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {text}", file=sys.stderr, flush=True)
