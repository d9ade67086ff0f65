"""The Celery application, configured by the `celeryconfig` module."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
    worker_shutting_down,
)

from worker.accounts.platforms import forget_platforms
from worker.broker.deferrals import local_deferrals
from worker.broker.dispatch import Message, send_messages
from worker.db.engine import dispose_engines
from worker.db.heartbeats import start_heartbeat, stop_heartbeat, stop_taking_work
from worker.logs import adjust_handlers, log_early, log_format, periodic_tasks
from worker.settings import Settings

log = logging.getLogger(__name__)

# Checked on import: a bad LAZADA_LOG_FORMAT stops `lazada-worker run` and `celery -A worker`
# before anything starts, with one line that names it.
LOG_FORMAT = log_format()
log_early(LOG_FORMAT)

app = Celery("lazada-worker")
app.config_from_object("celeryconfig")


@after_setup_logger.connect
@after_setup_task_logger.connect
def _adjust_logging(logger: Any, **_: Any) -> None:
    # After Celery installed its handlers (worker and beat alike): our format and filters.
    adjust_handlers(logger, LOG_FORMAT, periodic_tasks(app.conf.beat_schedule))


@worker_process_init.connect
def _dispose_inherited_engines(**_: Any) -> None:
    # A forked pool child must not share the parent's database connections or HTTP sockets.
    dispose_engines()
    forget_platforms()
    # A prefork child runs tasks and takes leases under its own id: it beats for itself.
    start_heartbeat(Settings.from_env(), "worker")


@worker_init.connect
def _upgrade_schema(sender: Any = None, **_: Any) -> None:
    # Once in the main process, before the pool starts: a new database gets its tables.
    from worker.db.schema import ensure_schema

    settings = Settings.from_env()
    ensure_schema(settings.database_url)
    # The process that runs tasks with the threads (and solo) pool; before the pool and the
    # consumer start, so that no lease it takes names a process with no heartbeat yet. A
    # prefork parent runs none, and a thread writing SQLite while it forks would leave the
    # children SQLite's locks in a state they cannot use: its children beat for themselves.
    pool = getattr(sender, "pool_cls", None)
    if "prefork" not in str(pool if isinstance(pool, str) else getattr(pool, "__module__", "")):
        start_heartbeat(settings, "worker")


@worker_shutting_down.connect
def _stop_taking_work(**_: Any) -> None:
    # Warm shutdown (SIGTERM): Celery stops consuming and waits for the running tasks; a
    # removal runner ends after its call in flight instead of taking the job's next batch.
    stop_taking_work()
    _hand_over(local_deferrals.close())


def _hand_over(deferrals: list[Message]) -> None:
    """The deferrals this process kept and has not run go to the broker, for another worker
    (or this one's next start); should that fail, the sweepers send them past their deadline."""
    if not deferrals:
        return
    try:
        send_messages(app, deferrals)
    except Exception as exc:
        # The error's name only: a broker's error may quote its URL, password and all.
        log.warning("%d kept deferrals not handed over (%s)", len(deferrals), type(exc).__name__)
    else:
        log.info("%d kept deferrals handed to the broker", len(deferrals))


@worker_shutdown.connect
@worker_process_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    # After the running tasks ended, kept deferrals under way too: the row goes stale, and any
    # lease left is free then.
    local_deferrals.join()
    stop_heartbeat()
