"""The Alembic revisions build exactly the tables the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from worker.db.engine import get_engine
from worker.db.models import Base


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    # database_url is migrated to the newest revision by its fixture.
    with get_engine(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
