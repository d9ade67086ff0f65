"""A removal job's key stands for one set of SKUs: the same set again is a no-op, another set
(a subset included) is refused and changes nothing, at the CLI and at the task."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import REPO, wait_for
from tests.support.worker_stack import BATCH, Stack
from worker.db.engine import core_transaction
from worker.db.models import Failure, RemovalJob
from worker.inputs import InvalidInput
from worker.services import documents, removal
from worker.services.job_keys import sku_set_digest
from worker.settings import Settings

skus_strategy = st.lists(st.text("ABC-123", min_size=1, max_size=4), min_size=1, max_size=12)


@given(skus_strategy, st.randoms())
def test_a_set_has_one_digest_whatever_the_order_and_repeats(skus: list[str], rng) -> None:
    shuffled = [*skus, *skus[:2]]
    rng.shuffle(shuffled)
    assert sku_set_digest(shuffled) == sku_set_digest(skus)


@given(skus_strategy, skus_strategy)
def test_different_sets_have_different_digests(first: list[str], second: list[str]) -> None:
    if set(first) != set(second):
        assert sku_set_digest(first) != sku_set_digest(second)


def test_a_key_sent_again_with_another_set_is_refused_and_changes_nothing(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    account = settings.account
    job_id, _ = removal.create_job(sessions, settings, account, "k", ["A", "B"], BATCH)
    for other in (["A"], ["A", "B", "C"], ["C"]):  # a subset, a superset, another
        with pytest.raises(InvalidInput, match="another set of SKUs"):
            removal.create_job(sessions, settings, account, "k", other, BATCH)
    again, messages = removal.create_job(sessions, settings, account, "k", ["B", "A"], BATCH)
    assert (again, messages) == (job_id, [])
    with sessions() as session:
        job = documents.removal_job(session, account, "k")
    assert job is not None and [s["sku"] for s in job["skus"]] == ["A", "B"]


def test_a_job_recorded_before_digests_is_compared_by_its_skus(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    account = settings.account
    removal.create_job(sessions, settings, account, "old", ["X", "Y", "Z"], BATCH)
    with core_transaction(sessions) as connection:  # as migration 0009 leaves older jobs
        connection.execute(update(RemovalJob).values(sku_set_digest=None))
    with pytest.raises(InvalidInput):
        removal.create_job(sessions, settings, account, "old", ["X", "Y"], BATCH)
    removal.create_job(sessions, settings, account, "old", ["Z", "Y", "X"], BATCH)
    with sessions() as session:
        stored = session.scalars(select(RemovalJob.sku_set_digest)).one()
    assert stored == sku_set_digest(["X", "Y", "Z"])


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_recorded_key_with_another_set_exits_2_at_the_cli_and_fails_the_task(
    stack: Stack,
) -> None:
    stack.start_worker()
    first = _cli(stack.env, "remove-products", "--key", "K", "S-1", "S-2", "--wait")
    assert first.returncode == 0, first.stderr

    refused = _cli(stack.env, "remove-products", "--key", "K", "S-3", "--wait")
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert "'K' is already used" in line and "Traceback" not in refused.stderr
    same = _cli(stack.env, "remove-products", "--key", "K", "S-2", "S-1")
    assert (same.returncode, same.stdout.strip()) == (0, "K")

    stack.send("lazada.remove_products", ["S-1"], key="K")  # a subset, sent by name

    def bad_input() -> list[Failure]:
        with stack.sessions() as session:
            return list(session.scalars(select(Failure).where(Failure.kind == "bad_input")))

    (failure,) = wait_for(bad_input, 60, "the task's bad_input failure")
    assert "another set of SKUs" in failure.message
    with stack.sessions() as session:
        job = documents.removal_job(session, stack.settings.account, "K")
    assert job is not None and job["total"] == 2 and job["removed"] == 2
    assert "S-3" not in stack.sandbox.removal_counts()
