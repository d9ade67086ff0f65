"""Persistence: models, engines and sessions, and the Alembic schema upgrade."""
