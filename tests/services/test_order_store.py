"""Storing an order, whoever read it: never set back to an older version, announced once when
new and once per change of `updated_at` or statuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from worker.db.engine import core_transaction, get_engine
from worker.db.models import Event, Order
from worker.db.schema import ensure_schema
from worker.platforms import Order as ApiOrder
from worker.services.order_store import store_order

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def api_order(updated: datetime, statuses: tuple[str, ...] = ("pending",)) -> ApiOrder:
    return ApiOrder(
        order_id=77,
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
        raw={"order_id": "77"},
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
