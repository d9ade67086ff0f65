"""Removal jobs: record a job and its batches, then remove each batch's SKUs (D4)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.platforms import PlatformFor
from worker.accounts.store import (
    AccountChange,
    account_id_of,
    change_of_account,
    work_account_id,
)
from worker.broker.dispatch import Message, dispatch_deadline
from worker.db.audit import record_failure
from worker.db.bulk import insert_rows
from worker.db.engine import core_transaction
from worker.db.heartbeats import stopping
from worker.db.leases import claim_params, claim_statement, hold, holder, let_go
from worker.db.models import RemovalBatch, RemovalJob, RemovalSku, table_of
from worker.db.storable import code as storable_code
from worker.db.storable import text as storable_text
from worker.outbox.events import record_removal_event
from worker.platforms import (
    ApiError,
    PermanentApiError,
    Platform,
    RemovalOutcome,
    TransientApiError,
)
from worker.ratelimit.runners import RUNNERS_PER_JOB, more_runner_countdowns
from worker.services import job_keys
from worker.services.attempts import SLOT_HOLD, Attempted, Row, attempt
from worker.settings import Settings

log = logging.getLogger(__name__)

REMOVE_BATCH_TASK = "lazada.remove_batch"
RUNNER_SECONDS = 20.0  # then a task hands over to a new message, so queued work takes turns

Resume = Callable[[], list[Message]]
# How a task keeps a batch's deferral to its reserved slot in its own process
# (ServiceTask.keep_held), given the deferral's message (for the broker, should the process
# stop first), what goes on with the batch at the slot (returning the messages to publish),
# and what lets the batch go before its message is sent instead; False when it keeps none.
Keep = Callable[[Message, Resume, Callable[[], None]], bool]

_jobs = table_of(RemovalJob)
_batches = table_of(RemovalBatch)
_skus = table_of(RemovalSku)
_BATCH_COLUMNS = (
    "account",
    "job_id",
    "state",
    "attempts",
    "next_attempt_at",
    "dispatched_until",
    "first_position",
    "skus",
)
_JOB_BATCHES = (
    select(_batches.c.id).where(_batches.c.job_id == bindparam("job")).order_by(_batches.c.id)
)
_SKU_COLUMNS = (
    "account",
    "job_id",
    "batch_id",
    "position",
    "sku",
    "state",
    "attempts",
    "updated_at",
)


def create_job(
    sessions: sessionmaker[Session],
    settings: Settings,
    account: str,
    key: str,
    skus: list[str],
    batch_size: int,
    callback: str | None = None,
    callback_queue: str | None = None,
    runners: int = RUNNERS_PER_JOB,
) -> tuple[int, list[Message]]:
    """Record the account's job and its batches of `batch_size` SKUs (the platform's most a
    call) in one transaction; the same key again adds nothing, and with another set of SKUs
    it is refused (InvalidInput, worker.services.job_keys).

    `skus` must already be clean (worker.inputs.clean_skus). Returns the job id and the
    messages that start its batches: `runners` tasks (runners_for the account's rate).
    """
    now = datetime.now(UTC)
    deadline = dispatch_deadline(now, settings.redispatch_after)
    digest = job_keys.sku_set_digest(skus)
    try:
        with core_transaction(sessions) as connection:
            # Read (and share-locked) in the transaction of the insert: a removal of the
            # account waits for it, and then sees the job's batches.
            account_id = work_account_id(connection, settings, account)
            existing = _find_job(connection, account, key)
            if existing is not None:
                job_keys.refuse_other_account(connection, settings, existing, key)
                job_keys.refuse_other_set(connection, existing, key, digest)
                return existing, []
            starts = range(0, len(skus), batch_size)
            job_id = connection.execute(
                insert(_jobs)
                .values(
                    account=account,
                    account_id=account_id,
                    key=key,
                    total=len(skus),
                    pending_batches=len(starts),
                    created_at=now,
                    callback=callback,
                    callback_queue=callback_queue,
                    sku_set_digest=digest,
                )
                .returning(_jobs.c.id)
            ).scalar_one()
            # One bulk load (COPY on PostgreSQL) of the batch rows, each holding its SKUs: SKU
            # rows are written only for outcomes other than "all removed by one call", so a job
            # records a row per batch, not one per SKU, before its first call can start.
            rows = [
                (
                    *(account, job_id, "pending", 0, now, deadline),
                    *(start, json.dumps(skus[start : start + batch_size])),
                )
                for start in starts
            ]
            insert_rows(connection, _batches, _BATCH_COLUMNS, rows)
            # Ids come from one sequence in the order the rows went in: the job's batches by id
            # are its batches in order. The others are taken by these tasks as they go
            # (process_batch), or, should they all die, sent by the sweeper once their dispatch
            # deadline has passed.
            batch_ids = list(connection.execute(_JOB_BATCHES, {"job": job_id}).scalars())
            started = batch_ids[: max(1, runners)]
            return job_id, [Message(REMOVE_BATCH_TASK, (batch_id,)) for batch_id in started]
    except IntegrityError:
        # Another client recorded the same key at the same moment: theirs stands.
        with core_transaction(sessions) as connection:
            existing = _find_job(connection, account, key)
            if existing is None:
                raise
            job_keys.refuse_other_account(connection, settings, existing, key)
            job_keys.refuse_other_set(connection, existing, key, digest)
        return existing, []


def _find_job(connection: Connection, account: str, key: str) -> int | None:
    return connection.execute(
        select(_jobs.c.id).where(_jobs.c.account == account, _jobs.c.key == key)
    ).scalar()


class _Claim(NamedTuple):
    batch_id: int
    job_id: int
    account: str
    skus: list[str]  # its pending SKUs: what the next call sends
    first_position: int | None  # when its row holds its SKUs (no SKU rows): all of `skus`
    # What happened to the job's account since the job was made (None: nothing), when the
    # claim was asked to look (a task's first claim: the account may have gone meanwhile).
    changed: AccountChange | None = None


# The hot path's statements, built once: a batch runs them on every call, and building and
# compiling SQLAlchemy expressions (and ORM-enabled updates) cost more CPU than the database.

_DUE = (_batches.c.state == "pending", _batches.c.next_attempt_at <= bindparam("now"))
# A batch of a cancelled job is never claimed: once a cancel has committed, no call of its job
# starts (its free batches it cancelled itself; one held by a task then finishes its call).
_NOT_CANCELLED = (
    select(_jobs.c.cancelled_at).where(_jobs.c.id == _batches.c.job_id).scalar_subquery().is_(None)
)
_LEASE_FREE = or_(_batches.c.lease_until.is_(None), _batches.c.lease_until < bindparam("now"))
_UNWRITTEN = (_batches.c.first_position, _batches.c.skus)
# A batch deferred to its slot is due for the job's other runners SLOT_HOLD after it (its own
# message, which carries the slot, takes it at the slot): otherwise another runner could take
# it first, the reserved slot would go unused and the job would take one more.
_CLAIM = claim_statement(
    RemovalBatch,
    _batches.c.state == "pending",
    _batches.c.next_attempt_at <= bindparam("due_by"),
    _NOT_CANCELLED,
).returning(_batches.c.job_id, _batches.c.account, *_UNWRITTEN)
# The job's first free batch, skipping rows another transaction is claiming (PostgreSQL;
# SQLite runs one writer at a time), claimed in the same statement.
_NEXT_FREE = (
    select(_batches.c.id)
    .where(_batches.c.job_id == bindparam("job"), _LEASE_FREE, *_DUE)
    .order_by(_batches.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_CLAIM_NEXT = (
    update(_batches)
    .where(_batches.c.id == _NEXT_FREE, _LEASE_FREE, *_DUE, _NOT_CANCELLED)
    .values(lease_until=bindparam("until"), lease_holder=bindparam("holder"))
    .returning(_batches.c.id, _batches.c.account, *_UNWRITTEN)
)
_JOB_OF = (
    select(_batches.c.job_id, _jobs.c.cancelled_at)
    .join(_jobs, _jobs.c.id == _batches.c.job_id)
    .where(_batches.c.id == bindparam("batch"))
)
_CANCELLED_AT = select(_jobs.c.cancelled_at).where(_jobs.c.id == bindparam("job"))
# A batch kept leased through its deferral, at its slot: whether this process still holds it
# (pending, its lease ours and running), whether its job was cancelled meanwhile, and its
# account's change (as _ACCOUNT_OF_JOB), in one statement.
_HELD_AT_SLOT = (
    select(
        (
            (_batches.c.state == "pending")
            & (_batches.c.lease_holder == bindparam("holder"))
            & (_batches.c.lease_until > bindparam("now"))
        ).label("ours"),
        _jobs.c.cancelled_at,
        _jobs.c.account,
        _jobs.c.account_id,
        account_id_of(_jobs.c.account).label("current"),
    )
    .select_from(_batches.join(_jobs, _jobs.c.id == _batches.c.job_id))
    .where(_batches.c.id == bindparam("batch"))
)
# A cancelled job's batch in a call when the cancel came: the SKUs its call left (not applied,
# or to be retried) are cancelled, not sent again.
_CANCEL_PENDING = (
    update(_skus)
    .where(_skus.c.batch_id == bindparam("batch"), _skus.c.state == "pending")
    .values(state="cancelled", updated_at=bindparam("now"))
)
# The job's account as it was made and the id of the account of that name now, in one statement.
_ACCOUNT_OF_JOB = select(
    _jobs.c.account, _jobs.c.account_id, account_id_of(_jobs.c.account).label("current")
).where(_jobs.c.id == bindparam("job"))
# The job's batches before it held by running tasks: a batch late for its slot is left to
# them. Before it, not any other: two late batches each left to the other would leave the job
# to the sweeper; the first batch held always has its task go on.
_OTHERS_OF = _batches.alias("others")
_UNDER_WAY = (
    select(func.count())
    .select_from(_OTHERS_OF)
    .where(
        _OTHERS_OF.c.job_id
        == select(_batches.c.job_id).where(_batches.c.id == bindparam("id")).scalar_subquery(),
        _OTHERS_OF.c.id < bindparam("id"),
        _OTHERS_OF.c.lease_until > bindparam("now"),
    )
)
_PENDING_SKUS = (
    select(_skus.c.sku)
    .where(_skus.c.batch_id == bindparam("batch"), _skus.c.state == "pending")
    .order_by(_skus.c.position)
)
# A call that removed every SKU it sent: the SKUs it sent are the batch's pending ones.
_MARK_REMOVED = (
    update(_skus)
    .where(_skus.c.batch_id == bindparam("batch"), _skus.c.state == "pending")
    .values(state="removed", attempts=_skus.c.attempts + 1, updated_at=bindparam("now"))
)
# The call counts as an attempt for the SKUs it left pending (not applied, or a transient error).
_COUNT_ATTEMPT = (
    update(_skus)
    .where(_skus.c.batch_id == bindparam("batch"), _skus.c.state == "pending")
    .values(attempts=_skus.c.attempts + 1)
)
_REMOVE_SKU = (
    update(_skus)
    .where(
        _skus.c.job_id == bindparam("job"),
        _skus.c.sku == bindparam("removed_sku"),
        _skus.c.state == "pending",
    )
    .values(state="removed", attempts=_skus.c.attempts + 1, updated_at=bindparam("now"))
)
_FAIL_SKU = (
    update(_skus)
    .where(
        _skus.c.job_id == bindparam("job"),
        _skus.c.sku == bindparam("failed_sku"),
        _skus.c.state == "pending",
    )
    .values(
        state="failed",
        attempts=_skus.c.attempts + 1,
        error_code=bindparam("code"),
        message=bindparam("detail"),
        updated_at=bindparam("now"),
    )
    .returning(_skus.c.attempts)
)
# Any outcome but "all removed by one call" is recorded on SKU rows; this takes the SKUs
# from the batch row to write them, once, while the batch is pending.
_TAKE_SKUS = (
    update(_batches)
    .where(
        _batches.c.id == bindparam("batch"),
        _batches.c.state == "pending",
        _batches.c.skus.is_not(None),
    )
    .values(skus=None)
)
# A batch this process leased let go (a lease another process has taken since is left alone).
_RELEASE = (
    update(_batches)
    .where(_batches.c.id == bindparam("batch"), _batches.c.lease_holder == bindparam("holder"))
    .values(lease_until=None)
)
_LAST_ERROR = (
    update(_batches)
    .where(_batches.c.id == bindparam("batch"))
    .values(last_error=bindparam("last_error"))
)
_FINISH_BATCH = (
    update(_batches)
    .where(_batches.c.id == bindparam("batch"), _batches.c.state == "pending")
    .values(state="done", lease_until=None, dispatched_until=None)
)
# A whole batch removed by its first call: done, its SKUs held in its row (no SKU rows).
_FINISH_HELD = _FINISH_BATCH.where(_batches.c.skus.is_not(None))
_FINISH_IN_JOB = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job"))
    .values(
        pending_batches=_jobs.c.pending_batches - bindparam("finished"),
        finished_at=case(
            (_jobs.c.pending_batches == bindparam("finished"), bindparam("now")),
            else_=_jobs.c.finished_at,
        ),
    )
    .returning(_jobs.c.key, _jobs.c.account, _jobs.c.total, _jobs.c.pending_batches)
)
_ENDED_IN_JOB = (
    select(_skus.c.state, func.count())
    .where(_skus.c.job_id == bindparam("job"), _skus.c.state.in_(("failed", "cancelled")))
    .group_by(_skus.c.state)
)


def process_batch(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    batch_id: int,
    slot: float | None = None,
    publish: Callable[[list[Message]], None] | None = None,
    keep: Keep | None = None,
) -> list[Message]:
    """Remove a batch's pending SKUs, then those of the job's next free batch, until no batch of
    the job is free, the next call's slot is not near (the batch is deferred to it, or left to
    the job's other runners: worker.ratelimit) or RUNNER_SECONDS have passed; returns retry,
    deferral and hand-over messages. `slot`: the call slot reserved for this message.

    A job starts few runners (runners_for); when a call's slot came at once with batches
    left (the account had a slot free that none of the job's held slots took: its calls take
    longer than those cover), more are sent at once through `publish` (or returned when there
    is none): as many as the slots its call took. One too many finds its turns taken and ends.

    A deferral to a reserved slot that `keep` takes (the task's process keeps it) keeps its
    batch leased, with nothing written: at the slot the run goes on with it (_at_held_slot)
    after one read that says whether its job was cancelled or its account changed meanwhile.

    A batch is claimed with a conditional UPDATE, so a duplicate delivery, or a second worker,
    does not call the API for it again; the platform is its account's, chosen once it is
    claimed. Each call's outcome is committed before the next call (with the claim of the next
    batch, in one transaction): a killed worker loses at most the call in flight; its message
    comes back (late acknowledgement), or the sweeper sends the batch again once the worker's
    heartbeat stopped. A worker shutting down (SIGTERM) ends after its call in flight and hands
    the job on with a message.
    """
    work = _claim(sessions, settings, batch_id, slot is not None, check_account=True)
    if work is None:
        slot = None  # reserved for that batch: another task has it (a duplicate delivery)
        job = _job_of(sessions, batch_id)
        if job is None:
            return []
        job_id, cancelled_at = job
        if cancelled_at is not None:
            _cancel_left(sessions, job_id)
            return []
        work = _claim_next(sessions, settings, job_id, check_account=True)
    if work is not None and work.changed is not None:
        _end_for_account(sessions, settings, work, work.changed)
        return []
    return _run(_Runner(sessions, platforms, settings, publish, keep), work, slot)


class _Runner(NamedTuple):
    """What a task's run of a job's batches works with."""

    sessions: sessionmaker[Session]
    platforms: PlatformFor
    settings: Settings
    publish: Callable[[list[Message]], None] | None
    keep: Keep | None


def _run(runner: _Runner, work: _Claim | None, slot: float | None) -> list[Message]:
    """process_batch's calls, from the claimed batch `work` on."""
    sessions, settings = runner.sessions, runner.settings
    take_until = time.monotonic() + RUNNER_SECONDS
    messages: list[Message] = []
    while work is not None:
        started = time.monotonic()
        done = _remove(runner, work, take_until, slot)
        slot = None
        messages += done.messages
        if done.spare and done.next is not None:
            more = more_runners(work.batch_id, time.monotonic() - started, done.spare)
            if runner.publish is None:
                messages += more
            else:
                runner.publish(more)
        if not done.go_on:
            return messages
        if done.next is not None:
            work = done.next
        elif time.monotonic() < take_until and not stopping():
            work = _claim_next(sessions, settings, work.job_id)
        else:  # a new message goes on from here
            return [*messages, Message(REMOVE_BATCH_TASK, (work.batch_id,))]
    return messages


def _hold_for(runner: _Runner, work: _Claim) -> Callable[[float, float], bool] | None:
    """The batch's Row.hold: its deferral kept by the task's process (`runner.keep`), the
    batch leased meanwhile (its lease renewed by the heartbeat, as during a call)."""
    keep = runner.keep
    if keep is None:
        return None

    def hold_batch(delay: float, slot: float) -> bool:
        message = Message(REMOVE_BATCH_TASK, (work.batch_id,), countdown=delay, slot=slot)
        hold(_batches, work.batch_id)
        if keep(
            message,
            lambda: _at_held_slot(runner, work, slot),
            lambda: _let_go(runner.sessions, work.batch_id),
        ):
            return True
        let_go(_batches, work.batch_id)
        return False

    return hold_batch


def _at_held_slot(runner: _Runner, work: _Claim, slot: float) -> list[Message]:
    """A batch kept leased through its deferral, at its slot: its calls go on unless its job was
    cancelled meanwhile (its SKUs are then cancelled) or its account changed (they fail), or
    this process no longer holds it (its lease lapsed and the sweepers sent it again)."""
    let_go(_batches, work.batch_id)  # renewed during its calls again (attempt)
    now = datetime.now(UTC)
    params = {"batch": work.batch_id, "holder": holder(), "now": now}
    with core_transaction(runner.sessions) as connection:
        found = connection.execute(_HELD_AT_SLOT, params).one_or_none()
        if found is None or not found.ours:
            return []
        if found.cancelled_at is not None:
            connection.execute(_RELEASE, params)
            cancel_free_batches(connection, work.job_id, now)
            return []
        changed = change_of_account(runner.settings, found.account, found.account_id, found.current)
    if changed is not None:
        _end_for_account(runner.sessions, runner.settings, work, changed)
        return []
    return _run(runner, work, slot)


def _let_go(sessions: sessionmaker[Session], batch_id: int) -> None:
    """A batch kept leased through its deferral, whose deferral goes to the broker instead (its
    process stops first): its lease released, for the worker that takes the message."""
    let_go(_batches, batch_id)
    with core_transaction(sessions) as connection:
        connection.execute(_RELEASE, {"batch": batch_id, "holder": holder()})


def _checked(connection: Connection, settings: Settings, work: _Claim | None) -> _Claim | None:
    """The claim with whether its job's account was removed (and maybe its name given to
    another) since the job was made, read in the claim's transaction."""
    if work is None:
        return None
    job = connection.execute(_ACCOUNT_OF_JOB, {"job": work.job_id}).one()
    changed = change_of_account(settings, job.account, job.account_id, job.current)
    return work._replace(changed=changed)


def _end_for_account(
    sessions: sessionmaker[Session], settings: Settings, work: _Claim, changed: AccountChange
) -> None:
    """A job whose account is gone: its SKUs not yet removed fail, once, with what happened to
    the account, and nothing is sent (least of all with the credentials of an account that has
    its name now); the job is done."""
    error = PermanentApiError(changed.message, action="RemoveProduct", code=changed.code)
    with core_transaction(sessions) as connection:
        claimed: _Claim | None = work
        while claimed is not None:
            now = datetime.now(UTC)
            _fail_batch(connection, claimed, error, changed.message, now)
            claimed = _take_next(connection, settings, work.job_id, now)


def more_runners(batch_id: int, took: float, interval: float) -> list[Message]:
    """The messages of the runners a call that took `took` s starts for the slots it let pass
    (worker.ratelimit.runners.more_runner_countdowns: how many, and when)."""
    return [
        Message(REMOVE_BATCH_TASK, (batch_id,), countdown=countdown)
        for countdown in more_runner_countdowns(took, interval)
    ]


class _Done(NamedTuple):
    messages: list[Message]
    go_on: bool  # not when the rate limit said wait: the next batch would be told the same
    next: _Claim | None  # the job's next batch, claimed with this one's outcome
    again: bool = False  # SKUs of the batch were not applied: they go in a new call
    spare: float = 0.0  # the call's slot came at once: the account's interval (Turn.spare)


def _remove(runner: _Runner, work: _Claim, take_until: float, slot: float | None) -> _Done:
    """One claimed batch's calls (the first in `slot`, when one was reserved for it). Once it
    is done, and before `take_until` (monotonic), the transaction that records its outcome
    also claims the job's next free batch: one commit and one connection checkout a batch,
    not two."""
    sessions, settings = runner.sessions, runner.settings
    platform = runner.platforms(work.account)
    while True:
        attempted = _call_once(runner, platform, work, take_until, slot)
        slot = None
        done = attempted.value
        if done is None:
            return _Done(attempted.messages, not attempted.deferred, None)
        if not done.again:
            return done._replace(spare=attempted.spare)
        again = _claim(sessions, settings, work.batch_id)
        if again is None:  # taken by another task meanwhile, nothing left, or cancelled
            _cancel_left(sessions, work.job_id)
            return _Done([], True, None)
        work = again


def _call_once(
    runner: _Runner,
    platform: Platform,
    work: _Claim,
    take_until: float,
    slot: float | None,
) -> Attempted[_Done]:
    sessions, settings = runner.sessions, runner.settings
    row = Row(
        _batches,
        work.batch_id,
        work.account,
        "next_attempt_at",
        Message(REMOVE_BATCH_TASK, (work.batch_id,)),
        group=f"removal:{work.job_id}",  # each job takes its turns
        slot=slot,
        chained=True,  # the job's other runners take its next batch
        under_way=_UNDER_WAY,
        hold=_hold_for(runner, work),
    )
    return attempt(
        sessions,
        settings,
        row,
        lambda: platform.remove_skus(work.skus),
        succeeded=lambda c, outcome, now: _record_outcome(
            c, settings, work, outcome, now, take_until
        ),
        failed=lambda c, error, message, _, now: _fail_batch(c, work, error, message, now),
        retrying=lambda c, error, attempts, now: _record_retry(c, work, error, attempts, now),
    )


def _record_outcome(
    connection: Connection,
    settings: Settings,
    work: _Claim,
    outcome: RemovalOutcome,
    now: datetime,
    take_until: float,
) -> _Done:
    """Record what a call did to the batch's SKUs; SKUs it left (not applied) go again."""
    removed = set(outcome.removed)
    if removed.issuperset(work.skus):
        finished = _record_removed(connection, work, now)
    else:
        _write_skus(connection, work, now)
        for sku in outcome.removed:
            connection.execute(_REMOVE_SKU, {"job": work.job_id, "removed_sku": sku, "now": now})
        for sku, failure in outcome.failed.items():
            _fail_sku(connection, work, sku, failure.code, failure.message, now)
        # A SKU neither removed nor failed was not applied: a new call sends it again, and
        # none is sent again once recorded as removed or failed; in a cancelled job it is
        # cancelled instead.
        if any(sku not in removed and sku not in outcome.failed for sku in work.skus):
            if outcome.called:
                connection.execute(_COUNT_ATTEMPT, {"batch": work.batch_id})
            if not _cancelled(connection, work, now):
                connection.execute(_RELEASE, {"batch": work.batch_id, "holder": holder()})
                return _Done([], True, None, again=True)
        finished = connection.execute(_FINISH_BATCH, {"batch": work.batch_id}).rowcount == 1
    taken = None
    if time.monotonic() < take_until and not stopping():  # a worker shutting down takes none
        taken = _take_next(connection, settings, work.job_id, now)
    # Last: the job row's lock, which batches finishing together queue for, is held only
    # until the commit.
    if finished:
        _finish_in_job(connection, work.job_id, now)
    return _Done([], True, taken)


def _record_retry(
    connection: Connection, work: _Claim, error: TransientApiError, attempts: int, now: datetime
) -> bool:
    """A transient error: the call counts as an attempt for each SKU it carried. False when
    the job was cancelled meanwhile: its SKUs are then cancelled and the batch done, not
    retried."""
    _write_skus(connection, work, now)
    connection.execute(_COUNT_ATTEMPT, {"batch": work.batch_id})
    connection.execute(
        _LAST_ERROR, {"batch": work.batch_id, "last_error": storable_text(str(error))}
    )
    if _cancelled(connection, work, now):
        _finish_batch(connection, work.job_id, work.batch_id, now)
        return False
    log.info("batch %s: %s; retry %s", work.batch_id, error, attempts)
    return True


def _cancelled(connection: Connection, work: _Claim, now: datetime) -> bool:
    """Whether the batch's job was cancelled; if so, its SKUs still pending are cancelled (the
    batch's SKU rows are written)."""
    if connection.execute(_CANCELLED_AT, {"job": work.job_id}).scalar() is None:
        return False
    connection.execute(_CANCEL_PENDING, {"batch": work.batch_id, "now": now})
    return True


def _fail_batch(
    connection: Connection, work: _Claim, error: ApiError, message: str, now: datetime
) -> None:
    """A permanent error, or the retry ladder's end: every SKU the call carried fails."""
    _write_skus(connection, work, now)
    for sku in work.skus:
        _fail_sku(connection, work, sku, error.code, message, now)
    connection.execute(
        _LAST_ERROR, {"batch": work.batch_id, "last_error": storable_text(str(error))}
    )
    _finish_batch(connection, work.job_id, work.batch_id, now)


# The job's batches no task holds, locked (waiting for any other transaction that holds one,
# such as a sweep): a cancel must not pass over a batch that is then sent.
_FREE_OF_JOB = (
    select(_batches.c.id, _batches.c.account, _batches.c.first_position, _batches.c.skus)
    .where(_batches.c.job_id == bindparam("job"), _batches.c.state == "pending", _LEASE_FREE)
    .order_by(_batches.c.id)
    .with_for_update()
)
_CANCEL_BATCHES = (
    update(_batches)
    .where(_batches.c.id.in_(bindparam("ids", expanding=True)))
    .values(state="done", skus=None, lease_until=None, dispatched_until=None)
)
_CANCEL_ROWS = (
    update(_skus)
    .where(_skus.c.batch_id.in_(bindparam("ids", expanding=True)), _skus.c.state == "pending")
    .values(state="cancelled", updated_at=bindparam("now"))
)


def cancel_free_batches(connection: Connection, job_id: int, now: datetime) -> int:
    """Cancel the SKUs of every batch of the job that no task holds, in the caller's
    transaction, and count those batches done (the last one finishes the job and records its
    event); returns how many SKUs were cancelled. Batches held by a task finish their call,
    and what it leaves is cancelled then (_cancelled)."""
    found = connection.execute(_FREE_OF_JOB, {"job": job_id, "now": now}).all()
    if not found:
        return 0
    ids = [row.id for row in found]
    connection.execute(_CANCEL_BATCHES, {"ids": ids})
    held = [
        (
            *(row.account, job_id, row.id, row.first_position + offset),
            *(storable_text(sku), "cancelled", 0, now),
        )
        for row in found
        if row.skus is not None and row.first_position is not None
        for offset, sku in enumerate(json.loads(row.skus))
    ]
    if held:
        insert_rows(connection, _skus, _SKU_COLUMNS, held)
    cancelled = len(held) + connection.execute(_CANCEL_ROWS, {"ids": ids, "now": now}).rowcount
    # Last, as a finishing batch does: the job row's lock after the batches' (no lock cycle).
    _finish_in_job(connection, job_id, now, finished=len(ids))
    return cancelled


def _cancel_left(sessions: sessionmaker[Session], job_id: int) -> None:
    """A claim found nothing to do: if the job was cancelled, its batches no task holds (one
    whose task died, or one released after its call while the cancel came) are cancelled."""
    with core_transaction(sessions) as connection:
        if connection.execute(_CANCELLED_AT, {"job": job_id}).scalar() is not None:
            cancel_free_batches(connection, job_id, datetime.now(UTC))


def _claim(
    sessions: sessionmaker[Session],
    settings: Settings,
    batch_id: int,
    at_slot: bool = False,
    check_account: bool = False,
) -> _Claim | None:
    """Take the batch for one API call; None if it is not ours to do (done, leased, not due).
    `at_slot`: the message carries the slot the batch was deferred to (see _CLAIM);
    `check_account`: the claim says what happened to the job's account (_checked)."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        params = claim_params(batch_id, now, settings.lease_seconds)
        params["due_by"] = now + timedelta(seconds=SLOT_HOLD) if at_slot else now
        row = connection.execute(_CLAIM, params).one_or_none()
        if row is None:
            return None
        work = _pending(
            connection, batch_id, row.job_id, row.account, now, row.first_position, row.skus
        )
        return _checked(connection, settings, work) if check_account else work


def _claim_next(
    sessions: sessionmaker[Session], settings: Settings, job_id: int, check_account: bool = False
) -> _Claim | None:
    """Take the job's next free batch (pending, due, not leased); None when there is none.
    `check_account`: as _claim's."""
    with core_transaction(sessions) as connection:
        work = _take_next(connection, settings, job_id, datetime.now(UTC))
        return _checked(connection, settings, work) if check_account else work


def _take_next(
    connection: Connection, settings: Settings, job_id: int, now: datetime
) -> _Claim | None:
    """_claim_next in the caller's transaction."""
    until = now + timedelta(seconds=settings.lease_seconds)
    while True:
        params = {"job": job_id, "now": now, "until": until, "holder": holder()}
        row = connection.execute(_CLAIM_NEXT, params).one_or_none()
        if row is None:
            return None
        work = _pending(connection, row.id, job_id, row.account, now, row.first_position, row.skus)
        if work is not None:
            return work


def _pending(
    connection: Connection,
    batch_id: int,
    job_id: int,
    account: str,
    now: datetime,
    first_position: int | None,
    held: str | None,
) -> _Claim | None:
    """The claimed (pending) batch's pending SKUs: those its row holds, or else its SKU rows
    still pending."""
    if held is not None:
        return _Claim(batch_id, job_id, account, json.loads(held), first_position)
    skus = list(connection.execute(_PENDING_SKUS, {"batch": batch_id}).scalars())
    if not skus:  # every SKU already final: a crash came after the last call's commit
        _finish_batch(connection, job_id, batch_id, now)
        return None
    return _Claim(batch_id, job_id, account, skus, None)


def _record_removed(connection: Connection, work: _Claim, now: datetime) -> bool:
    """Record all the batch's pending SKUs as removed and the batch as done; True if this
    finished the batch (its job's count is then due), False if it was done already.

    A batch removed by its first call keeps its SKUs in its row, done: they read as removed,
    by one call (worker.services.documents), and no SKU rows are written: on PostgreSQL those
    rows (three index entries each) are a large share of a batch's CPU when the API answers at
    once (bench/RESULTS.md).
    """
    params = {"batch": work.batch_id}
    held = work.first_position is not None
    if held and connection.execute(_FINISH_HELD, params).rowcount == 1:
        return True
    connection.execute(_MARK_REMOVED, {"batch": work.batch_id, "now": now})
    return connection.execute(_FINISH_BATCH, params).rowcount == 1


def _write_skus(connection: Connection, work: _Claim, now: datetime) -> None:
    """Write the batch's SKU rows, pending, if it still holds them: before any outcome that is
    not a plain removal of them all (failures, attempts) is recorded on the rows."""
    first = work.first_position
    if first is None or connection.execute(_TAKE_SKUS, {"batch": work.batch_id}).rowcount != 1:
        return
    rows = [
        (
            work.account,
            work.job_id,
            work.batch_id,
            first + offset,
            storable_text(sku),
            "pending",
            0,
            now,
        )
        for offset, sku in enumerate(work.skus)
    ]
    insert_rows(connection, _skus, _SKU_COLUMNS, rows)


def _job_of(sessions: sessionmaker[Session], batch_id: int) -> tuple[int, datetime | None] | None:
    """The batch's job and when it was cancelled (None: it was not); None if no such batch."""
    with core_transaction(sessions) as connection:
        row = connection.execute(_JOB_OF, {"batch": batch_id}).one_or_none()
        return None if row is None else (row.job_id, row.cancelled_at)


def _fail_sku(
    connection: Connection,
    work: _Claim,
    sku: str,
    code: str | None,
    message: str,
    now: datetime,
) -> None:
    """Record a SKU as failed (counting the call that failed it) and log the failure once."""
    sku = storable_text(sku)  # refused by the input rule, but maybe in a job recorded before it
    code = storable_code(code)  # the API's: untrusted, and maybe wider than its column
    message = storable_text(message)
    attempts = connection.execute(
        _FAIL_SKU,
        {"job": work.job_id, "failed_sku": sku, "code": code, "detail": message, "now": now},
    ).scalar()
    if attempts is None:  # the API named a SKU this call did not send, or one already final
        return
    job_key = connection.execute(select(_jobs.c.key).where(_jobs.c.id == work.job_id)).scalar()
    subject = f"{sku} (job {job_key})"
    record_failure(connection, work.account, "removal_sku", subject, code, message, attempts, now)
    log.warning(
        "SKU %s of job %s failed: %s %s",
        sku,
        job_key,
        code or "?",
        message,
        extra={
            "account": work.account,
            "key": job_key,
            "sku": sku,
            "outcome": "failed",
            "error_code": code,
        },
    )


def _finish_batch(connection: Connection, job_id: int, batch_id: int, now: datetime) -> None:
    """Mark the batch done, once; the job's last batch to finish sets its finished_at.

    The job's count of pending batches is decremented in one UPDATE, which takes the job
    row's lock: batches finishing at the same moment serialise there, and exactly one of
    them brings the count to zero.
    """
    if connection.execute(_FINISH_BATCH, {"batch": batch_id}).rowcount == 1:
        _finish_in_job(connection, job_id, now)


def _finish_in_job(connection: Connection, job_id: int, now: datetime, finished: int = 1) -> None:
    """Count `finished` batches in their job; the one that finishes the job logs its summary
    and records its event."""
    params = {"job": job_id, "now": now, "finished": finished}
    row = connection.execute(_FINISH_IN_JOB, params).first()
    if row is not None and row.pending_batches == 0:
        counted = connection.execute(_ENDED_IN_JOB, {"job": job_id})
        ended: dict[str, int] = {state: count for state, count in counted}
        failed, cancelled = ended.get("failed", 0), ended.get("cancelled", 0)
        removed = row.total - failed - cancelled
        log.info(
            "job %s done: %d removed, %d failed, %d cancelled",
            row.key,
            removed,
            failed,
            cancelled,
            extra={
                "account": row.account,
                "key": row.key,
                "outcome": "done",
                "removed": removed,
                "failed": failed,
                "cancelled": cancelled,
            },
        )
        record_removal_event(connection, job_id)
