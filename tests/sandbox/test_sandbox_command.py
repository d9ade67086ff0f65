"""`lazada-worker sandbox` tells a newcomer how to point a worker at it, and what it says works.

The command runs as a user types it (the console module in a subprocess); what it prints is
used as printed, by a real client over HTTP.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from worker.platforms.sellercenter import SellerCenterClient
from worker.platforms.sellercenter.errors import AuthenticationError


def _env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }


def _exports(text: str) -> dict[str, str]:
    """The `export NAME=VALUE` lines of `text`, parsed as a shell would."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            found[name] = value
    return found


@pytest.fixture
def running_sandbox() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """`lazada-worker sandbox --port 0` and the settings it printed before serving."""
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "sandbox", "--port", "0"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    printed = ""
    try:
        # The block ends with the API key's line. A sandbox that prints nothing ends the wait
        # after a liveness deadline (not a measurement).
        while "LAZADA_API_KEY=" not in printed:
            try:
                printed += lines.get(timeout=30)
            except queue.Empty:
                break
        yield process, _exports(printed)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_sandbox_prints_the_url_user_id_and_key_a_worker_needs_and_they_sign_valid_calls(
    running_sandbox: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    _, printed = running_sandbox
    assert set(printed) == {"LAZADA_API_URL", "LAZADA_USER_ID", "LAZADA_API_KEY"}, printed
    with SellerCenterClient(
        printed["LAZADA_API_URL"], printed["LAZADA_USER_ID"], printed["LAZADA_API_KEY"]
    ) as client:
        assert client.remove_products(["SKU-1"]).removed == ("SKU-1",)
    with (
        SellerCenterClient(
            printed["LAZADA_API_URL"], printed["LAZADA_USER_ID"], "not-the-key"
        ) as client,
        pytest.raises(AuthenticationError),
    ):
        client.remove_products(["SKU-1"])  # the printed key is the one checked, not any key


def test_sandbox_help_names_the_default_user_id_and_key_and_a_default_sandbox_accepts_them(
    running_sandbox: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "sandbox", "--help"],
        env={**_env(), "COLUMNS": "200"},  # argparse wraps at hyphens, inside the UserID
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    user_id = re.search(r"--user-id ID .*?, default: (\S+?)\)", text)
    api_key = re.search(r"--api-key KEY .*?, default: (\S+?)\)", text)
    assert user_id and api_key, result.stdout
    _, printed = running_sandbox
    with SellerCenterClient(printed["LAZADA_API_URL"], user_id[1], api_key[1]) as client:
        assert client.remove_products(["SKU-2"]).removed == ("SKU-2",)
