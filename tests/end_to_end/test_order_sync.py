"""Order sync end to end: a real worker lists an account's orders from its platform's sandbox
(GetOrders; /orders/get and /orders/items/get) and stores each once, announced once.

Every test runs on both platforms, on the embedded broker with SQLite and on Redis with
PostgreSQL (a sync's messages are the worker's own, which the broker end-to-end tests cover on
RabbitMQ too); the heavy one (thousands of orders over days) on the embedded broker only.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.end_to_end.platforms import PlatformStack
from tests.support.lazop import SELLER, authorize_account
from tests.support.processes import wait_for
from worker.accounts.store import get_account, remove_account
from worker.db.models import Event, Failure, Order, OrderSync

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("stack", ["embedded+sqlite", "redis+postgresql"], indirect=True),
]


# -- the sandbox's order book, whichever platform ------------------------------------------------


def lazop(at: PlatformStack) -> bool:
    return at.platform.name == "lazop"


def book_ids(at: PlatformStack) -> set[int]:
    if lazop(at):
        return set(at.sandbox.listed_order_ids(SELLER))
    return set(at.sandbox.listed_order_ids())


def add_orders(at: PlatformStack, count: int, ago: float = 0.0) -> list[int]:
    if lazop(at):
        return list(at.sandbox.add_orders(SELLER, count, ago))
    return list(at.sandbox.add_orders(count, ago))


def change_orders(at: PlatformStack, ids: list[int]) -> list[int]:
    if lazop(at):
        return list(at.sandbox.change_orders(SELLER, ids))
    return list(at.sandbox.change_orders(ids))


def book_updated(at: PlatformStack) -> dict[int, datetime]:
    book = at.sandbox._service.book
    seller = SELLER if lazop(at) else ""
    return {i: book.get(seller, i).updated_at for i in book.ids(seller)}


# -- what the worker stored ------------------------------------------------------------------


def sync_row(at: PlatformStack) -> OrderSync | None:
    with at.stack.sessions() as session:
        return session.scalars(select(OrderSync).where(OrderSync.account == at.account)).first()


def synced_through(at: PlatformStack, moment: datetime, timeout: float = 240) -> OrderSync:
    """The sync row once a run covered `moment` and none is under way."""

    def done() -> OrderSync | None:
        row = sync_row(at)
        if row is None or row.run_until is not None or row.synced_through is None:
            return None
        return row if row.synced_through >= moment else None

    try:
        return wait_for(done, timeout, f"{at.platform.name} order sync through {moment}")
    except AssertionError:
        print(at.stack.logs())
        raise


def sync_now(at: PlatformStack) -> OrderSync:
    moment = datetime.now(UTC)
    at.send("lazada.sync_orders")
    return synced_through(at, moment)


def stored(at: PlatformStack) -> dict[int, Order]:
    with at.stack.sessions() as session:
        rows = session.scalars(select(Order).where(Order.account == at.account))
        return {row.order_id: row for row in rows}


def announced(at: PlatformStack, kind: str) -> Counter[int]:
    with at.stack.sessions() as session:
        rows = session.scalars(select(Event).where(Event.account == at.account, Event.type == kind))
        return Counter(int(row.data["order_id"]) for row in rows)


def listing_calls(at: PlatformStack) -> list[Any]:
    return at.calls("/orders/get" if lazop(at) else "GetOrders")


def assert_stored_as_listed(at: PlatformStack) -> dict[int, Order]:
    """Every order of the book is stored at its latest version, and announced once as new."""
    rows = stored(at)
    book = book_updated(at)
    assert set(rows) == set(book), (len(rows), len(book))
    stale = [i for i, row in rows.items() if row.order_updated_at != book[i]]
    assert not stale, stale[:5]
    created = announced(at, "order.created")
    assert set(created) == set(book) and max(created.values()) == 1
    if lazop(at):
        for order_id, row in rows.items():
            items = row.raw["items"]
            assert items and all(str(item["order_id"]) == str(order_id) for item in items)
    else:
        assert all("items" not in row.raw for row in rows.values())
    return rows


# -- the specification ---------------------------------------------------------------------------


def test_a_first_sync_stores_orders_of_days_and_of_one_crowded_second_once(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    if at.stack.name != "embedded+sqlite":
        at.sandbox.configure({"listed_orders": 300, "listed_days": 2.0})
    else:  # the heavy case, once per platform
        at.sandbox.configure({"listed_orders": 3000, "listed_days": 5.0})
    book_ids(at)  # the book is made now
    crowded = add_orders(at, 250, ago=3600)  # 250 orders in one second: over two page ends
    at.start_worker()

    row = sync_now(at)

    assert_stored_as_listed(at)
    assert set(crowded) <= set(stored(at))
    assert announced(at, "order.updated") == Counter()
    assert row.last_new == len(book_ids(at)) and row.last_changed == 0
    assert announced(at, "order.created").total() == len(book_ids(at))


def test_orders_added_and_changed_while_a_sync_pages_are_each_stored_once(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 400, "listed_days": 1.0})
    before = sorted(book_ids(at))
    at.env["LAZADA_RATE_LIMIT"] = "8"  # slow enough that changes land while it pages
    at.start_worker()

    at.send("lazada.sync_orders")
    wait_for(lambda: len(listing_calls(at)) >= 2, 120, "the sync paging")
    changed = change_orders(at, before[:40:2])  # some read already, some not yet
    added = add_orders(at, 30)
    synced_through(at, datetime.now(UTC) - timedelta(days=1))
    last = sync_now(at)  # one more run: it reads what changed after the first one's end

    rows = assert_stored_as_listed(at)
    assert set(added) <= set(rows)
    updated = announced(at, "order.updated")
    assert set(updated) <= set(changed) and (not updated or max(updated.values()) == 1)
    assert last.run_until is None


def test_a_row_visible_minutes_late_is_stored_by_the_next_sync(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 20, "listed_days": 1.0})
    at.start_worker()
    sync_now(at)
    # Updated three minutes ago, visible only now: behind the sync point of the last sync.
    [late] = add_orders(at, 1, ago=180)

    sync_now(at)

    assert late in stored(at)
    assert announced(at, "order.created")[late] == 1


def test_a_sync_killed_mid_way_goes_on_from_its_position_in_another_worker(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 600, "listed_days": 2.0})
    book_ids(at)
    at.env["LAZADA_RATE_LIMIT"] = "10"
    first = at.start_worker()
    moment = datetime.now(UTC)
    at.send("lazada.sync_orders")
    wait_for(lambda: len(stored(at)) >= 150, 120, "a sync half way")

    first.kill()
    at.start_worker()

    synced_through(at, moment)
    assert_stored_as_listed(at)


def test_two_workers_and_two_requests_make_one_sync_at_a_time(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 300, "listed_days": 1.0})
    book_ids(at)
    at.start_worker(concurrency=4)
    at.start_worker(concurrency=4)
    moment = datetime.now(UTC)
    at.send("lazada.sync_orders")
    at.send("lazada.sync_orders")

    synced_through(at, moment)

    assert_stored_as_listed(at)
    # One run and at most one following it (the second request), never two side by side:
    # two runs at once would each list every page.
    pages = len(listing_calls(at))
    assert pages <= 2 * (300 // 100 + 2), pages


# A legacy order has no items call (D9).
@pytest.mark.parametrize("platform_stack", ["lazop"], indirect=True)
def test_items_answered_out_of_order_and_an_unknown_id_in_a_chunk(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 120, "listed_days": 1.0})
    ids = sorted(book_ids(at))
    refused = ids[7]
    at.sandbox.refuse_items(SELLER, [refused])
    at.start_worker()

    sync_now(at)

    def fetched_alone() -> Order | None:
        row = stored(at).get(refused)
        return row if row is not None and row.next_attempt_at is None else None

    wait_for(fetched_alone, 60, "the refused order fetched by id")
    assert_stored_as_listed(at)
    assert at.calls("/order/get")  # fetched alone
    assert all(len(c.params["order_ids"].split(",")) <= 50 for c in at.calls("/orders/items/get"))


# A legacy account is never authorized by its seller.
@pytest.mark.parametrize("platform_stack", ["lazop"], indirect=True)
def test_an_account_that_needs_authorization_mid_sync_parks_it_and_resumes(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 500, "listed_days": 1.0})
    book_ids(at)
    at.env["LAZADA_RATE_LIMIT"] = "8"
    at.start_worker()
    moment = datetime.now(UTC)
    at.send("lazada.sync_orders")
    wait_for(lambda: len(listing_calls(at)) >= 1, 60, "the sync started")
    at.sandbox.revoke(SELLER)
    at.sandbox.expire_access_tokens(SELLER)

    def parked() -> bool:
        with at.stack.sessions() as session:
            account = get_account(session, at.stack.settings, at.account)
            return account.state == "needs_authorization"

    wait_for(parked, 90, "the account parked")
    row = sync_row(at)
    assert row is not None and row.run_until is not None  # parked, not failed
    authorize_account(at.stack, at.sandbox, at.account)

    synced_through(at, moment)
    assert_stored_as_listed(at)


def test_an_order_in_a_shape_that_cannot_be_stored_is_a_failure_and_the_sync_goes_on(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 150, "listed_days": 1.0})
    bad = sorted(book_ids(at))[60]
    if lazop(at):
        at.sandbox.garble_orders(SELLER, [bad])
    else:
        at.sandbox.garble_orders([bad])
    at.start_worker()

    sync_now(at)

    rows = stored(at)
    assert set(rows) == book_ids(at) - {bad}
    with at.stack.sessions() as session:
        failures = session.scalars(
            select(Failure).where(Failure.account == at.account, Failure.kind == "order")
        ).all()
    assert [f.subject for f in failures] == [str(bad)]
    assert "updated" in (failures[0].message or "").lower()


def test_an_account_removed_mid_sync_ends_its_sync(platform_stack: PlatformStack) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 600, "listed_days": 1.0})
    book_ids(at)
    at.env["LAZADA_RATE_LIMIT"] = "5"
    worker = at.start_worker()
    at.send("lazada.sync_orders")
    wait_for(lambda: len(listing_calls(at)) >= 1, 60, "the sync started")
    with at.stack.sessions.begin() as session:
        remove_account(session, at.stack.settings, at.account)

    wait_for(lambda: sync_row(at) is None, 60, "the sync ended")
    calls = len(at.calls())
    assert not worker.exited()
    # Nothing more is sent for it.
    at.send("lazada.fetch_order", 190)  # names a removed account: a bad_input failure

    def refused() -> bool:
        with at.stack.sessions() as session:
            return bool(session.scalars(select(Failure).where(Failure.kind == "bad_input")).first())

    wait_for(refused, 60, "the removed account refused")
    assert len(at.calls()) <= calls + 1  # at most a call that was under way


def test_a_fetch_of_a_synced_order_refreshes_it_and_each_change_is_announced_once(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.configure({"listed_orders": 10, "listed_days": 1.0})
    [changed, *_] = sorted(book_ids(at))
    at.env["LAZADA_ORDER_CALLBACK"] = "shop.order_changed"
    at.start_worker()
    sync_now(at)
    change_orders(at, [changed])

    at.send("lazada.fetch_order", changed)

    def refreshed() -> Order | None:
        row = stored(at)[changed]
        return row if row.order_updated_at == book_updated(at)[changed] else None

    wait_for(refreshed, 60, "the fetch storing the change")
    sync_now(at)  # lists the same version again: no second announcement
    assert announced(at, "order.updated") == Counter({changed: 1})
    assert_stored_as_listed(at)
    with at.stack.sessions() as session:
        callbacks = set(
            session.scalars(
                select(Event.callback).where(
                    Event.account == at.account, Event.type.in_(["order.created", "order.updated"])
                )
            )
        )
    assert callbacks == {"shop.order_changed"}

    def delivered() -> bool:
        # A sync's page of events goes out as one delivery task (lazada.deliver_events).
        with at.stack.sessions() as session:
            states = session.scalars(
                select(Event.state).where(
                    Event.account == at.account, Event.type.in_(["order.created", "order.updated"])
                )
            ).all()
        return bool(states) and set(states) == {"delivered"}

    wait_for(delivered, 60, "every order event delivered to the callback")
