"""Nothing lost, nothing recorded twice: kill workers, stop brokers and the database, inject
API faults, and check every SKU and image job ends final exactly once.

These run as a stage of their own (`make reliability`): they stop this machine's services.
Figures are printed (run with -s) and collected in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from tests.end_to_end.platforms import PlatformStack, environment_account
from tests.support import services as services_control
from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.db.models import (
    ApiCall,
    Failure,
    ImageJob,
    RemovalBatch,
    RemovalJob,
    RemovalSku,
    WorkerHeartbeat,
)
from worker.services import documents

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

_ORPHANED = re.compile(r"removal batch\(es\) sent again .*?; (\d+) held by a worker that stopped")

CRASH_ENV = {
    "LAZADA_READ_TIMEOUT": "3",
    "LAZADA_LEASE_SECONDS": "15",
    "LAZADA_REDISPATCH_AFTER": "3",
    "LAZADA_RATE_LIMIT": "1000",
    "LAZADA_RETRY_LADDER": "0.2,0.5,1,2,4,8",
}


def _skus(n: int) -> tuple[list[str], set[str]]:
    skus = [f"C-{i:05d}" + ("-FAIL" if i % 100 == 0 else "") for i in range(1, n + 1)]
    return skus, {s for s in skus if s.endswith("-FAIL")}


def _final_count(at: PlatformStack, key: str) -> int:
    with at.stack.sessions() as session:
        progress = documents.removal_progress(session, at.account, key)
    return progress[0] if progress is not None else 0


def _in_flight_skus(stack: Stack) -> int:
    """SKUs of batches a worker holds right now: what a crash can send twice."""
    now = datetime.now(UTC)
    with stack.sessions() as session:
        leased = select(RemovalBatch.id).where(RemovalBatch.lease_until > now)
        rows = session.scalar(
            select(func.count())
            .select_from(RemovalSku)
            .where(RemovalSku.batch_id.in_(leased), RemovalSku.state == "pending")
        )
        held = session.scalars(  # batches without SKU rows hold their SKUs
            select(RemovalBatch.skus).where(
                RemovalBatch.lease_until > now, RemovalBatch.skus.is_not(None)
            )
        )
        return (rows or 0) + sum(len(json.loads(skus)) for skus in held if skus)


def _wait_done(at: PlatformStack, key: str, timeout: float = 240) -> dict:
    def done() -> dict | None:
        job = at.job(key)
        return job if job and job["state"] == "done" else None

    try:
        return wait_for(done, timeout, f"job {key}")
    except AssertionError:
        print(at.stack.logs()[-5000:])
        raise


def _check_every_sku_final_once(
    at: PlatformStack, job: dict, skus: list[str], failing: set[str]
) -> int:
    """Assert the job's outcome is exact; return how many SKUs the API saw more than once."""
    states = {s["sku"]: s["state"] for s in job["skus"]}
    assert len(states) == len(skus)
    unexpected = [s for s in job["skus"] if s["state"] == "failed" and s["sku"] not in failing]
    assert not unexpected, [s["message"] for s in unexpected[:3]]
    assert {sku for sku, state in states.items() if state == "failed"} == failing
    assert all(state == "removed" for sku, state in states.items() if sku not in failing)
    assert job["removed"] == len(skus) - len(failing)
    with at.stack.sessions() as session:
        recorded = Counter(
            session.scalars(select(Failure.subject).where(Failure.kind == "removal_sku"))
        )
    assert all(n == 1 for n in recorded.values()), "a SKU's failure was recorded twice"
    assert len(recorded) == len(failing)
    counts = at.removal_counts()
    assert set(counts) == set(skus) - failing
    return sum(n - 1 for n in counts.values())


def _configure(at: PlatformStack, **env: str) -> None:
    at.env.update({**CRASH_ENV, **env})
    at.sandbox.config.latency = 0.05


def test_a_worker_killed_mid_removal_loses_no_sku(platform_stack: PlatformStack) -> None:
    at = platform_stack
    _configure(at)
    skus, failing = _skus(5000)
    worker = at.start_worker(concurrency=8)
    at.send("lazada.remove_products", skus, key="crash")
    wait_for(lambda: _final_count(at, "crash") >= 1500, 120, "a third of the SKUs")
    in_flight = _in_flight_skus(at.stack)
    worker.kill()
    at_kill = _final_count(at, "crash")
    at.start_worker(concurrency=8)

    job = _wait_done(at, "crash")
    twice = _check_every_sku_final_once(at, job, skus, failing)
    print(
        f"\n[{at.stack.name}, {at.platform.name}] kill -9 at {at_kill}/{len(skus)} SKUs final, "
        f"{in_flight} SKUs in flight; after restart: {job['removed']} removed, "
        f"{job['failed']} failed, {twice} SKUs sent to the API twice"
    )
    # Only calls in flight at the kill (at most 8 batches of 50) can have been sent twice.
    assert twice <= 8 * 50


