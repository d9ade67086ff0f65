"""The Celery tasks: thin wrappers that validate arguments, call a service, publish after commit.

Task names are the public interface (see the contract); modules may move, names may not.
"""
