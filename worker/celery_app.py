"""The Celery application, configured by the `celeryconfig` module."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from worker.api import forget_platforms
from worker.db.engine import dispose_engines

app = Celery("lazada-worker")
app.config_from_object("celeryconfig")


@worker_process_init.connect
def _dispose_inherited_engines(**_: Any) -> None:
    # A forked pool child must not share the parent's database connections or HTTP sockets.
    dispose_engines()
    forget_platforms()


@worker_init.connect
def _upgrade_schema(**_: Any) -> None:
    # Once in the main process, before the pool starts: a new database gets its tables.
    from worker.db.schema import ensure_schema
    from worker.settings import Settings

    ensure_schema(Settings.from_env().database_url)
