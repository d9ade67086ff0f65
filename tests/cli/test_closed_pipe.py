"""A reader that closes standard output early (`| head -1`) ends the command quietly: no
traceback, exit 1."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import sessionmaker

from tests.cli.command_line import Cli
from tests.support.worker_stack import BATCH
from worker.db.engine import get_engine
from worker.db.models import Failure
from worker.services import removal
from worker.settings import Settings


@pytest.fixture
def many_stored(cli: Cli) -> str:
    """A job of 3,000 SKUs and 1,000 failures: more output than a pipe holds."""
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(
        sessions,
        settings,
        settings.account,
        "big-job",
        [f"BIG-SKU-{n:05d}" for n in range(3000)],
        BATCH,
    )
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add_all(
            Failure(
                account=settings.account,
                at=now - timedelta(seconds=n),
                kind="removal_sku",
                subject=f"BIG-SKU-{n:05d} (job big-job)",
                error_code=503,
                message=f"SellerSku 'BIG-SKU-{n:05d}' could not be removed",
                attempts=1,
            )
            for n in range(1000)
        )
    return "big-job"


@pytest.mark.parametrize(
    "args", [["status", "big-job", "--json"], ["failures"], ["failures", "--json"]]
)
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(
    cli: Cli, many_stored: str, args: list[str]
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args],
        env=cli.env,
        cwd=cli.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # `| head -1`: one line, then the reader is gone
    process.stdout.close()
    status = process.wait(timeout=60)
    errors = process.stderr.read().decode()
    assert first.strip()
    assert errors == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert status == 1
