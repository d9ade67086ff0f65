"""The Open Platform end to end: a lazop account's removals, orders and image jobs through a
real worker on each stack, against the LAZOP sandbox; tokens that expire and an authorization
that is revoked mid-run.

The legacy account of the stack stays the default; the lazop account is named by the work.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from tests.support.lazop import ACCOUNT, SELLER, Lazop, lazop_stack
from tests.support.processes import REPO, wait_for
from tests.support.worker_stack import Stack
from worker.accounts.store import get_account
from worker.db.models import Event, Failure, RemovalBatch
from worker.services import documents, removal

pytestmark = pytest.mark.slow


@pytest.fixture
def lazop(stack: Stack) -> Iterator[Lazop]:
    with lazop_stack(stack) as found:
        yield found


def test_a_lazop_removal_with_failing_skus_and_faults_ends_each_sku_once(lazop: Lazop) -> None:
    skus = [f"TH-{n:04d}" + ("-FAIL" if n % 41 == 0 else "") for n in range(1, 601)]
    lazop.sandbox.config.fault_rate = 0.1
    # 7 attempts: at 1 fault in 10 calls, the stack's 4 would fail a batch in ~800 runs.
    lazop.stack.env["LAZADA_RETRY_LADDER"] = "0.2,0.2,0.2,0.5,0.5,1"
    lazop.stack.start_worker()
    lazop.stack.send("lazada.remove_products", skus, key="th-clean", account=ACCOUNT)
    job = lazop.finished("th-clean")

    failing = {sku for sku in skus if sku.endswith("-FAIL")}
    assert {s["sku"] for s in job["skus"] if s["state"] == "failed"} == failing
    assert job["removed"] == len(skus) - len(failing) and job["account"] == ACCOUNT
    removed = lazop.sandbox.removal_counts(SELLER)
    assert set(removed) == set(skus) - failing and max(removed.values()) == 1
    # The legacy account's sandbox saw none of it.
    assert lazop.stack.sandbox.calls() == []


def test_lazop_orders_are_stored_with_their_items_and_a_missing_one_fails(lazop: Lazop) -> None:
    lazop.stack.start_worker()
    for order_id in (1001, 900_000_001):
        lazop.stack.send("lazada.fetch_order", order_id, account=ACCOUNT)

    def both() -> list[dict] | None:
        with lazop.stack.sessions() as session:
            found = [documents.order(session, ACCOUNT, o) for o in (1001, 900_000_001)]
        final = [o for o in found if o and o["state"] in ("fetched", "failed")]
        return final if len(final) == 2 else None

    fetched, missing = wait_for(both, 90, "two lazop orders")
    assert fetched["state"] == "fetched" and fetched["items"], fetched
    assert len(fetched["items"]) == fetched["items_count"]
    assert (missing["state"], missing["error_code"]) == ("failed", "16")


def test_lazop_image_jobs_finish_with_their_images_and_errors(lazop: Lazop) -> None:
    lazop.stack.start_worker()
    urls = [f"https://img.example.com/th/{n}.jpg" for n in range(9)] + [
        "https://img.example.com/th/broken-link.jpg"
    ]
    lazop.stack.send("lazada.migrate_images", urls, key="th-images", account=ACCOUNT)

    def final() -> list[dict] | None:
        with lazop.stack.sessions() as session:
            jobs = documents.image_jobs(session, ACCOUNT, key="th-images")
        done = [j for j in jobs if j["state"] != "pending"]
        return jobs if len(jobs) == 2 and len(done) == 2 else None

    jobs = wait_for(final, 90, "the lazop image jobs")
    assert sum(len(j["images"]) for j in jobs) + sum(len(j["errors"]) for j in jobs) == 10
    assert sorted(j["state"] for j in jobs) == ["partial", "succeeded"], jobs
    assert all(image["code"] for j in jobs for image in j["images"])  # the hash_code


def test_a_lost_lazop_message_is_recovered_by_the_sweeper(lazop: Lazop) -> None:
    # Recorded, its batch messages never sent (as if the broker lost them), and overdue.
    _, messages = removal.create_job(
        lazop.stack.sessions, lazop.stack.settings, ACCOUNT, "th-lost", ["TL-1", "TL-2"], 50
    )
    assert messages
    with lazop.stack.sessions.begin() as session:
        session.execute(update(RemovalBatch).values(dispatched_until=None))
    lazop.stack.start_worker()
    assert lazop.finished("th-lost", timeout=60)["removed"] == 2
    assert set(lazop.sandbox.removal_counts(SELLER)) == {"TL-1", "TL-2"}


def test_tokens_that_expire_mid_removal_are_refreshed_and_no_sku_fails(lazop: Lazop) -> None:
    skus = [f"EXP-{n:05d}" for n in range(3000)]
    # Slow enough that most of the job is still to come when the tokens expire.
    lazop.sandbox.config.latency = 0.3
    lazop.stack.start_worker()
    lazop.stack.send("lazada.remove_products", skus, key="th-expiring", account=ACCOUNT)
    wait_for(lambda: (lazop.job("th-expiring") or {}).get("removed", 0) > 300, 60, "a start")
    lazop.sandbox.expire_access_tokens(SELLER)
    assert lazop.job("th-expiring")["state"] != "done"  # expired mid-run, as meant
    job = lazop.finished("th-expiring")

    assert (job["removed"], job["failed"]) == (3000, 0)
    assert set(lazop.sandbox.removal_counts(SELLER)) == set(skus)
    paths = [call.action for call in lazop.sandbox.calls()]
    assert "/auth/token/refresh" in paths


def test_a_revoked_authorization_parks_the_work_which_resumes_after_authorize(
    lazop: Lazop,
) -> None:
    skus = [f"REV-{n:05d}" for n in range(2000)]
    lazop.sandbox.config.latency = 0.05
    lazop.stack.start_worker()
    lazop.stack.send("lazada.remove_products", skus, key="th-revoked", account=ACCOUNT)
    wait_for(lambda: (lazop.job("th-revoked") or {}).get("removed", 0) > 200, 60, "a start")
    lazop.sandbox.revoke(SELLER)

    def parked() -> bool:
        with lazop.stack.sessions() as session:
            return get_account(session, lazop.stack.settings, ACCOUNT).state == (
                "needs_authorization"
            )

    wait_for(parked, 60, "the account to need authorization")
    with lazop.stack.sessions() as session:
        reported = session.scalars(select(Failure).where(Failure.kind == "account")).all()
    assert [f.subject for f in reported] == [ACCOUNT]
    assert lazop.job("th-revoked")["failed"] == 0  # parked, not failed
    with lazop.stack.sessions() as session:
        told = session.scalars(
            select(Event.data).where(Event.type == "account.needs_authorization")
        ).all()
    assert [(d["name"], d["state"], d["secret"]) for d in told] == [
        (ACCOUNT, "needs_authorization", "set")
    ]

    # The operator authorizes again, as the README says; the work resumes by itself.
    code = lazop.sandbox.authorization_code(SELLER)
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "accounts", "authorize", ACCOUNT, "--code", code],
        env=lazop.stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    job = lazop.finished("th-revoked")
    assert (job["removed"], job["failed"]) == (2000, 0)
    assert set(lazop.sandbox.removal_counts(SELLER)) == set(skus)
    assert max(lazop.sandbox.removal_counts(SELLER).values()) == 1
