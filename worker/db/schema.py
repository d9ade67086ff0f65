"""Bringing a database to the newest schema with the project's Alembic revisions."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError, SQLAlchemyError

import migrations
from worker.db.engine import get_engine


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened or upgraded; the message says which and why."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # Alembic's ini interpolation treats '%' specially (URL-encoded passwords have it).
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> None:
    """Apply every pending revision (a no-op on an up-to-date database)."""
    try:
        command.upgrade(alembic_config(url), "head")
    except OperationalError as exc:
        raise DatabaseUnavailable(_describe(url, exc)) from None


def ensure_schema(url: str) -> None:
    """Upgrade the database if it is behind; cheap when it is not."""
    try:
        if current_revision(url) == head_revision():
            return
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(_describe(url, exc)) from None
    upgrade(url)


def _describe(url: str, exc: SQLAlchemyError) -> str:
    from sqlalchemy.engine import make_url

    safe = make_url(url).render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return f"cannot open the database {safe}: {reason}"
