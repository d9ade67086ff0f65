"""Shared pytest fixtures."""

from collections.abc import Iterator

import pytest

from worker.sandbox import Sandbox, SandboxConfig

pytest_plugins = ["fixtures_worker"]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh local Seller Center sandbox on a free port, stopped after the test."""
    server = Sandbox(SandboxConfig(), port=0).start()
    try:
        yield server
    finally:
        server.stop()
