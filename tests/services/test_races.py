"""Races: the same work taken by two workers at the same moment is done once.

Two threads stand in for two workers (each its own session and connection), released together
by a barrier while the sandbox answers slowly, so that the second arrives mid-call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.worker_stack import BATCH, URLS_PER_CALL
from worker.accounts.platforms import PlatformFor
from worker.db.models import RemovalJob
from worker.sandbox.sellercenter import Sandbox
from worker.services import images, orders, removal
from worker.settings import Settings


def _together(work: Callable[[], Any], n: int = 2) -> list[Any]:
    """Run `work` in `n` threads released at the same moment; return what each returned."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_the_same_batch_taken_by_two_workers_at_once_is_sent_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    _, messages = removal.create_job(
        sessions, settings, settings.account, "race", ["R-1", "R-2"], BATCH
    )
    sandbox.config.latency = 0.3
    _together(lambda: removal.process_batch(sessions, platforms, settings, *messages[0].args))
    assert len([c for c in sandbox.calls() if c.action == "RemoveProduct"]) == 1
    assert sandbox.removal_counts() == {"R-1": 1, "R-2": 1}


def test_runners_of_one_job_take_its_batches_each_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    skus = [f"J-{n:03d}" for n in range(12 * BATCH)]
    _, messages = removal.create_job(sessions, settings, settings.account, "runners", skus, BATCH)
    sandbox.config.latency = 0.05
    starts = iter(messages[:4])  # four runners at once, each going on to the next free batch
    _together(lambda: removal.process_batch(sessions, platforms, settings, *next(starts).args), n=4)
    assert len([c for c in sandbox.calls() if c.action == "RemoveProduct"]) == 12
    assert sandbox.removal_counts() == dict.fromkeys(skus, 1)


def test_the_same_image_poll_taken_by_two_workers_at_once_is_made_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    sandbox.config.image_job_seconds = (60.0, 60.0)
    _, messages = images.start_migration(
        sessions, settings, settings.account, "race", ["https://i.example.com/a"], URLS_PER_CALL
    )
    polls = images.advance(sessions, platforms, settings, *messages[0].args)  # submits
    sandbox.config.latency = 0.3
    threading.Event().wait(polls[0].countdown or 0)
    _together(lambda: images.advance(sessions, platforms, settings, *polls[0].args))
    assert len([c for c in sandbox.calls() if c.action == "GetResponse"]) == 1


def test_the_same_key_recorded_by_two_clients_at_once_makes_one_job(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    skus = [f"K-{n}" for n in range(200)]
    results = _together(
        lambda: removal.create_job(sessions, settings, settings.account, "same-key", skus, BATCH),
        n=4,
    )
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(len(messages) for _, messages in results) == 4  # one client's 4 batches only
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RemovalJob)) == 1


def test_the_same_order_fetched_by_two_workers_at_once_is_fetched_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    sandbox.config.latency = 0.3
    counter = iter(range(100))
    _together(
        lambda: orders.fetch_order(
            sessions, platforms, settings, settings.account, 4711, f"request-{next(counter)}"
        )
    )
    assert len([c for c in sandbox.calls() if c.action == "GetOrder"]) == 1
