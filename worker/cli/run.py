"""`lazada-worker run`: a worker of threads, with beat embedded when it serves the main queue,
and the event deliveries served by a small worker process of its own beside it."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from worker.accounts.store import list_accounts
from worker.cli.connections import load_settings, open_sessions
from worker.inputs import InvalidInput
from worker.logs import log_format
from worker.settings import Settings, SettingsError

log = logging.getLogger(__name__)

QUEUE_CHOICES = ("all", "work", "polls", "events")
# The events worker's threads: each delivery is bounded by LAZADA_WEBHOOK_TIMEOUT, so a few
# threads deliver many events a second to receivers that answer, and no more than these few are
# ever held by receivers that do not. More: `run --only events --concurrency N` beside it.
EVENT_THREADS = 4
# The pause before a failed events worker, or a worker stopped by an unrecoverable error, is
# started again.
RESTART_AFTER = 5.0
# A worker stopped by an unrecoverable error this soon after it was started again exits instead:
# the error is not a passing one, and its supervisor is to hear of it.
STARTED_AGAIN_FOR = 60.0
# When this process was started again after an unrecoverable error (epoch seconds): its
# environment carries it across the exec.
STARTED_AGAIN_AT = "LAZADA_WORKER_STARTED_AGAIN_AT"


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
    return run_worker(settings, args.concurrency, args.loglevel, args.only, args.parent)


def run_worker(
    settings: Settings,
    concurrency: int,
    loglevel: str = "INFO",
    only: str = "all",
    parent: int | None = None,
) -> int:
    """Run until stopped. A thread pool: the work is waiting on HTTP, and threads share one
    client (pooled connections) and one engine, at a fraction of prefork's memory.

    `only`: "work" serves the main queue, "polls" the image jobs' queue, "events" the event
    deliveries, "all" the first two. Beat runs in the worker that serves the main queue, so a
    machine with one of each has one beat. "all" and "work" start the events worker as a child
    process (see _EventsWorker); `parent` is that child's parent, whose end it follows.
    """
    # Imported here: Celery's command line is for `run` alone; the other commands start
    # without loading Celery.
    from celery.bin.celery import celery as celery_command

    queues = {
        "all": [settings.queue, settings.poll_queue],
        "work": [settings.queue],
        "polls": [settings.poll_queue],
        "events": [settings.events_queue],
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
    if only in ("all", "work"):
        # Beat's schedule file only remembers when each periodic task last ran; keep it out of
        # the working directory, one per database.
        digest = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
        schedule = Path(tempfile.gettempdir()) / f"lazada-worker-beat-{digest}"
        arguments += ["--beat", f"--schedule={schedule}"]
    if parent is not None:
        _stop_when_orphaned(parent)
    asked_to_stop = _watch_for_shutdown()
    events = _EventsWorker(settings, loglevel) if only in ("all", "work") else None
    try:
        # Celery's command returns the worker's exit status; `app.worker_main` drops it, and a
        # worker stopped by an unrecoverable error must not exit 0 (a supervisor would not
        # restart it).
        status = celery_command.main(
            args=["--app=worker.celery_app:app", *arguments], standalone_mode=False
        )
    finally:
        if events is not None:
            events.stop()
    status = status if isinstance(status, int) else 0
    if status != 0 and not asked_to_stop.is_set() and parent is None:
        _start_again(status)
    return status


def _watch_for_shutdown() -> threading.Event:
    """An event set when the worker is asked to stop (a signal, or this process's own
    SIGTERM): an exit status other than 0 without it is an unrecoverable error."""
    from celery.signals import worker_shutting_down

    asked = threading.Event()

    def on_shutdown(**_: object) -> None:
        asked.set()

    worker_shutting_down.connect(on_shutdown, weak=False)
    return asked


def _start_again(status: int) -> None:
    """Replace this process with a new start of the same command, after a pause: Celery's
    worker stops for good on an error it did not expect (kombu's Redis transport can raise one
    while it reconnects to a restarted Redis), which its next start does not meet. Returns,
    for the process to exit with `status`, when it was itself started again too recently."""
    again_at = os.environ.get(STARTED_AGAIN_AT)
    since = time.time() - float(again_at) if again_at else None
    if since is not None and since < STARTED_AGAIN_FOR:
        log.error(
            "the worker stopped on an unrecoverable error again, %.0f s after it was started "
            "again: exiting (status %s)",
            since,
            status,
        )
        return
    log.error(
        "the worker stopped on an unrecoverable error (exit status %s): starting it again in "
        "%.0f s",
        status,
        RESTART_AFTER,
    )
    time.sleep(RESTART_AFTER)
    os.environ[STARTED_AGAIN_AT] = str(time.time())
    sys.stdout.flush()
    sys.stderr.flush()
    # The same interpreter, options and arguments: `python -m worker.cli run ...` and the
    # `lazada-worker` script alike.
    os.execv(sys.executable, sys.orig_argv)  # noqa: S606 (this process's own command)


class _EventsWorker:
    """The events queue's own worker: a child process with EVENT_THREADS threads, so that
    receivers that answer slowly or never hold none of the threads API work needs (one
    Celery worker has one pool for all its queues).

    It stops when this worker stops (and by itself if this process dies: `--parent`). If it
    fails on its own (its database away when it starts, say), it is started again after a
    pause, so that an outage API work rides out does not stop the worker; stopped by a signal
    to the whole group, this worker stops too.
    """

    def __init__(self, settings: Settings, loglevel: str) -> None:
        # A delivery in progress finishes within its deadline; a warm shutdown waits for it.
        self._stop_wait = (len(settings.webhook_urls) + 1) * settings.webhook_timeout + 15.0
        self._stopping = threading.Event()
        self._command = [
            sys.executable,
            "-m",
            "worker.cli",
            "run",
            "--only=events",
            f"--concurrency={EVENT_THREADS}",
            f"--loglevel={loglevel}",
            f"--parent={os.getpid()}",
        ]
        self.process = subprocess.Popen(self._command)
        threading.Thread(target=self._watch, name="lazada-events-worker", daemon=True).start()

    def _watch(self) -> None:
        while True:
            status = self.process.wait()
            if self._stopping.is_set():
                return
            if status in (0, -signal.SIGTERM, -signal.SIGINT):
                # Stopped (a signal to the whole group, before or after Celery took over its
                # signals): this worker is stopping too.
                log.error("the events worker ended (exit status %s): stopping this worker", status)
                os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
                return
            log.error("the events worker failed (exit status %s): starting it again", status)
            if self._stopping.wait(RESTART_AFTER):
                return
            self.process = subprocess.Popen(self._command)

    def stop(self) -> None:
        """Stop it (a warm shutdown), and kill it if it does not end in time."""
        self._stopping.set()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self._stop_wait)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _stop_when_orphaned(parent: int) -> None:
    """A warm shutdown of this process once `parent` is gone (killed, not stopped): no
    events worker outlives the worker that started it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lazada-parent-watch", daemon=True).start()
