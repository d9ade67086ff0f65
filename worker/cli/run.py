"""`lazada-worker run`: a worker of threads, with beat embedded when it serves the main queue."""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path

from worker.settings import Settings

QUEUE_CHOICES = ("all", "work", "polls")


def run_worker(
    settings: Settings, concurrency: int, loglevel: str = "INFO", only: str = "all"
) -> int:
    """Run until stopped. A thread pool: the work is waiting on HTTP, and threads share one
    client (pooled connections) and one engine, at a fraction of prefork's memory.

    `only`: "work" serves the main queue, "polls" the image jobs' queue, "all" both. Beat runs
    in the worker that serves the main queue, so a machine with one of each has one beat.
    """
    from celery.bin.celery import celery as celery_command

    queues = {
        "all": [settings.queue, settings.poll_queue, settings.events_queue],
        "work": [settings.queue, settings.events_queue],
        "polls": [settings.poll_queue],
    }[only]
    arguments = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--queues={','.join(queues)}",
        # One name per process: two workers of one name on a broker with remote control
        # (RabbitMQ) fight over its exclusive pidbox queue, and one of them stops.
        f"--hostname=lazada-worker-{only}-{os.getpid()}@{socket.gethostname()}",
        "--without-gossip",
        "--without-mingle",
    ]
    if only != "polls":
        # Beat's schedule file only remembers when each periodic task last ran; keep it out of
        # the working directory, one per database.
        digest = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
        schedule = Path(tempfile.gettempdir()) / f"lazada-worker-beat-{digest}"
        arguments += ["--beat", f"--schedule={schedule}"]
    # Celery's command returns the worker's exit status; `app.worker_main` drops it, and a
    # worker stopped by an unrecoverable error must not exit 0 (a supervisor would not restart
    # it).
    status = celery_command.main(
        args=["--app=worker.celery_app:app", *arguments], standalone_mode=False
    )
    return status if isinstance(status, int) else 0
