"""Storing an order, whoever read it (a fetch by id, a sync): one row per (account, order id),
never set back to an older version, and the events that announce it: `order.created` the first
time an order is stored, `order.updated` each time a store changes its `updated_at` or its
statuses (contract, "Order sync")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, insert, select, update

from worker.db import storable
from worker.db.models import Order, table_of
from worker.outbox.events import record_event
from worker.platforms import Order as ApiOrder

# Item statuses after which an order no longer changes by itself; anything else is refreshed.
FINAL_STATUSES = frozenset({"delivered", "canceled", "returned", "failed", "return_rejected"})

Stored = Literal["new", "changed", "same", "older"]

_orders = table_of(Order)
_FIND = select(_orders.c.id, _orders.c.state, _orders.c.order_updated_at, _orders.c.statuses)


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
    stored_at = found.order_updated_at
    if stored_at is not None and (order.updated_at is None or order.updated_at < stored_at):
        if extra:
            connection.execute(update(_orders).where(_orders.c.id == found.id).values(extra))
        return found.id, "older"
    connection.execute(
        update(_orders).where(_orders.c.id == found.id).values({**values, **(extra or {})})
    )
    if found.state != "fetched":  # a row made for a fetch that had not stored it yet
        _announce(connection, found.id, "order.created", order_callback)
        return found.id, "new"
    if stored_at != order.updated_at or list(found.statuses or []) != list(order.statuses):
        _announce(connection, found.id, "order.updated", order_callback)
        return found.id, "changed"
    return found.id, "same"


def _announce(connection: Connection, row_id: int, kind: str, order_callback: str | None) -> None:
    """The event, with the order's document, to LAZADA_ORDER_CALLBACK (when set) and the
    webhooks; a fetch's own callback hears of its outcome by `order.fetched`."""
    from worker.services import documents

    # A Core row has the model's attributes by name: the document without an ORM session
    # (a sync announces orders by the hundred in one transaction).
    row = connection.execute(select(_orders).where(_orders.c.id == row_id)).one()
    document = documents.order_document(cast(Order, row))
    record_event(connection, kind, row.account, document, order_callback)
