"""the status a crowded second is read under

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

A second with more orders than the API's offset cap reaches is read once per status value
(decision L11): the row keeps the status being read, so that a step resumes there. Null: the
second is read whole, with no status filter.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("order_syncs") as batch:
        batch.add_column(sa.Column("second_status", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_syncs") as batch:
        batch.drop_column("second_status")
