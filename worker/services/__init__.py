"""Services: turn Seller Center results into rows. Testable without Celery.

Each takes a `sessionmaker` (never holding a transaction open across an HTTP call), a client,
and the settings, and returns the messages to publish once its last transaction committed.
"""
