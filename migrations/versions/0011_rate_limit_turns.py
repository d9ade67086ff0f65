"""each group's reserved call slots, for fair shares of an account's rate limit

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

A group (a removal job, order fetches, image submits, image polls) holds at most a few of an
account's reserved slots ahead (worker.ratelimit): `rate_limits.turns` keeps them when the
slots live in the database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("turns", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.drop_column("turns")
