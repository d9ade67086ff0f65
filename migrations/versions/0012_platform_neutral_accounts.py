"""platform-neutral accounts

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

An account's platform is any entry of the platform registry (worker.platforms.registry), and
its credentials other than its secret live in one JSON column by the names the registry gives
them, so a new platform needs no migration. Existing rows keep working: their UserID, app key,
country and auth URL move into `credentials` under the same names.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MOVED = ("user_id", "app_key", "country", "auth_url")
_WIDTHS = {"user_id": 255, "app_key": 255, "country": 8, "auth_url": None}


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("credentials", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    accounts = sa.table(
        "accounts",
        sa.column("id", sa.Integer()),
        sa.column("credentials", sa.JSON()),
        *(sa.column(name, sa.Text()) for name in _MOVED),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(accounts.c.id, *(accounts.c[n] for n in _MOVED))).all()
    for row in rows:
        credentials = {n: getattr(row, n) for n in _MOVED if getattr(row, n) is not None}
        connection.execute(
            accounts.update().where(accounts.c.id == row.id).values(credentials=credentials)
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column("credentials", server_default=None)
        batch_op.drop_constraint("ck_accounts_platform", type_="check")
        for name in _MOVED:
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        for name in _MOVED:
            width = _WIDTHS[name]
            kind = sa.Text() if width is None else sa.String(length=width)
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    accounts = sa.table(
        "accounts",
        sa.column("id", sa.Integer()),
        sa.column("platform", sa.String()),
        sa.column("credentials", sa.JSON()),
        *(sa.column(name, sa.Text()) for name in _MOVED),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(accounts.c.id, accounts.c.platform, accounts.c.credentials)
    ).all()
    for row in rows:
        if row.platform not in ("sellercenter", "lazop"):
            raise RuntimeError(
                f"account {row.id} is a {row.platform} account: revision 0011 knows only "
                "sellercenter and lazop accounts; remove it before going back"
            )
        credentials = (
            row.credentials
            if isinstance(row.credentials, dict)
            else json.loads(row.credentials or "{}")
        )
        connection.execute(
            accounts.update()
            .where(accounts.c.id == row.id)
            .values(**{n: credentials.get(n) for n in _MOVED})
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "ck_accounts_platform", "platform IN ('sellercenter', 'lazop')"
        )
        batch_op.drop_column("credentials")
