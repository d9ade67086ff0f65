"""Sweepers: find due work whose message was lost, and send it again, for every account.

A row is sent again when its time has come and either the task that claimed it died (the
worker process that holds its lease stopped beating, worker.db.heartbeats, or the lease ran
out: a live worker renews the leases of its attempts under way), or no task holds it and the
message sent for it should have been served by now (a killed worker that held it, a broker
that dropped it in flight; worker.broker.dispatch says how long that is). Sending again is
safe: the task claims the row, so a late original does nothing.

An idle sweep logs nothing (beat runs each every few seconds); one that sends work again logs
one line at INFO, with how many rows of which kind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.broker.dispatch import Message, dispatch_deadline
from worker.db.engine import core_transaction
from worker.db.heartbeats import record_sweep, stale_holders
from worker.db.models import (
    Event,
    EventDelivery,
    ImageJob,
    Order,
    OrderSync,
    RemovalBatch,
    table_of,
)
from worker.outbox import webhooks
from worker.outbox.events import deliver_message
from worker.services.images import ADVANCE_TASK
from worker.services.order_sync import step_message
from worker.services.orders import fetch_message
from worker.services.removal import REMOVE_BATCH_TASK
from worker.settings import Settings

log = logging.getLogger(__name__)

SWEEP_LIMIT = 500  # rows a sweep re-sends at most; the next sweep takes the rest

_batches = table_of(RemovalBatch)
_orders = table_of(Order)
_images = table_of(ImageJob)
_events = table_of(Event)
_deliveries = table_of(EventDelivery)
_syncs = table_of(OrderSync)


def sweep_removal_batches(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    return _sweep(
        sessions,
        settings,
        _batches,
        _batches.c.next_attempt_at,
        _batches.c.state == "pending",
        lambda row: Message(REMOVE_BATCH_TASK, (row.id,)),
        "removal batch(es)",
    )


def sweep_orders(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    return _sweep(
        sessions,
        settings,
        _orders,
        _orders.c.next_attempt_at,
        _orders.c.next_attempt_at.is_not(None),
        lambda row: fetch_message(row.account, row.order_id),
        "order(s)",
    )


def sweep_order_syncs(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    """Order syncs under way whose next step's message was lost."""
    return _sweep(
        sessions,
        settings,
        _syncs,
        _syncs.c.next_attempt_at,
        _syncs.c.run_until.is_not(None),
        lambda row: step_message(row.account),
        "order sync(s)",
    )


def sweep_image_jobs(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    return _sweep(
        sessions,
        settings,
        _images,
        _images.c.next_poll_at,
        _images.c.state == "pending",
        lambda row: Message(ADVANCE_TASK, (row.id,)),
        "image job(s)",
    )


def sweep_events(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    """Undelivered events that are due: a delivery task lost, or a retry left to the sweeper.

    An event with a delivery to a URL no longer configured is due at once, whenever its next
    retry was: its delivery task makes that delivery dead and settles the event. URLs change
    only with a restart, so this is looked for once per database and set of URLs a process has.
    """
    urls = (settings.database_url, frozenset(settings.webhook_urls))
    if urls not in _removed_urls_checked:
        now = datetime.now(UTC)
        stale = select(_deliveries.c.event_id).where(webhooks.removed_targets_pending(settings))
        with core_transaction(sessions) as connection:
            connection.execute(
                update(_events)
                .where(
                    _events.c.state == "pending",
                    _events.c.next_attempt_at > now,
                    _events.c.id.in_(stale),
                )
                .values(next_attempt_at=now, dispatched_until=None)
            )
        _removed_urls_checked.add(urls)
    return _sweep(
        sessions,
        settings,
        _events,
        _events.c.next_attempt_at,
        _events.c.state == "pending",
        lambda row: deliver_message(row.id),
        "event(s)",
    )


_removed_urls_checked: set[tuple[str, frozenset[str]]] = set()


def _sweep(
    sessions: sessionmaker[Session],
    settings: Settings,
    table: Table,
    due_column: ColumnElement[Any],
    pending: ColumnElement[bool],
    message: Callable[[Row[Any]], Message],
    what: str,
) -> list[Message]:
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        query = (
            select(table)
            .where(
                pending,
                due_column <= now,
                or_(
                    table.c.lease_until < now,  # its task died holding it
                    and_(  # its worker process stopped beating: gone, the lease with it
                        table.c.lease_until.is_not(None),
                        table.c.lease_holder.in_(stale_holders()),
                    ),
                    and_(
                        table.c.lease_until.is_(None),
                        or_(table.c.dispatched_until.is_(None), table.c.dispatched_until < now),
                    ),
                ),
            )
            .order_by(due_column)
            .limit(SWEEP_LIMIT)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = connection.execute(query).all()
        if rows:
            connection.execute(
                update(table)
                .where(table.c.id.in_([row.id for row in rows]))
                .values(
                    dispatched_until=dispatch_deadline(now, settings.redispatch_after),
                    lease_until=None,  # run out: the sent task's claim takes it afresh
                )
            )
        messages = [message(row) for row in rows]
        record_sweep(connection)
    if messages:
        # Leased still: their worker stopped beating (sent again before their lease's end).
        orphaned = sum(1 for row in rows if row.lease_until is not None and row.lease_until >= now)
        log.info(
            "sweeper: %d %s sent again (their task died, or no task took them in time; "
            "%d held by a worker that stopped beating)",
            len(messages),
            what,
            orphaned,
            extra={"outcome": "sent_again", "count": len(messages), "orphaned": orphaned},
        )
    return messages
