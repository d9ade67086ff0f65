"""Alembic environment: runs online against the URL that worker.db.schema passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from worker.db.engine import get_engine
from worker.db.models import Base

# Any fixed number: every process upgrading the same PostgreSQL database waits on it.
_PG_UPGRADE_LOCK = 7_320_116_205


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "worker.db.schema sets sqlalchemy.url"
    engine = get_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several workers may start at once on a new database: one upgrades, the rest wait.
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_UPGRADE_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_UPGRADE_LOCK})
                connection.commit()


if context.is_offline_mode():
    raise SystemExit("lazada-worker migrations run online only: use `lazada-worker db upgrade`")
run_migrations_online()
