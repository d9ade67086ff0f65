"""The read commands (status, order, image-job, image-jobs, failures, config) on stored rows:
with --json one JSON document and nothing else, else text; something never stored exits 1; an
error code is spelled one way in every text."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tests.cli.command_line import Cli, assert_one_line_error, is_iso_with_offset, json_document
from tests.support.worker_stack import BATCH
from worker.db.engine import get_engine
from worker.db.models import (
    Failure,
    ImageJob,
    ImageMigration,
    Order,
    RemovalBatch,
    RemovalJob,
    RemovalSku,
)
from worker.services import removal
from worker.settings import Settings

FAILURE_KEYS = {"at", "kind", "subject", "error_code", "message", "attempts"}


@pytest.fixture
def stored(cli: Cli) -> dict[str, str]:
    """One row of each kind, written as the worker would: what the read commands show."""
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(sessions, settings, settings.account, "stored-job", ["S-1", "S-2"], BATCH)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add(
            Order(
                account=settings.account,
                order_id=4242,
                state="fetched",
                order_number="300000042",
                price="12.50",
                gift_option=True,
                items_count=1,
                statuses=["pending"],
                address_billing={"first_name": "Ann", "post_code": "10400"},
                fetched_at=now,
                next_attempt_at=None,
            )
        )
        migration = ImageMigration(account=settings.account, key="stored-images")
        session.add(migration)
        session.flush()
        session.add(
            ImageJob(
                account=settings.account,
                migration_id=migration.id,
                request_id="REQ-STORED-1",
                urls=["https://img.example.com/1.jpg"],
                state="succeeded",
                polls=2,
                images=[{"url": "https://cdn/1.jpg", "code": "", "original_url": "x"}],
                finished_at=now,
            )
        )
        session.add_all(
            [
                Failure(
                    account=settings.account,
                    at=now - timedelta(minutes=5),
                    kind="removal_sku",
                    subject="OLD-FAIL (job k)",
                    error_code="E503",
                    message="Remove product failed",
                    attempts=1,
                ),
                Failure(
                    account=settings.account,
                    at=now,
                    kind="order",
                    subject="900000001",
                    error_code=None,
                    message="no such order",
                    attempts=3,
                ),
            ]
        )
    return {"key": "stored-job", "order_id": "4242", "request_id": "REQ-STORED-1"}


READ_COMMANDS = {
    "status": ["status", "{key}"],
    "order": ["order", "{order_id}"],
    "image-job": ["image-job", "{request_id}"],
    "image-jobs": ["image-jobs"],
    "image-jobs-by-key": ["image-jobs", "--key", "stored-images"],
    "image-jobs-by-state": ["image-jobs", "--state", "succeeded"],
    "failures": ["failures"],
    "config": ["config"],
}


@pytest.mark.parametrize("name", list(READ_COMMANDS))
def test_each_read_command_with_json_prints_one_json_document_and_nothing_else(
    cli: Cli, stored: dict[str, str], name: str
) -> None:
    args = [arg.format(**stored) for arg in READ_COMMANDS[name]]
    result = cli(*args, "--json")
    document = json_document(result)
    assert document  # the stored row, not an empty answer
    assert result.stderr == ""


@pytest.mark.parametrize("name", list(READ_COMMANDS))
def test_each_read_command_without_json_prints_text(
    cli: Cli, stored: dict[str, str], name: str
) -> None:
    args = [arg.format(**stored) for arg in READ_COMMANDS[name]]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and result.stdout.lstrip()[0] not in "[{"
    assert result.stderr == ""


@pytest.mark.parametrize("sku", ["OLD-BAD\udcff", "OLD-BAD\uffff"], ids=["surrogate", "U+FFFF"])
def test_status_of_a_job_stored_with_a_sku_xml_cannot_carry_prints_a_whole_document(
    cli: Cli, sku: str
) -> None:
    # A database may hold such a SKU, recorded by a version whose input rule let it through.
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(sessions, settings, settings.account, "old-job", [sku, "OK-1"], BATCH)
    job = json_document(cli("status", "old-job", "--json"))
    assert [s["sku"] for s in job["skus"]] == [sku, "OK-1"]
    text = cli("status", "old-job")
    assert text.returncode == 0 and text.stdout.startswith("job old-job: pending"), text.stderr


def test_status_json_of_a_job_not_yet_started_shows_it_pending(
    cli: Cli, stored: dict[str, str]
) -> None:
    job = json_document(cli("status", stored["key"], "--json"))
    assert (job["state"], job["total"], job["removed"], job["failed"]) == ("pending", 2, 0, 0)
    assert job["finished_at"] is None
    assert [s["state"] for s in job["skus"]] == ["pending", "pending"]


def test_failures_json_is_a_list_of_failures_newest_first(cli: Cli, stored: dict[str, str]) -> None:
    failures = json_document(cli("failures", "--json"))
    assert [f["subject"] for f in failures] == ["900000001", "OLD-FAIL (job k)"]
    for failure in failures:
        assert set(failure) >= FAILURE_KEYS
        assert is_iso_with_offset(failure["at"])
    assert (failures[1]["kind"], failures[1]["error_code"], failures[1]["attempts"]) == (
        "removal_sku",
        "E503",
        1,
    )


def test_failures_json_is_an_empty_list_when_nothing_failed(cli: Cli) -> None:
    assert json_document(cli("failures", "--json")) == []


@pytest.mark.parametrize(
    "args",
    [["order", "999"], ["status", "no-such-key"], ["image-job", "NO-SUCH-REQUEST"]],
    ids=["order", "status", "image-job"],
)
def test_looking_up_something_never_stored_exits_1(cli: Cli, args: list[str]) -> None:
    result = cli(*args, "--json")
    assert_one_line_error(result, 1)
    if result.stdout.strip():  # --json: at most one document on standard output
        json.loads(result.stdout)


@pytest.fixture
def failed_sku(cli: Cli) -> str:
    """A job whose SKU failed with code E007, and its failure row, as the worker records them."""
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(sessions, settings, settings.account, "coded-job", ["OK-1", "BAD-7"], BATCH)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        job = session.scalars(select(RemovalJob).where(RemovalJob.key == "coded-job")).one()
        batch = session.scalars(select(RemovalBatch).where(RemovalBatch.job_id == job.id)).one()
        batch.skus, batch.first_position, batch.state = None, None, "done"
        job.finished_at = now
        for position, (sku, state, code) in enumerate(
            [("OK-1", "removed", None), ("BAD-7", "failed", "E007")]
        ):
            session.add(
                RemovalSku(
                    account=settings.account,
                    job_id=job.id,
                    batch_id=batch.id,
                    position=position,
                    sku=sku,
                    state=state,
                    attempts=1,
                    error_code=code,
                    message="Login failed. Signature mismatching" if code else None,
                )
            )
        session.add(
            Failure(
                account=settings.account,
                at=now,
                kind="removal_sku",
                subject="BAD-7 (job coded-job)",
                error_code="E007",
                message="Login failed. Signature mismatching",
                attempts=1,
            )
        )
    return "coded-job"


def test_status_and_failures_spell_an_error_code_the_same_way(cli: Cli, failed_sku: str) -> None:
    status = cli("status", failed_sku)
    failures = cli("failures")

    assert status.returncode == 0 and failures.returncode == 0, status.stderr + failures.stderr
    for output in (status.stdout, failures.stdout):
        assert "E007" in output, output
        assert not re.search(r"\bE7\b", output), output


def test_status_text_groups_the_reasons_skus_failed(cli: Cli, failed_sku: str) -> None:
    result = cli("status", failed_sku)
    assert result.returncode == 0, result.stderr
    assert "1 failed: E007 Login failed. Signature mismatching" in result.stdout
