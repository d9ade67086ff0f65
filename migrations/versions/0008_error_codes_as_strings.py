"""error codes are strings

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Each platform spells its codes its own way: the legacy API's documented labels (E016, E503,
1000) and the Open Platform's names (ApiCallLimit, IllegalAccessToken). The integer columns
become strings; stored legacy numbers become their labels (7 -> E007, 1000 -> 1000).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("removal_skus", "orders", "image_jobs", "failures", "api_calls")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "error_code",
                existing_type=sa.Integer(),
                type_=sa.String(64),
                existing_nullable=True,
                postgresql_using="error_code::text",
            )
        # Numbers below 1000 as the documentation writes them: three digits after an E.
        pad = "lpad(error_code, 3, '0')" if postgresql else "substr('000' || error_code, -3)"
        op.execute(
            f"UPDATE {table} SET error_code = 'E' || {pad} "  # noqa: S608 (constant names)
            "WHERE error_code IS NOT NULL AND length(error_code) < 4"
        )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        # Codes that are not legacy numbers have no integer form: they become NULL.
        numeric = (
            "error_code ~ '^E?[0-9]+$'"
            if postgresql
            else ("ltrim(error_code, 'E') <> '' AND ltrim(error_code, 'E') NOT GLOB '*[^0-9]*'")
        )
        op.execute(
            f"UPDATE {table} SET error_code = CASE WHEN {numeric} "  # noqa: S608
            "THEN ltrim(error_code, 'E') ELSE NULL END"
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "error_code",
                existing_type=sa.String(64),
                type_=sa.Integer(),
                existing_nullable=True,
                postgresql_using="error_code::integer",
            )
