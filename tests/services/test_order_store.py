"""Storing an order, whoever read it: never set back to an older version, announced once when
new and once per change of `updated_at` or statuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import sessionmaker

from worker.db.engine import core_transaction, get_engine
from worker.db.models import Event, Order
from worker.db.schema import ensure_schema
from worker.platforms import Order as ApiOrder
from worker.services.order_store import store_order, store_orders

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def api_order(
    updated: datetime, statuses: tuple[str, ...] = ("pending",), order_id: int = 77
) -> ApiOrder:
    return ApiOrder(
        order_id=order_id,
        order_number="N-77",
        customer_first_name="A",
        customer_last_name="B",
        payment_method="COD",
        remarks="",
        delivery_info="",
        price=Decimal("10.00"),
        gift_option=False,
        gift_message="",
        voucher_code="",
        created_at=T0,
        updated_at=updated,
        address_billing={},
        address_shipping={},
        national_registration_number="",
        items_count=1,
        promised_shipping_time="",
        extra_attributes={},
        statuses=statuses,
        tax_code="",
        branch_number="",
        raw={"order_id": str(order_id)},
    )


def test_an_order_is_announced_when_new_and_per_change_and_never_set_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    ensure_schema(url)
    sessions = sessionmaker(get_engine(url), expire_on_commit=False)
    first = api_order(T0)
    later = api_order(T0 + timedelta(minutes=5), ("shipped",))
    outcomes = []
    for order in (first, first, later, first, replace(later, price=Decimal("11.00"))):
        with core_transaction(sessions) as connection:
            _, stored = store_order(connection, "shop", order, datetime.now(UTC), "shop.cb")
            outcomes.append(stored)

    assert outcomes == ["new", "same", "changed", "older", "same"]
    with sessions() as session:
        row = session.scalars(select(Order)).one()
        events = session.scalars(select(Event).order_by(Event.at)).all()
    assert row.order_updated_at == later.updated_at and row.statuses == ["shipped"]
    assert row.price == "11.00"  # the same version, stored again, keeps what it holds now
    assert [e.type for e in events] == ["order.created", "order.updated"]
    assert {e.callback for e in events} == {"shop.cb"}
    assert events[1].data["statuses"] == ["shipped"]


def test_a_batch_is_stored_and_announced_by_the_rules_of_one_order_at_a_time(
    database_url: str,
) -> None:
    sessions = sessionmaker(get_engine(database_url), expire_on_commit=False)
    later = T0 + timedelta(minutes=5)
    with core_transaction(sessions) as connection:
        for order in (api_order(later, order_id=1), api_order(T0, order_id=2)):
            store_order(connection, "shop", order, datetime.now(UTC), None)
        store_order(connection, "shop", api_order(T0, order_id=3), datetime.now(UTC), None)
    with sessions.begin() as session:  # a fetch asked for, not stored yet
        session.add(Order(account="shop", order_id=4, state="pending"))
        session.add(Order(account="other-shop", order_id=5, state="fetched"))
    with sessions() as session:
        before = {e.id for e in session.scalars(select(Event))}

    batch = [
        api_order(T0, order_id=1),  # older than stored
        api_order(T0, order_id=2),  # the same version
        api_order(later, ("shipped",), order_id=3),  # changed
        api_order(T0, order_id=4),  # first stored
        api_order(T0, order_id=5),  # new for this account (another's has the same id)
    ]
    with core_transaction(sessions) as connection:
        outcomes = store_orders(connection, "shop", batch, datetime.now(UTC), "shop.cb")

    assert [stored for _, stored in outcomes] == ["older", "same", "changed", "new", "new"]
    with sessions() as session:
        rows = {
            r.order_id: r for r in session.scalars(select(Order).where(Order.account == "shop"))
        }
        events = [
            e for e in session.scalars(select(Event).order_by(Event.at)) if e.id not in before
        ]
    assert [row_id for row_id, _ in outcomes] == [rows[o.order_id].id for o in batch]
    assert sorted(rows) == [1, 2, 3, 4, 5]  # one row each, the fetch's row stored in place
    assert rows[1].order_updated_at == later  # never set back
    assert rows[3].statuses == ["shipped"] and rows[4].state == "fetched"
    assert [(e.type, e.data["order_id"]) for e in events] == [
        ("order.updated", 3),
        ("order.created", 4),
        ("order.created", 5),
    ]
    assert {e.callback for e in events} == {"shop.cb"}
    assert events[0].data["statuses"] == ["shipped"]


def test_a_batch_of_a_hundred_orders_takes_as_many_statements_as_one_of_two(
    database_url: str,
) -> None:
    engine = get_engine(database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def store(ids: range, updated: datetime) -> int:
        statements.clear()
        batch = [api_order(updated, order_id=i) for i in ids]
        event.listen(engine, "before_cursor_execute", count)
        try:
            with core_transaction(sessions) as connection:
                store_orders(connection, "shop", batch, datetime.now(UTC), None)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    small, large = range(1, 3), range(100, 200)
    # New orders, then each of them changed.
    assert store(large, T0) == store(small, T0)
    assert store(large, T0 + timedelta(minutes=1)) == store(small, T0 + timedelta(minutes=1))
    with sessions() as session:
        assert len(session.scalars(select(Event)).all()) == 2 * (len(small) + len(large))
