"""Operator control: retry a done job's failed SKUs, cancel the SKUs not yet sent; both
idempotent, from the CLI and as tasks by name, on every stack."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.processes import REPO, wait_for
from tests.support.worker_stack import Stack
from worker.db.models import Event, Failure
from worker.services import documents

pytestmark = pytest.mark.slow
_SKU = re.compile(rb"<SellerSku>([^<]*)</SellerSku>")


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _job(stack: Stack, key: str) -> dict[str, Any] | None:
    with stack.sessions() as session:
        return documents.removal_job(session, stack.settings.account, key)


def _done(stack: Stack, key: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = _job(stack, key)
        return job if job and job["state"] == "done" else None

    try:
        return wait_for(done, timeout, f"job {key} done")
    except AssertionError:
        print(stack.logs())
        raise


def _events(stack: Stack, kind: str) -> list[Event]:
    with stack.sessions() as session:
        return list(session.scalars(select(Event).where(Event.type == kind)))


def test_a_retry_after_the_sandbox_unlocks_the_failed_skus_ends_with_none_failed(
    stack: Stack,
) -> None:
    skus = [f"R-{n}" + ("-FAIL" if n % 10 == 0 else "") for n in range(120)]
    stack.start_worker()
    stack.send("lazada.remove_products", skus, key="retried")
    first = _done(stack, "retried")
    assert first["failed"] == 12
    wait_for(lambda: len(_events(stack, "removal.finished")) == 1, 30, "the first event")

    stack.sandbox.config.failing_skus = ()  # the seller fixed them
    stack.send("lazada.retry_job", "retried")  # by name, as the shop would
    wait_for(lambda: len(_events(stack, "removal.finished")) == 2, 60, "the second event")
    job = _done(stack, "retried")
    assert (job["removed"], job["failed"], job["total"]) == (120, 0, 120)
    counts = stack.sandbox.removal_counts()
    assert set(counts) == set(skus) and max(counts.values()) == 1
    second = max(_events(stack, "removal.finished"), key=lambda e: e.at)
    assert second.data["failed_skus"] == [] and second.data["removed"] == 120

    again = _cli(stack, "retry", "retried")  # nothing failed: nothing to do
    assert again.returncode == 0 and "nothing to retry" in again.stdout, again.stderr


def test_cancel_one_second_into_a_big_job_stops_every_sku_not_yet_sent(stack: Stack) -> None:
    # Calls slow enough that the job is still under way when the cancel (a command of its
    # own, slow to start on a loaded machine) commits.
    stack.sandbox.config.latency = 1.0
    skus = [f"X-{n:05d}" + ("-FAIL" if n % 500 == 0 else "") for n in range(5000)]
    stack.start_worker()
    stack.send("lazada.remove_products", skus, key="cancelled")
    wait_for(lambda: _job(stack, "cancelled"), 60, "the job recorded")
    wait_for(lambda: stack.sandbox.calls(), 60, "the first call")
    time.sleep(1.0)  # "1 s into the job": a scenario's step, not an assertion on time
    cancelled = _cli(stack, "cancel", "cancelled")
    returned = time.time()
    assert cancelled.returncode == 0, cancelled.stderr

    job = _done(stack, "cancelled")
    assert job["cancelled"] > 0
    assert job["removed"] + job["failed"] + job["cancelled"] == job["total"] == 5000
    cancelled_skus = {s["sku"] for s in job["skus"] if s["state"] == "cancelled"}
    late = [
        sku.decode()
        for call in stack.sandbox.calls()
        if call.action == "RemoveProduct" and call.at > returned
        for sku in _SKU.findall(call.body)
    ]
    assert not cancelled_skus & set(late)
    assert not cancelled_skus & set(stack.sandbox.removal_counts())
    wait_for(lambda: _events(stack, "removal.cancelled"), 30, "the cancelled event")
    (event,) = _events(stack, "removal.cancelled")
    assert event.data["cancelled"] == job["cancelled"]

    again = _cli(stack, "cancel", "cancelled")  # idempotent
    assert again.returncode == 0, again.stderr
    assert _job(stack, "cancelled") == job


def test_retry_and_cancel_of_an_unknown_key_are_bad_input(stack: Stack) -> None:
    for command in ("retry", "cancel"):
        result = _cli(stack, command, "no-such-job")
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert "no removal job with key 'no-such-job'" in line
    stack.start_worker()
    stack.send("lazada.cancel_job", "no-such-job")

    def failures() -> list[Failure]:
        with stack.sessions() as session:
            return list(session.scalars(select(Failure).where(Failure.kind == "bad_input")))

    (failure,) = wait_for(failures, 60, "the task's bad_input failure")
    assert "no-such-job" in failure.message