def test_a_killed_workers_batches_are_taken_again_when_its_heartbeat_stops_not_its_lease(
    stack: Stack,
) -> None:
    """kill -9 mid-job with a long lease: the batches the dead worker held are taken again
    because its heartbeat stopped (the sweeper says so), and the job is final before the
    earliest of their leases would have ended."""
    at = environment_account(stack)
    _configure(at, LAZADA_LEASE_SECONDS="300")
    stack.sandbox.config.latency = 0.3
    skus, failing = _skus(5000)
    worker = stack.start_worker(concurrency=8)
    stack.send("lazada.remove_products", skus, key="heartbeat")
    wait_for(lambda: _final_count(at, "heartbeat") >= 1500, 120, "a third of the SKUs")
    worker.kill()
    killed = datetime.now(UTC)
    with stack.sessions() as session:
        held = session.execute(
            select(RemovalBatch.id, RemovalBatch.lease_until, RemovalBatch.lease_holder).where(
                RemovalBatch.state == "pending", RemovalBatch.lease_until > killed
            )
        ).all()
        beats = {
            worker_id: beat_at
            for worker_id, beat_at in session.execute(
                select(WorkerHeartbeat.worker_id, WorkerHeartbeat.beat_at)
            )
        }
    assert held, "the killed worker held no batch"
    holders = {row.lease_holder for row in held}
    assert len(holders) == 1 and all(beats[h] <= killed for h in holders)
    leases_end = min(row.lease_until for row in held)
    new_worker = stack.start_worker(concurrency=8)

    job = _wait_done(at, "heartbeat")
    twice = _check_every_sku_final_once(at, job, skus, failing)
    with stack.sessions() as session:
        finished = session.scalar(
            select(RemovalJob.finished_at).where(RemovalJob.key == "heartbeat")
        )
        taken = session.execute(
            select(RemovalBatch.id).where(
                RemovalBatch.id.in_([row.id for row in held]), RemovalBatch.state == "done"
            )
        ).all()
    orphaned = [int(n) for n in _ORPHANED.findall(new_worker.log())]
    print(
        f"\n[{stack.name}] kill -9 with a 300 s lease: {len(held)} batches held by the dead "
        f"worker; job final {(finished - killed).total_seconds():.1f} s after the kill, "
        f"{(leases_end - finished).total_seconds():.0f} s before its leases' end; "
        f"{sum(orphaned)} sent again for a stopped heartbeat; {twice} SKUs sent twice"
    )
    assert len(taken) == len(held)
    # The order of events: the sweeper took them for their worker's stopped heartbeat, and
    # the job was final before the leases they held would have let them go.
    assert sum(orphaned) >= 1
    assert finished is not None and finished < leases_end
    assert twice <= 8 * 50


def test_a_worker_killed_while_calls_wait_for_their_slots_loses_none(stack: Stack) -> None:
    """At the real rate limit most of a job's work is deferred to slots (countdowns the killed
    worker held, and batches left to the job's runners): all of it is found again."""
    at = environment_account(stack)
    _configure(at, LAZADA_RATE_LIMIT="5")
    stack.sandbox.config.rate_limit = 5
    skus, failing = _skus(3000)
    worker = stack.start_worker(concurrency=8)
    stack.send("lazada.remove_products", skus, key="slots")
    wait_for(lambda: _final_count(at, "slots") >= 750, 120, "a quarter of the SKUs")
    worker.kill()
    at_kill = _final_count(at, "slots")
    stack.start_worker(concurrency=8)

    job = _wait_done(at, "slots")
    twice = _check_every_sku_final_once(at, job, skus, failing)
    throttled = [c for c in stack.sandbox.calls() if c.error_code == 901]
    print(
        f"\n[{stack.name}] kill -9 at the rate limit at {at_kill}/{len(skus)} SKUs final; "
        f"after restart: {job['removed']} removed, {twice} SKUs sent twice, "
        f"{len(throttled)} E901"
    )
    # At 5 calls/s at most two calls are under way at any moment: only they can go twice.
    assert twice <= 2 * 50


