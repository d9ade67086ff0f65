"""accounts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Seller accounts as data (worker/accounts.py): either platform's endpoint, credentials and
token expiries, with every secret as Fernet ciphertext (worker/secrets.py). The environment's
legacy account is not a row, so existing deployments need nothing here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("api_url", sa.Text(), nullable=False),
        sa.Column("auth_url", sa.Text(), nullable=True),
        sa.Column("country", sa.String(length=8), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("app_key", sa.String(length=255), nullable=True),
        sa.Column("seller_id", sa.String(length=255), nullable=True),
        sa.Column("rate_limit", sa.Double(), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "platform IN ('sellercenter', 'lazop')", name=op.f("ck_accounts_platform")
        ),
        sa.CheckConstraint(
            "state IN ('ready', 'needs_authorization')", name=op.f("ck_accounts_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )


def downgrade() -> None:
    op.drop_table("accounts")
