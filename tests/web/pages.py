"""What the browser tests share: screenshots for docs/console/ and waiting on the database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.services import documents


def screenshot(page: Any, name: str) -> None:
    """Save the page as docs/console/NAME.png when LAZADA_CONSOLE_SCREENSHOTS names a folder."""
    folder = os.environ.get("LAZADA_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def job(stack: Stack, account: str, key: str) -> dict[str, Any] | None:
    with stack.sessions() as session:
        return documents.removal_job(session, account, key)


def job_in(stack: Stack, account: str, key: str, state: str, timeout: float = 120) -> dict:
    def reached() -> dict | None:
        found = job(stack, account, key)
        return found if found and found["state"] == state else None

    try:
        return wait_for(reached, timeout, f"job {key} {state}")
    except AssertionError:
        print(stack.logs())
        raise
