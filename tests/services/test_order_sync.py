"""The order sync's paging, step by step in this process against the legacy sandbox (SQLite and
PostgreSQL): orders that leave a crowded second while it is paged are not skipped, none is
stored twice, the sync point moves only past what is stored, and a task goes on from page to
page by itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.platforms import PlatformFor
from worker.db.engine import get_engine
from worker.db.models import Account as AccountRow
from worker.db.models import Event, Failure, Order, OrderSync
from worker.ratelimit import SlotSleepers
from worker.ratelimit import limiter as limiter_module
from worker.sandbox.sellercenter import Sandbox
from worker.services import order_sync
from worker.settings import Settings


def run_steps(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    account: str,
    between: dict[int, object] | None = None,
) -> int:
    """Send the sync's messages to its step, in order, until none is left; `between[n]` runs
    before step n. Returns the steps taken (a page each: a step here does not go on to the
    next page by itself)."""
    steps = 0
    messages = order_sync.request_sync(sessions, settings, account)
    while messages:
        assert all(m.task == order_sync.STEP_TASK for m in messages)
        steps += 1
        action = (between or {}).get(steps)
        if callable(action):
            action()
        messages = order_sync.sync_step(sessions, platforms, settings, account, for_seconds=0)
        assert steps < 200
    return steps


def test_a_task_reads_page_after_page_until_the_run_is_done(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As in a worker of two threads: one may sleep for its next slot (at the default rate).
    sleepers = SlotSleepers()
    sleepers.allow(2)
    monkeypatch.setattr(limiter_module, "slot_sleepers", sleepers)
    # Orders over three hours: pages that end in different seconds, each followed at once.
    orders = [order for hours in (3, 2, 1) for order in sandbox.add_orders(90, ago=hours * 3600)]
    account = settings.account
    assert order_sync.request_sync(sessions, settings, account)

    # Long enough for the three pages on a busy machine (the default is a few seconds).
    messages = order_sync.sync_step(sessions, platforms, settings, account, for_seconds=120)

    assert messages == []
    with sessions() as session:
        assert set(session.scalars(select(Order.order_id))) == set(orders)
        sync = session.scalars(select(OrderSync)).one()
    assert sync.run_until is None and sync.synced_through is not None
    listed = [call for call in sandbox.calls() if call.action in ("GetOrders", "/orders/get")]
    assert len(listed) == 3


def test_orders_that_leave_a_crowded_second_while_it_is_paged_are_not_skipped(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor, sandbox: Sandbox
) -> None:
    crowded = sandbox.add_orders(250, ago=3600)  # one second, two and a half pages
    account = settings.account

    def change_some_read() -> None:
        # 30 of the crowded second's orders change (they leave it for now): the offsets of
        # the others shift by as many while the second is paged.
        sandbox.change_orders(crowded[:30])

    run_steps(sessions, platforms, settings, account, {3: change_some_read})

    with sessions() as session:
        stored_now = set(session.scalars(select(Order.order_id)))
    # Every order that stayed in the second is stored by this run; those that changed after
    # it started are past its end (the next run's).
    assert set(crowded[30:]) <= stored_now
    run_steps(sessions, platforms, settings, account)
    with sessions() as session:
        stored = {row.order_id: row for row in session.scalars(select(Order))}
        created = Counter(
            int(e.data["order_id"])
            for e in session.scalars(select(Event).where(Event.type == "order.created"))
        )
        sync = session.scalars(select(OrderSync)).one()
    assert set(stored) == set(crowded)
    assert set(created) == set(crowded) and max(created.values()) == 1
    assert sync.run_until is None and sync.synced_through is not None
    assert sync.synced_through > datetime.now(UTC) - timedelta(minutes=1)


def test_a_second_sync_reads_only_the_overlap_and_announces_only_changes(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor, sandbox: Sandbox
) -> None:
    first = sandbox.add_orders(120, ago=7200)
    account = settings.account
    run_steps(sessions, platforms, settings, account)
    sandbox.change_orders(first[:3])
    late = sandbox.add_orders(1, ago=120)  # behind the sync point: the overlap finds it

    run_steps(sessions, platforms, settings, account)

    with sessions() as session:
        kinds = Counter(e.type for e in session.scalars(select(Event)))
        stored = set(session.scalars(select(Order.order_id)))
    assert stored == set(first) | set(late)
    assert kinds == Counter({"order.created": 121, "order.updated": 3})


def test_a_sync_asked_for_while_one_ran_follows_it_at_once_when_it_fails(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor, sandbox: Sandbox
) -> None:
    orders = sandbox.add_orders(5, ago=3600)
    account = settings.account
    failing = replace(settings, retry_ladder=())  # a transient error fails the run at once
    assert order_sync.request_sync(sessions, failing, account)  # a run starts
    assert order_sync.request_sync(sessions, failing, account) == []  # one more after it
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["http500"]})

    messages = order_sync.sync_step(sessions, platforms, failing, account, for_seconds=0)

    assert messages == [order_sync.step_message(account)]  # the run failed; the next started
    with sessions() as session:
        assert session.scalars(select(Failure.kind)).all() == ["order_sync"]
        sync = session.scalars(select(OrderSync)).one()
    assert sync.run_until is not None and not sync.follow and sync.synced_through is None
    sandbox.configure({"fault_rate": 0.0})
    steps = 0
    while messages:
        steps += 1
        assert steps < 20
        messages = order_sync.sync_step(sessions, platforms, failing, account)
    with sessions() as session:
        assert set(session.scalars(select(Order.order_id))) == set(orders)
        sync = session.scalars(select(OrderSync)).one()
    assert sync.run_until is None and sync.synced_through is not None


# -- beat ------------------------------------------------------------------------------------


def _stored_account(sessions: sessionmaker[Session], name: str, state: str = "ready") -> None:
    """An account row whose secret no key reads: a beat that read secrets would fail on it."""
    with sessions.begin() as session:
        session.add(
            AccountRow(
                name=name,
                platform="sellercenter",
                api_url="https://api.example.com/",
                credentials={"user_id": name},
                state=state,
                secret="not-a-fernet-token",
            )
        )


def _synced(sessions: sessionmaker[Session], name: str, ago: float, running: bool = False) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add(
            OrderSync(
                account=name,
                synced_through=now - timedelta(seconds=ago),
                run_until=now if running else None,
            )
        )


def _statements(sessions: sessionmaker[Session], settings: Settings) -> tuple[list[str], int]:
    """The accounts whose syncs beat starts now, and the statements it took to find them."""
    engine = get_engine(settings.database_url)
    counted: list[str] = []

    def count(*_: object) -> None:
        counted.append("statement")

    event.listen(engine, "before_cursor_execute", count)
    try:
        messages = order_sync.due_syncs(sessions, settings)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert all(m.task == order_sync.STEP_TASK for m in messages)
    return [m.kwargs["account"] for m in messages], len(counted)


def test_beat_starts_the_syncs_of_due_accounts_only_in_statements_that_do_not_grow_with_idle_ones(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    settings = replace(settings, order_sync_every=300)
    _stored_account(sessions, "never-synced")
    _stored_account(sessions, "parked", state="needs_authorization")
    _stored_account(sessions, "synced-long-ago")
    _synced(sessions, "synced-long-ago", ago=400)
    _stored_account(sessions, "synced-lately")
    _synced(sessions, "synced-lately", ago=10)
    _stored_account(sessions, "under-way")
    _synced(sessions, "under-way", ago=400, running=True)

    started, _ = _statements(sessions, settings)

    # The environment's account (never synced) first, then the stored ones by name.
    assert started == [settings.account, "never-synced", "synced-long-ago"]
    assert _statements(sessions, settings)[0] == []  # now under way, all three
    _, few = _statements(sessions, settings)
    for n in range(40):
        _stored_account(sessions, f"idle-{n:02d}")
        _synced(sessions, f"idle-{n:02d}", ago=10)
    started, many = _statements(sessions, settings)
    assert started == [] and many == few
