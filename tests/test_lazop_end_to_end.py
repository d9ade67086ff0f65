"""The Open Platform end to end: a lazop account's removals, orders and image jobs through a
real worker on each stack, against the LAZOP sandbox; tokens that expire and an authorization
that is revoked mid-run.

The legacy account of the stack stays the default; the lazop account is named by the work.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from fixtures_worker import Stack
from sqlalchemy import select, update
from stack import REPO, wait_for

from worker import documents, tokens
from worker.accounts import add_lazop, get_account
from worker.db.models import Event, Failure, RemovalBatch
from worker.lazop.client import LazopClient
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.services import removal

pytestmark = pytest.mark.slow

ACCOUNT = "shop-th"
SELLER = "seller-a"


@dataclass
class Lazop:
    stack: Stack
    sandbox: LazopSandbox

    def authorize(self) -> None:
        """What `accounts authorize --code` does, with a fresh code from the sandbox."""
        with LazopClient(
            self.sandbox.api_url,
            self.sandbox.app_key,
            self.sandbox.app_secret,
            auth_url=self.sandbox.auth_url,
        ) as client:
            grant = client.create_token(self.sandbox.authorization_code(SELLER))
        tokens.store_grant(self.stack.sessions, self.stack.settings, ACCOUNT, grant)

    def job(self, key: str) -> dict | None:
        with self.stack.sessions() as session:
            return documents.removal_job(session, ACCOUNT, key)

    def finished(self, key: str, timeout: float = 150) -> dict:
        def done() -> dict | None:
            job = self.job(key)
            return job if job and job["state"] == "done" else None

        try:
            return wait_for(done, timeout, f"lazop job {key}")
        except AssertionError:
            print(self.stack.logs())
            raise


@contextmanager
def lazop_stack(stack: Stack) -> Iterator[Lazop]:
    """A LAZOP sandbox and an authorized lazop account on the stack's database."""
    config = LazopSandboxConfig(image_job_seconds=(0.5, 1.5))
    sandbox = LazopSandbox(config, port=0).start()
    try:
        with stack.sessions.begin() as session:
            add_lazop(
                session,
                stack.settings,
                ACCOUNT,
                app_key=sandbox.app_key,
                app_secret=sandbox.app_secret,
                api_url=sandbox.api_url,
                auth_url=sandbox.auth_url,
            )
        found = Lazop(stack, sandbox)
        found.authorize()
        yield found
    finally:
        sandbox.stop()


@pytest.fixture
def lazop(stack: Stack) -> Iterator[Lazop]:
    with lazop_stack(stack) as found:
        yield found


def test_a_lazop_removal_with_failing_skus_and_faults_ends_each_sku_once(lazop: Lazop) -> None:
    skus = [f"TH-{n:04d}" + ("-FAIL" if n % 41 == 0 else "") for n in range(1, 601)]
    lazop.sandbox.config.fault_rate = 0.1
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
