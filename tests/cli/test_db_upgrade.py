"""`lazada-worker db upgrade`: creates the tables on a new database, and changes nothing the
second time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.cli.command_line import Cli


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
        rows += connection.execute("SELECT 'version', version_num FROM alembic_version").fetchall()
    connection.close()
    return rows


def test_db_upgrade_creates_the_tables_on_a_new_sqlite_file(cli: Cli) -> None:
    fresh = cli.folder / "fresh.sqlite3"
    assert not fresh.exists()

    result = cli("db", "upgrade", env={"DATABASE_URL": f"sqlite:///{fresh}"})

    assert result.returncode == 0, result.stderr
    tables = {name for name, _sql in _schema(fresh)}
    expected = {"removal_jobs", "removal_batches", "removal_skus", "orders", "image_migrations"}
    assert expected | {"image_jobs", "failures", "api_calls", "version"} <= tables


def test_db_upgrade_a_second_time_changes_nothing(cli: Cli) -> None:
    fresh = cli.folder / "fresh.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{fresh}"}
    first = cli("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    schema = _schema(fresh)

    second = cli("db", "upgrade", env=env)

    assert second.returncode == 0, second.stderr
    assert _schema(fresh) == schema
    assert second.stdout == first.stdout  # the same revision
