"""Image jobs: submit MigrateImages in chunks of 8, then poll GetResponse until final (D5, D6).

Waiting holds no worker slot: between polls the job is a row with `next_poll_at` and a
message with a countdown; the intervals grow with the job's age.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.audit import collect_calls, record_api_calls
from worker.db.engine import core_transaction
from worker.db.leases import claim_params, claim_statement, defer
from worker.db.models import Failure, ImageJob, ImageMigration, table_of
from worker.dispatch import Message, dispatch_deadline, retry_delay
from worker.ratelimit import RateLimited
from worker.sellercenter import (
    CallRecord,
    ImageJobStatus,
    PermanentError,
    SellerCenterClient,
    TransientError,
)
from worker.settings import Settings

log = logging.getLogger(__name__)

URLS_PER_CALL = 8  # MigrateImages takes at most 8 URLs a call
ADVANCE_TASK = "lazada.advance_image_job"


def poll_interval(settings: Settings, age: float) -> float:
    """Seconds until the next GetResponse for a job `age` seconds old.

    Growing with age keeps the detection delay a fixed share of the job's duration while the
    number of polls grows only with the logarithm of it. A job that finished just after a poll
    at age a is seen at the next one, growth x a + slack later: with the defaults (0.2, 4.5 s)
    the delay stays under 20% of the duration + 5 s, and a 60 s job takes 8 polls.
    """
    return min(
        settings.poll_cap,
        max(settings.poll_first, settings.poll_growth * age + settings.poll_slack),
    )


def start_migration(
    sessions: sessionmaker[Session], settings: Settings, key: str, urls: list[str]
) -> tuple[int, list[Message]]:
    """Record a migration and one job per chunk of URLs; the same key again adds nothing."""
    now = datetime.now(UTC)
    query = select(ImageMigration.id).where(
        ImageMigration.account == settings.account, ImageMigration.key == key
    )
    try:
        with sessions.begin() as session:
            existing = session.scalar(query)
            if existing is not None:
                return existing, []
            migration = ImageMigration(account=settings.account, key=key, created_at=now)
            session.add(migration)
            session.flush()
            jobs = [
                ImageJob(
                    account=settings.account,
                    migration_id=migration.id,
                    action="MigrateImages",
                    urls=urls[start : start + URLS_PER_CALL],
                    next_poll_at=now,
                    dispatched_until=dispatch_deadline(now, settings.redispatch_after),
                    created_at=now,
                )
                for start in range(0, len(urls), URLS_PER_CALL)
            ]
            session.add_all(jobs)
            session.flush()
            return migration.id, [Message(ADVANCE_TASK, (job.id,)) for job in jobs]
    except IntegrityError:
        with sessions.begin() as session:
            return session.scalars(query).one(), []


def track(
    sessions: sessionmaker[Session], settings: Settings, request_id: str, action: str
) -> list[Message]:
    """Start polling a job submitted elsewhere (e.g. UploadImages); known ids add nothing."""
    now = datetime.now(UTC)
    first = now + timedelta(seconds=settings.poll_first)
    query = select(ImageJob.id).where(
        ImageJob.account == settings.account, ImageJob.request_id == request_id
    )
    try:
        with sessions.begin() as session:
            if session.scalar(query) is not None:
                return []
            job = ImageJob(
                account=settings.account,
                request_id=request_id,
                action=action,
                started_at=now,
                deadline_at=now + timedelta(seconds=settings.image_deadline),
                next_poll_at=first,
                dispatched_until=dispatch_deadline(first, settings.redispatch_after),
                created_at=now,
            )
            session.add(job)
            session.flush()
            return [Message(ADVANCE_TASK, (job.id,), countdown=settings.poll_first)]
    except IntegrityError:
        return []


_jobs = table_of(ImageJob)
_CLAIM = claim_statement(
    ImageJob, _jobs.c.state == "pending", _jobs.c.next_poll_at <= bindparam("now")
).returning(_jobs.c.request_id, _jobs.c.urls, _jobs.c.started_at, _jobs.c.deadline_at)
# An UPDATE without .values() sets the columns named in the parameters it is executed with.
_UPDATE = update(_jobs).where(_jobs.c.id == bindparam("row"))
_POLLED = _UPDATE.values(polls=_jobs.c.polls + 1)


def advance(
    sessions: sessionmaker[Session],
    client: SellerCenterClient,
    settings: Settings,
    job_id: int,
) -> list[Message]:
    """Take one step: submit the job if it has no RequestId yet, else poll it once."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        params = claim_params(job_id, now, settings.lease_seconds)
        claimed = connection.execute(_CLAIM, params).one_or_none()
    if claimed is None:
        return []
    request_id, urls, started_at, deadline_at = claimed
    if request_id is None:
        return _submit(sessions, client, settings, job_id, urls)
    return _poll(sessions, client, settings, job_id, request_id, started_at, deadline_at)


