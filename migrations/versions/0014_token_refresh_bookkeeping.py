"""when an account's token pair was stored, and a refresh whose outcome is not settled

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

`tokens_stored_at` is set only when a pair is stored; the refresh schedule counted from
`updated_at`, which every write to the row moves (taking and letting go of the refresh lease
among them). `refresh_unsettled` records a refresh sent whose new pair was not stored, so that
an account whose refresh token the server rotated in it says so when it is parked. Existing
pairs count from the row's last write, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokens_stored_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("refresh_unsettled", sa.Text()))
    accounts = sa.table(
        "accounts",
        sa.column("access_token", sa.Text()),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("tokens_stored_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        accounts.update()
        .where(accounts.c.access_token.is_not(None))
        .values(tokens_stored_at=accounts.c.updated_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("refresh_unsettled")
        batch_op.drop_column("tokens_stored_at")
