"""Cancel beside work under way: once `cancel` has committed, no call of the job starts; a
batch in a call finishes it and records its outcome, but what it leaves to send again is
cancelled; the job ends `removal.cancelled` only if it cancelled a SKU.

A thread stands in for the worker's task (process_batch) while the sandbox holds its call
(latency); the messages a task returns are then run as a worker would run them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import wait_for
from tests.support.worker_stack import BATCH
from worker.accounts.platforms import PlatformFor
from worker.broker.dispatch import Message
from worker.db.engine import get_engine
from worker.db.models import Event, RemovalBatch
from worker.sandbox.sellercenter import Sandbox
from worker.services import documents, job_control, removal, sweepers
from worker.settings import Settings


def _removal_calls(sandbox: Sandbox) -> list[Any]:
    return [c for c in sandbox.calls() if c.action == "RemoveProduct"]


def _run(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    messages: list[Message],
) -> None:
    """Run removal messages, and those they return, as a worker would (their countdowns
    waited), until none is left."""
    for _ in range(50):
        if not messages:
            return
        following: list[Message] = []
        for message in messages:
            time.sleep(message.countdown or 0)  # the broker's countdown, not an assertion
            following += removal.process_batch(
                sessions, platforms, settings, *message.args, slot=message.slot
            )
        messages = following
    raise AssertionError("the job's messages never ran out")


class _InFlight:
    """One runner task of the job on its own thread, its call held by the sandbox."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        platforms: PlatformFor,
        settings: Settings,
        sandbox: Sandbox,
        message: Message,
    ) -> None:
        self.returned: list[Message] = []
        calls = len(_removal_calls(sandbox))
        self.thread = threading.Thread(
            target=lambda: self.returned.extend(
                removal.process_batch(sessions, platforms, settings, *message.args)
            )
        )
        self.thread.start()
        wait_for(lambda: len(_removal_calls(sandbox)) > calls, 30, "the call in flight")

    def join(self) -> list[Message]:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        return self.returned


def _job(sessions: sessionmaker[Session], settings: Settings, key: str) -> dict[str, Any]:
    with sessions() as session:
        job = documents.removal_job(session, settings.account, key)
    assert job is not None
    return job


def _events(sessions: sessionmaker[Session]) -> list[Event]:
    with sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.at)))


def test_a_batch_whose_call_fails_transiently_after_cancel_is_cancelled_not_sent_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    skus = [f"T-{n:02d}" for n in range(BATCH)]
    _, messages = removal.create_job(sessions, settings, settings.account, "t", skus, BATCH)
    sandbox.configure({"latency": 2.0, "fault_rate": 1.0, "fault_kinds": ["http500"]})
    runner = _InFlight(sessions, platforms, settings, sandbox, messages[0])
    assert job_control.cancel(sessions, settings.account, "t").changed == 0  # all in flight
    calls_at_cancel = len(_removal_calls(sandbox))
    _run(sessions, platforms, settings, runner.join())

    assert len(_removal_calls(sandbox)) == calls_at_cancel == 1
    job = _job(sessions, settings, "t")
    assert (job["state"], job["cancelled"], job["failed"]) == ("done", BATCH, 0)
    ((kind, cancelled),) = [(e.type, e.data["cancelled"]) for e in _events(sessions)]
    assert (kind, cancelled) == ("removal.cancelled", BATCH)


def test_skus_a_call_in_flight_at_cancel_left_unapplied_are_cancelled_not_sent_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    _cancel_with_one_failed(sessions, settings, platforms, sandbox, "u")
    assert len(_removal_calls(sandbox)) == 1
    job = _job(sessions, settings, "u")
    assert (job["state"], job["cancelled"], job["failed"]) == ("done", BATCH - 1, 1)
    ((kind, cancelled),) = [(e.type, e.data["cancelled"]) for e in _events(sessions)]
    assert (kind, cancelled) == ("removal.cancelled", BATCH - 1)


def _cancel_with_one_failed(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    key: str,
) -> None:
    """A one-batch job cancelled while its call, which fails one SKU and applies none of the
    others, is in flight."""
    skus = [f"U-{n:02d}" for n in range(BATCH - 1)] + ["U-FAIL"]
    _, messages = removal.create_job(sessions, settings, settings.account, key, skus, BATCH)
    sandbox.configure({"latency": 2.0})
    runner = _InFlight(sessions, platforms, settings, sandbox, messages[0])
    job_control.cancel(sessions, settings.account, key)
    _run(sessions, platforms, settings, runner.join())
    sandbox.configure({"latency": 0.0})


