"""One rate limit for all workers: the slot stores, and two worker processes sharing a limit."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from itertools import pairwise
from types import SimpleNamespace
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.processes import service_url, wait_for
from tests.support.worker_stack import Stack
from worker.platforms import CallRecord
from worker.ratelimit import (
    EARLY,
    EPSILON,
    GROUP_AHEAD,
    LATE,
    MAX_SLOT_WAIT,
    SPACING,
    WINDOW,
    DatabaseSlots,
    Grant,
    LateForSlot,
    RateLimited,
    RateLimiter,
    RedisSlots,
    SlotSleepers,
    SlotStore,
    TurnsTaken,
    move_slot,
    move_spacing,
    place,
    turn,
)
from worker.ratelimit import limiter as limiter_module
from worker.services import documents


@pytest.fixture(params=["database", "redis"])
def slots(request: pytest.FixtureRequest, database_url: str) -> Iterator[SlotStore]:
    if request.param == "database":
        yield DatabaseSlots(database_url)
    else:
        store = RedisSlots(service_url("redis"))
        store.client.ping()
        yield store


T = TypeVar("T")


def _account() -> str:
    return f"acct-{uuid.uuid4().hex[:8]}"


def _timed(call: Callable[[], T]) -> tuple[float, T, float]:
    """What `call` returns, with the times just before and after it: a store reads its clock
    somewhere between them."""
    before = time.time()
    done = call()
    return before, done, time.time()


def _is_wait_for(
    asked: tuple[float, Grant, float], first: tuple[float, object, float], slot: float
) -> bool:
    """Whether the grant `asked` (before, grant, after) waits for the slot `slot` s after the
    `first` one (taken at once, or the moment of a `first` step that was not a grant):
    exactly, save for when each call reached the store, which a busy machine delays."""
    before, grant, after = asked
    first_before, _, first_after = first
    return first_before + slot - after - 0.02 <= grant.wait <= first_after + slot - before + 0.02


def test_slots_are_handed_out_one_interval_apart(slots: SlotStore) -> None:
    account = _account()
    grants = [_timed(partial(slots.reserve, account, "job", 0.5, 100)) for _ in range(4)]
    assert all(grant.reserved for _, grant, _ in grants)
    assert grants[0][1].wait == pytest.approx(0, abs=0.05)  # now
    assert all(_is_wait_for(grants[n], grants[0], 0.5 * n) for n in range(1, 4)), grants


def test_a_group_holds_at_most_its_share_of_slots_ahead(slots: SlotStore) -> None:
    account = _account()
    big = partial(slots.reserve, account, "big", 1.0, 2)
    held = [_timed(big) for _ in range(3)]  # now, +1 s, +2 s
    refused = _timed(big)
    other = _timed(partial(slots.reserve, account, "small", 1.0, 2))
    assert [grant.reserved for _, grant, _ in held] == [True, True, True]
    # "now" has come: two slots ahead are the group's share, so the fourth call waits for the
    # first of them to pass (nothing reserved), and the other group takes the next slot.
    assert not refused[1].reserved and _is_wait_for(refused, held[0], 1.0), refused
    assert other[1].reserved and _is_wait_for(other, held[0], 3.0), other


def test_a_groups_share_comes_back_as_its_slots_pass(slots: SlotStore) -> None:
    job = partial(slots.reserve, _account(), "job", 0.2, 1)
    first = [_timed(job) for _ in range(3)]  # now, +0.2 s, refused
    assert [grant.reserved for _, grant, _ in first] == [True, True, False]
    time.sleep(first[2][1].wait + 0.02)
    again = _timed(job)  # the account's next slot: +0.4 s
    assert again[1].reserved and _is_wait_for(again, first[0], 0.4), again


def test_work_of_several_calls_gets_its_slots_together(slots: SlotStore) -> None:
    account = _account()
    run = _timed(partial(slots.reserve, account, "orders", 0.5, 2, calls=2))  # now, +0.5 s
    other = _timed(partial(slots.reserve, account, "job", 0.5, 2))
    assert run[1].reserved and run[1].wait == pytest.approx(0, abs=0.05)
    assert other[1].reserved and _is_wait_for(other, run, 1.0), other


def test_a_throttle_answer_pauses_the_account_and_halves_its_rate(slots: SlotStore) -> None:
    account = _account()
    throttled = _timed(partial(slots.throttled, account, pause=2.0, slow_for=30.0))
    first, second = (_timed(partial(slots.reserve, account, "job", 0.5, 100)) for _ in range(2))
    assert _is_wait_for(first, throttled, 2.0), first
    assert _is_wait_for(second, throttled, 3.0), second  # the interval doubled


def test_accounts_do_not_share_slots(slots: SlotStore) -> None:
    slots.reserve("a-" + _account(), "job", 10, 2)
    grant = slots.reserve("b-" + _account(), "job", 10, 2)
    assert grant.reserved and grant.wait == pytest.approx(0, abs=0.05)


def test_a_moved_slot_pushes_back_the_slot_a_second_of_calls_after_it(slots: SlotStore) -> None:
    account, interval = _account(), SPACING / 5
    reserve = partial(slots.reserve, account, "job", interval, 100, per_second=5)
    first = _timed(reserve)  # now
    fifth = [_timed(reserve) for _ in range(4)][-1]
    assert _is_wait_for(fifth, first, 4 * interval), fifth
    time.sleep(0.1)
    # The first, come back late, sent now with its slot moved here.
    moved = _timed(lambda: slots.move(account, "job", time.time() - first[0], interval, 5))
    assert moved[1]
    sixth = _timed(reserve)
    # One interval after the fifth would put six calls within a second of the moved one: the
    # sixth comes a window after the earliest of the five before it (the moved one, unless a
    # busy machine held the move up past the second).
    second = first[0] + interval, first[2] + interval
    earliest = (min(moved[0], second[0]), None, min(moved[2], second[1]))
    assert _is_wait_for(sixth, earliest, WINDOW), sixth


def test_a_slot_is_not_moved_where_a_window_would_hold_one_call_too_many(
    slots: SlotStore,
) -> None:
    account, interval = _account(), SPACING / 5
    reserve = partial(slots.reserve, account, "job", interval, 100, per_second=5)
    first = _timed(reserve)  # now, and four more: a second of the account's calls
    for _ in range(4):
        reserve()
    assert not slots.move(account, "orders", 0.05, interval, 5)
    # Nothing changed: the job's next slot is still one interval after its fifth.
    sixth = _timed(reserve)
    assert _is_wait_for(sixth, first, 5 * interval), sixth


def test_below_a_call_a_second_a_late_call_near_the_next_slot_takes_a_new_one(
    slots: SlotStore,
) -> None:
    """At 0.5 calls/s the API wants two seconds between calls: a slot moved to now would
    come closer than that to the next one, which a second's window does not see."""
    limiter = RateLimiter(slots, _account(), rate=0.5)
    with turn("job"):
        limiter.acquire("RemoveProduct")  # the account's first slot: now
    taken_at = time.time()
    with turn("orders"), pytest.raises(RateLimited) as other:
        limiter.acquire("GetOrder")  # the next slot, an interval on
    assert other.value.slot is not None
    time.sleep(0.1)
    # The job's work comes back late for a slot it was deferred to (its first, now past).
    with turn("job", slot=taken_at), pytest.raises(RateLimited) as late:
        limiter.acquire("RemoveProduct")
    assert late.value.slot is not None
    assert late.value.slot >= other.value.slot + limiter.interval - 0.05


