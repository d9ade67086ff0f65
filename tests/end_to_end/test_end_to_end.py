"""End to end: a real worker process on a real broker and database, against a platform's sandbox.

One specification for every platform of tests/end_to_end/platforms.py, each run on the embedded
broker with SQLite, on Redis with PostgreSQL, and on RabbitMQ with PostgreSQL. Work is enqueued
by task name from a plain Celery app, as the shop does, and names the platform's account.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from sqlalchemy import func, select, update

from tests.end_to_end.platforms import PLATFORMS, PlatformStack
from tests.support.processes import wait_for
from worker.db.models import ApiCall, Base, ImageJob, Order, RemovalBatch, RemovalJob
from worker.platforms import registry
from worker.services import documents, removal

pytestmark = pytest.mark.slow


def test_a_removal_of_thousands_of_skus_with_faults_ends_with_every_sku_removed_or_failed_once(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    skus = [f"SKU-{n:05d}" + ("-FAIL" if n % 97 == 0 else "") for n in range(1, 3001)]
    at.sandbox.config.fault_rate = 0.1
    at.sandbox.config.fault_kinds = at.platform.transient_faults
    # At 1 fault in 10 calls the stack's 4 attempts fail one of the 60 batches now and then;
    # 7 attempts make a batch that fails every one of them too rare to be seen.
    at.env["LAZADA_RETRY_LADDER"] = "0.2,0.2,0.2,0.5,0.5,1"
    at.start_worker()

    at.send("lazada.remove_products", skus, key="big-job")
    job = at.finished("big-job")

    failing = {sku for sku in skus if sku.endswith("-FAIL")}
    assert job["total"] == len(skus) and job["account"] == at.account
    wrongly_failed = [s for s in job["skus"] if s["state"] == "failed" and s["sku"] not in failing]
    assert not wrongly_failed, wrongly_failed[:3]
    assert {s["sku"] for s in job["skus"] if s["state"] == "failed"} == failing
    assert job["removed"] == len(skus) - len(failing)
    removed_at_api = at.removal_counts()
    assert set(removed_at_api) == set(skus) - failing
    assert max(removed_at_api.values()) == 1  # nothing removed twice
    assert all(s["attempts"] >= 1 for s in job["skus"])
    # The stack's own (environment) account's sandbox saw none of it.
    assert at.stack.sandbox.calls() == []


def test_the_same_key_sent_again_removes_nothing_twice(platform_stack: PlatformStack) -> None:
    at = platform_stack
    at.start_worker()
    at.send("lazada.remove_products", ["A-1", "A-2"], key="again")
    at.finished("again")
    calls_before = len(at.calls())

    at.send("lazada.remove_products", ["A-1", "A-2", "A-3"], key="again")
    at.send("lazada.remove_products", ["B-1"], key="marker")
    at.finished("marker")

    job = at.job("again")
    assert job is not None and job["total"] == 2
    assert len(at.calls()) == calls_before + 1  # only the marker's call
    assert at.removal_counts()["A-1"] == 1


def test_a_batch_delivered_twice_calls_the_api_once(platform_stack: PlatformStack) -> None:
    at = platform_stack
    at.start_worker()
    at.send("lazada.remove_products", ["D-1", "D-2"], key="dup")
    at.finished("dup")
    with at.stack.sessions() as session:
        batch_id = session.scalars(select(RemovalBatch.id)).one()
    removals = len(at.calls(at.platform.removal_action))

    at.stack.send("lazada.remove_batch", batch_id)
    at.stack.send("lazada.remove_batch", batch_id)
    at.send("lazada.remove_products", ["E-1"], key="marker")
    at.finished("marker")

    assert len(at.calls(at.platform.removal_action)) == removals + 1  # the marker only


def test_orders_are_stored_and_a_missing_one_is_recorded_as_failed(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.start_worker()
    for order_id in (190, 4242, 900_000_001):
        at.send("lazada.fetch_order", order_id)

    def all_final() -> list[Order] | None:
        with at.stack.sessions() as session:
            rows = list(session.scalars(select(Order)))
        done = [r for r in rows if r.state != "pending" and r.next_attempt_at is None]
        return rows if len(done) == 3 else None

    wait_for(all_final, 90, "three orders")
    with at.stack.sessions() as session:
        sample = documents.order(session, at.account, 190)
        missing = documents.order(session, at.account, 900_000_001)
        calls = Counter(session.scalars(select(ApiCall.action)))
    # Order 190 is the legacy GetOrder doc page's sample, which every sandbox serves.
    assert sample is not None and sample["state"] == "fetched"
    assert sample["order_number"] == "300125759"
    assert sample["price"] == "100.00"
    assert sample["address_billing"]["post_code"] == "33333"
    assert missing is not None and missing["state"] == "failed"
    assert missing["error_code"] == at.platform.missing_order_code
    assert calls[at.platform.order_action] >= 3


def test_image_jobs_finish_and_one_past_its_deadline_expires(platform_stack: PlatformStack) -> None:
    at = platform_stack
    at.env["LAZADA_IMAGE_DEADLINE"] = "4"
    at.sandbox.config.image_job_seconds = (0.5, 1.0)
    at.start_worker()
    urls = [f"https://img.example.com/{n}.jpg" for n in range(1, 10)]
    at.send("lazada.migrate_images", [*urls, "https://img.example.com/broken.jpg"], key="m1")
    at.send(
        "lazada.migrate_images",
        ["https://img.example.com/slow.jpg?sandbox_duration=3600"],
        key="m2",
    )

    def final_jobs() -> list[ImageJob] | None:
        with at.stack.sessions() as session:
            jobs = list(session.scalars(select(ImageJob)))
        return jobs if len(jobs) == 3 and all(j.state != "pending" for j in jobs) else None

    wait_for(final_jobs, 90, "three image jobs")
    with at.stack.sessions() as session:
        first = documents.image_jobs(session, at.account, key="m1")
        slow = documents.image_jobs(session, at.account, key="m2")
    assert sorted(j["state"] for j in first) == ["partial", "succeeded"], first
    assert sum(len(j["images"]) for j in first) == 9
    assert [e["original_url"] for j in first for e in j["errors"]] == [
        "https://img.example.com/broken.jpg"
    ]
    assert all(image["code"] for j in first for image in j["images"])  # the platform's hash
    assert slow[0]["state"] == "expired" and slow[0]["polls"] >= 2


def test_a_worker_for_polls_and_one_for_the_rest_share_the_work_by_queue(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.sandbox.config.image_job_seconds = (1.0, 2.0)
    work = at.start_worker(only="work")
    polls = at.start_worker(only="polls")
    at.send("lazada.migrate_images", ["https://img.example.com/1.jpg"], key="m")
    at.send("lazada.remove_products", [f"SKU-{n}" for n in range(120)], key="r")

    def finished() -> bool:
        with at.stack.sessions() as session:
            job = session.scalars(select(RemovalJob)).one_or_none()
            images = list(session.scalars(select(ImageJob)))
        done = job is not None and job.finished_at is not None
        return done and len(images) == 1 and images[0].state == "succeeded"

    wait_for(finished, 60, "the removal and the image job")
    ran = {name: _tasks_run(worker.log()) for name, worker in (("work", work), ("polls", polls))}
    assert "lazada.remove_batch" in ran["work"] and "lazada.advance_image_job" not in ran["work"]
    assert ran["polls"] == {"lazada.advance_image_job"}
    assert "beat: Starting" in work.log() and "beat: Starting" not in polls.log()


def _tasks_run(log: str) -> set[str]:
    """The names of the tasks a worker's log says it received."""
    return set(re.findall(r"Task (lazada\.[a-z_]+)\[[^]]+\] received", log))


