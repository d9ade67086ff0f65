"""Claiming work rows: a conditional UPDATE that takes a lease, so two workers never do the same
row and a duplicate delivery finds nothing to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, or_, update
from sqlalchemy.orm import InstrumentedAttribute, Session


def lease_free(model: Any, now: datetime) -> ColumnElement[bool]:
    """No task holds the row: never leased, or its lease has lapsed (a worker died)."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


def defer(
    session: Session,
    model: Any,
    row_id: int,
    due: InstrumentedAttribute[Any],
    wait: float,
    redispatch_after: float,
) -> None:
    """Give the row back, due again in `wait` s (the message sent for it has that countdown)."""
    when = datetime.now(UTC) + timedelta(seconds=wait)
    session.execute(
        update(model)
        .where(model.id == row_id)
        .values(
            {
                due: when,
                model.lease_until: None,
                model.dispatched_until: when + timedelta(seconds=redispatch_after),
            }
        )
    )


def claim(
    session: Session,
    model: Any,
    row_id: int,
    now: datetime,
    lease_seconds: float,
    *conditions: ColumnElement[bool],
) -> bool:
    """Lease row `row_id` of `model` if it is free and meets `conditions`; True if we got it."""
    result = session.execute(
        update(model)
        .where(model.id == row_id, lease_free(model, now), *conditions)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1
