"""Claiming work rows: a conditional UPDATE that takes a lease, so two workers never do the same
row and a duplicate delivery finds nothing to do."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, or_, update

from worker.db.models import Base, table_of


def claim_statement(model: type[Base], *conditions: ColumnElement[bool]) -> Update:
    """The UPDATE that leases one row of `model` if it is free and meets `conditions`.

    Built once per caller (a module constant): it runs on every task, and building SQLAlchemy
    expressions costs more CPU than running them. Execute it with `claim_params`; conditions
    may use ``bindparam("now")``. Add ``.returning(...)`` to read the row in the same trip.
    """
    table = table_of(model)
    return (
        update(table)
        .where(
            table.c.id == bindparam("row"),
            or_(table.c.lease_until.is_(None), table.c.lease_until < bindparam("now")),
            *conditions,
        )
        .values(lease_until=bindparam("until"))
    )


def claim_params(row_id: int, now: datetime, lease_seconds: float) -> dict[str, Any]:
    """The parameters of a `claim_statement`: row `row_id`, leased for `lease_seconds` from now."""
    return {"row": row_id, "now": now, "until": now + timedelta(seconds=lease_seconds)}
