"""One rate limit for all workers: the slot stores, and two worker processes sharing a limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import pairwise

import pytest
from fixtures_worker import Stack
from stack import service_url, wait_for

from worker import documents
from worker.platforms import CallRecord
from worker.ratelimit import DatabaseSlots, RateLimited, RateLimiter, RedisSlots, SlotStore


@pytest.fixture(params=["database", "redis"])
def slots(request: pytest.FixtureRequest, database_url: str) -> Iterator[SlotStore]:
    if request.param == "database":
        yield DatabaseSlots(database_url)
    else:
        store = RedisSlots(service_url("redis"))
        store.client.ping()
        yield store


def _account() -> str:
    return f"acct-{uuid.uuid4().hex[:8]}"


def test_slots_are_handed_out_one_interval_apart(slots: SlotStore) -> None:
    account = _account()
    waits = [slots.reserve(account, 0.5, 60) for _ in range(4)]
    assert waits[0] == pytest.approx(0, abs=0.05)
    gaps = [b - a for a, b in pairwise(waits)]
    assert all(gap == pytest.approx(0.5, abs=0.05) for gap in gaps)


def test_a_slot_further_away_than_the_caller_will_wait_is_not_taken(slots: SlotStore) -> None:
    account = _account()
    slots.reserve(account, 10, 60)  # now
    far = slots.reserve(account, 10, 5)  # would be 10 s away: refused, not reserved
    again = slots.reserve(account, 10, 60)
    assert far == pytest.approx(10, abs=0.1)
    assert again == pytest.approx(10, abs=0.1)  # the refused slot was not consumed


def test_a_throttle_answer_pauses_the_account_and_halves_its_rate(slots: SlotStore) -> None:
    account = _account()
    slots.throttled(account, pause=2.0, slow_for=30.0)
    first = slots.reserve(account, 0.5, 60)
    second = slots.reserve(account, 0.5, 60)
    assert first == pytest.approx(2.0, abs=0.1)
    assert second - first == pytest.approx(1.0, abs=0.05)


def test_accounts_do_not_share_slots(slots: SlotStore) -> None:
    slots.reserve("a-" + _account(), 10, 60)
    assert slots.reserve("b-" + _account(), 10, 60) == pytest.approx(0, abs=0.05)


def test_the_limiter_refuses_a_wait_beyond_its_bound_as_a_throttle(database_url: str) -> None:
    limiter = RateLimiter(DatabaseSlots(database_url), _account(), rate=0.001, max_wait=60)
    limiter.acquire("GetOrder")
    with pytest.raises(RateLimited) as raised:
        limiter.acquire("GetOrder")
    assert raised.value.wait > 60


def test_an_e901_answer_slows_the_account_down(database_url: str) -> None:
    store = DatabaseSlots(database_url)
    account = _account()
    limiter = RateLimiter(store, account, rate=100, max_wait=60)
    limiter.observe(
        CallRecord("RemoveProduct", "api_error", 0.01, 200, "E901", "E901", throttled=True)
    )
    assert store.reserve(account, 0.01, 60) == pytest.approx(1.0, abs=0.1)


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
