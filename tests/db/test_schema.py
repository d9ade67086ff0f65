"""The Alembic revisions build exactly the tables the models describe, on both databases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.support.worker_stack import BATCH
from worker.accounts.platforms import PlatformFor
from worker.accounts.secrets import secret_box
from worker.accounts.store import get_account
from worker.db.engine import get_engine
from worker.db.models import Base, OrderSync
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


def test_accounts_stored_before_accounts_were_platform_neutral_keep_working(
    database_url: str, sessions: sessionmaker[Session], settings: Settings
) -> None:
    # Revision 0011 had a column per credential; 0012 moves them into `credentials`, and going
    # back puts them in their columns again.
    settings = replace(settings, secret_key=Fernet.generate_key().decode())
    command.downgrade(alembic_config(database_url), "0011")
    secret = secret_box(settings).encrypt("old-api-key")
    with get_engine(database_url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (name, platform, api_url, user_id, app_key, country, "
                "auth_url, state, secret, created_at, updated_at) VALUES "
                "('old-sc', 'sellercenter', 'http://127.0.0.1:9/', 'old@shop.example', NULL, "
                "NULL, NULL, 'ready', :secret, :now, :now), "
                "('old-op', 'lazop', 'https://api.lazada.co.th/rest', NULL, '100200', 'th', "
                "'https://auth.lazada.com/rest', 'needs_authorization', :secret, :now, :now)"
            ),
            {"secret": secret, "now": datetime.now(UTC)},
        )
    command.upgrade(alembic_config(database_url), "head")
    with sessions() as session:
        legacy = get_account(session, settings, "old-sc")
        lazop = get_account(session, settings, "old-op")
    assert (legacy.platform, dict(legacy.credentials), legacy.secret) == (
        "sellercenter",
        {"user_id": "old@shop.example"},
        "old-api-key",
    )
    assert dict(lazop.credentials) == {
        "app_key": "100200",
        "country": "th",
        "auth_url": "https://auth.lazada.com/rest",
    }
    assert lazop.state == "needs_authorization"

    command.downgrade(alembic_config(database_url), "0011")
    with get_engine(database_url).connect() as connection:
        rows = connection.execute(
            text("SELECT name, user_id, app_key, country, auth_url FROM accounts ORDER BY name")
        ).all()
    command.upgrade(alembic_config(database_url), "head")
    assert [tuple(row) for row in rows] == [
        ("old-op", None, "100200", "th", "https://auth.lazada.com/rest"),
        ("old-sc", "old@shop.example", None, None, None),
    ]


def test_the_upgrade_that_counts_api_calls_counts_those_recorded_before_it(
    database_url: str,
) -> None:
    command.downgrade(alembic_config(database_url), "0017")
    with get_engine(database_url).begin() as connection:
        for account, outcome in [("a", "ok"), ("a", "ok"), ("a", "api_error"), ("b", "ok")]:
            connection.execute(
                text(
                    "INSERT INTO api_calls (account, at, action, outcome, duration_ms) "
                    "VALUES (:account, CURRENT_TIMESTAMP, 'RemoveProduct', :outcome, 100)"
                ),
                {"account": account, "outcome": outcome},
            )
    command.upgrade(alembic_config(database_url), "head")
    with get_engine(database_url).connect() as connection:
        counts = connection.execute(
            text("SELECT account, outcome, calls FROM api_call_counts ORDER BY account, outcome")
        ).all()
    assert [tuple(row) for row in counts] == [("a", "api_error", 1), ("a", "ok", 2), ("b", "ok", 1)]


def test_a_sync_paging_a_crowded_second_at_the_upgrade_goes_on_reading_it_whole(
    database_url: str, sessions: sessionmaker[Session]
) -> None:
    # Revision 0019 adds the status a crowded second is read under; a run that was paging a
    # second before it keeps its position, with no status: the whole second.
    command.downgrade(alembic_config(database_url), "0018")
    now = datetime.now(UTC)
    with get_engine(database_url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO order_syncs (account, run_until, follow, cursor_at, cursor_ids, "
                "in_second, second_offset, second_found, pending, chunk, run_new, run_changed, "
                "last_new, last_changed, attempts, created_at, updated_at) VALUES "
                "('shop', :now, FALSE, :now, '[7, 9]', TRUE, 300, TRUE, '[]', 0, 0, 0, 0, 0, 0, "
                ":now, :now)"
            ),
            {"now": now},
        )
    command.upgrade(alembic_config(database_url), "head")
    with sessions() as session:
        sync = session.scalars(select(OrderSync)).one()
    assert (sync.account, sync.cursor_ids, sync.in_second, sync.second_offset) == (
        "shop",
        [7, 9],
        True,
        300,
    )
    assert sync.second_found and sync.second_status is None
