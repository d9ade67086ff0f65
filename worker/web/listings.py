"""What the console's pages list: every account's work, newest first, filtered by account and
state, a page at a time. Read only; each number comes from the same rows (and, for a removal
job, from the same function) as the command line's documents."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, text
from sqlalchemy.orm import Session

from worker.accounts.store import EXPIRING_WITHIN, environment_account
from worker.db.models import Account as AccountRow
from worker.db.models import (
    Event,
    Failure,
    ImageJob,
    Order,
    RemovalBatch,
    RemovalJob,
    RemovalSku,
)
from worker.outbox.events import list_events
from worker.services import documents
from worker.settings import Settings

PAGE_SIZE = 50
JOB_STATES = ("pending", "running", "done")
SKU_STATES = ("pending", "removed", "failed", "cancelled")
ORDER_STATES = ("pending", "fetched", "failed")
IMAGE_STATES = ("pending", "succeeded", "partial", "failed", "expired", "rejected")
EVENT_STATES = ("pending", "delivered", "dead")
FAILURE_KINDS = ("removal_sku", "order", "image_job", "account")
ACCOUNT_STATES = ("ready", "needs_authorization", "expiring")


STATEMENT_TIMEOUT_MS = 5000


def read_only(session: Session) -> None:
    """Begin the session's transaction read only and, on PostgreSQL, with a statement time
    limit (a slow read gives up rather than piles up) and no JIT compilation (the plans of
    these counts cost enough on paper to be compiled, which takes longer than running them)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TRANSACTION READ ONLY"))
        session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        session.execute(text("SET LOCAL jit = off"))


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, its number (from 1) and whether another follows."""

    rows: list[dict[str, Any]]
    number: int
    more: bool


def _page(rows: list[Any], number: int, size: int | None = PAGE_SIZE) -> tuple[list[Any], bool]:
    if size is None:
        return rows, False
    return rows[:size], len(rows) > size


def _window(query: Any, number: int, size: int | None = PAGE_SIZE) -> Any:
    """One row more than a page, to know whether another page follows; no size: every row."""
    if size is None:
        return query
    return query.limit(size + 1).offset((number - 1) * size)


# --- removal jobs --------------------------------------------------------------------------


def job_state() -> ColumnElement[str]:
    """A removal job's state in SQL, as the job document derives it (documents._job_head):
    done once finished, running once any SKU was tried, else pending."""
    tried = exists().where(
        RemovalSku.job_id == RemovalJob.id,
        or_(RemovalSku.attempts > 0, RemovalSku.state.in_(("removed", "failed"))),
    )
    held_done = exists().where(
        RemovalBatch.job_id == RemovalJob.id,
        RemovalBatch.state == "done",
        RemovalBatch.skus.is_not(None),
    )
    return case(
        (RemovalJob.finished_at.is_not(None), "done"),
        (or_(tried, held_done), "running"),
        else_="pending",
    )


def removal_jobs(
    session: Session,
    account: str | None,
    state: str | None,
    number: int,
    size: int | None = PAGE_SIZE,
) -> Page:
    """Removal jobs newest first, each the job document's head (counts without SKUs) and its
    first failed SKUs, `size` a page (None: one page of them all). `lazada-worker jobs` lists
    the same rows."""
    state_of = job_state().label("state")
    query = select(RemovalJob, state_of)
    if account is not None:
        query = query.where(RemovalJob.account == account)
    if state == "done":
        query = query.where(RemovalJob.finished_at.is_not(None))
    elif state is not None:
        # Pending and running jobs are unfinished ones, the few ix_removal_jobs_unfinished holds.
        query = query.where(RemovalJob.finished_at.is_(None), state_of == state)
    query = query.order_by(RemovalJob.created_at.desc(), RemovalJob.id.desc())
    found, more = _page(list(session.execute(_window(query, number, size))), number, size)
    rows = []
    for job, _ in found:
        head = documents.removal_event_document(session, job, 3)
        rows.append(head)
    return Page(rows, number, more)


@dataclass(frozen=True)
class JobPage:
    """A removal job's page: its head (the document's counts, without SKUs), why its SKUs
    failed, and one page of its SKUs."""

    job: dict[str, Any]
    reasons: list[tuple[str, int]]
    skus: list[dict[str, Any]]
    more: bool


def job_page(
    session: Session, account: str, key: str, state: str | None, number: int
) -> JobPage | None:
    """A removal job and a page of its SKUs, failed ones first (in the caller's order), then
    the rest (in the same order), or only those in `state`: read a page at a time, never the
    whole job (None: no such job)."""
    job = session.scalars(
        select(RemovalJob).where(RemovalJob.account == account, RemovalJob.key == key)
    ).one_or_none()
    if job is None:
        return None
    head = documents.removal_event_document(session, job, 0)
    del head["failed_skus"], head["failed_skus_truncated"]
    failed = [
        {"sku": sku, "error_code": code, "message": message}
        for sku, code, message in session.execute(
            select(RemovalSku.sku, RemovalSku.error_code, RemovalSku.message).where(
                RemovalSku.job_id == job.id, RemovalSku.state == "failed"
            )
        )
    ]
    start, wanted = (number - 1) * PAGE_SIZE, PAGE_SIZE + 1  # one more: another page follows?
    found: list[dict[str, Any]] = []
    if state in (None, "failed"):
        found = _sku_rows(session, job.id, ("failed",), start, wanted)
        start = max(start - head["failed"], 0)
    if state != "failed" and len(found) < wanted:
        others = ("pending", "removed", "cancelled") if state is None else (state,)
        found += _skus_in_order(session, job, others, start, wanted - len(found))
    return JobPage(
        head, documents.failure_reasons(failed), found[:PAGE_SIZE], len(found) > PAGE_SIZE
    )


def _sku_document(
    position: int, sku: str, state: str, attempts: int, code: Any, message: Any
) -> dict[str, Any]:
    return {
        "sku": sku,
        "state": state,
        "attempts": attempts,
        "error_code": code,
        "message": message,
    }


_SKU_COLUMNS = (
    RemovalSku.position,
    RemovalSku.sku,
    RemovalSku.state,
    RemovalSku.attempts,
    RemovalSku.error_code,
    RemovalSku.message,
)


def _sku_rows(
    session: Session,
    job_id: int,
    states: tuple[str, ...],
    start: int,
    count: int,
    batches: list[int] | None = None,
) -> list[dict[str, Any]]:
    """SKU rows of the job in `states`, in the caller's order, `count` from `start`."""
    query = select(*_SKU_COLUMNS).where(RemovalSku.job_id == job_id, RemovalSku.state.in_(states))
    if batches is not None:
        query = query.where(RemovalSku.batch_id.in_(batches))
    query = query.order_by(RemovalSku.position).offset(start).limit(count)
    return [_sku_document(*row) for row in session.execute(query)]


def _skus_in_order(
    session: Session, job: RemovalJob, states: tuple[str, ...], start: int, count: int
) -> list[dict[str, Any]]:
    """The job's SKUs in `states` (rows, and those batches hold), in the caller's order,
    `count` from `start`. Each batch holds a range of positions: its SKUs in `states` are
    counted per batch (held ones by their size, the others' rows by the batch index), and
    only the batches the window falls in are read."""
    batches = session.execute(
        select(
            RemovalBatch.id,
            RemovalBatch.first_position,
            RemovalBatch.state,
            RemovalBatch.skus.is_not(None).label("held"),
        )
        .where(RemovalBatch.job_id == job.id)
        .order_by(RemovalBatch.first_position, RemovalBatch.id)
    ).all()
    if any(batch.first_position is None for batch in batches):
        # Recorded before batches held their SKUs: every SKU is a row.
        return _sku_rows(session, job.id, states, start, count)
    rows_in = dict(
        session.execute(
            select(RemovalSku.batch_id, func.count())
            .where(RemovalSku.job_id == job.id, RemovalSku.state.in_(states))
            .group_by(RemovalSku.batch_id)
        ).all()
    )
    firsts = [batch.first_position or 0 for batch in batches]
    ends = [*firsts[1:], job.total]
    found: list[dict[str, Any]] = []
    before = 0  # SKUs in `states` in the batches before this one
    for batch, first, end in zip(batches, firsts, ends, strict=True):
        if len(found) >= count:
            break
        held_state = "removed" if batch.state == "done" else "pending"
        if batch.held:
            size = end - first if held_state in states else 0
        else:
            size = rows_in.get(batch.id, 0)
        if before + size > start and size:
            skip = max(start - before, 0)
            take = count - len(found)
            if batch.held:
                held = session.scalar(select(RemovalBatch.skus).where(RemovalBatch.id == batch.id))
                for offset, sku in list(enumerate(json.loads(held or "[]")))[skip : skip + take]:
                    done = held_state == "removed"
                    found.append(
                        _sku_document(first + offset, sku, held_state, int(done), None, None)
                    )
            else:
                found += _sku_rows(session, job.id, states, skip, take, [batch.id])
        before += size
    return found


def removal_job_counts(session: Session) -> dict[tuple[str, str], int]:
    """(account, state) -> removal jobs."""
    state_of = job_state().label("state")
    rows = session.execute(
        select(RemovalJob.account, state_of, func.count()).group_by(RemovalJob.account, state_of)
    )
    return {(account, state): count for account, state, count in rows}


def removal_sku_counts(session: Session) -> dict[tuple[str, str], int]:
    """(account, state) -> SKUs, as the job documents count them, without reading the removed
    ones: every position of a job is a SKU row or in a batch that holds its SKUs (pending while
    the batch is, removed once it is done), so the removed SKUs are each job's total less its
    rows not removed (ix_removal_skus_unremoved) and the SKUs its pending batches hold (only
    unfinished jobs have pending batches; a held batch's size is the distance to the next
    batch's first position, or to the total)."""
    counts: dict[tuple[str, str], int] = {}
    for account, state, count in session.execute(
        select(RemovalSku.account, RemovalSku.state, func.count())
        .where(RemovalSku.state != "removed")
        .group_by(RemovalSku.account, RemovalSku.state)
    ):
        counts[(account, state)] = count
    following = (
        func.lead(RemovalBatch.first_position)
        .over(partition_by=RemovalBatch.job_id, order_by=RemovalBatch.first_position)
        .label("following")
    )
    sized = (
        select(
            RemovalBatch.account.label("account"),
            RemovalBatch.state.label("state"),
            RemovalBatch.first_position.label("first"),
            RemovalBatch.skus.is_not(None).label("held"),
            following,
            RemovalJob.total.label("total"),
        )
        .join(RemovalJob, RemovalJob.id == RemovalBatch.job_id)
        .where(RemovalJob.finished_at.is_(None), RemovalBatch.first_position.is_not(None))
        .subquery()
    )
    size = func.coalesce(sized.c.following, sized.c.total) - sized.c.first
    for account, count in session.execute(
        select(sized.c.account, func.sum(size))
        .where(sized.c.held, sized.c.state == "pending")
        .group_by(sized.c.account)
    ):
        counts[(account, "pending")] = counts.get((account, "pending"), 0) + int(count or 0)
    not_removed: dict[str, int] = {}
    for (account, _), count in counts.items():
        not_removed[account] = not_removed.get(account, 0) + count
    for account, total in session.execute(
        select(RemovalJob.account, func.sum(RemovalJob.total)).group_by(RemovalJob.account)
    ):
        removed = int(total or 0) - not_removed.get(account, 0)
        if removed:
            counts[(account, "removed")] = removed
    return counts


# --- orders, image jobs, failures, events ---------------------------------------------------


def orders(session: Session, account: str | None, state: str | None, number: int) -> Page:
    query = select(Order)
    if account is not None:
        query = query.where(Order.account == account)
    if state is not None:
        query = query.where(Order.state == state)
    query = query.order_by(Order.updated_at.desc(), Order.id.desc())
    found, more = _page(list(session.scalars(_window(query, number))), number)
    return Page([documents.order_document(row) for row in found], number, more)


def image_jobs(session: Session, account: str | None, state: str | None, number: int) -> Page:
    query = select(ImageJob)
    if account is not None:
        query = query.where(ImageJob.account == account)
    if state is not None:
        query = query.where(ImageJob.state == state)
    query = query.order_by(ImageJob.created_at.desc(), ImageJob.id.desc())
    found, more = _page(list(session.scalars(_window(query, number))), number)
    return Page([documents.image_job_document(row) for row in found], number, more)


def failures(session: Session, account: str | None, kind: str | None, number: int) -> Page:
    query = select(Failure)
    if account is not None:
        query = query.where(Failure.account == account)
    if kind is not None:
        query = query.where(Failure.kind == kind)
    query = query.order_by(Failure.at.desc(), Failure.id.desc())
    found, more = _page(list(session.scalars(_window(query, number))), number)
    return Page(
        [
            {
                "account": f.account,
                "at": f.at.isoformat(),
                "kind": f.kind,
                "subject": f.subject,
                "error_code": f.error_code,
                "message": f.message,
                "attempts": f.attempts,
            }
            for f in found
        ],
        number,
        more,
    )


def events(session: Session, account: str | None, state: str | None, number: int) -> Page:
    """Events newest first with their deliveries, as `lazada-worker events --json` lists them."""
    rows = list_events(
        session, account, state=state, limit=PAGE_SIZE + 1, offset=(number - 1) * PAGE_SIZE
    )
    found, more = _page(rows, number)
    return Page(found, number, more)


def grouped(session: Session, model: Any) -> dict[tuple[str, str], int]:
    """(account, state) -> rows of a work table with those columns."""
    rows = session.execute(
        select(model.account, model.state, func.count()).group_by(model.account, model.state)
    )
    return {(account, state): count for account, state, count in rows}


def event_counts(session: Session) -> dict[tuple[str, str], int]:
    return grouped(session, Event)


def failure_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Failure.account, func.count()).group_by(Failure.account))
    return {account: count for account, count in rows}


