"""Sweepers: find due work whose message was lost, and send it again.

A row is due when its time has come, no task holds its lease, and the message sent for it
should have been served by now (a killed worker, a broker that dropped it in flight).
Sending again is safe: the task claims the row, so a late original does nothing.

An idle sweep logs nothing (beat runs each every few seconds); one that sends work again logs
one line at INFO, with how many rows of which kind.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from worker.db.leases import lease_free
from worker.db.models import ImageJob, Order, RemovalBatch
from worker.dispatch import Message, dispatch_deadline
from worker.services.images import ADVANCE_TASK
from worker.services.orders import FETCH_ORDER_TASK
from worker.services.removal import REMOVE_BATCH_TASK
from worker.settings import Settings

log = logging.getLogger(__name__)

SWEEP_LIMIT = 500  # rows a sweep re-sends at most; the next sweep takes the rest


def sweep_removal_batches(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    return _sweep(
        sessions,
        settings,
        "removal batch(es)",
        RemovalBatch,
        RemovalBatch.next_attempt_at,
        RemovalBatch.state == "pending",
        lambda row: Message(REMOVE_BATCH_TASK, (row.id,)),
    )


def sweep_orders(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    return _sweep(
        sessions,
        settings,
        "order(s)",
        Order,
        Order.next_attempt_at,
        Order.next_attempt_at.is_not(None),
        lambda row: Message(FETCH_ORDER_TASK, (row.order_id,)),
    )


def sweep_image_jobs(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    return _sweep(
        sessions,
        settings,
        "image job(s)",
        ImageJob,
        ImageJob.next_poll_at,
        ImageJob.state == "pending",
        lambda row: Message(ADVANCE_TASK, (row.id,)),
    )


def _sweep(
    sessions: sessionmaker[Session],
    settings: Settings,
    what: str,
    model: Any,
    due_column: InstrumentedAttribute[Any],
    pending: Any,
    message: Any,
) -> list[Message]:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        query = (
            select(model)
            .where(
                model.account == settings.account,
                pending,
                due_column <= now,
                lease_free(model, now),
                or_(model.dispatched_until.is_(None), model.dispatched_until < now),
            )
            .order_by(due_column)
            .limit(SWEEP_LIMIT)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        for row in rows:
            row.dispatched_until = dispatch_deadline(now, settings.redispatch_after)
        messages = [message(row) for row in rows]
    if messages:
        log.info(
            "sweeper: %d %s sent again (no task took them within %gs)",
            len(messages),
            what,
            settings.redispatch_after,
            extra={"account": settings.account, "outcome": "sent_again", "count": len(messages)},
        )
    return messages
