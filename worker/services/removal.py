"""Removal jobs: record a job and its batches, then remove each batch's SKUs (D4)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import CursorResult, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.audit import collect_calls, record_api_calls
from worker.db.leases import claim, defer
from worker.db.models import Failure, RemovalBatch, RemovalJob, RemovalSku
from worker.dispatch import Message, dispatch_deadline, retry_delay
from worker.ratelimit import RateLimited
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
            starts = range(0, len(skus), BATCH_SIZE)
            job = RemovalJob(
                account=settings.account,
                key=key,
                total=len(skus),
                pending_batches=len(starts),
                created_at=now,
            )
            session.add(job)
            session.flush()
            # Core bulk inserts: a job of 20,000 SKUs is 400 batch rows and one executemany,
            # not 20,400 ORM objects flushed one by one before the first call can start.
            batch_ids = list(
                session.scalars(
                    insert(RemovalBatch).returning(RemovalBatch.id, sort_by_parameter_order=True),
                    [
                        {
                            "account": settings.account,
                            "job_id": job.id,
                            "state": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "dispatched_until": deadline,
                        }
                        for _ in starts
                    ],
                )
            )
            session.execute(
                insert(RemovalSku),
                [
                    {
                        "account": settings.account,
                        "job_id": job.id,
                        "batch_id": batch_id,
                        "position": position,
                        "sku": skus[position],
                        "state": "pending",
                        "attempts": 0,
                        "updated_at": now,
                    }
                    for batch_id, start in zip(batch_ids, starts, strict=True)
                    for position in range(start, min(start + BATCH_SIZE, len(skus)))
                ],
            )
            messages = [Message(REMOVE_BATCH_TASK, (batch_id,)) for batch_id in batch_ids]
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


class _Claim(NamedTuple):
    job_id: int
    job_key: str
    skus: list[str]


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
    Two transactions a call, of few statements each: they are the worker's cost per call.
    """
    while True:
        work = _claim(sessions, settings, batch_id)
        if work is None:
            return []
        with collect_calls() as calls:
            try:
                outcome = client.remove_products(work.skus)
            except RateLimited as exc:  # nothing was sent: not an attempt
                return [_defer(sessions, settings, batch_id, exc.wait)]
            except TransientError as exc:
                return _record_transient(sessions, settings, batch_id, work, exc, calls)
            except PermanentError as exc:
                _record_permanent(sessions, settings, batch_id, work, exc, calls)
                return []
        now = datetime.now(UTC)
        with sessions.begin() as session:
            record_api_calls(session, settings.account, calls)
            _mark_removed(session, batch_id, outcome.removed, now)
            for sku, detail in outcome.failed.items():
                _fail_sku(session, settings, work, sku, outcome.error_code, detail.message, now)
            # D4: the SKUs the API did not name were not applied; they go again in a new call
            # (the loop), and never again once recorded as removed or failed.
            _count_attempt(session, batch_id, outcome.not_applied)
            if not outcome.not_applied:
                _finish_batch(session, work.job_id, batch_id, now)
                return []
            session.execute(  # give up the lease: the loop claims the batch again
                update(RemovalBatch).where(RemovalBatch.id == batch_id).values(lease_until=None)
            )


def _defer(
    sessions: sessionmaker[Session], settings: Settings, batch_id: int, wait: float
) -> Message:
    with sessions.begin() as session:
        defer(
            session,
            RemovalBatch,
            batch_id,
            RemovalBatch.next_attempt_at,
            wait,
            settings.redispatch_after,
        )
    return Message(REMOVE_BATCH_TASK, (batch_id,), countdown=wait)


def _claim(sessions: sessionmaker[Session], settings: Settings, batch_id: int) -> _Claim | None:
    """Take the batch for one API call; None if it is not ours to do (done, leased, not due)."""
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
            return None
        rows = session.execute(
            select(RemovalSku.sku, RemovalJob.id, RemovalJob.key)
            .join(RemovalJob, RemovalJob.id == RemovalSku.job_id)
            .where(RemovalSku.batch_id == batch_id, RemovalSku.state == "pending")
            .order_by(RemovalSku.position)
        ).all()
        if not rows:  # every SKU already final: a crash came after the last call's commit
            job_id = session.scalars(
                select(RemovalBatch.job_id).where(RemovalBatch.id == batch_id)
            ).one()
            _finish_batch(session, job_id, batch_id, now)
            return None
        return _Claim(rows[0][1], rows[0][2], [row[0] for row in rows])


