"""what the console counts without reading whole tables

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

`/metrics` and the overview count SKUs by state and API calls by outcome at every request.
SKUs not (yet) removed are the few: a partial index holds only them, and the removed ones are
each job's total less the others. API calls only grow: a row per (account, outcome) keeps
their count, added to in the transaction that records the calls (worker.db.audit), and filled
here from the rows there are. Unfinished jobs get a partial index of their own, for the pages
that list the jobs still running.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNREMOVED = sa.text("state <> 'removed'")
_UNFINISHED = sa.text("finished_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_removal_skus_unremoved",
        "removal_skus",
        ["account", "state"],
        postgresql_where=_UNREMOVED,
        sqlite_where=_UNREMOVED,
    )
    op.create_index(
        "ix_removal_jobs_unfinished",
        "removal_jobs",
        ["created_at", "id"],
        postgresql_where=_UNFINISHED,
        sqlite_where=_UNFINISHED,
    )
    op.create_table(
        "api_call_counts",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "outcome", name=op.f("pk_api_call_counts")),
    )
    op.execute(
        "INSERT INTO api_call_counts (account, outcome, calls) "
        "SELECT account, outcome, count(*) FROM api_calls GROUP BY account, outcome"
    )


def downgrade() -> None:
    op.drop_table("api_call_counts")
    op.drop_index("ix_removal_jobs_unfinished", table_name="removal_jobs")
    op.drop_index("ix_removal_skus_unremoved", table_name="removal_skus")
