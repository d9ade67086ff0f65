"""A task message the worker cannot serve is refused, on every broker, and the worker serves on.

Celery unpacks some fields of a message outside its own error handling (a `timelimit` that is
not two numbers raises in the pool's call); such a message used to stop the worker, and with
late acknowledgement it came back after every restart. Real worker processes on each stack.
"""

from __future__ import annotations

import pytest

from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.services import documents

pytestmark = pytest.mark.slow


def test_a_message_with_a_timelimit_of_text_is_refused_and_the_worker_serves_on(
    stack: Stack,
) -> None:
    worker = stack.start_worker(concurrency=2)
    shop = stack.sender()
    shop.send_task(
        "lazada.remove_products",
        args=[["NEVER-1"]],
        kwargs={"key": "bad-timelimit"},
        queue=stack.settings.queue,
        time_limit="x",  # Celery puts it in the message's `timelimit` header as it is
    )
    stack.send("lazada.remove_products", ["AFTER-1"], key="after-bad-message")

    def done() -> dict | None:
        with stack.sessions() as session:
            job = documents.removal_job(session, stack.settings.account, "after-bad-message")
        return job if job and job["state"] == "done" else None

    try:
        job = wait_for(done, 90, "the job sent after the bad message")
    except AssertionError:
        print(stack.logs())
        raise
    assert job["removed"] == 1
    assert worker.process.poll() is None, "the worker stopped"
    assert "Unrecoverable error" not in worker.log()
    assert "timelimit" in worker.log()  # said why it was refused
    with stack.sessions() as session:
        assert documents.removal_job(session, stack.settings.account, "bad-timelimit") is None
    assert "NEVER-1" not in stack.sandbox.removal_counts()
