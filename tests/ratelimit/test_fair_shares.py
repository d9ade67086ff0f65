"""At the real rate limit: a call waiting for its slot holds no thread, and the account's slots
are shared in turns between its jobs and kinds of work (worker.ratelimit). Behaviour only: the
order of calls the sandbox saw and the state of the work, never how long something took."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import groupby

import pytest
from sqlalchemy import select

from tests.support.lazop import ACCOUNT, lazop_stack
from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.db.models import RemovalBatch, RemovalJob
from worker.ratelimit.runners import runners_for
from worker.services import documents, job_control

RATE = 4  # calls a second, at the worker and at the sandbox (E901 above it)
FAIR_STACKS = ["embedded+sqlite", "redis+postgresql"]


def _at_the_limit(stack: Stack) -> None:
    stack.env["LAZADA_RATE_LIMIT"] = str(RATE)
    stack.sandbox.config.rate_limit = RATE
    stack.sandbox.config.latency = 0.05


def _skus(prefix: str, calls: int) -> list[str]:
    return [f"{prefix}-{n:05d}" for n in range(calls * 50)]


def _job(stack: Stack, key: str) -> dict | None:
    with stack.sessions() as session:
        return documents.removal_job(session, stack.settings.account, key)


def _done(stack: Stack, key: str) -> dict | None:
    job = _job(stack, key)
    return job if job and job["state"] == "done" else None


def _removal_calls(stack: Stack) -> list[str]:
    """The job (SKU prefix) of each RemoveProduct call, in the order the sandbox served them."""
    calls = sorted(
        (c for c in stack.sandbox.calls() if c.action == "RemoveProduct"), key=lambda c: c.at
    )
    return [re.search(rb"<SellerSku>([A-Z]+)-", c.body).group(1).decode() for c in calls]


def _sent_skus(stack: Stack) -> Counter[str]:
    bodies = (c.body for c in stack.sandbox.calls() if c.action == "RemoveProduct")
    return Counter(sku.decode() for body in bodies for sku in re.findall(rb"[A-Z]+-\d{5}", body))


@pytest.mark.slow
@pytest.mark.parametrize("stack", FAIR_STACKS, indirect=True)
def test_a_call_waiting_for_its_slot_holds_no_thread(stack: Stack) -> None:
    """Two threads, fifty removal calls waiting for slots: an order sent meanwhile is fetched
    within a few slots, while most of the removal is still to come. A task that slept for its
    slot would keep both threads until the removal's queue reached the order."""
    _at_the_limit(stack)
    stack.start_worker(concurrency=2)
    stack.send("lazada.remove_products", _skus("BIG", 60), key="big")
    wait_for(lambda: len(_removal_calls(stack)) >= 5 or None, 60, "the removal's first calls")
    stack.send("lazada.fetch_order", 190)

    def fetched() -> dict | None:
        with stack.sessions() as session:
            order = documents.order(session, stack.settings.account, 190)
        return order if order and order["fetched_at"] else None

    wait_for(fetched, 60, "the order")
    calls_by_then = len(_removal_calls(stack))
    assert calls_by_then <= 20, f"{calls_by_then} of 60 removal calls were made before the order"
    job = wait_for(lambda: _done(stack, "big"), 120, "the removal")
    assert job["removed"] == 60 * 50


