"""The services against the sandbox over HTTP and a real database (SQLite and PostgreSQL),
without Celery: what each step records, and which messages it asks to send."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.worker_stack import BATCH, URLS_PER_CALL
from worker.accounts.platforms import PlatformFor
from worker.broker.dispatch import Message
from worker.db.models import ApiCall, Failure, ImageJob, Order, RemovalBatch
from worker.inputs import InvalidInput, clean_skus
from worker.platforms import Platform
from worker.platforms.sellercenter import SellerCenterClient, SellerCenterPlatform
from worker.ratelimit import DatabaseSlots, RateLimited, RateLimiter
from worker.ratelimit.runners import RUNNERS_PER_JOB
from worker.sandbox.sellercenter import Sandbox
from worker.services import documents, images, job_control, orders, removal, sweepers
from worker.settings import Settings


def single(platform: Platform) -> PlatformFor:
    return lambda _account: platform


def _run_batches(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    messages: list[Message],
) -> int:
    """Deliver messages the way a worker would, waiting out countdowns; returns deliveries."""
    delivered = 0
    queue = list(messages)
    while queue:
        message = queue.pop(0)
        if message.countdown:
            time.sleep(message.countdown)
        queue += removal.process_batch(
            sessions, platforms, settings, *message.args, slot=message.slot, **message.kwargs
        )
        delivered += 1
    return delivered


def _job(sessions: sessionmaker[Session], settings: Settings, key: str) -> dict:
    with sessions() as session:
        job = documents.removal_job(session, settings.account, key)
    assert job is not None
    return job


def test_a_job_is_split_into_batches_of_at_most_fifty_skus(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    skus = [f"S-{n}" for n in range(121)]
    _, messages = removal.create_job(sessions, settings, settings.account, "split", skus, BATCH)
    with sessions() as session:
        held = session.execute(
            select(RemovalBatch.first_position, RemovalBatch.skus).order_by(RemovalBatch.id)
        ).all()
    # Each batch holds its SKUs, in the caller's order, until its first outcome.
    assert [(first, json.loads(batch)) for first, batch in held] == [
        (0, skus[:50]),
        (50, skus[50:100]),
        (100, skus[100:]),
    ]
    assert [m.task for m in messages] == ["lazada.remove_batch"] * 3


def test_a_job_starts_a_few_runners_that_take_all_of_its_batches(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    skus = [f"S-{n}" for n in range(5 * BATCH + 1)]  # six batches
    _, messages = removal.create_job(
        sessions, settings, settings.account, "runners", skus, BATCH, runners=2
    )
    assert len(messages) == 2
    assert _run_batches(sessions, platforms, settings, messages) == 2
    job = _job(sessions, settings, "runners")
    assert job["state"] == "done" and job["removed"] == len(skus)
    assert sandbox.removal_counts() == dict.fromkeys(skus, 1)


def test_a_retried_job_starts_as_many_runners_as_it_is_given(
    sessions: sessionmaker[Session], settings: Settings, sandbox: Sandbox
) -> None:
    bad = SellerCenterClient(sandbox.url, sandbox.user_id, "not-the-key", read_timeout=3)
    wrong_key = single(SellerCenterPlatform(bad))
    skus = [f"S-{n}" for n in range(2 * BATCH + 1)]  # three batches, all failed (E007)
    _, messages = removal.create_job(
        sessions, settings, settings.account, "retried", skus, BATCH, runners=3
    )
    assert _run_batches(sessions, wrong_key, settings, messages) == 3
    retried = job_control.retry(sessions, settings, settings.account, "retried", runners=2)
    assert retried.changed == len(skus) and len(retried.messages) == 2


def test_a_runner_out_of_time_hands_over_to_a_new_message(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(removal, "RUNNER_SECONDS", 0.0)  # one batch a task, then a hand-over
    skus = [f"H-{n}" for n in range(3 * BATCH)]
    _, messages = removal.create_job(sessions, settings, settings.account, "hand-over", skus, BATCH)
    first = removal.process_batch(sessions, platforms, settings, *messages[0].args)
    assert first == [Message(removal.REMOVE_BATCH_TASK, messages[0].args)]
    _run_batches(sessions, platforms, settings, [*first, *messages[1:]])
    assert _job(sessions, settings, "hand-over")["removed"] == len(skus)
    assert sandbox.removal_counts() == dict.fromkeys(skus, 1)


def test_the_status_lists_every_sku_in_order_before_and_after_its_batch_is_done(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Batches hold their SKUs (pending, then removed by one call) unless a call leaves them
    # otherwise, which writes their rows; the status and the progress read both places.
    monkeypatch.setattr(removal, "RUNNER_SECONDS", 0.0)  # one batch a task
    skus = [f"P-{n:03d}" for n in range(2 * BATCH + 7)]
    skus[60] = "P-060-FAIL"
    _, messages = removal.create_job(sessions, settings, settings.account, "status", skus, BATCH)

    def states() -> list[tuple[str, str, int]]:
        return [
            (s["sku"], s["state"], s["attempts"])
            for s in _job(sessions, settings, "status")["skus"]
        ]

    assert states() == [(sku, "pending", 0) for sku in skus]
    assert _job(sessions, settings, "status")["state"] == "pending"
    removal.process_batch(sessions, platforms, settings, *messages[0].args)
    first = BATCH
    assert states() == [(sku, "removed", 1) for sku in skus[:first]] + [
        (sku, "pending", 0) for sku in skus[first:]
    ]
    assert _job(sessions, settings, "status")["state"] == "running"
    with sessions() as session:
        progress = documents.removal_progress(session, settings.account, "status")
    assert progress == (first, len(skus), False)
    _run_batches(sessions, platforms, settings, messages[1:])
    job = _job(sessions, settings, "status")
    assert [s["sku"] for s in job["skus"]] == skus
    assert (job["state"], job["removed"], job["failed"], job["pending"]) == ("done", 106, 1, 0)
    assert [s["sku"] for s in job["skus"] if s["state"] == "failed"] == ["P-060-FAIL"]
    with sessions() as session:
        progress = documents.removal_progress(session, settings.account, "status")
    assert progress == (len(skus), len(skus), True)


def test_the_same_key_again_records_nothing_and_sends_nothing(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    first, messages = removal.create_job(
        sessions, settings, settings.account, "k", ["A", "B"], BATCH
    )
    # The same set in another order (another set is refused: tests/services/test_job_keys.py).
    again, more = removal.create_job(sessions, settings, settings.account, "k", ["B", "A"], BATCH)
    assert again == first and messages and more == []
    assert _job(sessions, settings, "k")["total"] == 2


def test_sku_named_in_error_detail_fails_and_the_rest_are_sent_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    skus = ["OK-1", "BAD-FAIL-1", "OK-2", "BAD-FAIL-2", "OK-3"]
    _, messages = removal.create_job(sessions, settings, settings.account, "d4", skus, BATCH)
    _run_batches(sessions, platforms, settings, messages)

    job = _job(sessions, settings, "d4")
    by_sku = {s["sku"]: s for s in job["skus"]}
    assert job["state"] == "done" and job["removed"] == 3 and job["failed"] == 2
    assert by_sku["BAD-FAIL-1"]["error_code"] == "E503"
    assert "BAD-FAIL-1" in by_sku["BAD-FAIL-1"]["message"]
    assert by_sku["OK-1"]["attempts"] == 2  # the rejected call, then the one that removed it
    bodies = [c.body for c in sandbox.calls() if c.action == "RemoveProduct"]
    assert len(bodies) == 2 and b"BAD-FAIL" not in bodies[1]
    assert sandbox.removal_counts() == {"OK-1": 1, "OK-2": 1, "OK-3": 1}


def test_transient_errors_are_retried_on_the_ladder_then_the_skus_fail_with_the_last_error(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    sandbox.config.fault_rate = 1.0
    sandbox.config.fault_kinds = ("e006",)
    _, messages = removal.create_job(
        sessions, settings, settings.account, "flaky", ["T-1", "T-2"], BATCH
    )
    deliveries = _run_batches(sessions, platforms, settings, messages)

    job = _job(sessions, settings, "flaky")
    assert deliveries == len(settings.retry_ladder) + 1
    assert job["state"] == "done" and job["failed"] == 2
    assert all(s["attempts"] == deliveries and s["error_code"] == "E006" for s in job["skus"])
    assert "gave up" in job["skus"][0]["message"]
    with sessions() as session:
        kinds = set(session.scalars(select(Failure.kind)))
        audited = session.scalar(select(func.count()).select_from(ApiCall))
    assert kinds == {"removal_sku"}
    assert audited == deliveries


def test_a_transient_error_then_success_removes_every_sku_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    sandbox.config.fault_rate = 1.0
    sandbox.config.fault_kinds = ("http502_html",)
    _, messages = removal.create_job(
        sessions, settings, settings.account, "recover", ["R-1"], BATCH
    )
    retry = removal.process_batch(sessions, platforms, settings, *messages[0].args)
    assert retry and retry[0].countdown is not None
    sandbox.config.fault_rate = 0.0
    _run_batches(sessions, platforms, settings, retry)

    job = _job(sessions, settings, "recover")
    assert job["removed"] == 1 and job["skus"][0]["attempts"] == 2
    assert sandbox.removal_counts() == {"R-1": 1}


def test_a_wrong_key_fails_the_batch_at_once_without_retrying(
    sessions: sessionmaker[Session], settings: Settings, sandbox: Sandbox
) -> None:
    bad = SellerCenterClient(sandbox.url, sandbox.user_id, "not-the-key", read_timeout=3)
    wrong_key = single(SellerCenterPlatform(bad))
    _, messages = removal.create_job(sessions, settings, settings.account, "auth", ["W-1"], BATCH)
    follow_up = removal.process_batch(sessions, wrong_key, settings, *messages[0].args)

    job = _job(sessions, settings, "auth")
    assert follow_up == [] and job["failed"] == 1
    assert job["skus"][0]["error_code"] == "E007" and job["skus"][0]["attempts"] == 1
    assert len(sandbox.calls()) == 1
    assert "not-the-key" not in job["skus"][0]["message"]


def test_a_batch_delivered_twice_does_nothing_the_second_time(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    _, messages = removal.create_job(sessions, settings, settings.account, "twice", ["X-1"], BATCH)
    batch_id = messages[0].args[0]
    removal.process_batch(sessions, platforms, settings, batch_id)
    assert removal.process_batch(sessions, platforms, settings, batch_id) == []
    assert len(sandbox.calls()) == 1


def test_a_batch_leased_by_another_worker_is_left_alone(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    _, messages = removal.create_job(sessions, settings, settings.account, "leased", ["Y-1"], BATCH)
    with sessions.begin() as session:
        session.execute(
            update(RemovalBatch).values(lease_until=datetime.now(UTC) + timedelta(minutes=1))
        )
    assert removal.process_batch(sessions, platforms, settings, *messages[0].args) == []
    assert sandbox.calls() == []


def test_the_sweeper_resends_due_batches_whose_message_is_overdue_and_only_those(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    _, messages = removal.create_job(sessions, settings, settings.account, "sweep", ["Z-1"], BATCH)
    assert sweepers.sweep_removal_batches(sessions, settings) == []  # its message is not late
    with sessions.begin() as session:
        session.execute(
            update(RemovalBatch).values(dispatched_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    resent = sweepers.sweep_removal_batches(sessions, settings)
    assert resent == messages
    assert sweepers.sweep_removal_batches(sessions, settings) == []  # sent once per deadline


def test_an_order_is_inserted_then_updated_in_place(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor
) -> None:
    orders.fetch_order(sessions, platforms, settings, settings.account, 190, "request-1")
    orders.fetch_order(sessions, platforms, settings, settings.account, 190, "request-2")
    with sessions() as session:
        rows = list(session.scalars(select(Order)))
        document = documents.order(session, settings.account, 190)
    assert len(rows) == 1 and document is not None
    assert document["customer_first_name"] == "ภัทรนิดา แสนสุข"
    assert document["extra_attributes"] == {"TaxInvoiceRequested": "true"}
    assert document["gift_option"] is False and document["items_count"] == 12
    assert document["created_at"].endswith("+00:00")


def test_an_order_request_seen_before_is_not_fetched_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    orders.fetch_order(sessions, platforms, settings, settings.account, 7, "same-request")
    orders.fetch_order(sessions, platforms, settings, settings.account, 7, "same-request")
    assert len(sandbox.calls()) == 1


def test_an_unknown_order_is_recorded_as_failed_with_its_code(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor
) -> None:
    assert (
        orders.fetch_order(sessions, platforms, settings, settings.account, 900_000_123, "r") == []
    )
    with sessions() as session:
        document = documents.order(session, settings.account, 900_000_123)
        failure = session.scalars(select(Failure)).one()
    assert document is not None and document["state"] == "failed"
    assert document["error_code"] == "E016" and failure.subject == "900000123"


def test_open_orders_older_than_the_refresh_interval_are_fetched_again(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor
) -> None:
    for order_id in range(1, 21):
        orders.fetch_order(
            sessions, platforms, settings, settings.account, order_id, f"r{order_id}"
        )
    with sessions.begin() as session:
        session.execute(update(Order).values(fetched_at=datetime.now(UTC) - timedelta(days=1)))
        open_ids = set(session.scalars(select(Order.order_id).where(Order.is_open.is_(True))))
    assert open_ids, "the sandbox serves some open orders among the first twenty"

    # Order sync keeps stored orders current: the refresh runs only while it is off.
    assert orders.refresh_open_orders(sessions, settings) == []
    sync_off = replace(settings, order_sync_every=0.0)
    messages = orders.refresh_open_orders(sessions, sync_off)
    assert {m.args[0] for m in messages} == open_ids
    assert orders.refresh_open_orders(sessions, sync_off) == []  # already due, not twice


def _advance_until_final(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    messages: list[Message],
    limit: int = 200,
) -> None:
    queue = list(messages)
    for _ in range(limit):
        if not queue:
            return
        message = queue.pop(0)
        if message.countdown:
            time.sleep(message.countdown)
        queue += images.advance(
            sessions, platforms, settings, *message.args, slot=message.slot, **message.kwargs
        )
    raise AssertionError("image job still pending")


def test_a_migration_is_submitted_in_chunks_of_eight_and_polled_until_final(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    sandbox.config.image_job_seconds = (0.2, 0.4)
    urls = [f"https://img.example.com/{n}.jpg" for n in range(11)]
    urls.append("https://img.example.com/broken.jpg")
    _, messages = images.start_migration(
        sessions, settings, settings.account, "mig", urls, URLS_PER_CALL
    )
    assert len(messages) == 2
    _advance_until_final(sessions, platforms, settings, messages)

    with sessions() as session:
        jobs = documents.image_jobs(session, settings.account, key="mig")
    assert sorted(j["state"] for j in jobs) == ["partial", "succeeded"]
    assert sum(len(j["images"]) for j in jobs) == 11
    assert all(j["polls"] >= 1 and j["request_id"] for j in jobs)
    submitted = [c for c in sandbox.calls() if c.action == "MigrateImages"]
    assert len(submitted) == 2


def test_an_unknown_request_id_is_rejected(
    sessions: sessionmaker[Session], settings: Settings, platforms: PlatformFor
) -> None:
    messages = images.track(
        sessions, settings, settings.account, "0123456789abcdef0123456789", "UploadImages"
    )
    assert (
        images.track(
            sessions, settings, settings.account, "0123456789abcdef0123456789", "UploadImages"
        )
        == []
    )
    _advance_until_final(sessions, platforms, settings, messages)
    with sessions() as session:
        job = documents.image_job(session, settings.account, "0123456789abcdef0123456789")
    assert job is not None and job["state"] == "rejected" and job["error_code"] == "E005"


def test_a_job_still_running_at_its_deadline_expires(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
) -> None:
    short = Settings(**{**settings.__dict__, "image_deadline": 0.5})
    _, messages = images.start_migration(
        sessions,
        short,
        short.account,
        "slow",
        ["https://img.example.com/a.jpg?sandbox_duration=3600"],
        URLS_PER_CALL,
    )
    _advance_until_final(sessions, platforms, short, messages)
    with sessions() as session:
        job = session.scalars(select(ImageJob)).one()
    assert job.state == "expired" and job.polls >= 1


@given(age=st.floats(min_value=0, max_value=10_000))
def test_poll_intervals_grow_with_age_within_their_bounds(age: float) -> None:
    settings = Settings.from_env({})
    interval = images.poll_interval(settings, age)
    assert settings.poll_first <= interval <= settings.poll_cap
    assert images.poll_interval(settings, age + 1) >= interval


@given(duration=st.floats(min_value=0.01, max_value=800))
def test_default_polling_sees_a_finished_job_within_a_fifth_of_its_duration_plus_5s(
    duration: float,
) -> None:
    # The schedule alone (a worker that keeps up): the benchmark's delay target, and the
    # number of polls that buys, for a job that finishes `duration` s after submission.
    settings = Settings.from_env({})
    age, polls = settings.poll_first, 1
    while age < duration:
        age += images.poll_interval(settings, age)
        polls += 1
    assert age - duration <= 0.2 * duration + 5
    if duration <= 60:
        assert polls <= 8


@hypothesis_settings(max_examples=200)
@given(st.lists(st.text(max_size=20), max_size=30))
def test_clean_skus_keeps_order_drops_duplicates_or_says_what_is_wrong(skus: list[str]) -> None:
    try:
        cleaned = clean_skus(skus)
    except InvalidInput as exc:
        assert str(exc)
        return
    assert cleaned == list(dict.fromkeys(s.strip() for s in skus))
    assert all(s and s == s.strip() for s in cleaned)
    assert not any(ord(ch) < 32 for s in cleaned for ch in s)  # control characters refused


@pytest.mark.parametrize("bad", [[], [""], ["  "], "SKU-1", [1], None, ["x" * 256], ["a\nb"]])
def test_clean_skus_refuses_bad_input_with_a_message(bad: object) -> None:
    with pytest.raises(InvalidInput):
        clean_skus(bad)


def test_a_call_refused_by_the_local_rate_limit_is_deferred_and_not_counted(
    sessions: sessionmaker[Session], settings: Settings, sandbox: Sandbox
) -> None:
    refusals = iter([RateLimited("RemoveProduct", 0.05)])

    def before_call(action: str) -> None:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal

    limited = single(
        SellerCenterPlatform(
            SellerCenterClient(
                sandbox.url, sandbox.user_id, sandbox.api_key, before_call=before_call
            )
        )
    )
    _, messages = removal.create_job(
        sessions, settings, settings.account, "limited", ["L-1"], BATCH
    )
    deferred = removal.process_batch(sessions, limited, settings, *messages[0].args)
    assert [m.countdown for m in deferred] == [0.05] and sandbox.calls() == []
    _run_batches(sessions, limited, settings, deferred)

    job = _job(sessions, settings, "limited")
    assert job["removed"] == 1 and job["skus"][0]["attempts"] == 1
    with sessions() as session:
        assert session.scalar(select(RemovalBatch.attempts)) == 0


def _limited(sandbox: Sandbox, database_url: str, rate: float) -> PlatformFor:
    """The legacy platform on the sandbox under a real limiter (a calendar of its own)."""
    limiter = RateLimiter(DatabaseSlots(database_url), f"late-{uuid.uuid4().hex[:8]}", rate)
    client = SellerCenterClient(
        sandbox.url, sandbox.user_id, sandbox.api_key, before_call=limiter.acquire
    )
    return single(SellerCenterPlatform(client))


def _two_batches(sessions: sessionmaker[Session], settings: Settings, key: str) -> list[int]:
    _, messages = removal.create_job(
        sessions, settings, settings.account, key, [f"{key}-{n}" for n in range(2 * BATCH)], BATCH
    )
    return [message.args[0] for message in messages]


def _lease(sessions: sessionmaker[Session], batch_id: int | None) -> None:
    """A running task holds the batch (None: no batch is held)."""
    statement = update(RemovalBatch).values(lease_until=None)
    if batch_id is not None:
        until = datetime.now(UTC) + timedelta(minutes=1)
        statement = statement.where(RemovalBatch.id == batch_id).values(lease_until=until)
    with sessions.begin() as session:
        session.execute(statement)


# At 1 call/s (slots 1.03 s apart) these come back later than an interval after their slot:
# too late to be sent with the slot moved (a new slot costs less), so they are late for it.
LATE = 1.5


def test_a_batch_late_for_its_slot_is_left_to_its_jobs_runner_under_way(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    database_url: str,
) -> None:
    first, second = _two_batches(sessions, settings, "late")
    _lease(sessions, first)  # a runner is calling for the first batch
    limited = _limited(sandbox, database_url, rate=1)
    late = time.time() - LATE
    assert removal.process_batch(sessions, limited, settings, second, slot=late) == []
    assert sandbox.calls() == []
    with sessions() as session:
        row = session.get(RemovalBatch, second)
        assert row is not None and row.lease_until is None
        assert row.next_attempt_at.replace(tzinfo=UTC) <= datetime.now(UTC)  # due for others

    # The runner, done with its batch, goes on with the one left to it.
    _lease(sessions, None)
    runner = [Message(removal.REMOVE_BATCH_TASK, (first,))]
    assert _run_batches(sessions, platforms, settings, runner) == 1
    assert _job(sessions, settings, "late")["removed"] == 2 * BATCH
    assert len(sandbox.calls()) == 2


@pytest.mark.parametrize("held", ["none", "a later batch"])
def test_a_batch_late_for_its_slot_and_first_of_those_held_comes_back_for_a_new_one(
    sessions: sessionmaker[Session],
    settings: Settings,
    sandbox: Sandbox,
    database_url: str,
    held: str,
) -> None:
    # Two late batches each left to the other would leave the job to the sweeper: the first
    # batch held never leaves.
    first, second = _two_batches(sessions, settings, f"alone-{held[0]}")
    if held != "none":
        _lease(sessions, second)
    limited = _limited(sandbox, database_url, rate=1)
    again = removal.process_batch(sessions, limited, settings, first, slot=time.time() - LATE)
    assert again == [Message(removal.REMOVE_BATCH_TASK, (first,), countdown=0.0)]
    assert sandbox.calls() == []
    _lease(sessions, None)
    _run_batches(sessions, limited, settings, again)  # a new slot: now, and the next in 1 s
    assert _job(sessions, settings, f"alone-{held[0]}")["removed"] == 2 * BATCH


@pytest.mark.parametrize(
    ("took", "countdowns"),
    [
        (0.15, [None]),  # a fast call: one more runner
        (0.5, [None, 0.2]),  # the slots it let pass, an interval apart
        (2.0, [None, *(0.2 * n for n in range(1, 9))]),
        (60.0, [None, *(0.2 * n for n in range(1, RUNNERS_PER_JOB))]),
    ],
)
def test_a_slow_call_starts_a_runner_for_each_slot_it_let_pass(
    took: float, countdowns: list[float | None]
) -> None:
    more = removal.more_runners(7, took, 0.2)
    assert [m.countdown for m in more] == pytest.approx(countdowns)
    assert {(m.task, m.args) for m in more} == {(removal.REMOVE_BATCH_TASK, (7,))}


@pytest.mark.parametrize(
    ("rate", "runners_started"),
    [
        (1, 1),  # the first call's fresh slot came at once, a batch left: one more runner
        (100, 0),  # the limit off (no window kept): every slot comes at once, none is spare
    ],
)
def test_a_call_whose_fresh_slot_came_at_once_starts_one_more_runner_of_its_job(
    sessions: sessionmaker[Session],
    settings: Settings,
    sandbox: Sandbox,
    database_url: str,
    rate: float,
    runners_started: int,
) -> None:
    _, messages = removal.create_job(
        sessions, settings, settings.account, f"spare-{rate}", [f"P-{n}" for n in range(150)], 50
    )
    first = messages[0].args[0]
    limited = _limited(sandbox, database_url, rate=rate)
    published: list[Message] = []
    left = removal.process_batch(sessions, limited, settings, first, None, published.extend)
    assert published == [Message(removal.REMOVE_BATCH_TASK, (first,))] * runners_started
    if rate == 1:  # the second batch's slot is an interval away: deferred, so not spare
        assert len(left) == 1 and left[0].countdown and len(sandbox.calls()) == 1
    else:
        assert left == [] and len(sandbox.calls()) == 3


def test_non_ascii_and_longest_skus_cross_the_wire_intact(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    skus = clean_skus(["  เสื้อ-ไทย-01 ", "靴-日本-02", "x" * 255, "a&b<c>'\"d", "เสื้อ-ไทย-01"])
    assert len(skus) == 4  # trimmed, the duplicate dropped
    _, messages = removal.create_job(sessions, settings, settings.account, "unicode", skus, BATCH)
    _run_batches(sessions, platforms, settings, messages)
    assert _job(sessions, settings, "unicode")["removed"] == 4
    assert set(sandbox.removal_counts()) == set(skus)


@pytest.mark.parametrize("bad", ["BAD-\udcff", "BAD-\uffff", "BAD-\x00"], ids=["dcff", "ffff", "0"])
def test_a_sku_xml_cannot_carry_fails_alone_and_the_rest_of_its_batch_is_removed(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
    bad: str,
) -> None:
    # Recorded past the input rule (a job stored before it, or another writer): the send-time
    # refusal must still end the job, with that SKU failed and the others removed.
    _, messages = removal.create_job(
        sessions, settings, settings.account, "unsendable", ["OK-1", bad, "OK-2"], BATCH
    )
    _run_batches(sessions, platforms, settings, messages)

    job = _job(sessions, settings, "unsendable")
    by_sku = {s["sku"]: s for s in job["skus"]}
    assert (job["state"], job["removed"], job["failed"]) == ("done", 2, 1)
    # Stored escaped where a text column cannot hold it (a lone surrogate, NUL).
    stored = bad.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
    assert by_sku[stored]["state"] == "failed"
    assert "XML cannot carry" in by_sku[stored]["message"]
    assert sandbox.removal_counts() == {"OK-1": 1, "OK-2": 1}
    # No call carried the refused SKU's batch before the one that removed the others.
    assert (by_sku["OK-1"]["attempts"], by_sku["OK-2"]["attempts"]) == (1, 1)
    with sessions() as session:
        failures = session.scalars(select(Failure)).all()
    assert [(f.kind, f.attempts) for f in failures] == [("removal_sku", 1)]
    # Delivered again (a sweeper, a duplicate): nothing more is recorded or sent.
    _run_batches(sessions, platforms, settings, messages)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Failure)) == 1
    assert sandbox.removal_counts() == {"OK-1": 1, "OK-2": 1}


def test_an_image_url_xml_cannot_carry_ends_its_job_rejected_not_pending(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    urls = ["https://img.example.com/1.jpg", "http://a.com/\uffff.jpg"]
    _, messages = images.start_migration(
        sessions, settings, settings.account, "unsendable-images", urls, URLS_PER_CALL
    )
    _advance_until_final(sessions, platforms, settings, messages)
    with sessions() as session:
        job = session.scalars(select(ImageJob)).one()
    assert job.state == "rejected" and job.message and "XML cannot carry" in job.message
    assert [c for c in sandbox.calls() if c.action == "MigrateImages"] == []


def test_a_request_id_xml_cannot_carry_ends_its_tracking_rejected_not_pending(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    sandbox: Sandbox,
) -> None:
    messages = images.track(sessions, settings, settings.account, "REQ-\uffff", "MigrateImages")
    _advance_until_final(sessions, platforms, settings, messages)
    with sessions() as session:
        job = session.scalars(select(ImageJob)).one()
    assert job.state == "rejected" and sandbox.calls() == []
