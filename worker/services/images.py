"""Image jobs: submit a migration in chunks of the platform's most a call, then poll each job
until it is final (decisions D5 and D6 on the legacy platform, where the calls are
MigrateImages and GetResponse; L8 on the Open Platform).

Waiting holds no worker slot: between polls the job is a row with `next_poll_at` and a
message with a countdown; the intervals grow with the job's age.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.platforms import PlatformFor
from worker.accounts.store import account_change, work_account_id
from worker.broker.dispatch import Message, countdown_deadline, dispatch_deadline
from worker.db import storable
from worker.db.audit import record_failure
from worker.db.engine import core_transaction
from worker.db.leases import claim_params, claim_statement
from worker.db.models import ImageJob, ImageMigration, table_of
from worker.inputs import InvalidInput
from worker.outbox.events import record_image_job_event
from worker.platforms import ApiError, ImageJobStatus, PermanentApiError, TransientApiError
from worker.services.attempts import Row, UnstorableAnswer, attempt
from worker.settings import Settings

log = logging.getLogger(__name__)

ADVANCE_TASK = "lazada.advance_image_job"
# An account's image submits, and its polls, take their turns as a group each.
SUBMIT_GROUP = "image-submits"
POLL_GROUP = "image-polls"


def poll_interval(settings: Settings, age: float) -> float:
    """Seconds until the next poll of a job `age` seconds old.

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
    sessions: sessionmaker[Session],
    settings: Settings,
    account: str,
    key: str,
    urls: list[str],
    urls_per_call: int,
    callback: str | None = None,
    callback_queue: str | None = None,
) -> tuple[int, list[Message]]:
    """Record the account's migration and one job per `urls_per_call` URLs (the platform's
    most a call); the same key again adds nothing."""
    now = datetime.now(UTC)
    query = select(_migrations.c.id, _migrations.c.account_id).where(
        _migrations.c.account == account, _migrations.c.key == key
    )
    try:
        with core_transaction(sessions) as connection:
            account_id = work_account_id(connection, settings, account)  # held till commit
            existing = connection.execute(query).one_or_none()
            if existing is not None:
                _refuse_other_account(connection, settings, account, existing.account_id, key)
                return existing.id, []
            migration_id = connection.execute(
                insert(_migrations)
                .values(account=account, account_id=account_id, key=key, created_at=now)
                .returning(_migrations.c.id)
            ).scalar_one()
            job_ids = connection.execute(
                insert(_jobs).returning(_jobs.c.id, sort_by_parameter_order=True),
                [
                    {
                        "account": account,
                        "account_id": account_id,
                        "migration_id": migration_id,
                        "action": "MigrateImages",
                        "urls": urls[start : start + urls_per_call],
                        "next_poll_at": now,
                        "dispatched_until": dispatch_deadline(now, settings.redispatch_after),
                        "created_at": now,
                        "callback": callback,
                        "callback_queue": callback_queue,
                    }
                    for start in range(0, len(urls), urls_per_call)
                ],
            ).scalars()
            return migration_id, [Message(ADVANCE_TASK, (job_id,)) for job_id in job_ids]
    except IntegrityError:
        with core_transaction(sessions) as connection:
            existing = connection.execute(query).one()
            _refuse_other_account(connection, settings, account, existing.account_id, key)
            return existing.id, []


def _refuse_other_account(
    connection: Connection, settings: Settings, account: str, account_id: int | None, key: str
) -> None:
    """InvalidInput when the migration under `key` was made for an earlier account of the
    name, removed since: its key is not the new account's."""
    if account_change(connection, settings, account, account_id) is not None:
        raise InvalidInput(
            f"key {key!r} is the key of an image migration of an earlier account named "
            f"{account!r}, removed since; use a new key"
        )


def track(
    sessions: sessionmaker[Session],
    settings: Settings,
    account: str,
    request_id: str,
    action: str,
    callback: str | None = None,
    callback_queue: str | None = None,
) -> list[Message]:
    """Start polling a job submitted elsewhere (e.g. UploadImages); known ids add nothing."""
    now = datetime.now(UTC)
    first = now + timedelta(seconds=settings.poll_first)
    query = select(_jobs.c.account_id).where(
        _jobs.c.account == account, _jobs.c.request_id == request_id
    )
    try:
        with core_transaction(sessions) as connection:
            account_id = work_account_id(connection, settings, account)  # held till commit
            existing = connection.execute(query).first()
            if existing is not None:
                if account_change(connection, settings, account, existing.account_id):
                    raise InvalidInput(
                        f"image job {request_id!r} was tracked for an earlier account named "
                        f"{account!r}, removed since; it is not polled for the new one"
                    )
                return []
            job_id = connection.execute(
                insert(_jobs)
                .values(
                    account=account,
                    account_id=account_id,
                    request_id=request_id,
                    action=action,
                    urls=[],
                    started_at=now,
                    deadline_at=now + timedelta(seconds=settings.image_deadline),
                    next_poll_at=first,
                    dispatched_until=countdown_deadline(first, settings.redispatch_after),
                    created_at=now,
                    callback=callback,
                    callback_queue=callback_queue,
                )
                .returning(_jobs.c.id)
            ).scalar_one()
            return [Message(ADVANCE_TASK, (job_id,), countdown=settings.poll_first)]
    except IntegrityError:
        return []


