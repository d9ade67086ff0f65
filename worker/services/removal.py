"""Removal jobs: record a job and its batches, then remove each batch's SKUs (D4)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.audit import api_call_rows, collect_calls
from worker.db.leases import claim
from worker.db.models import Failure, RemovalBatch, RemovalJob, RemovalSku
from worker.dispatch import Message, dispatch_deadline, retry_delay
from worker.sellercenter import (
    CallRecord,
    PermanentError,
    SellerCenterClient,
    TransientError,
)
from worker.settings import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 50  # RemoveProduct takes at most 50 SellerSkus a call
REMOVE_BATCH_TASK = "lazada.remove_batch"


def create_job(
    sessions: sessionmaker[Session], settings: Settings, key: str, skus: list[str]
) -> tuple[int, list[Message]]:
    """Record the job, its batches and SKUs in one transaction; the same key again adds nothing.

    `skus` must already be clean (worker.inputs.clean_skus). Returns the job id and the
    messages that start its batches.
    """
    now = datetime.now(UTC)
    deadline = dispatch_deadline(now, settings.redispatch_after)
    try:
        with sessions.begin() as session:
            existing = _find_job(session, settings.account, key)
            if existing is not None:
                return existing, []
            job = RemovalJob(account=settings.account, key=key, total=len(skus), created_at=now)
            session.add(job)
            session.flush()
            messages = []
            for start in range(0, len(skus), BATCH_SIZE):
                batch = RemovalBatch(
                    account=settings.account,
                    job_id=job.id,
                    next_attempt_at=now,
                    dispatched_until=deadline,
                )
                session.add(batch)
                session.flush()
                session.add_all(
                    RemovalSku(
                        account=settings.account,
                        job_id=job.id,
                        batch_id=batch.id,
                        position=start + offset,
                        sku=sku,
                        updated_at=now,
                    )
                    for offset, sku in enumerate(skus[start : start + BATCH_SIZE])
                )
                messages.append(Message(REMOVE_BATCH_TASK, (batch.id,)))
            return job.id, messages
    except IntegrityError:
        # Another client recorded the same key at the same moment: theirs stands.
        with sessions.begin() as session:
            existing = _find_job(session, settings.account, key)
        if existing is None:
            raise
        return existing, []


def _find_job(session: Session, account: str, key: str) -> int | None:
    return session.scalar(
        select(RemovalJob.id).where(RemovalJob.account == account, RemovalJob.key == key)
    )


def process_batch(
    sessions: sessionmaker[Session],
    client: SellerCenterClient,
    settings: Settings,
    batch_id: int,
) -> list[Message]:
    """Remove a batch's pending SKUs; returns the retry message if the API said "later".

    A batch is claimed with a conditional UPDATE, so a duplicate delivery, or a second worker,
    does nothing. Each call's outcome is committed before the next call: a killed worker
    loses at most the call in flight, and the sweeper sends the batch again after its lease.
    """
    while True:
        skus = _claim(sessions, settings, batch_id)
        if not skus:
            return []
        with collect_calls() as calls:
            try:
                outcome = client.remove_products(skus)
            except TransientError as exc:
                return _record_transient(sessions, settings, batch_id, skus, exc, calls)
            except PermanentError as exc:
                _record_permanent(sessions, settings, batch_id, skus, exc, calls)
                return []
        with sessions.begin() as session:
            session.add_all(api_call_rows(settings.account, calls))
            job = _lock_job_of(session, batch_id)
            now = datetime.now(UTC)
            _touch_attempts(session, batch_id, skus)
            _mark_removed(session, batch_id, outcome.removed, now)
            for sku, detail in outcome.failed.items():
                _fail_sku(session, job, batch_id, sku, outcome.error_code, detail.message, now)
            # D4: the SKUs the API did not name were not applied; they go again in a new call
            # (the loop), and never again once recorded as removed or failed.
            if outcome.not_applied:
                session.get_one(RemovalBatch, batch_id).lease_until = None  # claim it again
            else:
                _finish_batch(session, job, batch_id, now)


def _claim(sessions: sessionmaker[Session], settings: Settings, batch_id: int) -> list[str]:
    """Take the batch for one API call and return its pending SKUs ([] if not ours to do)."""
    now = datetime.now(UTC)
    with sessions.begin() as session:
        claimed = claim(
            session,
            RemovalBatch,
            batch_id,
            now,
            settings.lease_seconds,
            RemovalBatch.state == "pending",
            RemovalBatch.next_attempt_at <= now,
        )
        if not claimed:
            return []
        skus = list(
            session.scalars(
                select(RemovalSku.sku)
                .where(RemovalSku.batch_id == batch_id, RemovalSku.state == "pending")
                .order_by(RemovalSku.position)
            )
        )
        if not skus:
            _finish_batch(session, _lock_job_of(session, batch_id), batch_id, now)
        return skus


def _record_transient(
    sessions: sessionmaker[Session],
    settings: Settings,
    batch_id: int,
    skus: list[str],
    exc: TransientError,
    calls: list[CallRecord],
) -> list[Message]:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add_all(api_call_rows(settings.account, calls))
        batch = session.get_one(RemovalBatch, batch_id)
        batch.attempts += 1
        batch.last_error = str(exc)
        _touch_attempts(session, batch_id, skus)
        if batch.attempts > len(settings.retry_ladder):
            job = _lock_job_of(session, batch_id)
            for sku in skus:
                _fail_sku(session, job, batch_id, sku, exc.code, _last_error(exc), now)
            _finish_batch(session, job, batch_id, now)
            return []
        delay = retry_delay(settings.retry_ladder, batch.attempts)
        batch.next_attempt_at = now + timedelta(seconds=delay)
        batch.dispatched_until = dispatch_deadline(batch.next_attempt_at, settings.redispatch_after)
        batch.lease_until = None
        log.info("batch %s: %s; retry %s in %.1fs", batch_id, exc, batch.attempts, delay)
        return [Message(REMOVE_BATCH_TASK, (batch_id,), countdown=delay)]


def _record_permanent(
    sessions: sessionmaker[Session],
    settings: Settings,
    batch_id: int,
    skus: list[str],
    exc: PermanentError,
    calls: list[CallRecord],
) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add_all(api_call_rows(settings.account, calls))
        job = _lock_job_of(session, batch_id)
        _touch_attempts(session, batch_id, skus)
        for sku in skus:
            _fail_sku(session, job, batch_id, sku, exc.code, exc.message, now)
        session.get_one(RemovalBatch, batch_id).last_error = str(exc)
        _finish_batch(session, job, batch_id, now)


def _last_error(exc: TransientError) -> str:
    return f"gave up after repeated transient errors; last: {exc}"


def _lock_job_of(session: Session, batch_id: int) -> RemovalJob:
    """The batch's job, locked: concurrent batches of one job finish it exactly once."""
    job_id = select(RemovalBatch.job_id).where(RemovalBatch.id == batch_id).scalar_subquery()
    return session.scalars(
        select(RemovalJob).where(RemovalJob.id == job_id).with_for_update()
    ).one()


