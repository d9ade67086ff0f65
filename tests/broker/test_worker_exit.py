"""`lazada-worker run` exits with a status that says how the worker ended."""

from __future__ import annotations

import shutil

import pytest

from tests.support.processes import wait_for
from tests.support.worker_stack import Stack

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_a_worker_stopped_by_an_unrecoverable_error_exits_non_zero(stack: Stack) -> None:
    folder = stack.settings.broker_folder
    assert folder is not None
    worker = stack.start_worker(concurrency=1)
    wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")
    # The broker's queue folder replaced by a file under the running worker.
    shutil.rmtree(folder / "queue")
    (folder / "queue").write_text("")

    assert worker.process is not None
    wait_for(lambda: worker.process.poll() is not None, 60, "the worker to stop")
    assert "Unrecoverable error" in worker.log()
    assert worker.process.returncode != 0


@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_a_worker_stopped_by_sigterm_exits_zero(stack: Stack) -> None:
    worker = stack.start_worker(concurrency=1)
    wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")
    worker.stop()
    assert worker.process is not None and worker.process.returncode == 0
