"""The broker side: the embedded broker (a kombu transport), the checks a worker makes on a
message before Celery's own handling, and the messages sent after a transaction commits."""
