"""Fixtures of the console's tests: the console served on a free port beside a worker stack,
and headless Chromium (Debian's `chromium`, driven by Playwright; no browser is downloaded)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.worker_stack import Stack
from worker.broker.dispatch import Message
from worker.web.app import Console

CHROMIUM = "/usr/bin/chromium"


@dataclass
class Served:
    """A console on a free loopback port, and what it sends over the stack's broker."""

    app: Console
    url: str
    sent: list[Message]


def serve(
    stack: Stack, password: str | None = None, public_url: str | None = None
) -> Iterator[Served]:
    import waitress

    sender = stack.sender()
    sent: list[Message] = []

    def send(message: Message) -> None:
        sent.append(message)
        sender.send_task(
            message.task,
            args=list(message.args),
            kwargs=dict(message.kwargs),
            queue=stack.settings.queue,
        )

    server = waitress.create_server(
        lambda environ, start: app(environ, start), host="127.0.0.1", port=0, threads=4
    )
    port = server.effective_port  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    app = Console(stack.settings, public_url or url, password, send=send)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield Served(app, url, sent)
    finally:
        server.close()


@pytest.fixture
def console(stack: Stack) -> Iterator[Served]:
    yield from serve(stack)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Chromium; missing, the test says so (and fails in CI, which installs it)."""
    if shutil.which("chromium") is None and not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()
