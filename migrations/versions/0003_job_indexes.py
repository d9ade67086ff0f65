"""job indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("removal_batches", schema=None) as batch_op:
        batch_op.create_index("ix_removal_batches_job", ["job_id", "state"], unique=False)

    with op.batch_alter_table("removal_skus", schema=None) as batch_op:
        batch_op.create_index("ix_removal_skus_job", ["job_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("removal_skus", schema=None) as batch_op:
        batch_op.drop_index("ix_removal_skus_job")

    with op.batch_alter_table("removal_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_removal_batches_job")