def _submit(
    sessions: sessionmaker[Session],
    client: SellerCenterClient,
    settings: Settings,
    job_id: int,
    urls: list[str],
) -> list[Message]:
    with collect_calls() as calls:
        try:
            request_id = client.migrate_images(urls)
        except RateLimited as exc:  # nothing was sent: not an attempt
            return [_defer(sessions, settings, job_id, exc.wait)]
        except TransientError as exc:
            return _retry_submit(sessions, settings, job_id, exc, calls)
        except PermanentError as exc:
            _finish_with_error(sessions, settings, job_id, "rejected", exc.code, exc.message, calls)
            return []
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        record_api_calls(connection, settings.account, calls)
        started = {
            "request_id": request_id,
            "started_at": now,
            "deadline_at": now + timedelta(seconds=settings.image_deadline),
            "attempts": 0,
        }
        delay = settings.poll_first
        connection.execute(_UPDATE, {"row": job_id, **started, **_due(settings, now, delay)})
    return [Message(ADVANCE_TASK, (job_id,), countdown=delay)]


def _poll(
    sessions: sessionmaker[Session],
    client: SellerCenterClient,
    settings: Settings,
    job_id: int,
    request_id: str,
    started_at: datetime,
    deadline_at: datetime,
) -> list[Message]:
    status: ImageJobStatus | None = None
    problem: TransientError | None = None
    with collect_calls() as calls:
        try:
            status = client.get_response(request_id)
        except RateLimited as exc:  # nothing was sent: not a poll
            return [_defer(sessions, settings, job_id, exc.wait)]
        except TransientError as exc:  # D6: E006, 1000, E901 mean "not yet" too
            problem = exc
        except PermanentError as exc:
            _finish_with_error(sessions, settings, job_id, "rejected", exc.code, exc.message, calls)
            return []
    now = datetime.now(UTC)
    if status is not None and not status.finished and now < deadline_at:
        # Still running, as most polls find it: one UPDATE, no row loaded.
        age = (now - started_at).total_seconds()
        delay = min(poll_interval(settings, age), (deadline_at - now).total_seconds())
        with core_transaction(sessions) as connection:
            record_api_calls(connection, settings.account, calls)
            connection.execute(
                _POLLED, {"row": job_id, "attempts": 0, **_due(settings, now, delay)}
            )
        return [Message(ADVANCE_TASK, (job_id,), countdown=delay)]
    with sessions.begin() as session:
        record_api_calls(session, settings.account, calls)
        job = session.get_one(ImageJob, job_id)
        job.polls += 1
        if status is not None and status.finished:
            job.images = [
                {"url": i.url, "code": i.code, "original_url": i.original_url}
                for i in status.images
            ]
            job.errors = [
                {"original_url": e.original_url, "message": e.message} for e in status.errors
            ]
            if not status.errors:
                state = "succeeded"
            elif status.images:
                state = "partial"
            else:
                state = "failed"
            _finish(session, job, state, now)
            if state != "succeeded":
                _record_failure(session, job, None, f"{len(job.errors)} image(s) failed", now)
            return []
        if problem is not None:
            job.attempts += 1
            job.error_code, job.message = problem.code, str(problem)
        assert job.started_at is not None and job.deadline_at is not None
        if now >= job.deadline_at:
            job.message = f"still running after {settings.image_deadline:.0f}s; gave up polling"
            _finish(session, job, "expired", now)
            _record_failure(session, job, None, job.message, now)
            return []
        age = (now - job.started_at).total_seconds()
        delay = min(poll_interval(settings, age), (job.deadline_at - now).total_seconds())
        return [_schedule(job, settings, now, max(delay, 0.0))]


