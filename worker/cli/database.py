"""`lazada-worker db upgrade`: the results database's migrations."""

from __future__ import annotations

import argparse

from worker.cli.connections import load_settings
from worker.cli.exits import EXIT_OK
from worker.db.schema import DatabaseUnavailable, current_revision, upgrade
from worker.settings import SettingsError


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """`db upgrade`: apply the Alembic migrations and print the revision reached."""
    settings = load_settings()
    try:
        upgrade(settings.database_url)
        print(f"database at revision {current_revision(settings.database_url)}")
    except DatabaseUnavailable as exc:
        raise SettingsError(f"{exc} (check DATABASE_URL)") from None
    return EXIT_OK
