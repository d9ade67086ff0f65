"""The end-to-end specification's fixture: each platform of PLATFORMS on each stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.end_to_end.platforms import PLATFORMS, PlatformStack
from tests.support.worker_stack import Stack


@pytest.fixture(params=list(PLATFORMS))
def platform_stack(request: pytest.FixtureRequest, stack: Stack) -> Iterator[PlatformStack]:
    """A worker stack (each of STACKS) with an account of each platform on its own sandbox."""
    platform = PLATFORMS[request.param]
    sandbox = platform.start_sandbox()
    try:
        account = f"{platform.name}-{uuid.uuid4().hex[:8]}"
        platform.add_account(stack, sandbox, account)
        yield PlatformStack(platform, stack, sandbox, account)
    finally:
        sandbox.stop()