def test_a_cancel_that_finds_every_batch_in_flight_ends_finished_when_they_remove_all(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    skus = [f"F-{n:02d}" for n in range(BATCH)]
    _, messages = removal.create_job(sessions, settings, settings.account, "f", skus, BATCH)
    sandbox.configure({"latency": 2.0})
    runner = _InFlight(sessions, platforms, settings, sandbox, messages[0])
    outcome = job_control.cancel(sessions, settings.account, "f")
    assert (outcome.changed, outcome.done) == (0, False)
    _run(sessions, platforms, settings, runner.join())

    job = _job(sessions, settings, "f")
    assert (job["state"], job["removed"], job["cancelled"]) == ("done", BATCH, 0)
    assert [e.type for e in _events(sessions)] == ["removal.finished"]


def test_a_retry_of_a_cancelled_job_sends_only_its_failed_skus_and_ends_cancelled(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    _cancel_with_one_failed(sessions, settings, platforms, sandbox, "r")
    sandbox.configure({"failing_skus": []})  # the seller fixed it
    retried = job_control.retry(sessions, settings, settings.account, "r")
    assert retried.changed == 1
    _run(sessions, platforms, settings, retried.messages)

    second = _removal_calls(sandbox)[1:]
    assert [c.body.count(b"<SellerSku>") for c in second] == [1]
    assert sandbox.removal_counts() == {"U-FAIL": 1}
    job = _job(sessions, settings, "r")
    assert (job["state"], job["removed"], job["failed"], job["cancelled"]) == (
        "done",
        1,
        0,
        BATCH - 1,
    )
    events = _events(sessions)
    assert [e.type for e in events] == ["removal.cancelled", "removal.cancelled"]
    assert events[1].data["cancelled"] == BATCH - 1


def test_a_batch_whose_task_died_is_not_sent_after_cancel_when_its_lease_lapses(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    settings = replace(settings, lease_seconds=1.0)
    skus = [f"D-{n:03d}" for n in range(2 * BATCH)]
    _, messages = removal.create_job(sessions, settings, settings.account, "d", skus, BATCH)
    first = messages[0].args[0]
    assert removal._claim(sessions, settings, first) is not None  # its task then dies
    outcome = job_control.cancel(sessions, settings.account, "d")
    assert (outcome.changed, outcome.done) == (BATCH, False)  # the other batch's

    def lapsed() -> list[Message]:
        return sweepers.sweep_removal_batches(sessions, settings)

    _run(sessions, platforms, settings, wait_for(lapsed, 30, "the sweep of the lapsed batch"))
    assert _removal_calls(sandbox) == []
    job = _job(sessions, settings, "d")
    assert (job["state"], job["cancelled"]) == ("done", 2 * BATCH)
    assert [e.type for e in _events(sessions)] == ["removal.cancelled"]


def test_a_cancel_waits_for_a_batch_a_sweep_holds_instead_of_passing_it_over(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: nothing holds a row beside a cancel")
    skus = [f"S-{n:03d}" for n in range(2 * BATCH)]
    _, messages = removal.create_job(sessions, settings, settings.account, "s", skus, BATCH)
    held = messages[1].args[0]
    engine = get_engine(database_url)
    with engine.connect() as sweep:
        # What a sweep does to a batch it is about to send again: lock it (FOR UPDATE).
        sweep.execute(
            select(RemovalBatch.id).where(RemovalBatch.id == held).with_for_update()
        ).one()
        outcome: list[job_control.Controlled] = []
        cancelling = threading.Thread(
            target=lambda: outcome.append(job_control.cancel(sessions, settings.account, "s"))
        )
        cancelling.start()

        def waiting_or_done() -> bool:
            # A connection of its own: a transaction sees one snapshot of pg_stat_activity.
            with engine.connect() as observer:
                waiting = observer.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            return bool(waiting) or not cancelling.is_alive()

        wait_for(waiting_or_done, 30, "the cancel waiting for the sweep's lock, or done")
        sweep.commit()
    cancelling.join(timeout=60)

    assert outcome[0].changed == 2 * BATCH and outcome[0].done
    _run(sessions, platforms, settings, [Message(removal.REMOVE_BATCH_TASK, (held,))])
    assert _removal_calls(sandbox) == []
    assert _job(sessions, settings, "s")["cancelled"] == 2 * BATCH