def test_below_a_call_a_second_a_slot_moves_only_where_it_stays_the_apis_interval_away(
    slots: SlotStore,
) -> None:
    """A window of a second holds one slot whatever is done: the spacing argument is what
    keeps a moved slot the API's interval (and a margin) from the next."""
    for rate, asleep, moves in ((0.01, 0.1, True), (0.1, 0.4, False)):
        account, interval, spacing = _account(), SPACING / rate, move_spacing(rate)
        for _ in range(2):  # now, and an interval on
            slots.reserve(account, "job", interval, 100, per_second=1)
        time.sleep(asleep)
        # At 0.01 calls/s, 0.1 s late (or a little more on a busy machine): the next slot
        # stays over 101.5 s away. At 0.1 calls/s, 0.4 s late: it would come 9.9 s before
        # the next, under the spacing; a window alone would allow it.
        assert slots.move(account, "job", asleep, interval, 1, spacing) is moves, rate
        if not moves:
            assert slots.move(account, "job", asleep, interval, 1, 0.0)


def test_below_a_call_a_second_a_call_a_little_late_is_sent_now_not_an_interval_later(
    database_url: str,
) -> None:
    store = CountingSlots(database_url)
    account = _account()
    # At 0.01 calls/s a call may come a second and a half late and still be sent now.
    limiter = RateLimiter(store, account, rate=0.01)
    first = time.time()
    for _ in range(2):  # its slot now, and its group's next an interval on
        store.reserve(account, "job", limiter.interval, 100, per_second=1)
    time.sleep(0.1)
    with turn("job", slot=first):
        limiter.acquire("RemoveProduct")  # 0.1 s late: sent now, its slot moved
    assert (store.moved, store.reserved) == (1, 2)


