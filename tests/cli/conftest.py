"""Fixtures of the command-line tests: the command line on an empty database of the test's own,
and a worker on the same environment for the tests that need one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.command_line import Cli, controlled_env
from tests.support.databases import migrated_sqlite
from tests.support.processes import WorkerProcess
from worker.sandbox.sellercenter import Sandbox


@pytest.fixture
def cli(tmp_path: Path, sandbox: Sandbox) -> Cli:
    """The command line on a migrated, empty SQLite database (so a stray write would show)."""
    sandbox.config.image_job_seconds = (0.3, 0.6)
    database = tmp_path / "results.sqlite3"
    url = migrated_sqlite(database)
    return Cli(controlled_env(url, sandbox), tmp_path, database)


@pytest.fixture
def worker(cli: Cli) -> Iterator[WorkerProcess]:
    """One `lazada-worker run` on the test's environment; its log is shown when a test fails."""
    process = WorkerProcess(cli.env, cli.folder / "worker.log").start()
    try:
        yield process
    finally:
        process.stop()
        print(process.log()[-20000:])
