"""`/healthz` turns 503 while PostgreSQL or the broker is stopped, and 200 once it is back.

These stop this machine's services: they run in the reliability stage (make reliability)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from werkzeug.test import Client

from tests.support import services as services_control
from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.web.app import Console

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.parametrize("stack", ["redis+postgresql"], indirect=True),
]


def _health(client: Client) -> tuple[int, dict]:
    answer = client.get("/healthz")
    return answer.status_code, json.loads(answer.get_data(as_text=True))


@pytest.mark.parametrize(
    ("check", "stop", "start"),
    [
        ("database", services_control.stop_postgres, services_control.start_postgres),
        ("broker", services_control.stop_redis, services_control.start_redis),
    ],
)
def test_healthz_is_503_naming_the_stopped_service_and_200_once_it_is_back(
    stack: Stack, check: str, stop: Callable[[], None], start: Callable[[], None]
) -> None:
    client = Client(Console(stack.settings, "http://127.0.0.1:8700", send=lambda m: None))
    assert _health(client)[0] == 200
    stop()
    try:
        status, body = _health(client)
        assert status == 503 and body["status"] == "failing"
        assert body["checks"][check]["ok"] is False
        assert body["checks"][check]["reason"]
    finally:
        start()
    wait_for(lambda: _health(client)[0] == 200, 60, "healthz 200 again")