def due_work(session: Session, now: datetime | None = None) -> dict[str, tuple[int, float | None]]:
    """kind -> (rows due and not held by a task, seconds the oldest of them has waited)."""
    now = now or datetime.now(UTC)
    kinds: dict[str, tuple[Any, ColumnElement[bool]]] = {
        "removal": (
            RemovalBatch.next_attempt_at,
            and_(
                RemovalBatch.state == "pending",
                or_(RemovalBatch.lease_until.is_(None), RemovalBatch.lease_until < now),
            ),
        ),
        "order": (
            Order.next_attempt_at,
            or_(Order.lease_until.is_(None), Order.lease_until < now),
        ),
        "image_job": (
            ImageJob.next_poll_at,
            and_(
                ImageJob.state == "pending",
                or_(ImageJob.lease_until.is_(None), ImageJob.lease_until < now),
            ),
        ),
        "event": (
            Event.next_attempt_at,
            and_(
                Event.state == "pending",
                or_(Event.lease_until.is_(None), Event.lease_until < now),
            ),
        ),
    }
    due: dict[str, tuple[int, float | None]] = {}
    for kind, (column, free) in kinds.items():
        count, oldest = session.execute(
            select(func.count(), func.min(column)).where(column <= now, free)
        ).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        due[kind] = (count, (now - oldest).total_seconds() if oldest is not None else None)
    return due


def account_states(
    session: Session, settings: Settings, now: datetime | None = None
) -> list[tuple[str, str]]:
    """(name, state) of every account, as the Account document states it, without decrypting
    any secret: the environment's first, then the stored ones by name."""
    now = now or datetime.now(UTC)
    found = [(account.name, "ready") for account in filter(None, [environment_account(settings)])]
    for name, state, refresh_expires_at in session.execute(
        select(AccountRow.name, AccountRow.state, AccountRow.refresh_expires_at).order_by(
            AccountRow.name
        )
    ):
        if (
            state == "ready"
            and refresh_expires_at is not None
            and refresh_expires_at - now < EXPIRING_WITHIN
        ):
            state = "expiring"
        found.append((name, state))
    return found
