"""Services: turn API results into rows, for every platform. Testable without Celery.

Each takes a `sessionmaker` (never holding a transaction open across an HTTP call), the
settings and, when it calls an API, each account's platform (worker.platforms, chosen by the
account of the row it claims), and returns the messages to publish once its last transaction
committed. The documents the contract defines are read here too (documents).
"""