_migrations = table_of(ImageMigration)
_jobs = table_of(ImageJob)
_CLAIM = claim_statement(
    ImageJob, _jobs.c.state == "pending", _jobs.c.next_poll_at <= bindparam("now")
).returning(
    _jobs.c.account,
    _jobs.c.request_id,
    _jobs.c.urls,
    _jobs.c.started_at,
    _jobs.c.deadline_at,
    _jobs.c.account_id,
)
# An UPDATE without .values() sets the columns named in the parameters it is executed with.
_UPDATE = update(_jobs).where(_jobs.c.id == bindparam("row"))
_POLLED = _UPDATE.values(polls=_jobs.c.polls + 1)
# The account's jobs due a step: how widely steps refused a turn spread out.
_DUE = (
    select(func.count())
    .select_from(_jobs)
    .where(
        _jobs.c.account == bindparam("account"),
        _jobs.c.state == "pending",
        _jobs.c.next_poll_at <= bindparam("now"),
    )
)
_DUE_SUBMITS = _DUE.where(_jobs.c.request_id.is_(None))
_DUE_POLLS = _DUE.where(_jobs.c.request_id.is_not(None))
_FINISH = _UPDATE.values(finished_at=bindparam("now"), lease_until=None, dispatched_until=None)


def advance(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    job_id: int,
    slot: float | None = None,
) -> list[Message]:
    """Take one step: submit the job if it has no request id yet, else poll it once (`slot`:
    the call slot reserved for this message, worker.ratelimit)."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        params = claim_params(job_id, now, settings.lease_seconds)
        claimed = connection.execute(_CLAIM, params).one_or_none()
        if claimed is None:
            return []
        account, request_id, urls, started_at, deadline_at, account_id = claimed
        changed = account_change(connection, settings, account, account_id)
    job = _Job(
        Row(
            _jobs,
            job_id,
            account,
            "next_poll_at",
            Message(ADVANCE_TASK, (job_id,)),
            POLL_GROUP if request_id else SUBMIT_GROUP,
            slot,
            backlog=_DUE_POLLS if request_id else _DUE_SUBMITS,
        ),
        request_id or f"{len(urls)} URL(s) of job {job_id}",
    )
    if changed is not None:
        # Its account is gone: nothing is sent or polled with another account's credentials.
        with core_transaction(sessions) as connection:
            _fail(connection, job, "failed", changed.code, changed.message, 1, now)
        return []
    platform = platforms(account)
    if request_id is None:
        submitted = attempt(
            sessions,
            settings,
            job.row,
            lambda: platform.submit_images(urls),
            succeeded=lambda c, new_id, now: _submitted(c, settings, job, new_id, now),
            failed=lambda c, error, message, attempts, now: _fail(
                c, job, _failed_state(error), error.code, message, attempts, now
            ),
            retrying=lambda c, error, attempts, now: _record_error(c, job, error),
        )
        return submitted.value or submitted.messages
    polled = attempt(
        sessions,
        settings,
        job.row,
        lambda: platform.poll_images(request_id),
        succeeded=lambda c, status, now: _polled(
            c, settings, job, status, started_at, deadline_at, now
        ),
        failed=lambda c, error, message, attempts, now: _fail(
            c, job, _failed_state(error), error.code, message, attempts, now
        ),
        # A transient error in answer to a poll (E006, 1000 or E901 on the legacy platform)
        # means "not yet" (decision D6; the Open Platform's client reads its own "still
        # running" code, decision L8): polled again on the schedule, until the deadline, not
        # on the retry ladder.
        transient=lambda c, error, now: _not_yet(
            c, settings, job, error, started_at, deadline_at, now
        ),
    )
    return polled.value or polled.messages


class _Job(NamedTuple):
    row: Row
    subject: str  # how operators know it: the request id, or its URLs before it has one


def _failed_state(error: ApiError) -> str:
    """A submit or poll the API refused is rejected; one that never got through, or whose
    answer could not be stored, failed."""
    refused = isinstance(error, PermanentApiError) and not isinstance(error, UnstorableAnswer)
    return "rejected" if refused else "failed"


def _submitted(
    connection: Connection, settings: Settings, job: _Job, request_id: str, now: datetime
) -> list[Message]:
    started = {
        "request_id": request_id,
        "started_at": now,
        "deadline_at": now + timedelta(seconds=settings.image_deadline),
        "attempts": 0,
    }
    delay = settings.poll_first
    connection.execute(_UPDATE, {"row": job.row.id, **started, **_due(settings, now, delay)})
    return [replace(job.row.message, countdown=delay)]


def _polled(
    connection: Connection,
    settings: Settings,
    job: _Job,
    status: ImageJobStatus,
    started_at: datetime,
    deadline_at: datetime,
    now: datetime,
) -> list[Message]:
    if not status.finished:
        if now >= deadline_at:
            return _expire(connection, settings, job, now)
        # Still running, as most polls find it: one UPDATE, no row loaded.
        delay = _next_poll(settings, started_at, deadline_at, now)
        connection.execute(
            _POLLED, {"row": job.row.id, "attempts": 0, **_due(settings, now, delay)}
        )
        return [replace(job.row.message, countdown=delay)]
    images = storable.document(
        [{"url": i.url, "code": i.code, "original_url": i.original_url} for i in status.images]
    )
    errors = storable.document(
        [{"original_url": e.original_url, "message": e.message} for e in status.errors]
    )
    if not errors:
        state = "succeeded"
    elif images:
        state = "partial"
    else:
        state = "failed"
    _finish(
        connection,
        job,
        state,
        now,
        polled=True,
        failure=f"{len(errors)} image(s) failed",
        images=images,
        errors=errors,
    )
    return []


def _not_yet(
    connection: Connection,
    settings: Settings,
    job: _Job,
    error: TransientApiError,
    started_at: datetime,
    deadline_at: datetime,
    now: datetime,
) -> list[Message]:
    failed = {
        "row": job.row.id,
        "error_code": storable.code(error.code),
        "message": storable.text(str(error)),
    }
    if now >= deadline_at:
        connection.execute(_UPDATE.values(attempts=_jobs.c.attempts + 1), failed)
        return _expire(connection, settings, job, now)
    connection.execute(_POLLED.values(attempts=_jobs.c.attempts + 1), failed)
    delay = _next_poll(settings, started_at, deadline_at, now)
    return [job.row.reschedule(connection, settings, now, delay)]


def _expire(connection: Connection, settings: Settings, job: _Job, now: datetime) -> list[Message]:
    message = f"still running after {settings.image_deadline:.0f}s; gave up polling"
    _finish(connection, job, "expired", now, polled=True, failure=message, message=message)
    return []


def _record_error(connection: Connection, job: _Job, error: TransientApiError) -> None:
    connection.execute(
        _UPDATE,
        {
            "row": job.row.id,
            "error_code": storable.code(error.code),
            "message": storable.text(str(error)),
        },
    )


def _fail(
    connection: Connection,
    job: _Job,
    state: str,
    code: str | None,
    message: str,
    attempts: int,
    now: datetime,
) -> None:
    _finish(
        connection,
        job,
        state,
        now,
        polled=False,
        failure=message,
        code=code,
        attempts=attempts,
        error_code=storable.code(code),
        message=storable.text(message),
    )


def _finish(
    connection: Connection,
    job: _Job,
    state: str,
    now: datetime,
    *,
    polled: bool,
    failure: str,
    code: str | None = None,
    attempts: int = 0,
    **values: Any,
) -> None:
    """The job's final state (and its columns in `values`); any state but succeeded is a
    failure for operators, with `failure` as its message."""
    statement = _FINISH.values(polls=_jobs.c.polls + 1) if polled else _FINISH
    polls = connection.execute(
        statement.returning(_jobs.c.polls),
        {"row": job.row.id, "now": now, "state": state, **values},
    ).scalar_one()
    record_image_job_event(connection, job.row.id)
    extra = {"account": job.row.account, "request_id": job.subject, "outcome": state}
    if state == "succeeded":
        log.info("image job %s finished: %s", job.subject, state, extra=extra)
        return
    account = job.row.account
    tries = max(polls, attempts)
    record_failure(connection, account, "image_job", job.subject, code, failure, tries, now)
    log.warning(
        "image job %s %s: %s %s",
        job.subject,
        state,
        code or "?",
        failure,
        extra={**extra, "error_code": code},
    )


def _next_poll(
    settings: Settings, started_at: datetime, deadline_at: datetime, now: datetime
) -> float:
    age = (now - started_at).total_seconds()
    return max(0.0, min(poll_interval(settings, age), (deadline_at - now).total_seconds()))


def _due(settings: Settings, now: datetime, delay: float) -> dict[str, Any]:
    """The columns that make a job due again in `delay` s (its message has that countdown)."""
    due = now + timedelta(seconds=delay)
    return {
        "next_poll_at": due,
        "dispatched_until": countdown_deadline(due, settings.redispatch_after),
        "lease_until": None,
    }
