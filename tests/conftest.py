"""Shared pytest fixtures."""

import uuid
from collections.abc import Iterator

import pytest

from worker.sandbox.sellercenter import Sandbox, SandboxConfig

pytest_plugins = ["tests.support.worker_stack"]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh local Seller Center sandbox on a free port, stopped after the test."""
    # An account of its own (its UserID): tests running at once share no rate-limit calendar.
    config = SandboxConfig(user_id=f"test-{uuid.uuid4().hex[:10]}@lazada-worker.test")
    server = Sandbox(config, port=0).start()
    try:
        yield server
    finally:
        server.stop()
