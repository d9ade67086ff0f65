"""Storing an order, whoever read it (a fetch by id, a sync): one row per (account, order id),
never set back to an older version, and the events that announce it: `order.created` the first
time an order is stored, `order.updated` each time a store changes its `updated_at` or its
statuses (contract, "Order sync")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from worker.db import storable
from worker.db.models import Order, table_of
from worker.outbox.events import NewEvent, record_event, record_events
from worker.platforms import Order as ApiOrder

# Item statuses after which an order no longer changes by itself; anything else is refreshed.
FINAL_STATUSES = frozenset({"delivered", "canceled", "returned", "failed", "return_rejected"})

Stored = Literal["new", "changed", "same", "older"]

_orders = table_of(Order)
_FIND = select(_orders.c.id, _orders.c.state, _orders.c.order_updated_at, _orders.c.statuses)
_FIND_MANY = select(
    _orders.c.order_id,
    _orders.c.id,
    _orders.c.state,
    _orders.c.order_updated_at,
    _orders.c.statuses,
)
# One statement for every changed row of a batch: the columns to set come from the parameters.
_UPDATE_BY_ID = update(_orders).where(_orders.c.id == bindparam("row_id"))
_EVENT_OF: dict[Stored, str] = {"new": "order.created", "changed": "order.updated"}


def order_values(order: ApiOrder, now: datetime) -> dict[str, Any]:
    """The columns an order read from the API sets (its data, made storable: worker.db.storable;
    not its scheduling). The order number and price are not cut: one that does not fit fails
    the store (worker.services.attempts.UnstorableAnswer)."""
    return {
        "state": "fetched",
        "order_number": storable.text(order.order_number),
        "customer_first_name": storable.text(order.customer_first_name),
        "customer_last_name": storable.text(order.customer_last_name),
        "payment_method": storable.bounded(order.payment_method, _orders.c.payment_method),
        "price": str(order.price),
        "gift_option": order.gift_option,
        "items_count": order.items_count,
        "statuses": storable.document(list(order.statuses)),
        "is_open": not set(order.statuses) <= FINAL_STATUSES,
        "order_created_at": order.created_at,
        "order_updated_at": order.updated_at,
        "address_billing": storable.document(dict(order.address_billing)),
        "address_shipping": storable.document(dict(order.address_shipping)),
        "extra_attributes": storable.document(dict(order.extra_attributes)),
        "raw": storable.document(dict(order.raw)),
        "error_code": None,
        "message": None,
        "fetched_at": now,
    }


def store_order(
    connection: Connection,
    account: str,
    order: ApiOrder,
    now: datetime,
    order_callback: str | None,
    row_id: int | None = None,
    extra: dict[str, Any] | None = None,
    account_id: int | None = None,
) -> tuple[int, Stored]:
    """Insert or update the account's order in the caller's transaction, unless the stored
    one is newer; record its event. `extra`: more columns the caller sets on the row (a
    fetch's scheduling), stored whatever the version; `account_id`: the id of the account a new
    row belongs to (worker.accounts.store.work_account_id). Returns the row's id and what it was."""
    found_query = (
        _FIND.where(_orders.c.id == row_id)
        if row_id is not None
        else _FIND.where(_orders.c.account == account, _orders.c.order_id == order.order_id)
    )
    if connection.dialect.name == "postgresql":
        found_query = found_query.with_for_update()
    found = connection.execute(found_query).one_or_none()
    values = order_values(order, now)
    if found is None:
        inserted = connection.execute(
            insert(_orders).returning(_orders.c.id),
            {
                "account": account,
                "account_id": account_id,
                "order_id": order.order_id,
                "next_attempt_at": None,
                **values,
                **(extra or {}),
            },
        )
        new_id = int(inserted.scalar_one())
        _announce(connection, new_id, "order.created", order_callback)
        return new_id, "new"
    stored = _compare(found, order)
    if stored == "older":
        if extra:
            connection.execute(update(_orders).where(_orders.c.id == found.id).values(extra))
        return found.id, "older"
    connection.execute(
        update(_orders).where(_orders.c.id == found.id).values({**values, **(extra or {})})
    )
    if stored in _EVENT_OF:
        _announce(connection, found.id, _EVENT_OF[stored], order_callback)
    return found.id, stored


def store_orders(
    connection: Connection,
    account: str,
    batch: Sequence[ApiOrder],
    now: datetime,
    order_callback: str | None,
    account_id: int | None = None,
) -> list[tuple[int, Stored]]:
    """Store the account's orders as store_order stores each (same rules, same events), in a
    few statements whatever their number: one read of the stored rows, one insert of the new
    ones, one update of the others not older than stored, one read of those to announce and
    one insert of their events. Returns each order's row id and what it was, in the batch's
    order. The database refusing any of them raises (sqlalchemy.exc.StatementError) with
    none stored: the caller, on a savepoint, can store them one by one then, so that the one
    refused fails alone. An order twice in the batch is stored once per time, in turn."""
    if len({order.order_id for order in batch}) < len(batch):
        return [
            store_order(connection, account, order, now, order_callback, account_id=account_id)
            for order in batch
        ]
    if not batch:
        return []
    found_query = _FIND_MANY.where(
        _orders.c.account == account, _orders.c.order_id.in_([o.order_id for o in batch])
    )
    if connection.dialect.name == "postgresql":
        # Locked in order of id: two batches over the same orders never wait on each other.
        found_query = found_query.order_by(_orders.c.id).with_for_update()
    found = {row.order_id: row for row in connection.execute(found_query)}
    fresh: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    outcomes: list[Stored] = []
    for order in batch:
        row = found.get(order.order_id)
        values = order_values(order, now)
        if row is None:
            fresh.append(
                {
                    "account": account,
                    "account_id": account_id,
                    "order_id": order.order_id,
                    "next_attempt_at": None,
                    **values,
                }
            )
            outcomes.append("new")
            continue
        stored = _compare(row, order)
        if stored != "older":
            changes.append({"row_id": row.id, **values})
        outcomes.append(stored)
    made: dict[int, int] = {}
    if fresh:
        # Rows returned in any order: each names its order (unique in the batch).
        inserted = connection.execute(
            insert(_orders).returning(_orders.c.order_id, _orders.c.id), fresh
        )
        made = {int(order_id): int(row_id) for order_id, row_id in inserted}
    if changes:
        connection.execute(_UPDATE_BY_ID, changes)
    ids = [
        made[order.order_id] if order.order_id in made else int(found[order.order_id].id)
        for order in batch
    ]
    outcome_of = list(zip(ids, outcomes, strict=True))
    announced = [(row_id, _EVENT_OF[s]) for row_id, s in outcome_of if s in _EVENT_OF]
    if announced:
        rows = {
            row.id: row
            for row in connection.execute(
                select(_orders).where(_orders.c.id.in_([row_id for row_id, _ in announced]))
            )
        }
        record_events(
            connection,
            [
                NewEvent(kind, account, _document(rows[row_id]), order_callback)
                for row_id, kind in announced
            ],
        )
    return outcome_of


def _compare(found: Any, order: ApiOrder) -> Stored:
    """What the order read is to the row stored for it: older (left as it is), the first
    store of it (a row made for a fetch that had not stored it yet), a change of its
    `updated_at` or statuses, or the same version."""
    stored_at = found.order_updated_at
    if stored_at is not None and (order.updated_at is None or order.updated_at < stored_at):
        return "older"
    if found.state != "fetched":
        return "new"
    if stored_at != order.updated_at or list(found.statuses or []) != list(order.statuses):
        return "changed"
    return "same"


def _announce(connection: Connection, row_id: int, kind: str, order_callback: str | None) -> None:
    """The event, with the order's document, to LAZADA_ORDER_CALLBACK (when set) and the
    webhooks; a fetch's own callback hears of its outcome by `order.fetched`."""
    row = connection.execute(select(_orders).where(_orders.c.id == row_id)).one()
    record_event(connection, kind, row.account, _document(row), order_callback)


def _document(row: Row[Any]) -> dict[str, Any]:
    from worker.services import documents

    # A Core row has the model's attributes by name: the document without an ORM session
    # (a sync announces orders by the hundred in one transaction).
    return documents.order_document(cast(Order, row))
