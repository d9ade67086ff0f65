"""The order sync's paging, step by step in this process against the sandboxes (SQLite and
PostgreSQL): orders that leave a crowded second while it is paged are not skipped, a second
with more orders than the API's offsets reach is read per status, none is stored twice, the
sync point moves only past what is stored, and a task goes on from page to page by itself."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support import lazop
from worker.accounts.platforms import PlatformFor
from worker.broker.dispatch import Message
from worker.db import heartbeats
from worker.db.audit import record_call
from worker.db.engine import get_engine
from worker.db.models import Account as AccountRow
from worker.db.models import ApiCall, Event, Failure, Order, OrderSync
from worker.outbox.events import DELIVER_MANY_TASK, take_recorded
from worker.platforms.lazop import LazopClient
from worker.platforms.lazop.platform import LazopPlatform
from worker.ratelimit import SlotSleepers
from worker.ratelimit import limiter as limiter_module
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.sellercenter import Sandbox
from worker.services import order_sync
from worker.settings import Settings


def run_steps(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    account: str,
    between: dict[int, object] | None = None,
    after_each: Callable[[], None] | None = None,
    most: int = 200,
) -> int:
    """Send the sync's messages to its step, in order, until none is left; `between[n]` runs
    before step n, `after_each` after every step. Returns the steps taken (fewer than
    `most`; a page each: a step here does not go on to the next page by itself)."""
    steps = 0
    messages = order_sync.request_sync(sessions, settings, account)
    while messages:
        assert all(m.task == order_sync.STEP_TASK for m in messages)
        steps += 1
        action = (between or {}).get(steps)
        if callable(action):
            action()
        messages = order_sync.sync_step(sessions, platforms, settings, account, for_seconds=0)
        if after_each is not None:
            after_each()
        assert steps < most
    return steps


def _stored(session: Session) -> Counter[int]:
    """How many rows each stored order id has."""
    return Counter(session.scalars(select(Order.order_id)))


def _created(session: Session) -> Counter[int]:
    """How many `order.created` events each order id has."""
    return Counter(
        int(e.data["order_id"])
        for e in session.scalars(select(Event).where(Event.type == "order.created"))
    )


@pytest.fixture
def worker_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a worker of two threads: one may sleep for its next slot (at the default rate,
    a sync's next page sleeps for it instead of being deferred to a message)."""
    sleepers = SlotSleepers()
    sleepers.allow(2)
    monkeypatch.setattr(limiter_module, "slot_sleepers", sleepers)


@pytest.fixture
def three_pages(sessions: sessionmaker[Session], settings: Settings, sandbox: Sandbox) -> list[int]:
    """Orders over three hours, their sync requested: pages that end in different seconds,
    each followed at once. Returns the orders' ids."""
    orders = [order for hours in (3, 2, 1) for order in sandbox.add_orders(90, ago=hours * 3600)]
    assert order_sync.request_sync(sessions, settings, settings.account)
    return orders


def test_a_task_reads_page_after_page_until_the_run_is_done(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    worker_threads: None,
    three_pages: list[int],
) -> None:
    orders, account = three_pages, settings.account

    # Long enough for the three pages on a busy machine (the default is a few seconds).
    messages = order_sync.sync_step(sessions, platforms, settings, account, for_seconds=120)

    assert messages == []
    with sessions() as session:
        assert set(session.scalars(select(Order.order_id))) == set(orders)
        sync = session.scalars(select(OrderSync)).one()
        audited = session.scalars(select(ApiCall.action)).all()
    assert sync.run_until is None and sync.synced_through is not None
    # The later pages were called while the one before was stored: no call more, and each
    # call's audit row recorded.
    listed = [call for call in sandbox.calls() if call.action in ("GetOrders", "/orders/get")]
    assert len(listed) == 3
    assert audited == ["GetOrders"] * 3


def test_a_task_reading_on_sends_each_pages_event_deliveries_before_its_end(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    worker_threads: None,
    three_pages: list[int],
) -> None:
    orders, account = three_pages, settings.account
    take_recorded()  # the request's own, if any
    sent: list[list[Message]] = []

    order_sync.sync_step(
        sessions, platforms, settings, account, for_seconds=120, publish=sent.append
    )

    # Two pages read on from, the deliveries of each sent then; the last page's are the task's.
    assert len(sent) == 2
    with sessions() as session:
        created = {e.id: int(e.data["order_id"]) for e in session.scalars(select(Event))}
    assert set(created.values()) == set(orders)
    ids = [[i for m in messages for i in m.args[0]] for messages in [*sent, take_recorded()]]
    assert all(m.task == DELIVER_MANY_TASK for messages in sent for m in messages)
    assert all(ids)
    assert sorted(i for page in ids for i in page) == sorted(created)


