"""order sync

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

One row per account for its order sync (worker.services.order_sync): the sync point, and the
position of the run under way, so that a sync resumes where it was after any crash.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _moment(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "order_syncs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        _moment("synced_through"),
        _moment("synced_at"),
        _moment("run_until"),
        sa.Column("follow", sa.Boolean(), nullable=False),
        _moment("cursor_at"),
        sa.Column("cursor_ids", sa.JSON(), nullable=False),
        sa.Column("in_second", sa.Boolean(), nullable=False),
        sa.Column("second_offset", sa.Integer(), nullable=False),
        sa.Column("second_found", sa.Boolean(), nullable=False),
        sa.Column("pending", sa.JSON(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("run_new", sa.Integer(), nullable=False),
        sa.Column("run_changed", sa.Integer(), nullable=False),
        sa.Column("last_new", sa.Integer(), nullable=False),
        sa.Column("last_changed", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _moment("next_attempt_at"),
        _moment("lease_until"),
        sa.Column("lease_holder", sa.String(length=255), nullable=True),
        _moment("dispatched_until"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_syncs")),
        sa.UniqueConstraint("account", name=op.f("uq_order_syncs_account")),
    )
    op.create_index("ix_order_syncs_due", "order_syncs", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_order_syncs_due", table_name="order_syncs")
    op.drop_table("order_syncs")
