"""A worker's heartbeat says how late it runs the tasks of countdown messages, which the
sweepers allow for (worker.db.heartbeats.Lateness)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.db.models import WorkerHeartbeat

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stack", ["embedded+sqlite", "redis+postgresql"], indirect=True)
def test_a_worker_that_runs_a_countdown_message_late_says_so_with_its_next_beat(
    stack: Stack,
) -> None:
    # Due in 1 s, taken by a worker that starts 4 s after it was sent: about 3 s late.
    stack.sender().send_task("lazada.schedule_order_syncs", countdown=1, queue=stack.settings.queue)
    time.sleep(4)
    worker = stack.start_worker(concurrency=2)
    wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")

    def lateness() -> float:
        """The most any worker process wrote with its last beat."""
        with stack.sessions() as session:
            said = session.scalars(
                select(WorkerHeartbeat.late_seconds).where(WorkerHeartbeat.kind == "worker")
            )
            return max((late or 0.0 for late in said), default=0.0)

    late = wait_for(lambda: lateness() >= 2.5 and lateness(), 30, "a beat with the lateness", 0.1)
    assert late < 30  # that task's lateness, not the time since the worker started
    # The beats after it, with no late task since, say it is on time again.
    wait_for(lambda: lateness() < 1.0, 30, "a beat on time", 0.2)