def test_a_task_whose_worker_shuts_down_reads_no_more_pages_and_hands_the_rest_on(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    worker_threads: None,
    three_pages: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders, account = three_pages, settings.account
    shutting_down = threading.Event()
    shutting_down.set()
    monkeypatch.setattr(heartbeats, "_stopping", shutting_down)

    messages = order_sync.sync_step(sessions, platforms, settings, account, for_seconds=120)

    # One page read and stored, none called ahead, the rest left to the next message.
    assert [(m.task, m.kwargs, m.countdown or 0) for m in messages] == [
        (order_sync.STEP_TASK, {"account": account}, 0)
    ]
    listed = [call for call in sandbox.calls() if call.action == "GetOrders"]
    assert len(listed) == 1
    with sessions() as session:
        assert len(_stored(session)) == 100  # a page
        assert session.scalars(select(OrderSync)).one().run_until is not None
    monkeypatch.setattr(heartbeats, "_stopping", threading.Event())
    assert order_sync.sync_step(sessions, platforms, settings, account, for_seconds=120) == []
    with sessions() as session:
        assert set(_stored(session)) == set(orders)


def test_pages_called_ahead_that_fail_are_retried_and_no_order_is_missed_or_stored_twice(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    worker_threads: None,
) -> None:
    # A call made ahead, on its own thread, fails like any other: its step retries it.
    orders = [
        order for hours in range(8, 0, -1) for order in sandbox.add_orders(60, ago=hours * 3600)
    ]
    sandbox.configure({"fault_rate": 0.3, "fault_kinds": ["http500"]})
    account = settings.account
    patient = replace(settings, retry_ladder=(0.05,) * 20)
    messages = order_sync.request_sync(sessions, patient, account)
    tasks = 0
    while messages:
        tasks += 1
        assert tasks < 100
        time.sleep(max(message.countdown or 0.0 for message in messages))
        messages = order_sync.sync_step(sessions, platforms, patient, account, for_seconds=120)

    with sessions() as session:
        stored = _stored(session)
        created = _created(session)
        sync = session.scalars(select(OrderSync)).one()
    assert set(stored) == set(orders) and max(stored.values()) == 1
    assert set(created) == set(orders) and max(created.values()) == 1
    assert sync.run_until is None and sync.synced_through is not None
    assert sandbox.stats()["faults_injected"]  # some calls did fail


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
        created = _created(session)
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


def test_a_second_read_under_a_status_no_longer_named_is_read_again_from_the_first_status(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor, sandbox: Sandbox
) -> None:
    crowded = sandbox.add_orders(250, ago=3600)
    account = settings.account

    def a_status_no_longer_named() -> None:
        # As a row written before the platform's statuses changed would hold it.
        with sessions.begin() as session:
            paging = session.scalars(select(OrderSync).where(OrderSync.in_second)).one()
            paging.second_status = "no-longer-named"

    run_steps(sessions, platforms, settings, account, {3: a_status_no_longer_named})

    with sessions() as session:
        stored = _stored(session)
        failures = session.scalars(select(Failure)).all()
        sync = session.scalars(select(OrderSync)).one()
    assert failures == []
    assert set(stored) == set(crowded) and max(stored.values()) == 1
    assert sync.run_until is None and sync.second_status is None


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


def test_beat_starts_any_number_of_due_syncs_in_the_same_statements(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    settings = replace(settings, order_sync_every=300)
    _synced(sessions, settings.account, ago=10)  # the environment's account is not due
    for name in ("a-never-synced", "b-synced-long-ago"):
        _stored_account(sessions, name)
    _synced(sessions, "b-synced-long-ago", ago=400)
    started, few = _statements(sessions, settings)
    assert started == ["a-never-synced", "b-synced-long-ago"]

    names = [f"due-{n:02d}" for n in range(40)]
    for n, name in enumerate(names):
        _stored_account(sessions, name)
        if n % 2:
            _synced(sessions, name, ago=400)
    started, many = _statements(sessions, settings)
    assert started == names and many == few
    # Each run started once: the next tick finds them all under way.
    assert _statements(sessions, settings)[0] == []
    with sessions() as session:
        rows = session.scalars(select(OrderSync).where(OrderSync.account.in_(names))).all()
    assert len(rows) == len(names)
    assert all(row.run_until is not None and row.cursor_at is not None for row in rows)


# -- a second with more orders than the offsets reach ------------------------------------------

BEYOND_OFFSETS = 4800  # orders in one second: the offsets (up to 4500, a page each) reach 4600


@dataclass
class Listing:
    """A platform's sandbox as the sync reads it: the platforms, and its order knobs."""

    platforms: PlatformFor
    statuses: tuple[str, ...]
    add: Callable[[int, float], list[int]]
    change: Callable[[list[int], float], list[int]]


@pytest.fixture
def listing(
    request: pytest.FixtureRequest, platforms: PlatformFor, sandbox: Sandbox
) -> Iterator[Listing]:
    """The platform the test names (`request.param`), with its sandbox."""
    if request.param == "sellercenter":
        yield Listing(
            platforms,
            platforms("").order_statuses,
            lambda count, ago: sandbox.add_orders(count, ago),
            lambda ids, ago: sandbox.change_orders(ids, ago),
        )
        return
    server = LazopSandbox(LazopSandboxConfig(), port=0)
    with (
        contextmanager(lazop.started)(server) as started,
        LazopClient(
            started.api_url,
            started.app_key,
            started.app_secret,
            auth_url=started.auth_url,
            read_timeout=10.0,
            after_call=record_call,
        ) as client,
    ):
        seller = lazop.authorize(started, client, lazop.SELLER)
        platform = LazopPlatform(client, seller.access_token, seller.on_illegal_token)
        yield Listing(
            lambda _account: platform,
            platform.order_statuses,
            lambda count, ago: started.add_orders(lazop.SELLER, count, ago),
            lambda ids, ago: started.change_orders(lazop.SELLER, ids, ago),
        )


def _ago(moment: datetime) -> float:
    """What a sandbox's `ago` is for an update at `moment`."""
    return (datetime.now(UTC) - moment).total_seconds()


def _one_second_ago() -> datetime:
    # The middle of a second an hour ago: the knobs' own clock reads a little later than
    # ours, and the orders must all land in that one second.
    return (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=500_000)


def _statuses_read(sessions: sessionmaker[Session], seen: list[str | None]) -> Callable[[], None]:
    def note() -> None:
        with sessions() as session:
            status = session.scalars(select(OrderSync.second_status)).one()
        if not seen or seen[-1] != status:
            seen.append(status)

    return note


@pytest.mark.parametrize(
    ("listing", "database_url"),
    [("sellercenter", "postgresql"), ("lazop", "sqlite")],
    indirect=True,
)
def test_a_second_with_more_orders_than_the_offsets_reach_is_read_per_status_and_stored_once(
    sessions: sessionmaker[Session], settings: Settings, listing: Listing
) -> None:
    settings = replace(settings, rate_limit=10_000.0)  # the calls are many; none waits here
    second = _one_second_ago()
    crowded = listing.add(BEYOND_OFFSETS, _ago(second))
    # About half the orders move on in that same second: no status holds more than the
    # offsets reach, and some orders' items are in two statuses (under each of them).
    assert listing.change(crowded[: BEYOND_OFFSETS // 2], _ago(second))
    seen: list[str | None] = []
    started = datetime.now(UTC)

    run_steps(
        sessions,
        listing.platforms,
        settings,
        settings.account,
        after_each=_statuses_read(sessions, seen),
        most=1000,
    )

    with sessions() as session:
        stored = _stored(session)
        created = _created(session)
        failures = session.scalars(select(Failure)).all()
        sync = session.scalars(select(OrderSync)).one()
    assert failures == []
    assert set(stored) == set(crowded) and max(stored.values()) == 1
    assert set(created) == set(crowded) and max(created.values()) == 1
    # The row held each status while the second was read under it, in the platform's order,
    # and none once the sync moved past the second.
    assert [status for status in seen if status is not None] == list(listing.statuses)
    assert seen[-1] is None and sync.second_status is None
    # The run finished: the sync point is the moment it started.
    assert sync.run_until is None and sync.synced_through is not None
    assert sync.synced_through >= started


@pytest.mark.parametrize(("listing", "database_url"), [("sellercenter", "sqlite")], indirect=True)
def test_a_status_over_the_offset_cap_in_one_second_is_a_failure_and_the_sync_goes_on(
    sessions: sessionmaker[Session], settings: Settings, listing: Listing
) -> None:
    settings = replace(settings, rate_limit=10_000.0)
    second = _one_second_ago()
    crowded = listing.add(BEYOND_OFFSETS, _ago(second))  # all of them new: one status
    later = listing.add(3, _ago(second + timedelta(seconds=5)))

    run_steps(sessions, listing.platforms, settings, settings.account, most=1000)

    with sessions() as session:
        stored = _stored(session)
        failures = session.scalars(select(Failure)).all()
        sync = session.scalars(select(OrderSync)).one()
    [failure] = failures
    assert (failure.kind, failure.error_code) == ("order_sync", "offset_cap")
    assert "with status pending" in failure.message and "fetch them by id" in failure.message
    assert second.replace(microsecond=0).isoformat() in failure.message
    # What the offsets reach is stored, once; the sync went on past the second to its end.
    assert len(set(stored) & set(crowded)) == 4600 and max(stored.values()) == 1
    assert set(stored) - set(crowded) == set(later)
    assert sync.run_until is None and sync.second_status is None
