"""The JSON documents of the contract, read from the tables."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.db.models import (
    Failure,
    ImageJob,
    ImageMigration,
    Order,
    RemovalBatch,
    RemovalJob,
    RemovalSku,
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def error_code_text(code: str | None) -> str | None:
    """An error code as every output spells it: the platform's own (`E007`, `ApiCallLimit`),
    as stored; no code is None."""
    return code or None


def failure_reasons(failed: Iterable[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """Why SKUs failed, grouped, most frequent first: (reason, how many SKUs).

    The API names the SKU in each message; it is left out so that one cause is one group."""
    reasons: Counter[str] = Counter()
    for sku in failed:
        message = (sku.get("message") or "no message").replace(str(sku.get("sku")), "…")
        code = error_code_text(sku.get("error_code"))
        reasons[f"{code} {message}" if code else message] += 1
    return reasons.most_common()


def order_status_text(order: Mapping[str, Any]) -> str:
    """An order's status as the API defines it, in words.

    The API has no single order status: `statuses` lists the status of each group of the
    order's items (the documentation's own sample order lists every status there is). One
    status is the order's; several say its items differ. Open or final is the worker's
    reading of them: an order is fetched again until every item is in a final status."""
    statuses = list(order.get("statuses") or [])
    if not statuses:
        return "no status"
    if len(statuses) == 1:
        text = f"status {statuses[0]}"
    else:
        text = f"items in {len(statuses)} statuses: {', '.join(statuses)}"
    return f"{text} ({'open' if order.get('open') else 'final'})"


def removal_job(session: Session, account: str, key: str) -> dict[str, Any] | None:
    """A removal job; `removed`, `failed` and `state` are derived from its SKUs: their rows,
    and those that batches hold (pending, or removed by one call once the batch is done)."""
    job = session.scalars(
        select(RemovalJob).where(RemovalJob.account == account, RemovalJob.key == key)
    ).one_or_none()
    if job is None:
        return None
    rows = session.scalars(select(RemovalSku).where(RemovalSku.job_id == job.id))
    by_position: dict[int, dict[str, Any]] = {
        row.position: {
            "sku": row.sku,
            "state": row.state,
            "attempts": row.attempts,
            "error_code": row.error_code,
            "message": row.message,
        }
        for row in rows
    }
    holding = session.execute(
        select(RemovalBatch.first_position, RemovalBatch.skus, RemovalBatch.state).where(
            RemovalBatch.job_id == job.id, RemovalBatch.skus.is_not(None)
        )
    )
    for first, held, batch_state in holding:
        assert first is not None and held is not None  # written together (create_job)
        done = batch_state == "done"
        for offset, sku in enumerate(json.loads(held)):
            by_position[first + offset] = {
                "sku": sku,
                "state": "removed" if done else "pending",
                "attempts": 1 if done else 0,
                "error_code": None,
                "message": None,
            }
    skus = [by_position[position] for position in sorted(by_position)]
    counts = {"pending": 0, "removed": 0, "failed": 0, "cancelled": 0}
    attempted = False
    for sku in skus:
        counts[sku["state"]] += 1
        attempted = attempted or sku["attempts"] > 0
    return {**_job_head(job, counts, attempted), "skus": skus}


def _job_head(job: RemovalJob, counts: dict[str, int], attempted: bool) -> dict[str, Any]:
    """The job document's fields but its SKUs, from its SKUs' counts by state."""
    if job.finished_at is not None:
        state = "done"
    elif attempted or counts["removed"] or counts["failed"]:
        state = "running"
    else:
        state = "pending"
    return {
        "account": job.account,
        "key": job.key,
        "state": state,
        "total": job.total,
        "removed": counts["removed"],
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
        "pending": counts["pending"],
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
    }


def removal_event_document(session: Session, job: RemovalJob, most_failed: int) -> dict[str, Any]:
    """The job document without `skus`, plus its first `most_failed` failed SKUs (in the
    caller's order) and `failed_skus_truncated`: the counts are summed by the database and the
    SKUs held by batches are not read, so a job of any size makes a bounded event."""
    counts = {"pending": 0, "removed": 0, "failed": 0, "cancelled": 0}
    attempted = False
    for state, count, tried in session.execute(
        select(RemovalSku.state, func.count(), func.max(RemovalSku.attempts))
        .where(RemovalSku.job_id == job.id)
        .group_by(RemovalSku.state)
    ):
        counts[state] += count
        attempted = attempted or (tried or 0) > 0
    # SKUs a batch holds: removed once it is done, else pending; a batch's size is the
    # distance to the next batch's first position (as removal_progress counts them).
    batches = session.execute(
        select(
            RemovalBatch.first_position,
            RemovalBatch.state,
            RemovalBatch.skus.is_not(None).label("held"),
        )
        .where(RemovalBatch.job_id == job.id, RemovalBatch.first_position.is_not(None))
        .order_by(RemovalBatch.first_position)
    ).all()
    firsts = [batch.first_position or 0 for batch in batches]
    for batch, first, end in zip(batches, firsts, [*firsts[1:], job.total], strict=True):
        if batch.held:
            done = batch.state == "done"
            counts["removed" if done else "pending"] += end - first
            attempted = attempted or done
    failed = session.execute(
        select(RemovalSku.sku, RemovalSku.error_code, RemovalSku.message)
        .where(RemovalSku.job_id == job.id, RemovalSku.state == "failed")
        .order_by(RemovalSku.position)
        .limit(most_failed)
    ).all()
    return {
        **_job_head(job, counts, attempted),
        "failed_skus": [
            {"sku": sku, "error_code": code, "message": message} for sku, code, message in failed
        ],
        "failed_skus_truncated": counts["failed"] > most_failed,
    }


def removal_progress(session: Session, account: str, key: str) -> tuple[int, int, bool] | None:
    """(final SKUs, total, done) without loading every SKU: for progress bars."""
    job = session.scalars(
        select(RemovalJob).where(RemovalJob.account == account, RemovalJob.key == key)
    ).one_or_none()
    if job is None:
        return None
    final = session.scalar(
        select(func.count())
        .select_from(RemovalSku)
        .where(RemovalSku.job_id == job.id, RemovalSku.state != "pending")
    )
    # Done batches that hold their SKUs removed them all; a batch's size is the distance to
    # the next batch's first position (its SKUs are not read).
    batches = session.execute(
        select(
            RemovalBatch.first_position,
            RemovalBatch.state,
            RemovalBatch.skus.is_not(None).label("held"),
        )
        .where(RemovalBatch.job_id == job.id, RemovalBatch.first_position.is_not(None))
        .order_by(RemovalBatch.first_position)
    ).all()
    firsts = [batch.first_position or 0 for batch in batches]
    ends = [*firsts[1:], job.total]
    held_removed = sum(
        end - first
        for batch, first, end in zip(batches, firsts, ends, strict=True)
        if batch.state == "done" and batch.held
    )
    return (final or 0) + held_removed, job.total, job.finished_at is not None


def order(session: Session, account: str, order_id: int) -> dict[str, Any] | None:
    row = session.scalars(
        select(Order).where(Order.account == account, Order.order_id == order_id)
    ).one_or_none()
    return None if row is None else order_document(row)


def order_document(row: Order) -> dict[str, Any]:
    document = {
        "account": row.account,
        "order_id": row.order_id,
        "state": row.state,
        "order_number": row.order_number,
        "customer_first_name": row.customer_first_name,
        "customer_last_name": row.customer_last_name,
        "payment_method": row.payment_method,
        "price": row.price,
        "gift_option": row.gift_option,
        "items_count": row.items_count,
        "statuses": list(row.statuses),
        "created_at": _iso(row.order_created_at),
        "updated_at": _iso(row.order_updated_at),
        "address_billing": row.address_billing,
        "address_shipping": row.address_shipping,
        "extra_attributes": row.extra_attributes,
        "error_code": row.error_code,
        "message": row.message,
        "fetched_at": _iso(row.fetched_at),
        "attempts": row.attempts,
        "refresh_pending": row.next_attempt_at is not None,
        "open": row.is_open,  # some item not yet in a final status: refreshed by beat
    }
    items = (row.raw or {}).get("items")
    if isinstance(items, list):  # an Open Platform order: /order/items/get's list (decision L7)
        document["items"] = items
    return document


def image_job(session: Session, account: str, request_id: str) -> dict[str, Any] | None:
    row = session.scalars(
        select(ImageJob).where(ImageJob.account == account, ImageJob.request_id == request_id)
    ).one_or_none()
    return None if row is None else image_job_document(row)


def image_jobs(
    session: Session, account: str, key: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    query = select(ImageJob).where(ImageJob.account == account)
    if key is not None:
        query = query.join(ImageMigration, ImageJob.migration_id == ImageMigration.id).where(
            ImageMigration.key == key
        )
    if state is not None:
        query = query.where(ImageJob.state == state)
    query = query.order_by(ImageJob.created_at.desc(), ImageJob.id.desc())
    return [image_job_document(row) for row in session.scalars(query)]


def image_job_document(row: ImageJob) -> dict[str, Any]:
    return {
        "account": row.account,
        "request_id": row.request_id,
        "action": row.action,
        "state": row.state,
        "polls": row.polls,
        "created_at": _iso(row.created_at),
        "finished_at": _iso(row.finished_at),
        "images": list(row.images),
        "errors": list(row.errors),
        "error_code": row.error_code,
        "message": row.message,
        "urls": list(row.urls),
        "next_poll_at": _iso(row.next_poll_at) if row.state == "pending" else None,
        "deadline_at": _iso(row.deadline_at),
    }


def failures(session: Session, account: str, limit: int = 1000) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Failure)
        .where(Failure.account == account)
        .order_by(Failure.at.desc(), Failure.id.desc())
        .limit(limit)
    )
    return [
        {
            "account": f.account,
            "at": _iso(f.at),
            "kind": f.kind,
            "subject": f.subject,
            "error_code": f.error_code,
            "message": f.message,
            "attempts": f.attempts,
        }
        for f in rows
    ]