@pytest.mark.slow
@pytest.mark.parametrize("stack", FAIR_STACKS, indirect=True)
def test_a_slow_api_gets_more_of_a_jobs_calls_in_flight_than_it_started_runners(
    stack: Stack,
) -> None:
    """At 2 s a call, a job's first runners (a call in flight and its slots ahead) would leave
    most of the limit's slots unused: a call whose fresh slot came at once sends, from the
    worker's task, runners for the slots it let pass. Without them (and with the sweeper out
    of the way) no more of the job's calls would ever be in flight at once than it started
    runners (3 here)."""
    _at_the_limit(stack)
    stack.sandbox.config.latency = 2.0
    stack.env["LAZADA_REDISPATCH_AFTER"] = "300"  # no batch sent by the sweeper meanwhile
    stack.start_worker(concurrency=8)
    stack.send("lazada.remove_products", _skus("SLOW", 24), key="slow")
    job = wait_for(lambda: _done(stack, "slow"), 120, "the job at a slow API")

    started = runners_for(RATE)
    peak = stack.sandbox.stats()["peak_calls_in_flight"]
    assert peak > started, f"at most {peak} calls in flight; the job started {started} runners"
    assert job["removed"] == 24 * 50
    sent = _sent_skus(stack)
    assert len(sent) == 24 * 50 and set(sent.values()) == {1}
    assert [c for c in stack.sandbox.calls() if c.error_code == 901] == []


@pytest.mark.slow
@pytest.mark.parametrize("stack", FAIR_STACKS, indirect=True)
def test_a_jobs_deferrals_to_its_slots_are_run_by_the_worker_without_a_message_each(
    stack: Stack,
) -> None:
    """At 2 calls a second a job's next slot is further than a runner sleeps for: each call
    but the first few is a deferral to its slot. The worker keeps them and runs them itself
    at their time (worker.broker.deferrals), so its log shows a handful of batch messages for
    the job's calls; through the broker it would show about one a call. Every SKU is sent
    once, and no call is throttled."""
    _at_the_limit(stack)
    stack.env["LAZADA_RATE_LIMIT"] = "2"
    stack.sandbox.config.rate_limit = 2
    worker = stack.start_worker(concurrency=4)
    stack.send("lazada.remove_products", _skus("LOW", 16), key="low")
    job = wait_for(lambda: _done(stack, "low"), 120, "the job at 2 calls a second")

    calls = len(_removal_calls(stack))
    received = re.findall(r"Task lazada\.remove_batch\[[^]]+\] received", worker.log())
    assert job["removed"] == 16 * 50 and calls == 16
    assert len(received) <= calls // 2, f"{len(received)} batch messages for {calls} calls"
    sent = _sent_skus(stack)
    assert len(sent) == 16 * 50 and set(sent.values()) == {1}
    assert [c for c in stack.sandbox.calls() if c.error_code == 901] == []


@pytest.mark.slow
@pytest.mark.parametrize("stack", FAIR_STACKS, indirect=True)
def test_a_batch_kept_leased_through_its_deferral_sees_a_cancel_at_its_slot(stack: Stack) -> None:
    """At a call every two seconds each call is a deferral the worker keeps with its batch
    leased and nothing written: no batch of the job is made due later, as a rescheduled one
    would be. A cancel while the job's batches wait so: at their slots they are cancelled,
    not sent (at most one call starts after it: a runner may be sleeping for a near slot)."""
    _at_the_limit(stack)
    stack.env["LAZADA_RATE_LIMIT"] = "0.5"
    stack.sandbox.config.rate_limit = 0.5
    stack.start_worker(concurrency=4)
    stack.send("lazada.remove_products", _skus("HELD", 20), key="held")
    wait_for(lambda: len(_removal_calls(stack)) >= 2 or None, 60, "the job's first calls")

    with stack.sessions() as session:
        pending = session.execute(
            select(RemovalBatch.lease_holder, RemovalBatch.next_attempt_at)
            .join(RemovalJob, RemovalJob.id == RemovalBatch.job_id)
            .where(RemovalJob.key == "held", RemovalBatch.state == "pending")
        ).all()
    assert any(holder for holder, _ in pending), "no batch of the job is leased"
    # A rescheduled batch would be due SLOT_HOLD after its slot, seconds from now.
    later = [due for _, due in pending if due > datetime.now(UTC) + timedelta(seconds=1)]
    assert later == [], f"batches rescheduled: {later}"

    job_control.cancel(stack.sessions, stack.settings.account, "held")
    cancelled_at = time.time()
    job = wait_for(lambda: _done(stack, "held"), 60, "the cancelled job done")

    late = [c for c in stack.sandbox.calls() if c.action == "RemoveProduct" and c.at > cancelled_at]
    assert len(late) <= 1, f"{len(late)} calls started after the cancel"
    assert job["cancelled"] > 0 and job["removed"] + job["cancelled"] == 20 * 50
    sent = _sent_skus(stack)
    assert set(sent.values()) == {1} and len(sent) == job["removed"]


