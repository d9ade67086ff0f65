"""Operator control of removal jobs: retry a done job's failed SKUs, cancel the SKUs not yet
sent. Both are one transaction each, idempotent, and safe beside running workers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, case, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.store import work_account_id
from worker.broker.dispatch import Message, dispatch_deadline
from worker.db.bulk import insert_rows
from worker.db.engine import core_transaction
from worker.db.models import RemovalBatch, RemovalJob, RemovalSku, table_of
from worker.inputs import InvalidInput
from worker.outbox.events import record_removal_event
from worker.ratelimit.runners import RUNNERS_PER_JOB
from worker.services import job_keys
from worker.services.removal import _SKU_COLUMNS, REMOVE_BATCH_TASK, _storable
from worker.settings import Settings

_jobs = table_of(RemovalJob)
_batches = table_of(RemovalBatch)
_skus = table_of(RemovalSku)


class Controlled(NamedTuple):
    """What a retry or cancel did: SKUs it changed, whether the job is done now, and the
    messages to send after commit."""

    changed: int
    done: bool
    messages: list[Message]


def retry(
    sessions: sessionmaker[Session],
    settings: Settings,
    account: str,
    key: str,
    runners: int = RUNNERS_PER_JOB,
) -> Controlled:
    """A done job's failed SKUs go back to pending and their batches are sent again, by
    `runners` tasks (runners_for the account's rate, as a new job); the job finishes (and
    records its event) again. A job not done, or with nothing failed, is left as it is."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        # Held against a removal of the account until the batches are pending again.
        work_account_id(connection, settings, account)
        job_id, finished_at = _job(connection, account, key)
        job_keys.refuse_other_account(connection, settings, job_id, key)
        if finished_at is None:
            return Controlled(0, False, [])
        batch_ids = list(
            connection.execute(
                update(_skus)
                .where(_skus.c.job_id == job_id, _skus.c.state == "failed")
                .values(state="pending", error_code=None, message=None, updated_at=now)
                .returning(_skus.c.batch_id)
            ).scalars()
        )
        if not batch_ids:
            return Controlled(0, True, [])
        batches = sorted(set(batch_ids))
        connection.execute(
            update(_batches)
            .where(_batches.c.id.in_(batches))
            .values(
                state="pending",
                attempts=0,
                next_attempt_at=now,
                lease_until=None,
                dispatched_until=dispatch_deadline(now, settings.redispatch_after),
                last_error=None,
            )
        )
        connection.execute(
            update(_jobs)
            .where(_jobs.c.id == job_id)
            .values(
                pending_batches=_jobs.c.pending_batches + len(batches),
                finished_at=None,
                cancelled_at=None,
            )
        )
        messages = [Message(REMOVE_BATCH_TASK, (b,)) for b in batches[:runners]]
        return Controlled(len(batch_ids), False, messages)


def cancel(sessions: sessionmaker[Session], account: str, key: str) -> Controlled:
    """The job's SKUs not yet sent become `cancelled`; batches in a call right now (leased)
    finish that call and are recorded as usual, and the job is done once they have."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        job_id, finished_at = _job(connection, account, key)
        if finished_at is not None:
            return Controlled(0, True, [])
        # Batches before the job row, as a finishing batch takes them: no lock cycle.
        free = (
            select(_batches.c.id, _batches.c.first_position, _batches.c.skus)
            .where(
                _batches.c.job_id == job_id,
                _batches.c.state == "pending",
                or_(_batches.c.lease_until.is_(None), _batches.c.lease_until < now),
            )
            .with_for_update(skip_locked=True)
        )
        found = connection.execute(free).all()
        ids = [row.id for row in found]
        cancelled = 0
        if ids:
            connection.execute(
                update(_batches)
                .where(_batches.c.id.in_(ids))
                .values(state="done", skus=None, lease_until=None, dispatched_until=None)
            )
            cancelled += _cancel_held(connection, account, job_id, found, now)
            cancelled += connection.execute(
                update(_skus)
                .where(_skus.c.batch_id.in_(ids), _skus.c.state == "pending")
                .values(state="cancelled", updated_at=now)
            ).rowcount
        left = connection.execute(
            update(_jobs)
            .where(_jobs.c.id == job_id)
            .values(
                cancelled_at=now,
                pending_batches=_jobs.c.pending_batches - len(ids),
                finished_at=case(
                    (_jobs.c.pending_batches == len(ids), now), else_=_jobs.c.finished_at
                ),
            )
            .returning(_jobs.c.pending_batches)
        ).scalar_one()
        if ids and left == 0:
            record_removal_event(connection, job_id)
        return Controlled(cancelled, left == 0, [])


def _cancel_held(
    connection: Connection,
    account: str,
    job_id: int,
    found: Sequence[Row[Any, Any, Any]],
    now: datetime,
) -> int:
    """SKU rows, cancelled, for the batches that still held their SKUs."""
    rows = [
        (account, job_id, row.id, row.first_position + offset, _storable(sku), "cancelled", 0, now)
        for row in found
        if row.skus is not None and row.first_position is not None
        for offset, sku in enumerate(json.loads(row.skus))
    ]
    if rows:
        insert_rows(connection, _skus, _SKU_COLUMNS, rows)
    return len(rows)


def _job(connection: Connection, account: str, key: str) -> tuple[int, datetime | None]:
    found = connection.execute(
        select(_jobs.c.id, _jobs.c.finished_at).where(
            _jobs.c.account == account, _jobs.c.key == key
        )
    ).one_or_none()
    if found is None:
        raise InvalidInput(
            f"no removal job with key {key!r} for account {account!r} (see `lazada-worker status`)"
        )
    return found.id, found.finished_at
