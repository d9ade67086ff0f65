"""a batch holds its SKUs while it has no SKU rows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

A job's SKU rows are no longer written when the job is recorded: each batch keeps its SKUs as
a JSON list, pending while the batch is pending and removed by one call once it is done; rows
are written only for outcomes other than that (worker/services/removal.py). Recording a
20,000-SKU job on PostgreSQL took ~90 ms, 70 of them the SKU rows, all before the first API
call. Batches recorded before this revision already have their rows: NULL columns.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("removal_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_position", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("skus", sa.Text(), nullable=True))


def downgrade() -> None:
    # Before the columns go, the SKUs they hold become rows, as the older code expects.
    connection = op.get_bind()
    batches = connection.execute(
        sa.text(
            "SELECT id, account, job_id, state, first_position, skus FROM removal_batches"
            " WHERE skus IS NOT NULL"
        )
    ).all()
    now = datetime.now(UTC)
    rows = [
        {
            "account": account,
            "job_id": job_id,
            "batch_id": batch_id,
            "position": first + offset,
            "sku": sku,
            "state": "removed" if state == "done" else "pending",
            "attempts": 1 if state == "done" else 0,
            "now": now,
        }
        for batch_id, account, job_id, state, first, skus in batches
        for offset, sku in enumerate(json.loads(skus))
    ]
    if rows:
        connection.execute(
            sa.text(
                "INSERT INTO removal_skus (account, job_id, batch_id, position, sku, state,"
                " attempts, updated_at) VALUES (:account, :job_id, :batch_id, :position, :sku,"
                " :state, :attempts, :now)"
            ),
            rows,
        )
    with op.batch_alter_table("removal_batches", schema=None) as batch_op:
        batch_op.drop_column("skus")
        batch_op.drop_column("first_position")
