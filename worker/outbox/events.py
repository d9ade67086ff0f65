"""The outbox: an event is a row written in the transaction that makes work final, and is
delivered from that row after commit (worker.outbox.webhooks), at least once.

A crash between the commit and the send loses nothing: the row stays pending, and the sweeper
sends a delivery task for it once `dispatched_until` has passed. A duplicate carries the same
`id`, on which receivers dedupe.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session

from worker.broker.dispatch import Message
from worker.db import storable
from worker.db.models import Event, EventDelivery, ImageJob, Order, RemovalJob, table_of
from worker.inputs import InvalidInput

DELIVER_TASK = "lazada.deliver_event"
DELIVER_MANY_TASK = "lazada.deliver_events"
# The events of one delivery task when a task recorded many (a sync's page): one message
# instead of one each keeps the broker and the events worker's overhead to a few per page,
# and a few such tasks still share the events worker's threads.
EVENTS_PER_DELIVERY = 50
EVENT_TYPES = (
    "removal.finished",
    "removal.cancelled",
    "order.fetched",
    "order.failed",
    "order.created",
    "order.updated",
    "image_job.finished",
    "account.needs_authorization",
)
EVENT_STATES = ("pending", "delivered", "dead")
# The delivery task is sent right after the commit; if it is not served by then (the worker
# died between commit and send), the sweeper sends another.
REDISPATCH_AFTER = 10.0
# Failed SKUs named in a removal event: a job of any size makes an event a broker takes
# (RabbitMQ refuses messages over 16 MiB by default); `status KEY --json` has them all.
MAX_FAILED_SKUS = 1000

_events = table_of(Event)
_deliveries = table_of(EventDelivery)
_recorded = threading.local()


class NewEvent(NamedTuple):
    """An event to record: its type, account, data and the callback (and queue) it goes to."""

    type: str
    account: str
    data: dict[str, Any]
    callback: str | None = None
    callback_queue: str | None = None


def record_event(
    connection: Connection,
    type: str,
    account: str,
    data: dict[str, Any],
    callback: str | None = None,
    callback_queue: str | None = None,
) -> str:
    """Write an event in the caller's transaction; returns its id.

    The delivery task for it is sent by the task that runs the service, after its commit
    (`take_recorded`, tasks.base.ServiceTask.publish); the sweeper covers a lost one.
    """
    (event_id,) = record_events(
        connection, [NewEvent(type, account, data, callback, callback_queue)]
    )
    return event_id


def record_events(connection: Connection, events: Sequence[NewEvent]) -> list[str]:
    """Write events in the caller's transaction, in one statement; returns their ids, in
    order. Their delivery is sent as record_event's is."""
    for event in events:
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
    rows = []
    for event in events:
        now = datetime.now(UTC)  # each its own moment: events list in the order recorded
        rows.append(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": event.type,
                "account": event.account,
                "at": now,
                # Encodable whatever the work's values hold (a lone surrogate from an API's
                # answer stored before: a body that cannot be sent would never be delivered
                # nor dead).
                "data": storable.document(event.data),
                "callback": event.callback,
                "callback_queue": event.callback_queue,
                "state": "pending",
                "next_attempt_at": now,
                "dispatched_until": now + timedelta(seconds=REDISPATCH_AFTER),
            }
        )
    if not rows:
        return []
    connection.execute(insert(_events), rows)
    ids = [row["id"] for row in rows]
    pending = getattr(_recorded, "ids", None)
    if pending is None:
        pending = _recorded.ids = []
    pending.extend(ids)
    return ids


def take_recorded() -> list[Message]:
    """The delivery tasks of the events this thread recorded since the last call: one for a
    single event, one per EVENTS_PER_DELIVERY of several.

    Called after the service's transactions committed; an event whose transaction rolled back
    has no row, and its delivery task finds nothing to do.
    """
    ids: list[str] = getattr(_recorded, "ids", None) or []
    _recorded.ids = []
    if len(ids) == 1:
        return [deliver_message(ids[0])]
    return [
        Message(DELIVER_MANY_TASK, (ids[start : start + EVENTS_PER_DELIVERY],))
        for start in range(0, len(ids), EVENTS_PER_DELIVERY)
    ]


def deliver_message(event_id: str) -> Message:
    return Message(DELIVER_TASK, (event_id,))


def event_document(row: Event) -> dict[str, Any]:
    """What receivers get: the contract's Event document."""
    return {
        "id": row.id,
        "type": row.type,
        "account": row.account,
        "at": row.at.isoformat(),
        "data": row.data,
    }


