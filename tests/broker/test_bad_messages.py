"""A task message the worker cannot serve is refused, on every broker, and the worker serves on.

Celery unpacks some fields of a message outside its own error handling (a `timelimit` that is
not two numbers raises in the pool's call); such a message used to stop the worker, and with
late acknowledgement it came back after every restart. Real worker processes on each stack.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.broker.dispatch import SLOT_HEADER
from worker.db.models import Order
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


THIRTY_YEARS = 30 * 365 * 86400.0


def test_a_slot_a_shop_sends_neither_parks_an_order_nor_skips_the_rate_limit(
    stack: Stack,
) -> None:
    # A deferral's reserved slot is the worker's own (a header it sets on its messages): as an
    # argument it is refused, and a header no deferral could have set is not honoured.
    worker = stack.start_worker(concurrency=2)
    shop = stack.sender()
    now = time.time()
    for order_id, slot in ((1001, now + THIRTY_YEARS), (1002, now), (1003, now - 3600)):
        stack.send("lazada.fetch_order", order_id, slot=slot)
    for order_id, slot in ((1004, now + THIRTY_YEARS), (1005, now - 3600)):
        shop.send_task(
            "lazada.fetch_order",
            args=[order_id],
            queue=stack.settings.queue,
            headers={SLOT_HEADER: slot},
        )

    def settled() -> list[dict] | None:
        with stack.sessions() as session:
            found = [documents.order(session, stack.settings.account, n) for n in (1004, 1005)]
            failures = documents.failures(session, stack.settings.account)
        done = all(o is not None and o["state"] == "fetched" for o in found)
        return failures if done and len(failures) >= 3 else None

    try:
        failures = wait_for(settled, 60, "two orders fetched and three failure rows")
    except AssertionError:
        print(stack.logs())
        raise
    assert [f["kind"] for f in failures] == ["bad_input"] * 3
    assert all("slot" in f["message"] for f in failures)
    with stack.sessions() as session:
        rows = session.scalars(select(Order).order_by(Order.order_id)).all()
    assert [r.order_id for r in rows] == [1004, 1005]  # nothing recorded for the refused ones
    horizon = datetime.now(UTC) + timedelta(days=1)
    assert all(r.next_attempt_at is None or r.next_attempt_at < horizon for r in rows)
    fetched = {
        call.params.get("OrderId") or call.params.get("order_id") for call in stack.sandbox.calls()
    }
    assert not {"1001", "1002", "1003"} & fetched
    assert worker.process.poll() is None
