"""When deliveries happen: a retry past the countdown limit is sent by the sweeper as soon as it
is due, a redelivery starts a fresh series of attempts, and a delivery to a URL since removed
is dead at once without making its event dead."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.outbox.test_events import SECRET, Receiver
from worker.db.engine import core_transaction, get_engine
from worker.db.models import Event, EventDelivery
from worker.outbox import webhooks
from worker.outbox.events import (
    DELIVER_MANY_TASK,
    EVENTS_PER_DELIVERY,
    NewEvent,
    deliver_message,
    record_event,
    record_events,
    redeliver,
    take_recorded,
)
from worker.services.sweepers import sweep_events
from worker.settings import Settings

REFUSING_SECRET = "whsec_" + base64.b64encode(b"another-secret-the-receiver-refuses").decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=False)
    try:
        yield server
    finally:
        server.stop()


def _settings(database_url: str, urls: list[str], secret: str = SECRET) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "LAZADA_WEBHOOK_URLS": ",".join(urls),
            "LAZADA_WEBHOOK_SECRET": secret,
        }
    )


def _sessions(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(database_url), expire_on_commit=False)


def _event(sessions: sessionmaker[Session]) -> str:
    with core_transaction(sessions) as connection:
        return record_event(connection, "order.fetched", "acct", {"order_id": 1})


def _time_passes(sessions: sessionmaker[Session], event_id: str, seconds: float) -> None:
    """As if `seconds` went by: every time the event's rows keep moves that much earlier."""
    shift = timedelta(seconds=seconds)
    with sessions.begin() as session:
        event = session.get(Event, event_id)
        assert event is not None
        for name in ("next_attempt_at", "dispatched_until", "lease_until"):
            if getattr(event, name) is not None:
                setattr(event, name, getattr(event, name) - shift)
        for delivery in session.scalars(
            select(EventDelivery).where(EventDelivery.event_id == event_id)
        ):
            delivery.next_attempt_at -= shift


def _deliveries(sessions: sessionmaker[Session], event_id: str) -> dict[str, EventDelivery]:
    with sessions() as session:
        rows = session.scalars(select(EventDelivery).where(EventDelivery.event_id == event_id))
        return {row.target: row for row in rows}


def _event_row(sessions: sessionmaker[Session], event_id: str) -> Event:
    with sessions() as session:
        row = session.get(Event, event_id)
        assert row is not None
        return row


def _nothing_listening() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return f"http://127.0.0.1:{port}/hooks/gone"


def _no_callback(*_: Any) -> None:
    return None


def test_a_retry_later_than_a_countdown_is_sent_by_the_first_sweep_after_it_is_due(
    database_url: str, receiver: Receiver
) -> None:
    settings = _settings(database_url, [receiver.url], REFUSING_SECRET)  # answered 400
    sessions = _sessions(database_url)
    event_id = _event(sessions)
    assert webhooks.deliver(sessions, settings, _no_callback, event_id)  # a near retry
    # Many attempts failed already: the next wait is far longer than a countdown is held.
    with core_transaction(sessions) as connection:
        connection.execute(update(EventDelivery).values(attempts=9))
    _time_passes(sessions, event_id, 10)
    assert webhooks.deliver(sessions, settings, _no_callback, event_id) == []  # no countdown
    assert sweep_events(sessions, settings) == []  # not due yet

    due = _event_row(sessions, event_id).next_attempt_at.replace(tzinfo=UTC)
    _time_passes(sessions, event_id, (due - datetime.now(UTC)).total_seconds() + 1)  # due now
    assert sweep_events(sessions, settings) == [deliver_message(event_id)]
    assert sweep_events(sessions, settings) == []  # sent once, not again at every sweep


def test_redelivering_a_dead_delivery_starts_a_fresh_series_of_attempts(
    database_url: str, receiver: Receiver
) -> None:
    settings = _settings(database_url, [receiver.url], REFUSING_SECRET)
    settings = replace(settings, webhook_give_up_after=3.0)
    sessions = _sessions(database_url)
    event_id = _event(sessions)
    for _ in range(2):  # waits of 1 s then 2 s add up to the give-up time: dead
        webhooks.deliver(sessions, settings, _no_callback, event_id)
        _time_passes(sessions, event_id, 10)
    assert _event_row(sessions, event_id).state == "dead"

    with core_transaction(sessions) as connection:
        assert redeliver(connection, event_id, None)
    webhooks.deliver(sessions, settings, _no_callback, event_id)
    (delivery,) = _deliveries(sessions, event_id).values()
    # Failed again, once: the first attempt of a new series, retried, not dead.
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 400)
    assert _event_row(sessions, event_id).state == "pending"
    assert len(receiver.refused) == 3