def test_a_worker_killed_while_image_jobs_poll_loses_no_job(stack: Stack) -> None:
    _configure(environment_account(stack), LAZADA_POLL_FIRST="0.5", LAZADA_POLL_SLACK="0.5")
    stack.sandbox.config.image_job_seconds = (3.0, 8.0)
    worker = stack.start_worker(concurrency=8)
    urls = [f"https://img.example.com/{n}.jpg" for n in range(160)]  # 20 jobs of 8
    stack.send("lazada.migrate_images", urls, key="crash-images")

    def polling() -> bool:
        with stack.sessions() as session:
            return (
                session.scalar(select(func.count()).select_from(ImageJob).where(ImageJob.polls > 0))
                or 0
            ) >= 10

    wait_for(polling, 60, "image jobs polling")
    worker.kill()
    stack.start_worker(concurrency=8)

    def all_final() -> list[dict] | None:
        with stack.sessions() as session:
            jobs = documents.image_jobs(session, stack.settings.account, key="crash-images")
        return jobs if len(jobs) == 20 and all(j["state"] != "pending" for j in jobs) else None

    jobs = wait_for(all_final, 120, "all image jobs final")
    assert {j["state"] for j in jobs} == {"succeeded"}
    submitted = Counter(c.body for c in stack.sandbox.calls() if c.action == "MigrateImages")
    print(
        f"\n[{stack.name}] image jobs after kill -9: {len(jobs)} succeeded, "
        f"{sum(n - 1 for n in submitted.values())} submitted twice, "
        f"polls per job {sorted(j['polls'] for j in jobs)}"
    )


OUTAGES = {
    # name: (stack, stop, start, seconds down)
    "Redis restarted, keeping nothing": (
        "redis+postgresql",
        services_control.stop_redis,
        services_control.start_redis,
        3,
    ),
    "RabbitMQ restarted": (
        "rabbitmq+postgresql",
        services_control.stop_rabbitmq,
        services_control.start_rabbitmq,
        3,
    ),
    "PostgreSQL down": (
        "redis+postgresql",
        services_control.stop_postgres,
        services_control.start_postgres,
        30,
    ),
}


@pytest.mark.parametrize(
    ("stack", "outage"),
    [(stack, outage) for outage, (stack, *_) in OUTAGES.items()],
    indirect=["stack"],
)
def test_a_service_outage_mid_run_delays_the_work_and_loses_none(stack: Stack, outage: str) -> None:
    _, stop, start, seconds = OUTAGES[outage]
    at = environment_account(stack)
    _configure(at)
    skus, failing = _skus(3000)
    stack.start_worker(concurrency=8)
    stack.send("lazada.remove_products", skus, key="outage")
    wait_for(lambda: _final_count(at, "outage") >= 600, 120, "a fifth of the SKUs")
    try:
        stop()
        time.sleep(seconds)
    finally:
        start()

    job = _wait_done(at, "outage", timeout=300)
    twice = _check_every_sku_final_once(at, job, skus, failing)
    print(f"\n[{stack.name}] {outage} ({seconds} s): {twice} SKUs sent twice")
    # Calls whose outcome could not be written are sent again: at most the batches in flight.
    assert twice <= 8 * 50


@pytest.mark.parametrize("stack", ["embedded+sqlite", "redis+postgresql"], indirect=True)
def test_with_a_quarter_of_answers_faulty_every_sku_still_ends_right(stack: Stack) -> None:
    # 11 attempts: at 1 fault in 4 answers, 7 would fail one of the 100 batches in ~160 runs.
    ladder = "0.2,0.5,1,1,1,1,1,1,1,1"
    at = environment_account(stack)
    _configure(at, LAZADA_READ_TIMEOUT="1.5", LAZADA_LEASE_SECONDS="12", LAZADA_RETRY_LADDER=ladder)
    kinds = ("http500", "http502_html", "e006", "e901", "truncated", "slow")
    stack.sandbox.config.fault_rate = 0.25
    stack.sandbox.config.fault_kinds = kinds
    stack.sandbox.config.slow_seconds = 2.5  # slower than the client waits
    skus, failing = _skus(5000)
    stack.start_worker(concurrency=8)
    stack.send("lazada.remove_products", skus, key="faults")

    job = _wait_done(at, "faults")
    twice = _check_every_sku_final_once(at, job, skus, failing)

    def audit_matches() -> Counter[str] | None:
        with stack.sessions() as session:
            audited = Counter(session.scalars(select(ApiCall.action)))
        served = Counter(c.action for c in stack.sandbox.calls())
        return served if audited == served else None

    # Every attempt, failed ones too, is in the audit (a slow answer is logged when it ends).
    served = wait_for(audit_matches, 15, "the audit to match the calls served")
    faults = stack.sandbox.stats()["faults_injected"]
    print(
        f"\n[{stack.name}] {sum(faults.values())} of {served['RemoveProduct']} answers faulty "
        f"{dict(faults)}: {job['removed']} removed, {job['failed']} failed, {twice} SKUs "
        "removed twice (a slow answer applies after the client gave up)"
    )
    assert set(faults) == set(kinds)
    assert all(s["attempts"] >= 1 for s in job["skus"])
