"""how late each worker starts the tasks of countdown messages

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

A worker writes with each heartbeat how late it started the tasks of messages sent with a
countdown since its beat before. The sweepers send a row's message again only once it is
overdue by more than that: a busy worker still holds such messages, and sending them again
would add work to the workers already behind. Null: a row written before this column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("worker_heartbeats") as batch:
        batch.add_column(sa.Column("late_seconds", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("worker_heartbeats") as batch:
        batch.drop_column("late_seconds")