@pytest.mark.slow
@pytest.mark.parametrize("stack", FAIR_STACKS, indirect=True)
def test_two_jobs_take_turns_and_each_sku_is_sent_once(stack: Stack) -> None:
    """A small job sent while a big one runs gets every other few slots, not the slots after
    the big job; deferrals to slots neither lose a SKU nor send one twice."""
    _at_the_limit(stack)
    stack.start_worker(concurrency=8)
    stack.send("lazada.remove_products", _skus("AAA", 40), key="big")
    wait_for(lambda: len(_removal_calls(stack)) >= 4 or None, 60, "the big job's first calls")
    stack.send("lazada.remove_products", _skus("BBB", 8), key="small")
    big = wait_for(lambda: _done(stack, "big"), 120, "the big job")
    small = wait_for(lambda: _done(stack, "small"), 30, "the small job")

    order = _removal_calls(stack)
    first, last = order.index("BBB"), len(order) - 1 - order[::-1].index("BBB")
    while_both = order[first : last + 1]
    assert order[-1] == "AAA", f"the small job did not finish while the big one ran: {order}"
    runs = [len(list(run)) for job, run in groupby(while_both) if job == "AAA"]
    assert max(runs) <= 3, f"the big job took {max(runs)} slots in a row: {order}"
    assert big["removed"] == 40 * 50 and small["removed"] == 8 * 50
    sent = _sent_skus(stack)
    assert len(sent) == 48 * 50 and set(sent.values()) == {1}
    throttled = [c for c in stack.sandbox.calls() if c.error_code == 901]
    assert throttled == []


@pytest.mark.slow
@pytest.mark.parametrize("stack", FAIR_STACKS, indirect=True)
def test_work_of_two_calls_makes_each_once_while_other_work_takes_turns(stack: Stack) -> None:
    """An Open Platform order is two calls (the order, its items), reserved together: while a
    removal takes its turns, each order is fetched with one of each. Were the second call
    deferred, the fetch would start over: under load, its first call sent again and again."""
    _at_the_limit(stack)
    with lazop_stack(stack) as lazop:
        lazop.sandbox.config.rate_limit = RATE
        lazop.sandbox.config.latency = 0.05
        stack.start_worker(concurrency=4)
        stack.send("lazada.remove_products", _skus("BIG", 30), key="big", account=ACCOUNT)
        wait_for(lambda: (lazop.job("big") or {}).get("removed", 0) >= 200, 60, "a start")
        orders = [1001, 1002, 1003, 190]
        for order_id in orders:
            stack.send("lazada.fetch_order", order_id, account=ACCOUNT)

        def fetched() -> list[dict] | None:
            with stack.sessions() as session:
                found = [documents.order(session, ACCOUNT, o) for o in orders]
            done = [o for o in found if o and o["state"] == "fetched"]
            return done if len(done) == len(orders) else None

        wait_for(fetched, 60, "the lazop orders")
        calls = Counter(
            (c.action, c.params.get("order_id"))
            for c in lazop.sandbox.calls()
            if c.action.startswith("/order/")
        )
        expected = {(path, str(o)) for path in ("/order/get", "/order/items/get") for o in orders}
        assert set(calls) == expected and set(calls.values()) == {1}, calls
        assert lazop.finished("big")["removed"] == 30 * 50
        limited = [c for c in lazop.sandbox.calls() if c.error_code == "ApiCallLimit"]
        assert limited == []