def list_events(
    session: Session,
    account: str | None,
    type: str | None = None,
    state: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Events newest first with their deliveries (`lazada-worker events --json`, the
    console's events page); every account's when `account` is None."""
    query = select(Event)
    if account is not None:
        query = query.where(Event.account == account)
    if type is not None:
        query = query.where(Event.type == type)
    if state is not None:
        query = query.where(Event.state == state)
    query = query.order_by(Event.at.desc(), Event.id.desc()).limit(limit).offset(offset)
    rows = list(session.scalars(query))
    deliveries: dict[str, list[dict[str, Any]]] = {row.id: [] for row in rows}
    if rows:
        found = session.scalars(
            select(EventDelivery)
            .where(EventDelivery.event_id.in_(list(deliveries)))
            .order_by(EventDelivery.id)
        )
        for d in found:
            deliveries[d.event_id].append(
                {
                    "target": d.target,
                    "state": d.state,
                    "attempts": d.attempts,
                    "last_status": d.last_status,
                    "last_error": d.last_error,
                    "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
                }
            )
    return [
        {
            "id": row.id,
            "type": row.type,
            "account": row.account,
            "at": row.at.isoformat(),
            "state": row.state,
            "deliveries": deliveries[row.id],
        }
        for row in rows
    ]


def redeliver(connection: Connection, event_id: str, account: str | None) -> bool:
    """Make an event and all its deliveries pending and due now, each at the start of a fresh
    series of attempts (a dead one is retried for the whole give-up time again, not once);
    False if there is none. The last status and error stay until the next attempt."""
    now = datetime.now(UTC)
    query = update(_events).where(_events.c.id == event_id)
    if account is not None:
        query = query.where(_events.c.account == account)
    changed = connection.execute(
        query.values(
            state="pending",
            next_attempt_at=now,
            lease_until=None,
            dispatched_until=now + timedelta(seconds=REDISPATCH_AFTER),
        )
    ).rowcount
    if not changed:
        return False
    connection.execute(
        update(_deliveries)
        .where(_deliveries.c.event_id == event_id)
        .values(state="pending", attempts=0, next_attempt_at=now, delivered_at=None)
    )
    return True


# The events of each kind of work, built from its document in the caller's transaction (a
# Session on that connection joins it, and never commits it).


def record_removal_event(connection: Connection, job_id: int) -> str:
    """`removal.cancelled` when the job has cancelled SKUs, else `removal.finished`: the job
    document with at most MAX_FAILED_SKUS of its failed SKUs, read with a LIMIT (contract,
    Event)."""
    from worker.services import documents

    with Session(bind=connection) as session:
        job = session.get(RemovalJob, job_id)
        assert job is not None
        document = documents.removal_event_document(session, job, MAX_FAILED_SKUS)
        # Cancelled only if the cancel stopped a SKU (contract, Event): a job whose batches
        # were all in flight at the cancel, or a retry's end, says what happened to its SKUs.
        kind = "removal.cancelled" if document["cancelled"] else "removal.finished"
        return record_event(
            connection, kind, job.account, document, job.callback, job.callback_queue
        )


def record_order_event(connection: Connection, row_id: int, fetched: bool) -> str:
    """`order.fetched` or `order.failed`, with the stored order's document."""
    from worker.services import documents

    with Session(bind=connection) as session:
        row = session.get(Order, row_id)
        assert row is not None
        kind = "order.fetched" if fetched else "order.failed"
        document = documents.order_document(row)
        return record_event(
            connection, kind, row.account, document, row.callback, row.callback_queue
        )


def record_image_job_event(connection: Connection, job_id: int) -> str:
    """`image_job.finished`, whatever its final state, with the image job's document."""
    from worker.services import documents

    with Session(bind=connection) as session:
        row = session.get(ImageJob, job_id)
        assert row is not None
        document = documents.image_job_document(row)
        return record_event(
            connection,
            "image_job.finished",
            row.account,
            document,
            row.callback,
            row.callback_queue,
        )


_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,254}")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def clean_callback(callback: Any, callback_queue: Any) -> tuple[str | None, str | None]:
    """The callback task's name and queue a task was given, checked (InvalidInput)."""
    if callback is not None and (
        not isinstance(callback, str) or not _TASK_NAME.fullmatch(callback)
    ):
        raise InvalidInput(
            f"callback must be a task name (letters, digits, '_', '.', ':', '-'), got {callback!r}"
        )
    if callback_queue is not None and (
        not isinstance(callback_queue, str) or not _QUEUE_NAME.fullmatch(callback_queue)
    ):
        raise InvalidInput(f"callback_queue must be a plain queue name, got {callback_queue!r}")
    if callback_queue is not None and callback is None:
        raise InvalidInput("callback_queue was given without a callback: name the task too")
    return callback, callback_queue
