"""Shared pytest fixtures."""

from collections.abc import Iterator

import pytest

pytest_plugins = ["fixtures_worker"]

from worker.sandbox import Sandbox, SandboxConfig


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh local Seller Center sandbox on a free port, stopped after the test."""
    server = Sandbox(SandboxConfig(), port=0).start()
    try:
        yield server
    finally:
        server.stop()
