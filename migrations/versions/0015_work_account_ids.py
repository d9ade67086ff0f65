"""work rows record the id of the account they were made for

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

An account's name can be reused: `accounts remove` and `accounts add` of the same name for
another seller. Work is tied to the account it was made for by `account_id` (the stored
account's id; NULL for the environment's account, which is not a row), so that work made for
a removed account is never sent with the credentials of the account that has its name now.
Existing rows get the id of the stored account of their name, when there is one; the others
(the environment's account's, or a removed account's) stay NULL. A removal job's batches and
SKUs, and a migration's image jobs, belong to their job's account. On SQLite the accounts
table gets AUTOINCREMENT so that an id is never given again (kept on downgrade: harmless).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("removal_jobs", "orders", "image_migrations", "image_jobs")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # AUTOINCREMENT: SQLite would give a removed account's id to the next account added
        # (PostgreSQL's sequence never does). The accounts table is copied; no table refers
        # to it.
        with op.batch_alter_table(
            "accounts", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
        # The copy of an empty table leaves a counter of 0: no row, as before any account.
        op.execute("DELETE FROM sqlite_sequence WHERE name = 'accounts' AND seq = 0")
    accounts = sa.table("accounts", sa.column("id", sa.Integer()), sa.column("name", sa.String()))
    for name in _TABLES:
        # Plain ADD COLUMN: a batch copy of removal_jobs on SQLite would drop the old table,
        # and with foreign keys on that deletes its batches (as in revision 0009).
        op.add_column(name, sa.Column("account_id", sa.Integer(), nullable=True))
        work = sa.table(
            name, sa.column("account", sa.String()), sa.column("account_id", sa.Integer())
        )
        stored = sa.select(accounts.c.id).where(accounts.c.name == work.c.account).scalar_subquery()
        op.execute(work.update().values(account_id=stored))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+), for the reason above.
    for name in _TABLES:
        op.execute(f"ALTER TABLE {name} DROP COLUMN account_id")
