"""Alembic revisions of the results database (SQLite and PostgreSQL from the same ones)."""