def test_a_delivery_to_a_url_since_removed_is_dead_at_once_and_the_event_follows_the_others(
    database_url: str, receiver: Receiver
) -> None:
    gone = _nothing_listening()
    sessions = _sessions(database_url)
    before = _settings(database_url, [receiver.url, gone])
    event_id = _event(sessions)
    webhooks.deliver(sessions, before, _no_callback, event_id)
    deliveries = _deliveries(sessions, event_id)
    assert deliveries[receiver.url].state == "delivered"
    assert (deliveries[gone].state, deliveries[gone].attempts) == ("pending", 1)

    # The workers restart without that URL; its retry is not due for a while yet.
    after = _settings(database_url, [receiver.url])
    assert sweep_events(sessions, after) == [deliver_message(event_id)]
    webhooks.deliver(sessions, after, _no_callback, event_id)
    deliveries = _deliveries(sessions, event_id)
    assert deliveries[gone].state == "dead" and deliveries[gone].attempts == 1
    assert deliveries[gone].last_error == webhooks.NO_LONGER_CONFIGURED
    assert deliveries[receiver.url].state == "delivered"
    event = _event_row(sessions, event_id)
    assert event.state == "delivered"  # as its one configured delivery
    assert sweep_events(sessions, after) == []
    assert len(receiver.events()[event_id]) == 1  # the receiver got it once, not again


def test_events_recorded_together_are_delivered_by_one_task_per_fifty(
    database_url: str, receiver: Receiver
) -> None:
    settings = _settings(database_url, [receiver.url])
    sessions = _sessions(database_url)
    take_recorded()  # nothing left over from before in this thread
    count = 2 * EVENTS_PER_DELIVERY + 20
    with core_transaction(sessions) as connection:
        ids = record_events(
            connection,
            [NewEvent("order.created", "acct", {"order_id": n}, "shop.cb") for n in range(count)],
        )
    messages = take_recorded()
    with core_transaction(sessions) as connection:
        single = record_event(connection, "order.fetched", "acct", {"order_id": 1})
    assert take_recorded() == [deliver_message(single)]  # one event: a task of its own

    assert [m.task for m in messages] == [DELIVER_MANY_TASK] * 3
    assert [len(m.args[0]) for m in messages] == [50, 50, 20]
    assert [i for m in messages for i in m.args[0]] == ids
    called: list[str] = []
    for message in messages:
        sent = webhooks.deliver_many(
            sessions, settings, lambda _t, event, _q: called.append(event["id"]), message.args[0]
        )
        assert sent == []  # nothing left to retry
    assert called == ids  # each event to its callback once, in the order recorded
    assert sorted(receiver.events()) == sorted(ids)
    assert all(len(d) == 1 for d in receiver.events().values())
    with sessions() as session:
        states = {e.id: e.state for e in session.scalars(select(Event))}
        deliveries = session.scalars(select(EventDelivery)).all()
    assert {states[i] for i in ids} == {"delivered"} and states[single] == "pending"
    assert len(deliveries) == 2 * count and {d.state for d in deliveries} == {"delivered"}


def test_a_delivery_of_several_events_keeps_its_leases_and_skips_one_taken_from_it(
    database_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lease shorter than the margin: the delivery renews the rest before every event.
    monkeypatch.setattr(webhooks, "LEASE_SLACK", 1.0)
    monkeypatch.setattr(webhooks, "RENEW_MARGIN", 5.0)
    settings = _settings(database_url, [receiver.url])
    sessions = _sessions(database_url)
    with core_transaction(sessions) as connection:
        ids = record_events(
            connection, [NewEvent("order.created", "acct", {"order_id": n}) for n in range(3)]
        )
    take_recorded()

    def another_worker_takes_the_second() -> None:
        with sessions.begin() as session:
            taken = session.get(Event, ids[1])
            assert taken is not None
            taken.lease_holder = "another-worker"
            taken.lease_until = datetime.now(UTC) + timedelta(minutes=5)

    posted = receiver.deliveries

    class Watching(list[dict[str, Any]]):
        def append(self, delivery: dict[str, Any]) -> None:
            super().append(delivery)
            if len(self) == 1:  # while the first event is delivered
                another_worker_takes_the_second()

    receiver.deliveries = Watching(posted)
    webhooks.deliver_many(sessions, settings, _no_callback, ids)

    assert [d["event"]["id"] for d in receiver.deliveries] == [ids[0], ids[2]]
    assert _event_row(sessions, ids[1]).lease_holder == "another-worker"
    assert _event_row(sessions, ids[1]).state == "pending"
    assert _event_row(sessions, ids[2]).state == "delivered"
