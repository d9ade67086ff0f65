"""How the worker logs: plain text or one JSON object a line, and quiet periodic sweeps.

Celery configures logging itself (`celery -A worker worker`, `lazada-worker run`, `celery
beat`); :func:`adjust_handlers` runs after it, from its ``after_setup_logger`` and
``after_setup_task_logger`` signals (worker/celery_app.py), so both ways of starting a worker
log alike. Our own lines pass what they are about with ``extra=`` (``account``, ``key``,
``sku``, ``error_code``, ``outcome``, ...): in JSON those are fields, in text the message says it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from worker.settings import SettingsError

LOG_FORMATS = ("text", "json")
FORMAT_VARIABLE = "LAZADA_LOG_FORMAT"

# Celery's own INFO lines for every task it receives and finishes, and beat's for every task it
# sends: for the periodic sweeps, idle most of the time, these would be most of the log.
_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")
_BEAT_LOGGER = "celery.beat"


class LogFormatError(SettingsError):
    """LAZADA_LOG_FORMAT names no known format."""


def log_format(environ: Mapping[str, str] = os.environ) -> str:
    """The format LAZADA_LOG_FORMAT asks for ("text" when unset); LogFormatError if unknown."""
    value = environ.get(FORMAT_VARIABLE, "").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise LogFormatError(
            f"{FORMAT_VARIABLE} {environ[FORMAT_VARIABLE]!r} is not a log format: "
            f"set it to {' or '.join(LOG_FORMATS)} (json: one JSON object a line), or unset it"
        )
    return value


class TaskContext(logging.Filter):
    """Adds ``task`` and ``task_id``: the task a line is about, or the one running it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task"):
            data = getattr(record, "data", None)  # Celery's own task lines carry it
            if isinstance(data, dict) and "name" in data:
                record.task, record.task_id = data["name"], data.get("id")
            else:
                from celery import current_task

                task = current_task._get_current_object() if current_task else None
                if task is not None and task.request.id is not None:
                    record.task, record.task_id = task.name, task.request.id
        return True


class QuietPeriodicTasks(logging.Filter):
    """Celery's INFO lines about the periodic tasks become DEBUG.

    An idle sweep has nothing to say; one that sends work again logs that itself
    (worker/services/sweepers.py). Lines about other tasks stay at INFO.
    """

    def __init__(self, periodic: Iterable[str]) -> None:
        super().__init__()
        self.periodic = frozenset(periodic)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._is_periodic(record):
            return True
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True

    def _is_periodic(self, record: logging.LogRecord) -> bool:
        if record.name in _TASK_LOGGERS:
            data = getattr(record, "data", None)
            return isinstance(data, dict) and str(data.get("name")) in self.periodic
        if record.name == _BEAT_LOGGER and isinstance(record.args, tuple):
            # "Scheduler: Sending due task %s (%s)": the entry's name, then its task's.
            return any(isinstance(arg, str) and arg in self.periodic for arg in record.args)
        return False


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, message, then the line's own fields."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(processName)s %(message)s",
        timestamp="time",  # ISO 8601, in UTC
        rename_fields={"levelname": "level", "name": "logger"},
        # Celery's task lines carry their arguments' repr in `data`: task and task_id say it.
        reserved_attrs=[*RESERVED_ATTRS, "data"],
    )


def adjust_handlers(logger: logging.Logger, format: str, periodic: Iterable[str]) -> None:
    """Give the handlers Celery just installed on `logger` our filters, and JSON if asked."""
    names = list(periodic)
    for handler in logger.handlers:
        handler.addFilter(TaskContext())
        handler.addFilter(QuietPeriodicTasks(names))
        if format == "json":
            handler.setFormatter(json_formatter())


def log_early(format: str) -> None:
    """Before Celery configures logging: in JSON, what comes first is JSON too.

    Celery warns (``warnings.warn``) before it sets up its handlers, e.g. about running as
    root; those lines would break a JSON log. They go through logging instead, to a JSON
    handler on the root logger, which Celery replaces with its own once it starts.
    """
    if format != "json":
        return
    logging.captureWarnings(True)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(json_formatter())
        handler.addFilter(TaskContext())
        root.addHandler(handler)


def periodic_tasks(beat_schedule: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The task names and entry names of a beat schedule (beat's lines name both)."""
    return [*beat_schedule, *(entry["task"] for entry in beat_schedule.values())]