def test_a_lost_message_is_recovered_by_the_sweeper(platform_stack: PlatformStack) -> None:
    at = platform_stack
    skus = ["L-1", "L-2", "L-3"]
    # The job is recorded but its batch messages are never sent: as if the broker lost them.
    _, messages = removal.create_job(
        at.stack.sessions,
        at.stack.settings,
        at.account,
        "lost",
        skus,
        at.platform.max_skus_per_call,
    )
    assert messages  # the messages the worker would have sent; dropped here
    with at.stack.sessions.begin() as session:
        # Their dispatch deadline has passed, as it would have after redispatch_after seconds.
        session.execute(update(RemovalBatch).values(dispatched_until=None))
    at.start_worker()

    job = at.finished("lost", timeout=60)
    assert job["removed"] == 3
    assert set(at.removal_counts()) == set(skus)


def test_bad_arguments_sent_by_name_are_recorded_as_failures(platform_stack: PlatformStack) -> None:
    at = platform_stack
    at.start_worker()
    at.send("lazada.remove_products", "not-a-list")
    at.send("lazada.fetch_order", -5)
    at.send("lazada.fetch_order", 1, unknown_argument=True)
    at.send("lazada.fetch_order", "²")  # str.isdigit() says yes, int() says no
    at.send("lazada.remove_products", ["CLI-BAD\udcff", "OK-CLI-1"])  # a byte \xff decoded
    at.send("lazada.remove_products", ["CLI-BAD\uffff", "OK-CLI-2"], key="k")
    at.send("lazada.migrate_images", ["http://a.com:99999/x.jpg"])
    at.send("lazada.migrate_images", ["http://a.com/\uffff.jpg"])
    at.send("lazada.track_image_job", "REQ-\udcff")

    def all_failures() -> list[dict] | None:
        with at.stack.sessions() as session:
            rows = documents.failures(session, at.account)
        return rows if len(rows) >= 9 else None

    rows = wait_for(all_failures, 60, "nine failure rows")
    assert [r["kind"] for r in rows] == ["bad_input"] * 9
    messages = " ".join(r["message"] for r in rows)
    assert "must be a list" in messages and "positive integer" in messages
    assert "U+DCFF" in messages and "U+FFFF" in messages and "Port out of range" in messages
    with at.stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RemovalJob)) == 0
        assert session.scalar(select(func.count()).select_from(ImageJob)) == 0
    with at.stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0


@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_the_accounts_secrets_appear_in_no_log_row_or_failure(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.env["LAZADA_LOG_LEVEL"] = "DEBUG"
    at.sandbox.config.fault_rate = 0.3
    at.sandbox.config.fault_kinds = at.platform.transient_faults
    worker = at.start_worker()
    at.send("lazada.remove_products", ["S-1", "S-2-FAIL"], key="secret")
    at.send("lazada.fetch_order", 900_000_002)
    at.finished("secret")
    wait_for(lambda: _order_failures(at), 60, "the order failure")

    with at.stack.sessions() as session:
        secrets = at.platform.secrets(session, at.stack, at.sandbox, at.account)
        dump = "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in session.execute(table.select())
        )
    log = worker.log()
    assert secrets, "the account has secrets to look for"
    assert "S-2-FAIL" in dump and at.platform.order_action in dump  # it holds the outcomes
    for text in (dump, log):
        for secret in secrets:
            assert secret not in text
        assert not at.platform.signature.search(text)


def _order_failures(at: PlatformStack) -> list[dict]:
    with at.stack.sessions() as session:
        return [f for f in documents.failures(session, at.account) if f["kind"] == "order"]


def test_every_platform_the_worker_ships_is_under_this_specification() -> None:
    # A platform added to the registry runs here as soon as it has an entry in PLATFORMS.
    assert set(registry.names()) <= set(PLATFORMS)
