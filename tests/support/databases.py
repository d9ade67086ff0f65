"""Each test its own database at the schema's head revision, quickly: migrating a database
takes longer than most tests do, so every test process migrates one of each kind once and
copies it (PostgreSQL's CREATE DATABASE ... TEMPLATE, SQLite's online backup). The migrations
themselves are tested step by step in tests/db/test_schema.py."""

from __future__ import annotations

import atexit
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.processes import forget_engines, fresh_postgres_database, service_url
from worker.db.schema import ensure_schema

_templates: dict[str, str] = {}


def migrated_sqlite(path: Path) -> str:
    """The URL of a new SQLite database at `path`, migrated to the head revision."""
    template = _templates.get("sqlite")
    if template is None:
        template = str(Path(tempfile.mkdtemp(prefix="lw-template-")) / "template.sqlite3")
        ensure_schema(f"sqlite:///{template}")
        forget_engines(template)
        _templates["sqlite"] = template
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)
    return f"sqlite:///{path}"


@contextmanager
def migrated_postgres() -> Iterator[str]:
    """A new PostgreSQL database migrated to the head revision, dropped afterwards."""
    template = _templates.get("postgresql")
    if template is None:
        template = f"lw_template_{uuid.uuid4().hex[:12]}"
        _make_postgres_template(template)
        _templates["postgresql"] = template
    with fresh_postgres_database(template=template) as url:
        yield url


def _make_postgres_template(name: str) -> None:
    import psycopg

    base = make_url(service_url("postgres"))
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    ensure_schema(base.set(database=name).render_as_string(hide_password=False))
    forget_engines(name)

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    atexit.register(drop)
