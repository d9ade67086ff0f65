"""workers' heartbeats, and the worker holding each lease

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

A lease names the worker process that took it (`lease_holder`; an account's token refresh
lease, `refreshing_by`); each worker process (and beat)
writes its row of `worker_heartbeats` every few seconds, by the database's clock. A row leased
by a worker whose heartbeat stopped is taken again at once, not when its lease ends.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEASED = ("removal_batches", "orders", "image_jobs", "events")


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sweep_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_heartbeats")),
    )
    op.create_index(op.f("ix_worker_heartbeats_beat_at"), "worker_heartbeats", ["beat_at"])
    for table in LEASED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("lease_holder", sa.String(255)))
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refreshing_by", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("refreshing_by")
    for table in LEASED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("lease_holder")
    op.drop_index(op.f("ix_worker_heartbeats_beat_at"), table_name="worker_heartbeats")
    op.drop_table("worker_heartbeats")
