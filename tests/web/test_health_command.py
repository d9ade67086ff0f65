"""`lazada-worker health` beside a real worker on the embedded broker and SQLite: ok while a
worker beats and beat sweeps, exit 1 naming what is missing otherwise."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import REPO, wait_for
from tests.support.worker_stack import Stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True),
]


def _health(stack: Stack) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "health", "--json"],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout)


def test_health_is_failing_naming_no_live_worker_without_one(stack: Stack) -> None:
    code, body = _health(stack)
    assert code == 1 and body["status"] == "failing"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["checks"]["workers"] == {"ok": False, "reason": "no live worker"}
    assert body["checks"]["beat"] == {"ok": False, "reason": "beat not running"}


def test_health_is_ok_with_a_running_worker_and_beat(stack: Stack) -> None:
    worker = stack.start_worker(concurrency=2)
    wait_for(worker.ready, 120, "the worker ready")

    def healthy() -> dict | None:
        code, body = _health(stack)
        return body if code == 0 else None

    try:
        body = wait_for(healthy, 120, "health ok", interval=1.0)
    except AssertionError:
        print(stack.logs())
        raise
    assert body["status"] == "ok"
    assert all(check["ok"] for check in body["checks"].values())
    assert set(body["checks"]) == {"database", "broker", "workers", "beat"}
