"""`lazada-worker run` exits with a status that says how the worker ended."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.processes import WorkerProcess, wait_for
from tests.support.worker_stack import Stack
from worker.db.models import RemovalBatch, RemovalJob, RemovalSku

pytestmark = pytest.mark.slow


def _break_the_broker(stack: Stack) -> Path:
    """The embedded broker's queue folder replaced by a file under the running worker: its
    consumer fails on it, which Celery does not expect."""
    folder = stack.settings.broker_folder
    assert folder is not None
    shutil.rmtree(folder / "queue")
    (folder / "queue").write_text("")
    return folder / "queue"


def _done_by_the_next_worker(stack: Stack, skus: list[str]) -> None:
    """A new worker finishes the job, and each of its SKUs was sent once."""
    stack.start_worker(concurrency=4)

    def done() -> bool:
        with stack.sessions() as session:
            return session.scalar(select(RemovalJob.finished_at)) is not None

    wait_for(done, 300, "the job done by the next worker")
    counts = stack.sandbox.removal_counts()
    assert set(counts) == set(skus) and max(counts.values()) == 1


def _started_again(worker: WorkerProcess, queue: Path) -> None:
    """Wait for the worker to stop on the broken broker, mend the broker during the pause
    before it starts again, and wait for it to be ready again."""
    wait_for(lambda: "starting it again" in worker.log(), 60, "the worker to stop")
    queue.unlink()
    queue.mkdir()
    wait_for(lambda: worker.log().count(" ready.") == 2, 60, "the worker to start again")


@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_a_worker_stopped_by_an_unrecoverable_error_starts_again_and_goes_on(
    stack: Stack,
) -> None:
    """The error gone by the time it starts again (as a restarted Redis is): the same process
    serves the queue again, and the work sent then is done."""
    worker = stack.start_worker(concurrency=1)
    wait_for(worker.ready, 60, "the worker to start")
    _started_again(worker, _break_the_broker(stack))
    assert worker.process is not None and worker.process.poll() is None
    assert "Unrecoverable error" in worker.log()

    skus = [f"A-{n:03d}" for n in range(120)]
    stack.send("lazada.remove_products", skus, key="again")

    def done() -> bool:
        with stack.sessions() as session:
            return session.scalar(select(RemovalJob.finished_at)) is not None

    wait_for(done, 120, "the job done by the worker started again")
    assert set(stack.sandbox.removal_counts()) == set(skus)


@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_a_worker_stopped_by_an_unrecoverable_error_again_soon_after_exits_non_zero(
    stack: Stack,
) -> None:
    worker = stack.start_worker(concurrency=1)
    wait_for(worker.ready, 60, "the worker to start")
    _started_again(worker, _break_the_broker(stack))
    _break_the_broker(stack)  # within a minute of the start again: not a passing error

    assert worker.process is not None
    wait_for(lambda: worker.process.poll() is not None, 60, "the worker to stop")
    log = worker.log()
    assert log.count("Unrecoverable error") == 2 and log.count("starting it again") == 1
    assert "unrecoverable error again" in log
    assert worker.process.returncode != 0


@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_a_worker_stopped_by_sigterm_exits_zero(stack: Stack) -> None:
    worker = stack.start_worker(concurrency=1)
    wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")
    worker.stop()
    assert worker.process is not None and worker.process.returncode == 0


def test_sigterm_mid_removal_finishes_the_calls_in_flight_records_them_and_takes_no_more(
    stack: Stack,
) -> None:
    """SIGTERM while calls are in flight against a slow sandbox: the worker exits 0 once its
    calls in flight are answered and recorded; it starts no more (a running task does not go
    on to its job's next batch), leaves nothing leased, and a new worker finishes the job."""
    stack.env.update({"LAZADA_READ_TIMEOUT": "5", "LAZADA_RATE_LIMIT": "1000"})
    stack.sandbox.config.latency = 1.5
    skus = [f"T-{n:05d}" for n in range(3000)]
    worker = stack.start_worker(concurrency=4)
    stack.send("lazada.remove_products", skus, key="sigterm")
    calls = lambda: [c for c in stack.sandbox.calls() if c.action == "RemoveProduct"]  # noqa: E731
    wait_for(lambda: len(calls()) >= 4, 120, "the first calls")
    assert worker.process is not None
    terminated = time.time()
    os.killpg(worker.process.pid, signal.SIGTERM)
    wait_for(worker.exited, 120, "the worker to exit")
    assert worker.process.returncode == 0, worker.log()[-3000:]

    # Each of the 4 threads may have claimed a batch just before the signal and sent it just
    # after; nothing else is started once the shutdown began.
    started_after = [c for c in calls() if c.at > terminated]
    with stack.sessions() as session:
        removed = set(session.scalars(select(RemovalSku.sku).where(RemovalSku.state == "removed")))
        for held in session.scalars(select(RemovalBatch.skus).where(RemovalBatch.state == "done")):
            removed.update(json.loads(held or "[]"))
        leased = session.scalar(
            select(func.count())
            .select_from(RemovalBatch)
            .where(RemovalBatch.lease_until.is_not(None), RemovalBatch.state == "pending")
        )
    sent = set(stack.sandbox.removal_counts())
    print(
        f"\n[{stack.name}] SIGTERM after {len(sent)} SKUs sent: {len(started_after)} calls "
        f"started after it, {len(removed)} SKUs recorded removed, {leased} batches leased"
    )
    assert len(started_after) <= 4
    assert sent <= removed, "a call answered before the exit was not recorded"
    assert leased == 0
    assert len(removed) < len(skus)  # the job was left for the next worker

    _done_by_the_next_worker(stack, skus)


@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_sigterm_at_the_rate_limit_hands_the_deferrals_it_kept_to_the_broker(stack: Stack) -> None:
    """At 2 calls a second a job's next calls are deferrals the worker keeps and runs itself
    (worker.broker.deferrals). Stopped with SIGTERM it exits 0 and leaves them in the broker's
    queue, with their slots, where the embedded broker keeps nothing a worker had taken; the
    next worker finishes the job, each SKU once."""
    stack.env["LAZADA_RATE_LIMIT"] = "2"
    stack.sandbox.config.rate_limit = 2
    skus = [f"K-{n:05d}" for n in range(20 * 50)]
    worker = stack.start_worker(concurrency=4)
    stack.send("lazada.remove_products", skus, key="kept")
    calls = lambda: [c for c in stack.sandbox.calls() if c.action == "RemoveProduct"]  # noqa: E731
    wait_for(lambda: len(calls()) >= 4, 120, "the first calls")
    worker.stop()
    assert worker.process is not None and worker.process.returncode == 0, worker.log()[-3000:]

    folder = stack.settings.broker_folder
    assert folder is not None
    waiting = [path.read_text() for path in (folder / "queue").iterdir() if path.is_file()]
    handed = [m for m in waiting if "lazada.remove_batch" in m and "lazada_slot" in m]
    assert handed, f"no deferral in the broker after the stop: {len(waiting)} messages"
    # Batches kept leased through their deferrals were let go with them: the next worker's
    # claims take them, with no wait for the stopped worker's heartbeat to go stale.
    with stack.sessions() as session:
        leased = session.scalars(
            select(RemovalBatch.id).where(
                RemovalBatch.state == "pending", RemovalBatch.lease_until.is_not(None)
            )
        ).all()
    assert leased == [], f"batches still leased after the stop: {leased}"

    _done_by_the_next_worker(stack, skus)
    assert [c for c in stack.sandbox.calls() if c.error_code == 901] == []
