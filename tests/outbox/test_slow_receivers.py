"""Receivers that answer a byte at a time, or without end: each delivery ends at its deadline
having read little, and API work goes on while such deliveries are under way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.outbox.test_events import SECRET
from tests.support.processes import wait_for
from tests.support.slow_http import Mode, SlowServer
from tests.support.worker_stack import Stack
from worker.db.engine import core_transaction, get_engine
from worker.db.models import EventDelivery, RemovalJob
from worker.outbox import webhooks
from worker.outbox.events import record_event
from worker.settings import Settings


@pytest.fixture
def servers() -> Iterator[list[SlowServer]]:
    started: list[SlowServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def _deliver_in_a_thread(
    sessions: sessionmaker[Session], settings: Settings, event_id: str
) -> threading.Thread:
    thread = threading.Thread(
        target=webhooks.deliver, args=(sessions, settings, lambda *_: None, event_id), daemon=True
    )
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("mode", "answer", "state", "status", "error"),
    [
        # The status line and headers a byte at a time: no answer by the deadline.
        ("status", "200 OK", "pending", None, "deadline"),
        # A status line whose headers come a byte at a time: no whole answer by the deadline.
        ("headers", "200 OK", "pending", None, "deadline"),
        # A 500 whose body comes a byte at a time: a failed attempt, ended at the deadline.
        ("body", "500 Internal Server Error", "pending", 500, "deadline"),
        # A 2xx whose body never ends: delivered, the body read no further than the cap.
        ("flood", "200 OK", "delivered", 200, None),
    ],
)
def test_a_delivery_to_a_slow_receiver_ends_at_its_deadline_without_reading_much(
    database_url: str,
    servers: list[SlowServer],
    mode: Mode,
    answer: str,
    state: str,
    status: int | None,
    error: str | None,
) -> None:
    server = SlowServer(mode, answer=answer)
    servers.append(server)
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "LAZADA_WEBHOOK_URLS": server.url,
            "LAZADA_WEBHOOK_SECRET": SECRET,
            "LAZADA_WEBHOOK_TIMEOUT": "1",
        }
    )
    sessions = sessionmaker(get_engine(database_url), expire_on_commit=False)
    with core_transaction(sessions) as connection:
        event_id = record_event(connection, "order.fetched", "acct", {"order_id": 1})

    delivery = _deliver_in_a_thread(sessions, settings, event_id)
    wait_for(lambda: not delivery.is_alive(), 60, "the delivery to end")

    # The delivery ended the connection while the receiver was still sending: it did not wait
    # for the end of an answer that has none.
    wait_for(lambda: server.counts()[2] == 1, 30, "the receiver to see the connection end")
    assert server.counts() == (1, 0, 1)  # one request, answered in part, ended by the client
    assert server.sent[0] < server.flood_bytes  # the flood was not read through
    with sessions() as session:
        (row,) = session.scalars(select(EventDelivery))
    assert (row.state, row.attempts, row.last_status) == (state, 1, status)
    if error is None:
        assert row.last_error is None
    else:
        assert row.last_error is not None and error in row.last_error


def _open_connections(servers: list[SlowServer]) -> int:
    return sum(server.counts()[1] for server in servers)


def _attempts(stack: Stack) -> list[EventDelivery]:
    with stack.sessions() as session:
        return list(session.scalars(select(EventDelivery).where(EventDelivery.attempts > 0)))


def _removal_done(stack: Stack, key: str) -> bool:
    with stack.sessions() as session:
        job = session.scalars(select(RemovalJob).where(RemovalJob.key == key)).first()
        return job is not None and job.finished_at is not None


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["embedded+sqlite", "redis+postgresql"], indirect=True)
def test_api_work_is_done_while_slow_receivers_hold_deliveries(
    stack: Stack, servers: list[SlowServer]
) -> None:
    concurrency = 2
    servers += [SlowServer("status", interval=0.3) for _ in range(3)]
    stack.env["LAZADA_WEBHOOK_URLS"] = ",".join(server.url for server in servers)
    stack.env["LAZADA_WEBHOOK_SECRET"] = SECRET
    stack.env["LAZADA_WEBHOOK_TIMEOUT"] = "20"
    stack.start_worker(concurrency=concurrency)
    # Events to deliver, more of them at once than the worker has threads for API calls.
    for order_id in (190, 900_000_001, 900_000_002, 900_000_003):
        stack.send("lazada.fetch_order", order_id)
    try:
        wait_for(lambda: _open_connections(servers) >= concurrency, 90, "deliveries under way")
        stack.send("lazada.remove_products", ["SLOW-1", "SLOW-2"], key="beside-slow")
        wait_for(lambda: _removal_done(stack, "beside-slow"), 60, "the removal to finish")
    except AssertionError:
        print(stack.logs())
        raise
    # The removal finished while the receivers were still being sent to: no delivery attempt
    # had ended yet.
    assert _open_connections(servers) > 0
    assert _attempts(stack) == []

    # Then each of those deliveries ends at its deadline, as a failed attempt to retry.
    ended: list[Any] = wait_for(lambda: _attempts(stack), 90, "a delivery attempt to end")
    assert all(row.state == "pending" and "deadline" in (row.last_error or "") for row in ended), [
        (row.state, row.last_error) for row in ended
    ]
    wait_for(
        lambda: sum(server.counts()[2] for server in servers) >= 1,
        30,
        "a receiver to see its connection ended by the worker",
    )
