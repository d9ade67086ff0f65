"""What a worker logs: at INFO, what happened to the work (a failed SKU with its code, a job's
summary) and not the idle sweeps; with LAZADA_LOG_FORMAT=json, one JSON object a line.

A real `lazada-worker run` on the embedded broker and SQLite, against the sandbox over HTTP;
its standard error is read as an operator's log collector would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import REPO, wait_for
from tests.support.worker_stack import BATCH
from worker.db.engine import get_engine
from worker.db.schema import ensure_schema
from worker.sandbox.sellercenter import Sandbox
from worker.services import documents, removal
from worker.settings import Settings


@dataclass
class Worker:
    """`lazada-worker run` with its standard error kept apart from its standard output."""

    env: dict[str, str]
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def stderr_path(self) -> Path:
        return self.folder / "worker.stderr"

    def start(self, **env: str) -> Worker:
        self.env.update(env)
        with (
            self.stderr_path.open("wb") as stderr,
            (self.folder / "worker.stdout").open("wb") as stdout,
        ):
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run", "--concurrency=4"],
                stdout=stdout,
                stderr=stderr,
                env=self.env,
                cwd=self.folder,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def stderr(self) -> str:
        path = self.stderr_path
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=60,
        )

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def sessions(self) -> sessionmaker[Session]:
        return sessionmaker(get_engine(self.settings.database_url), expire_on_commit=False)

    def job(self, key: str) -> dict[str, Any] | None:
        with self.sessions()() as session:
            return documents.removal_job(session, self.settings.account, key)


@pytest.fixture
def worker(tmp_path: Path, sandbox: Sandbox) -> Iterator[Worker]:
    """A worker's environment (not started): SQLite in the test's folder, the sandbox's account."""
    database = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    ensure_schema(database)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }
    env.update(
        {
            "DATABASE_URL": database,
            "LAZADA_API_URL": sandbox.url,
            "LAZADA_USER_ID": sandbox.user_id,
            "LAZADA_API_KEY": sandbox.api_key,
            "LAZADA_REDISPATCH_AFTER": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    process = Worker(env, tmp_path)
    try:
        yield process
    finally:
        process.stop()
        print(process.stderr()[-20000:])


def _done(worker: Worker, key: str) -> bool:
    job = worker.job(key)
    return job is not None and job["state"] == "done"


def test_json_log_is_one_object_a_line_with_the_failed_sku_and_the_job_summary(
    worker: Worker, sandbox: Sandbox
) -> None:
    worker.start(LAZADA_LOG_FORMAT="json")
    sent = worker.cli("remove-products", "SKU-1", "SKU-FAIL-1", "--key", "spring")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: _done(worker, "spring"), what="the removal job to finish")
    wait_for(lambda: '"outcome": "done"' in worker.stderr(), what="the job's summary line")
    worker.stop()

    lines = worker.stderr().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line, Celery's own ones too
    assert all(isinstance(record, dict) and "message" in record for record in records)
    failed = [r for r in records if r.get("sku") == "SKU-FAIL-1"]
    assert len(failed) == 1, failed
    assert failed[0]["outcome"] == "failed"
    assert failed[0]["error_code"] == "E503"
    assert failed[0]["key"] == "spring"
    assert failed[0]["account"] == sandbox.user_id
    assert failed[0]["task"] == "lazada.remove_batch"
    assert "503" in failed[0]["message"]
    summaries = [r for r in records if r.get("outcome") == "done"]
    assert [(s["key"], s["removed"], s["failed"]) for s in summaries] == [("spring", 1, 1)]
    assert summaries[0]["task"] == "lazada.remove_batch"
    assert sandbox.api_key not in worker.stderr()


def test_idle_sweeps_log_nothing_at_info_and_a_sweep_that_resends_says_so(
    worker: Worker,
) -> None:
    worker.start(LAZADA_LOG_LEVEL="INFO")
    # Two jobs whose messages were lost (recorded, never sent), one after the other: the
    # sweeper sends each again on a later sweep, and the other sweepers ran idle meanwhile.
    for key in ("lost-1", "lost-2"):
        settings = worker.settings
        removal.create_job(
            worker.sessions(), settings, settings.account, key, [f"SKU-{key}"], BATCH
        )
        wait_for(lambda key=key: _done(worker, key), what=f"the sweeper to resend {key}")
    worker.stop()

    log = worker.stderr()
    assert "Sending due task" not in log
    assert "lazada.sweep_" not in log
    resent = [line for line in log.splitlines() if "sent again" in line]
    assert len(resent) == 2, resent
    assert all("1 removal batch" in line for line in resent)


def test_an_unknown_log_format_is_a_one_line_error_naming_the_variable(worker: Worker) -> None:
    worker.env["LAZADA_LOG_FORMAT"] = "xml"
    result = worker.cli("run")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "LAZADA_LOG_FORMAT" in lines[0] and "xml" in lines[0] and "json" in lines[0]


def test_at_debug_the_periodic_tasks_lines_are_kept_as_debug_lines(worker: Worker) -> None:
    worker.start(LAZADA_LOG_LEVEL="DEBUG")
    line = wait_for(
        lambda: next(
            (line for line in worker.stderr().splitlines() if "Sending due task" in line), None
        ),
        what="beat's line about a sweep",
    )
    assert "DEBUG/" in line and "INFO/" not in line, line