def _defer(
    sessions: sessionmaker[Session], settings: Settings, job_id: int, wait: float
) -> Message:
    with sessions.begin() as session:
        defer(session, ImageJob, job_id, ImageJob.next_poll_at, wait, settings.redispatch_after)
    return Message(ADVANCE_TASK, (job_id,), countdown=wait)


def _due(settings: Settings, now: datetime, delay: float) -> dict[str, Any]:
    """The columns that make a job due again in `delay` s (its message has that countdown)."""
    due = now + timedelta(seconds=delay)
    return {
        "next_poll_at": due,
        "dispatched_until": dispatch_deadline(due, settings.redispatch_after),
        "lease_until": None,
    }


def _schedule(job: ImageJob, settings: Settings, now: datetime, delay: float) -> Message:
    """`_due` on a loaded job (the less common paths, which change more than the schedule)."""
    for column, value in _due(settings, now, delay).items():
        setattr(job, column, value)
    return Message(ADVANCE_TASK, (job.id,), countdown=delay)


def _retry_submit(
    sessions: sessionmaker[Session],
    settings: Settings,
    job_id: int,
    exc: TransientError,
    calls: list[CallRecord],
) -> list[Message]:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        record_api_calls(session, settings.account, calls)
        job = session.get_one(ImageJob, job_id)
        job.attempts += 1
        job.error_code, job.message = exc.code, str(exc)
        if job.attempts > len(settings.retry_ladder):
            message = f"gave up submitting after repeated transient errors; last: {exc}"
            job.message = message
            _finish(session, job, "failed", now)
            _record_failure(session, job, exc.code, message, now)
            return []
        return [_schedule(job, settings, now, retry_delay(settings.retry_ladder, job.attempts))]


def _finish_with_error(
    sessions: sessionmaker[Session],
    settings: Settings,
    job_id: int,
    state: str,
    code: int | None,
    message: str,
    calls: list[CallRecord],
) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        record_api_calls(session, settings.account, calls)
        job = session.get_one(ImageJob, job_id)
        job.error_code, job.message = code, message
        _finish(session, job, state, now)
        _record_failure(session, job, code, message, now)


def _finish(session: Session, job: ImageJob, state: str, now: datetime) -> None:
    job.state = state
    job.finished_at = now
    job.lease_until = None
    job.dispatched_until = None
    log.info(
        "image job %s finished: %s",
        job.request_id or job.id,
        state,
        extra={"account": job.account, "request_id": job.request_id, "outcome": state},
    )


def _record_failure(
    session: Session, job: ImageJob, code: int | None, message: str, now: datetime
) -> None:
    log.warning(
        "image job %s failed: E%s %s",
        job.request_id or job.id,
        code if code is not None else "?",
        message,
        extra={
            "account": job.account,
            "request_id": job.request_id,
            "outcome": "failed",
            "error_code": code,
        },
    )
    session.add(
        Failure(
            account=job.account,
            at=now,
            kind="image_job",
            subject=job.request_id or f"{len(job.urls)} URL(s) of job {job.id}",
            error_code=code,
            message=message,
            attempts=max(job.polls, job.attempts, 1),
        )
    )
