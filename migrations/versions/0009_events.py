"""events and their deliveries; callbacks on work; a removal job's SKU set digest

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

An event is written in the transaction that makes work final (the outbox) and delivered
after commit to each target (a callback task, each webhook URL), each delivery with its own
attempts. The rows that start work keep the caller's `callback` and `callback_queue`.
A removal job keeps the digest of its sorted SKU set, so that a key sent again with another
set is refused without reading its SKUs; jobs recorded before have none until first compared.
A job cancelled by an operator has `cancelled_at`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLBACK_TABLES = ("removal_jobs", "image_jobs", "orders")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("callback", sa.String(length=255), nullable=True),
        sa.Column("callback_queue", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_due", "events", ["state", "next_attempt_at"])
    op.create_index("ix_events_at", "events", ["at"])
    op.create_table(
        "event_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_deliveries_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_deliveries")),
        sa.UniqueConstraint("event_id", "target", name=op.f("uq_event_deliveries_event_id")),
    )
    # Plain ADD COLUMN (both databases have it): a batch copy of removal_jobs on SQLite
    # would drop the old table, and with foreign keys on that deletes its batches.
    for table in CALLBACK_TABLES:
        op.add_column(table, sa.Column("callback", sa.String(length=255), nullable=True))
        op.add_column(table, sa.Column("callback_queue", sa.String(length=255), nullable=True))
    op.add_column("removal_jobs", sa.Column("sku_set_digest", sa.String(length=64), nullable=True))
    op.add_column(
        "removal_jobs", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+), for the reason above.
    for table, column in [
        ("removal_jobs", "cancelled_at"),
        ("removal_jobs", "sku_set_digest"),
        *(
            (table, column)
            for table in CALLBACK_TABLES
            for column in ("callback_queue", "callback")
        ),
    ]:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.drop_table("event_deliveries")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_index("ix_events_due", table_name="events")
    op.drop_table("events")
