"""`lazada-worker run`: a worker of threads, with beat embedded when it serves the main queue."""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import tempfile
from pathlib import Path

from worker.accounts.store import list_accounts
from worker.cli.connections import load_settings, open_sessions
from worker.inputs import InvalidInput
from worker.logs import log_format
from worker.settings import Settings, SettingsError

QUEUE_CHOICES = ("all", "work", "polls")


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: check the settings and that there is an account to work for, then run a worker."""
    if args.concurrency < 1:
        raise InvalidInput("--concurrency must be at least 1")
    settings = load_settings()
    log_format()  # a bad LAZADA_LOG_FORMAT is one line here, not a traceback in Celery's import
    sessions = open_sessions(settings)
    with sessions() as session:
        if not list_accounts(session, settings):  # also checks the secret key decrypts them
            raise SettingsError(
                "no account to work for: set LAZADA_API_URL, LAZADA_USER_ID and LAZADA_API_KEY, "
                "or add one with `lazada-worker accounts add` (or run `lazada-worker demo`)"
            )
    return run_worker(settings, args.concurrency, args.loglevel, args.only)


def run_worker(
    settings: Settings, concurrency: int, loglevel: str = "INFO", only: str = "all"
) -> int:
    """Run until stopped. A thread pool: the work is waiting on HTTP, and threads share one
    client (pooled connections) and one engine, at a fraction of prefork's memory.

    `only`: "work" serves the main queue, "polls" the image jobs' queue, "all" both. Beat runs
    in the worker that serves the main queue, so a machine with one of each has one beat.
    """
    # Imported here: Celery's command line is for `run` alone; the other commands start
    # without loading Celery.
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
