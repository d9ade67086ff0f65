"""a lease for the one worker refreshing an account's tokens

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Open Platform refresh tokens rotate (lazop-api.md L3): two workers refreshing together could
lock the account out, so the one refreshing holds `accounts.refreshing_until`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refreshing_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("refreshing_until")
