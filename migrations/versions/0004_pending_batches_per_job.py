"""pending batches per job

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("removal_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pending_batches", sa.Integer(), server_default="0", nullable=False)
        )
    # Jobs recorded before this revision: count their batches still to do.
    op.execute(
        "UPDATE removal_jobs SET pending_batches = (SELECT count(*) FROM removal_batches"
        " WHERE removal_batches.job_id = removal_jobs.id AND removal_batches.state = 'pending')"
    )


def downgrade() -> None:
    with op.batch_alter_table("removal_jobs", schema=None) as batch_op:
        batch_op.drop_column("pending_batches")
