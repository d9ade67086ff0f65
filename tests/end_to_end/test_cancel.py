"""Cancel with a real worker on each stack: once a cancel has returned, no call of
the job starts; the call in flight finishes and is recorded, and what it leaves to send again
(SKUs it did not apply, a transient error's retry) is cancelled; the job ends
`removal.cancelled` only if it cancelled a SKU, else `removal.finished`."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.processes import wait_for
from tests.support.worker_stack import BATCH, Stack
from worker.db.models import Event
from worker.services import documents, job_control

pytestmark = pytest.mark.slow
# The sandbox holds each answer this long, so that the job's only call is in flight when the
# cancel commits (each test checks it was). A scenario's step, not a timing assertion: nothing
# here is asserted about how long anything took.
HELD = 6.0


def _done(stack: Stack, key: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        with stack.sessions() as session:
            job = documents.removal_job(session, stack.settings.account, key)
        return job if job and job["state"] == "done" else None

    try:
        return wait_for(done, 120, f"job {key} done")
    except AssertionError:
        print(stack.logs())
        raise


def _events(stack: Stack) -> list[Event]:
    with stack.sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.at)))


def _removal_calls(stack: Stack) -> list[Any]:
    return [c for c in stack.sandbox.calls() if c.action == "RemoveProduct"]


def _in_flight_then_cancelled(stack: Stack, key: str, skus: list[str]) -> float:
    """Start the job, cancel it while its one call is in flight (what `lazada-worker cancel`
    runs, here in the test's process: the command's start-up would eat into HELD); returns
    when the cancel returned."""
    stack.start_worker()
    stack.send("lazada.remove_products", skus, key=key)
    wait_for(lambda: _removal_calls(stack), 60, "the job's call in flight")
    outcome = job_control.cancel(stack.sessions, stack.settings.account, key)
    returned = time.time()
    assert (outcome.changed, outcome.done) == (0, False)  # its one batch was in a call
    assert len(_removal_calls(stack)) == 1
    return returned


@pytest.mark.parametrize("leaves", ["a transient error", "SKUs not applied"])
def test_what_a_call_in_flight_at_cancel_leaves_is_cancelled_and_never_sent(
    stack: Stack, leaves: str
) -> None:
    skus = [f"C-{n:02d}" for n in range(BATCH - 1)]
    if leaves == "a transient error":
        stack.sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["http500"]})
        skus.append(f"C-{BATCH - 1:02d}")
    else:  # the call fails this SKU and applies none of the others
        skus.append("C-FAIL")
    stack.sandbox.configure({"latency": HELD})
    returned = _in_flight_then_cancelled(stack, "in-flight", skus)

    job = _done(stack, "in-flight")
    assert [c for c in _removal_calls(stack) if c.at > returned] == []
    assert len(_removal_calls(stack)) == 1
    failed = 0 if leaves == "a transient error" else 1
    assert (job["removed"], job["failed"], job["cancelled"]) == (0, failed, BATCH - failed)
    assert stack.sandbox.removal_counts() == {}
    wait_for(lambda: _events(stack), 30, "the job's event")
    ((kind, cancelled),) = [(e.type, e.data["cancelled"]) for e in _events(stack)]
    assert (kind, cancelled) == ("removal.cancelled", BATCH - failed)


def test_a_cancel_that_finds_every_batch_in_flight_ends_finished_when_they_remove_all(
    stack: Stack,
) -> None:
    stack.sandbox.configure({"latency": HELD})
    skus = [f"A-{n:02d}" for n in range(BATCH)]
    _in_flight_then_cancelled(stack, "all-in-flight", skus)

    job = _done(stack, "all-in-flight")
    assert (job["removed"], job["cancelled"]) == (BATCH, 0)
    wait_for(lambda: _events(stack), 30, "the job's event")
    assert [e.type for e in _events(stack)] == ["removal.finished"]