def _touch_attempts(session: Session, batch_id: int, skus: tuple[str, ...] | list[str]) -> None:
    if skus:
        session.execute(
            update(RemovalSku)
            .where(RemovalSku.batch_id == batch_id, RemovalSku.sku.in_(skus))
            .values(attempts=RemovalSku.attempts + 1)
        )


def _mark_removed(session: Session, batch_id: int, skus: tuple[str, ...], now: datetime) -> None:
    if skus:
        session.execute(
            update(RemovalSku)
            .where(
                RemovalSku.batch_id == batch_id,
                RemovalSku.sku.in_(skus),
                RemovalSku.state == "pending",
            )
            .values(state="removed", updated_at=now)
        )


def _fail_sku(
    session: Session,
    job: RemovalJob,
    batch_id: int,
    sku: str,
    code: int | None,
    message: str,
    now: datetime,
) -> None:
    row = session.scalars(
        select(RemovalSku).where(
            RemovalSku.batch_id == batch_id, RemovalSku.sku == sku, RemovalSku.state == "pending"
        )
    ).one_or_none()
    if row is None:  # the API named a SKU this batch did not send, or one already final
        return
    row.state = "failed"
    row.error_code = code
    row.message = message
    row.updated_at = now
    session.add(
        Failure(
            account=job.account,
            at=now,
            kind="removal_sku",
            subject=f"{sku} (job {job.key})",
            error_code=code,
            message=message,
            attempts=row.attempts,
        )
    )


def _finish_batch(session: Session, job: RemovalJob, batch_id: int, now: datetime) -> None:
    session.execute(
        update(RemovalBatch)
        .where(RemovalBatch.id == batch_id)
        .values(state="done", lease_until=None, dispatched_until=None)
    )
    session.flush()
    pending = session.scalar(
        select(func.count())
        .select_from(RemovalSku)
        .where(RemovalSku.job_id == job.id, RemovalSku.state == "pending")
    )
    if not pending and job.finished_at is None:
        job.finished_at = now
