"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "api_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_calls")),
    )
    with op.batch_alter_table("api_calls", schema=None) as batch_op:
        batch_op.create_index("ix_api_calls_at", ["at"], unique=False)

    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failures")),
    )
    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.create_index("ix_failures_at", ["at"], unique=False)

    op.create_table(
        "image_migrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_migrations")),
        sa.UniqueConstraint("account", "key", name=op.f("uq_image_migrations_account")),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("order_number", sa.String(length=64), nullable=True),
        sa.Column("customer_first_name", sa.Text(), nullable=True),
        sa.Column("customer_last_name", sa.Text(), nullable=True),
        sa.Column("payment_method", sa.String(length=255), nullable=True),
        sa.Column("price", sa.String(length=32), nullable=True),
        sa.Column("gift_option", sa.Boolean(), nullable=True),
        sa.Column("items_count", sa.Integer(), nullable=True),
        sa.Column("statuses", sa.JSON(), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("order_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("address_billing", sa.JSON(), nullable=False),
        sa.Column("address_shipping", sa.JSON(), nullable=False),
        sa.Column("extra_attributes", sa.JSON(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_request_id", sa.String(length=255), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("account", "order_id", name=op.f("uq_orders_account")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_due", ["next_attempt_at"], unique=False)
        batch_op.create_index("ix_orders_open", ["is_open", "fetched_at"], unique=False)

    op.create_table(
        "removal_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_jobs")),
        sa.UniqueConstraint("account", "key", name=op.f("uq_removal_jobs_account")),
    )
    op.create_table(
        "image_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("migration_id", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("urls", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["image_migrations.id"],
            name=op.f("fk_image_jobs_migration_id_image_migrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_jobs")),
        sa.UniqueConstraint("account", "request_id", name=op.f("uq_image_jobs_account")),
    )
    with op.batch_alter_table("image_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_image_jobs_due", ["state", "next_poll_at"], unique=False)

    op.create_table(
        "removal_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["removal_jobs.id"],
            name=op.f("fk_removal_batches_job_id_removal_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_batches")),
    )
    with op.batch_alter_table("removal_batches", schema=None) as batch_op:
        batch_op.create_index("ix_removal_batches_due", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "removal_skus",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["removal_batches.id"],
            name=op.f("fk_removal_skus_batch_id_removal_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["removal_jobs.id"],
            name=op.f("fk_removal_skus_job_id_removal_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_skus")),
        sa.UniqueConstraint("job_id", "sku", name=op.f("uq_removal_skus_job_id")),
    )
    with op.batch_alter_table("removal_skus", schema=None) as batch_op:
        batch_op.create_index("ix_removal_skus_batch", ["batch_id", "state"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("removal_skus", schema=None) as batch_op:
        batch_op.drop_index("ix_removal_skus_batch")

    op.drop_table("removal_skus")
    with op.batch_alter_table("removal_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_removal_batches_due")

    op.drop_table("removal_batches")
    with op.batch_alter_table("image_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_image_jobs_due")

    op.drop_table("image_jobs")
    op.drop_table("removal_jobs")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_open")
        batch_op.drop_index("ix_orders_due")

    op.drop_table("orders")
    op.drop_table("image_migrations")
    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.drop_index("ix_failures_at")

    op.drop_table("failures")
    with op.batch_alter_table("api_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_api_calls_at")

    op.drop_table("api_calls")
