"""`lazada-worker run`: one worker with beat embedded, for a single machine."""

from __future__ import annotations

import hashlib
import socket
import tempfile
from pathlib import Path

from worker.settings import Settings


def run_worker(settings: Settings, concurrency: int, loglevel: str = "INFO") -> int:
    """Run until stopped. A thread pool: the work is waiting on HTTP, and threads share one
    client (pooled connections) and one engine, at a fraction of prefork's memory."""
    from worker.celery_app import app

    # Beat's schedule file only remembers when each periodic task last ran; keep it out of
    # the working directory, one per database.
    digest = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
    schedule = Path(tempfile.gettempdir()) / f"lazada-worker-beat-{digest}"
    app.worker_main(
        [
            "worker",
            "--beat",
            f"--schedule={schedule}",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--queues={settings.queue}",
            f"--hostname=lazada-worker@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0
