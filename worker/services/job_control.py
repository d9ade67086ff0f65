"""Operator control of removal jobs: retry a done job's failed SKUs, cancel the SKUs not yet
sent. Both are one transaction each, idempotent, and safe beside running workers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.store import work_account_id
from worker.broker.dispatch import Message, dispatch_deadline
from worker.db.engine import core_transaction
from worker.db.models import RemovalBatch, RemovalJob, RemovalSku, table_of
from worker.inputs import InvalidInput
from worker.ratelimit.runners import RUNNERS_PER_JOB
from worker.services import job_keys
from worker.services.removal import REMOVE_BATCH_TASK, cancel_free_batches
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
    `runners` tasks (runners_for the account's rate, as a new job); its cancelled SKUs stay
    cancelled. The job finishes (and records its event, by the same rule as its first end)
    again. A job not done, or with nothing failed, is left as it is."""
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
                # The retried SKUs may be sent: a claim refuses a job still marked cancelled.
                cancelled_at=None,
            )
        )
        messages = [Message(REMOVE_BATCH_TASK, (b,)) for b in batches[:runners]]
        return Controlled(len(batch_ids), False, messages)


def cancel(sessions: sessionmaker[Session], account: str, key: str) -> Controlled:
    """The job's SKUs not yet sent become `cancelled`, and no call of the job starts after
    this commits (a claim refuses a cancelled job). Batches in a call right now (leased)
    finish that call and are recorded as usual, except that the SKUs it leaves to send again
    are cancelled; the job is done once they have. It ends `removal.cancelled` if it
    cancelled a SKU, else `removal.finished` (worker.outbox.events)."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        job_id, finished_at = _job(connection, account, key)
        if finished_at is not None:
            return Controlled(0, True, [])
        cancelled = cancel_free_batches(connection, job_id, now)
        left = connection.execute(
            update(_jobs)
            .where(_jobs.c.id == job_id)
            .values(cancelled_at=func.coalesce(_jobs.c.cancelled_at, now))
            .returning(_jobs.c.pending_batches)
        ).scalar_one()
        return Controlled(cancelled, left == 0, [])


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
