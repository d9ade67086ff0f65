"""The Alembic revisions build exactly the tables the models describe, on both databases."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.support.worker_stack import BATCH
from worker.accounts.platforms import PlatformFor
from worker.db.engine import get_engine
from worker.db.models import Base
from worker.db.schema import alembic_config
from worker.services import removal
from worker.settings import Settings


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    # database_url is migrated to the newest revision by its fixture.
    with get_engine(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_going_back_a_revision_writes_the_rows_of_skus_held_by_batches(
    database_url: str,
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Revision 0006 lets batches hold their SKUs (pending, or removed once the batch is done);
    # 0005's code expects a row per SKU, so the downgrade writes them at their positions.
    monkeypatch.setattr(removal, "RUNNER_SECONDS", 0.0)  # one batch a task
    skus = [f"D-{n}" for n in range(60)]
    _, messages = removal.create_job(sessions, settings, settings.account, "downgrade", skus, BATCH)
    removal.process_batch(sessions, platforms, settings, *messages[0].args)  # the first 50
    command.downgrade(alembic_config(database_url), "0005")
    with get_engine(database_url).connect() as connection:
        rows = connection.execute(
            text("SELECT position, sku, state, attempts FROM removal_skus ORDER BY position")
        ).all()
    command.upgrade(alembic_config(database_url), "head")
    assert [tuple(row) for row in rows] == [
        (n, sku, "removed", 1) if n < 50 else (n, sku, "pending", 0) for n, sku in enumerate(skus)
    ]
