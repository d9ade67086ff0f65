"""lazada-worker: keeps a shop's Lazada storefront in step, in the background.

`celery -A worker worker` finds the Celery app as ``worker.app``. It is loaded lazily so
that importing a platform's client (``worker.platforms``) does not import Celery.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.celery_app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