def _record_transient(
    sessions: sessionmaker[Session],
    settings: Settings,
    batch_id: int,
    work: _Claim,
    exc: TransientError,
    calls: list[CallRecord],
) -> list[Message]:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        record_api_calls(session, settings.account, calls)
        batch = session.get_one(RemovalBatch, batch_id)
        batch.attempts += 1
        batch.last_error = str(exc)
        if batch.attempts > len(settings.retry_ladder):
            message = f"gave up after repeated transient errors; last: {exc}"
            for sku in work.skus:
                _fail_sku(session, settings, work, sku, exc.code, message, now)
            _finish_batch(session, work.job_id, batch_id, now)
            return []
        _count_attempt(session, batch_id, work.skus)
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
    work: _Claim,
    exc: PermanentError,
    calls: list[CallRecord],
) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        record_api_calls(session, settings.account, calls)
        for sku in work.skus:
            _fail_sku(session, settings, work, sku, exc.code, exc.message, now)
        session.execute(
            update(RemovalBatch).where(RemovalBatch.id == batch_id).values(last_error=str(exc))
        )
        _finish_batch(session, work.job_id, batch_id, now)


def _count_attempt(session: Session, batch_id: int, skus: Sequence[str]) -> None:
    """The SKUs rode along in one more call."""
    if skus:
        session.execute(
            update(RemovalSku)
            .where(RemovalSku.batch_id == batch_id, RemovalSku.sku.in_(skus))
            .values(attempts=RemovalSku.attempts + 1)
        )


def _mark_removed(session: Session, batch_id: int, skus: Sequence[str], now: datetime) -> None:
    if skus:
        session.execute(
            update(RemovalSku)
            .where(
                RemovalSku.batch_id == batch_id,
                RemovalSku.sku.in_(skus),
                RemovalSku.state == "pending",
            )
            .values(state="removed", attempts=RemovalSku.attempts + 1, updated_at=now)
        )


def _fail_sku(
    session: Session,
    settings: Settings,
    work: _Claim,
    sku: str,
    code: int | None,
    message: str,
    now: datetime,
) -> None:
    """Record a SKU as failed (counting the call that failed it) and log the failure once."""
    attempts = session.scalar(
        update(RemovalSku)
        .where(
            RemovalSku.job_id == work.job_id,
            RemovalSku.sku == sku,
            RemovalSku.state == "pending",
        )
        .values(
            state="failed",
            attempts=RemovalSku.attempts + 1,
            error_code=code,
            message=message,
            updated_at=now,
        )
        .returning(RemovalSku.attempts)
    )
    if attempts is None:  # the API named a SKU this call did not send, or one already final
        return
    session.add(
        Failure(
            account=settings.account,
            at=now,
            kind="removal_sku",
            subject=f"{sku} (job {work.job_key})",
            error_code=code,
            message=message,
            attempts=attempts,
        )
    )


def _finish_batch(session: Session, job_id: int, batch_id: int, now: datetime) -> None:
    """Mark the batch done, once; the job's last batch to finish sets its finished_at.

    The job's count of pending batches is decremented in one UPDATE, which takes the job
    row's lock: batches finishing at the same moment serialise there, and exactly one of
    them brings the count to zero.
    """
    finished = session.execute(
        update(RemovalBatch)
        .where(RemovalBatch.id == batch_id, RemovalBatch.state == "pending")
        .values(state="done", lease_until=None, dispatched_until=None)
    )
    assert isinstance(finished, CursorResult)
    if finished.rowcount != 1:
        return
    session.execute(
        update(RemovalJob)
        .where(RemovalJob.id == job_id)
        .values(
            pending_batches=RemovalJob.pending_batches - 1,
            finished_at=case((RemovalJob.pending_batches == 1, now), else_=RemovalJob.finished_at),
        )
    )