def test_a_chained_call_near_its_slot_sleeps_for_it_while_a_thread_may(
    slots: SlotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal job's runner goes on to its next batch: near its slot it sleeps for it
    (no deferral, no message) while the worker has a thread to spare, and is deferred when
    it has none; either way no call is made before its slot."""
    sleepers = SlotSleepers()
    sleepers.allow(2)  # a pool of two threads: one may sleep
    monkeypatch.setattr(limiter_module, "slot_sleepers", sleepers)
    limiter = RateLimiter(slots, _account(), rate=5)
    with turn("removal:1", chained=True):
        limiter.acquire("RemoveProduct")  # the account's first slot: now
    with turn("removal:1", chained=True):
        limiter.acquire("RemoveProduct")  # the next, an interval away: slept for
        slept_until = time.time()
    assert sleepers.sleeping == 0
    sleepers.allow(1)  # one thread: none may sleep
    with turn("removal:1", chained=True), pytest.raises(RateLimited) as raised:
        limiter.acquire("RemoveProduct")
    assert not isinstance(raised.value, TurnsTaken)
    assert raised.value.slot is not None and raised.value.slot >= slept_until


def test_a_call_of_work_that_goes_on_at_once_sleeps_for_its_slot_like_a_chained_one(
    slots: SlotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order sync's next page: near its slot it sleeps for it, and a slot further than a
    short sleep is still a deferral; no call is made before its slot."""
    sleepers = SlotSleepers()
    sleepers.allow(2)
    monkeypatch.setattr(limiter_module, "slot_sleepers", sleepers)
    limiter = RateLimiter(slots, _account(), rate=5)
    first = time.time()
    with turn("order-sync", sleeps=True):
        limiter.acquire("GetOrders")  # the account's first slot: now
    with turn("order-sync", sleeps=True):
        limiter.acquire("GetOrders")  # the next, an interval away: slept for
    assert time.time() - first >= SPACING / 5 - 0.01
    assert sleepers.sleeping == 0
    slow = RateLimiter(slots, _account(), rate=0.5)  # slots two seconds apart
    with turn("order-sync", sleeps=True):
        slow.acquire("GetOrders")
    with turn("order-sync", sleeps=True), pytest.raises(RateLimited) as raised:
        slow.acquire("GetOrders")
    assert not isinstance(raised.value, TurnsTaken) and raised.value.slot is not None


def test_a_call_tells_when_it_goes_out_after_sleeping_for_its_slot(
    slots: SlotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order sync's next page is called on another thread while the page before it is
    stored: the storing (which holds the slot store on the embedded stack) waits until that
    call has gone out, when it needs the store no more."""
    sleepers = SlotSleepers()
    sleepers.allow(2)
    monkeypatch.setattr(limiter_module, "slot_sleepers", sleepers)
    happened: list[str] = []

    def sleep(seconds: float) -> None:
        happened.append("slept")
        time.sleep(seconds)

    monkeypatch.setattr(
        "worker.ratelimit.limiter.time", SimpleNamespace(time=time.time, sleep=sleep)
    )
    limiter = RateLimiter(slots, _account(), rate=2.5)  # slots 0.41 s apart: slept for
    with turn("order-sync", sleeps=True):
        limiter.acquire("GetOrders")  # the account's first slot: now
    with turn("order-sync", sleeps=True, on_slot=lambda: happened.append("told")):
        limiter.acquire("GetOrders")  # the next, an interval away: slept for
    assert happened == ["slept", "told"]


def test_a_call_of_unchained_work_near_its_slot_is_deferred_even_with_threads_to_spare(
    slots: SlotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleepers = SlotSleepers()
    sleepers.allow(16)
    monkeypatch.setattr(limiter_module, "slot_sleepers", sleepers)
    limiter = RateLimiter(slots, _account(), rate=5)
    with turn("orders"):
        limiter.acquire("GetOrder")
    with turn("orders"), pytest.raises(RateLimited):
        limiter.acquire("GetOrder")


def test_half_a_workers_threads_may_sleep_for_slots_and_none_of_a_process_not_told() -> None:
    sleepers = SlotSleepers()
    assert not sleepers.take()
    sleepers.allow(4)
    assert [sleepers.take() for _ in range(3)] == [True, True, False]
    sleepers.give_back()
    assert sleepers.take()


def test_a_worker_starting_tells_the_limiter_its_pool_of_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.signals import worker_init

    import tasks.base

    sleepers = SlotSleepers()
    monkeypatch.setattr(tasks.base, "slot_sleepers", sleepers)

    class Worker:  # Celery's WorkController, as far as the signal's receiver reads it
        concurrency = 6

    worker_init.send(sender=Worker())
    assert [sleepers.take() for _ in range(4)] == [True, True, True, False]


def test_a_slot_further_than_a_short_sleep_defers_the_call_to_it(database_url: str) -> None:
    # An interval of seconds: the second call still finds its slot far ahead on a machine
    # so busy that the two calls leave a second apart.
    rate = 0.5
    limiter = RateLimiter(DatabaseSlots(database_url), _account(), rate=rate)
    before = time.time()
    limiter.acquire("GetOrder")  # now
    first_done = time.time()
    with pytest.raises(RateLimited) as raised:
        limiter.acquire("GetOrder")
    raised_at = time.time()
    deferred = raised.value
    assert not isinstance(deferred, TurnsTaken) and deferred.slot is not None
    assert before + SPACING / rate - 0.02 <= deferred.slot <= first_done + SPACING / rate + 0.02
    assert deferred.slot - raised_at <= deferred.wait <= deferred.slot - first_done
    assert deferred.wait > MAX_SLOT_WAIT


@pytest.fixture
def still_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    """The limiter's clock, stopped: LATE is a few ms, less than a busy machine's step, so
    work that comes for its slot is on time whenever the test's thread gets to run."""
    now = time.time()
    monkeypatch.setattr(
        "worker.ratelimit.limiter.time", SimpleNamespace(time=lambda: now, sleep=time.sleep)
    )
    return now


def test_work_deferred_to_its_slot_calls_then_without_asking_again(
    database_url: str, still_clock: float
) -> None:
    store = DatabaseSlots(database_url)
    account = _account()
    limiter = RateLimiter(store, account, rate=1)
    with turn("job", slot=still_clock):
        limiter.acquire("GetOrder")  # its reserved slot: none taken from the store
        # A second call in the turn takes one: the first, now.
        second = _timed(partial(limiter.acquire, "GetOrder"))
    later = _timed(partial(store.reserve, account, "job", limiter.interval, 100))
    assert _is_wait_for(later, second, limiter.interval), later


def test_a_fresh_slot_that_comes_at_once_at_a_real_limit_is_spare(
    database_url: str, still_clock: float
) -> None:
    store = DatabaseSlots(database_url)
    limiter = RateLimiter(store, _account(), rate=1)
    with turn("job") as fresh:
        limiter.acquire("RemoveProduct")  # the account's slot now was free: nobody held it
    with turn("job", slot=still_clock) as reserved:
        limiter.acquire("RemoveProduct")  # its own reserved slot: nothing came free
    with turn("job") as later, pytest.raises(RateLimited):
        limiter.acquire("RemoveProduct")  # an interval away
    unlimited = RateLimiter(store, _account(), rate=100)  # above WINDOW_UP_TO: the limit off
    with turn("job") as off:
        unlimited.acquire("RemoveProduct")
    # Spare: the account's interval, for the work to size what it starts by.
    assert [fresh.spare, reserved.spare, later.spare, off.spare] == [limiter.interval, 0, 0, 0]


def test_work_that_comes_back_early_is_deferred_to_its_slot_again(database_url: str) -> None:
    limiter = RateLimiter(DatabaseSlots(database_url), _account(), rate=1)
    slot = time.time() + 5
    with turn("job", slot=slot), pytest.raises(RateLimited) as raised:
        limiter.acquire("GetOrder")
    assert raised.value.slot == slot and slot - time.time() <= raised.value.wait <= 5


def test_the_later_calls_of_deferred_work_wait_for_their_reserved_slots(
    database_url: str,
) -> None:
    store = DatabaseSlots(database_url)
    account = _account()
    limiter = RateLimiter(store, account, rate=4)  # slots 0.26 s apart
    with turn("orders", calls=2), pytest.raises(RateLimited) as raised:
        store.reserve(account, "job", limiter.interval, 100)  # now: the work's run comes next
        limiter.acquire("/order/get")
    slot = raised.value.slot
    assert slot is not None
    store.reserve(account, "job", limiter.interval, 100)  # placed after the run
    # Back a little before its slot, as deferred work comes (EARLY): the limiter sleeps the
    # rest, so a test thread held up for a moment still meets the slot.
    time.sleep(max(0.0, slot - EARLY - time.time()))
    with turn("orders", slot=slot, calls=2):
        limiter.acquire("/order/get")
        limiter.acquire("/order/items/get")  # sleeps for its slot: no deferral, no new slot
        sent = time.time()
    # Its own slot, not one after the job's.
    assert slot + limiter.interval - 0.01 <= sent < slot + 2 * limiter.interval
    # The run's two slots and the job's: the account's next free one comes after all three.
    after_all = _timed(partial(store.reserve, account, "job", limiter.interval, 100))
    assert _is_wait_for(after_all, (slot, None, slot), 3 * limiter.interval), after_all


class CountingSlots(DatabaseSlots):
    """The database store, counting the slots asked of it and the slots it moved."""

    reserved = 0
    moved = 0

    def reserve(
        self,
        account: str,
        group: str,
        interval: float,
        ahead: int,
        calls: int = 1,
        per_second: int = 0,
    ) -> Grant:
        self.reserved += 1
        return super().reserve(account, group, interval, ahead, calls, per_second)

    def move(
        self,
        account: str,
        group: str,
        late: float,
        interval: float,
        per_second: int,
        spacing: float = 0.0,
    ) -> bool:
        moved = super().move(account, group, late, interval, per_second, spacing)
        self.moved += moved
        return moved


def test_a_deferral_comes_back_a_little_before_its_slot_and_sleeps_the_rest(
    database_url: str,
) -> None:
    assert 0 < EARLY < MAX_SLOT_WAIT
    assert RateLimited("GetOrder", 2.0, slot=time.time() + 2).come_back == 2.0 - EARLY
    assert RateLimited("GetOrder", 2.0).come_back == 2.0  # no slot: nothing to be early for
    store = CountingSlots(database_url)
    limiter = RateLimiter(store, _account(), rate=1)
    slot = time.time() + EARLY
    with turn("job", slot=slot):
        limiter.acquire("GetOrder")
    assert time.time() >= slot and store.reserved == 0


@pytest.mark.parametrize("rate", [5, 40])
def test_a_call_a_little_late_keeps_its_slot(
    database_url: str, rate: int, still_clock: float
) -> None:
    store = CountingSlots(database_url)
    limiter = RateLimiter(store, _account(), rate=rate)
    with turn("orders", slot=still_clock - LATE / 2):
        limiter.acquire("GetOrder")
    assert (store.moved, store.reserved) == (0, 0)


def test_a_call_later_than_that_is_sent_now_with_its_slot_moved_where_the_window_allows(
    database_url: str,
) -> None:
    store = CountingSlots(database_url)
    limiter = RateLimiter(store, _account(), rate=5)
    with turn("orders", slot=time.time() - 0.06):
        limiter.acquire("GetOrder")  # sent now: no other call within a second
    assert (store.moved, store.reserved) == (1, 0)


def test_a_call_woken_late_from_its_sleep_is_late_like_a_deferred_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oversleep(seconds: float) -> None:  # a busy machine wakes the thread 80 ms late
        time.sleep(seconds + 0.08)

    monkeypatch.setattr(
        "worker.ratelimit.limiter.time", SimpleNamespace(time=time.time, sleep=oversleep)
    )
    store = CountingSlots(database_url)
    limiter = RateLimiter(store, _account(), rate=5)
    with turn("orders", slot=time.time() + EARLY):
        limiter.acquire("GetOrder")
    assert (store.moved, store.reserved) == (1, 0)


def test_a_late_call_whose_move_would_fill_a_window_past_the_limit_takes_a_new_slot(
    database_url: str,
) -> None:
    store = CountingSlots(database_url)
    account = _account()
    limiter = RateLimiter(store, account, rate=1)
    # Now: another group's.
    job = _timed(partial(store.reserve, account, "job", limiter.interval, 100, per_second=1))
    with turn("orders", slot=time.time() - 0.6), pytest.raises(RateLimited) as raised:
        limiter.acquire("GetOrder")  # sent now, it would come right after the job's call
    assert (store.moved, store.reserved) == (0, 2)  # the job's slot, and its new one
    new_slot = raised.value.slot
    assert new_slot is not None
    assert job[0] + limiter.interval - 0.02 <= new_slot <= job[2] + limiter.interval + 0.02


def test_chained_work_late_for_its_slot_is_told_so_and_takes_no_new_one(
    database_url: str,
) -> None:
    store = CountingSlots(database_url)
    account = _account()
    limiter = RateLimiter(store, account, rate=1)
    store.reserve(account, "other", limiter.interval, 100, per_second=1)
    with turn("job", slot=time.time() - 0.6, chained=True), pytest.raises(LateForSlot):
        limiter.acquire("RemoveProduct")
    assert (store.moved, store.reserved) == (0, 1)  # the other group's slot only


def test_a_call_later_than_an_interval_takes_a_new_slot_not_a_move(database_url: str) -> None:
    # Moving it would push the account's next slots back by more than the one slot it left.
    store = CountingSlots(database_url)
    limiter = RateLimiter(store, _account(), rate=5)
    with turn("orders", slot=time.time() - 1.5 * limiter.interval):
        limiter.acquire("GetOrder")
    assert (store.moved, store.reserved) == (0, 1)


def test_a_group_past_its_share_is_told_its_turns_are_taken(database_url: str) -> None:
    limiter = RateLimiter(DatabaseSlots(database_url), _account(), rate=1)
    refusals = []
    with turn("big"):
        for _ in range(GROUP_AHEAD + 2):
            try:
                limiter.acquire("RemoveProduct")
            except RateLimited as refused:
                refusals.append(refused)
    assert [type(r) for r in refusals] == [RateLimited] * GROUP_AHEAD + [TurnsTaken]
    assert refusals[-1].slot is None


def test_an_e901_answer_slows_the_account_down(database_url: str) -> None:
    store = DatabaseSlots(database_url)
    account = _account()
    limiter = RateLimiter(store, account, rate=100)
    throttled = CallRecord("RemoveProduct", "api_error", 0.01, 200, "E901", "E901", throttled=True)
    observed = _timed(partial(limiter.observe, throttled))
    next_slot = _timed(partial(store.reserve, account, "job", 0.01, 2))
    assert _is_wait_for(next_slot, observed, 1.0), next_slot


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["embedded+sqlite", "redis+postgresql"], indirect=True)
def test_two_workers_with_sixteen_slots_each_hold_the_accounts_rate(stack: Stack) -> None:
    limit = 8
    stack.env["LAZADA_RATE_LIMIT"] = str(limit)
    stack.sandbox.config.rate_limit = limit  # the sandbox answers E901 above the limit
    stack.sandbox.config.latency = 0.05
    stack.start_worker(concurrency=16)
    stack.start_worker(concurrency=16)
    skus = [f"R-{n:05d}" for n in range(60 * 50)]  # 60 calls
    stack.send("lazada.remove_products", skus, key="rate")

    def done() -> dict | None:
        with stack.sessions() as session:
            job = documents.removal_job(session, stack.settings.account, "rate")
        return job if job and job["state"] == "done" else None

    job = wait_for(done, 120, "the rate-limited job")
    calls = sorted(c.at for c in stack.sandbox.calls() if c.action == "RemoveProduct")
    throttled = [c for c in stack.sandbox.calls() if c.error_code == 901]
    assert job["removed"] == len(skus)
    assert throttled == []
    achieved = (len(calls) - 1) / (calls[-1] - calls[0])
    assert achieved <= limit * 1.02


# -- the calendar itself (worker.ratelimit.calendar), on made-up clocks -----------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(0, 0.5, allow_nan=False)),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 4),
    st.integers(1, 3),
)
def test_slots_keep_their_distance_and_no_group_holds_more_than_its_share(
    asks: list[tuple[str, float]], ahead: int, calls: int
) -> None:
    interval, now, turns = 0.2, 1000.0, {}
    placed: list[float] = []
    for group, step in asks:
        now += step
        before = [t for t in turns.get(group, []) if t > now]
        grant, turns = place(turns, group, now, interval, ahead, calls=calls)
        if grant.reserved:
            assert len(before) < ahead and grant.wait >= 0
            placed.extend(now + grant.wait + i * interval for i in range(calls))
        else:
            assert len(before) >= ahead and grant.wait > 0
    placed.sort()
    assert all(b - a >= interval - EPSILON - 1e-9 for a, b in pairwise(placed))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.floats(0, 0.4, allow_nan=False),
            st.booleans(),
        ),
        min_size=1,
        max_size=80,
    ),
    st.integers(1, 8),
)
def test_no_window_ever_holds_more_calls_than_the_limit_with_late_calls_moved(
    asks: list[tuple[str, float, bool]], per_second: int
) -> None:
    """Groups reserve slots and some of their calls come late and move (or may not): the
    times the calls are made never put more than the limit within WINDOW s."""
    interval, now, turns = SPACING / per_second, 1000.0, {}
    made: list[float] = []  # when calls were made
    pending: dict[str, list[float]] = {}  # reserved slots not yet used
    for group, step, comes_back in asks:
        now += step
        due = [t for t in pending.get(group, []) if t <= now]
        if due and comes_back:  # its first due call comes back now, however late that is
            slot = due[0]
            pending[group].remove(slot)
            if now - slot <= LATE:
                made.append(slot)  # sent in its slot (we take it as made on time)
            else:
                moved, turns = move_slot(turns, group, now, now - slot, interval, per_second)
                if moved:
                    made.append(now)
            continue
        grant, turns = place(turns, group, now, interval, 3, per_second=per_second)
        if grant.reserved:
            pending.setdefault(group, []).append(now + grant.wait)
    made += [t for slots in pending.values() for t in slots]  # the rest, all on time
    made.sort()
    for first, last in zip(made, made[per_second:], strict=False):
        assert last - first >= WINDOW - EPSILON - 1e-9


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.floats(0, 12, allow_nan=False),
            st.floats(0, 0.6, allow_nan=False),
            st.booleans(),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([0.1, 0.25, 0.5]),
)
def test_below_a_call_a_second_no_two_calls_come_closer_than_the_apis_interval(
    asks: list[tuple[str, float, float, bool]], rate: float
) -> None:
    """As above, at rates below a call a second, where late calls move only as far as the
    spacing allows: the calls are never closer together than 1/rate, the API's own limit."""
    interval, now, turns = SPACING / rate, 1000.0, {}
    limiter_spacing = move_spacing(rate)
    made: list[float] = []
    pending: dict[str, list[float]] = {}
    for group, step, late, comes_back in asks:
        now += step
        due = [t for t in pending.get(group, []) if t <= now]
        if due and comes_back:
            slot = due[0]
            pending[group].remove(slot)
            now = max(now, slot + late)  # its call comes back now, however late that is
            if now - slot <= LATE:
                made.append(slot)
            else:
                moved, turns = move_slot(
                    turns, group, now, now - slot, interval, 1, limiter_spacing
                )
                if moved:
                    made.append(now)
            continue
        grant, turns = place(turns, group, now, interval, 3, per_second=1)
        if grant.reserved:
            pending.setdefault(group, []).append(now + grant.wait)
    made += [t for slots in pending.values() for t in slots]
    made.sort()
    for first, last in pairwise(made):
        assert last - first >= 1 / rate - 1e-9


