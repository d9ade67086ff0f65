"""Persistence: models, engines and sessions, row leases, bulk loading, the audit of API calls
and final failures, and the Alembic schema upgrade."""