def test_busy_groups_take_every_slot_in_turn() -> None:
    """Four jobs, each with runners that ask for their next slot once their last call is over
    (0.15 s after its slot): over 200 slots each gets a quarter, give or take one, and no slot
    of the calendar goes unused."""
    interval, turns = 0.2, {}
    asks = [(0.0, group) for group in "abcd" for _ in range(GROUP_AHEAD + 1)]
    got: Counter[str] = Counter()
    slots: list[float] = []
    while len(slots) < 200:
        asks.sort()
        now, group = asks.pop(0)
        grant, turns = place(turns, group, now, interval, GROUP_AHEAD)
        if grant.reserved:
            slot = now + grant.wait
            got[group] += 1
            slots.append(slot)
            asks.append((slot + 0.15, group))  # its call ends; the runner asks again
    assert all(abs(n - 200 / 4) <= 1 for n in got.values()), got
    slots.sort()
    assert all(b - a == pytest.approx(interval) for a, b in pairwise(slots[8:]))


def test_an_order_now_and_then_beside_a_job_leaves_no_slot_unused() -> None:
    """A removal job's runners ask again once their call is over; an order (a group of one
    call) comes every second. The orders get a slot within a few, and every slot of the
    calendar is used: room kept after an order for its group's next turn would stay empty."""
    interval, turns = 0.2, {}
    asks = [(0.0, "job") for _ in range(GROUP_AHEAD + 1)] + [(0.5 + n, "orders") for n in range(8)]
    slots: list[float] = []
    order_waits: list[float] = []
    while len(slots) < 40:
        asks.sort()
        now, group = asks.pop(0)
        grant, turns = place(turns, group, now, interval, GROUP_AHEAD)
        if group == "orders":
            assert grant.reserved
            order_waits.append(grant.wait)
        elif grant.reserved:
            asks.append((now + grant.wait + 0.15, group))  # its call ends; it asks again
        else:
            asks.append((now + grant.wait, group))  # its turns are taken: back when one passes
        if grant.reserved:
            slots.append(now + grant.wait)
    slots.sort()
    assert max(order_waits) <= (GROUP_AHEAD + 1) * interval + EPSILON
    assert all(b - a == pytest.approx(interval) for a, b in pairwise(slots)), slots


def test_a_group_of_one_call_takes_a_free_slot_and_no_room_is_kept_after_it(
    slots: SlotStore,
) -> None:
    """An order and a 50-SKU job (a call each) take the next free slots between a removal
    job's; the job's next slot comes right after its last, in both stores: no room is kept
    for groups that took their one turn already (kept, it would go unused)."""
    account, interval = _account(), 1.0
    grants = [
        _timed(partial(slots.reserve, account, group, interval, GROUP_AHEAD))
        for group in ("job", "orders", "small-job", "job", "job")
    ]
    assert all(grant.reserved for _, grant, _ in grants)
    assert all(_is_wait_for(grants[n], grants[0], n * interval) for n in range(5)), grants


def test_a_new_group_waits_for_a_few_slots_not_for_the_busy_ones_work() -> None:
    interval, turns = 0.2, {}
    for _ in range(GROUP_AHEAD + 1):
        _, turns = place(turns, "big", 0.0, interval, GROUP_AHEAD)
    grant, _ = place(turns, "order", 0.01, interval, GROUP_AHEAD)
    assert grant.reserved and grant.wait <= (GROUP_AHEAD + 1) * interval
