"""Events: written with the final state, delivered after commit at least once, to a callback
task and to signed webhooks; retried, then dead; listed and redelivered by the CLI."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from tests.support.processes import REPO, plain_celery, wait_for
from tests.support.worker_stack import Stack
from worker.db.engine import core_transaction
from worker.db.models import Event, EventDelivery
from worker.outbox import webhooks
from worker.outbox.events import record_event
from worker.settings import Settings, SettingsError
from worker.urls import mask_url

SECRET = "whsec_" + base64.b64encode(b"lazada-worker-test-signing-key!!").decode()


class Receiver:
    """A webhook receiver: verifies every delivery's signature and timestamp, answers 500 to
    each event's first delivery and 204 after, and keeps what it saw."""

    def __init__(self, port: int = 0, fail_first: bool = True) -> None:
        self.deliveries: list[dict[str, Any]] = []  # verified: the event and its headers
        self.refused: list[str] = []  # deliveries whose signature did not verify
        self.fail_first = fail_first
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = Webhook(SECRET).verify(body, headers)
                except Exception as exc:
                    with receiver._lock:
                        receiver.refused.append(repr(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    first = all(d["event"]["id"] != event["id"] for d in receiver.deliveries)
                    receiver.deliveries.append({"event": event, "headers": headers})
                self.send_response(500 if first and receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/lazada"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> dict[str, list[dict[str, Any]]]:
        """Every delivery of each event id, in arrival order."""
        seen: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for delivery in self.deliveries:
                seen.setdefault(delivery["event"]["id"], []).append(delivery["event"])
        return seen

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [d[0] for d in self.events().values() if d[0]["type"] == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _with_webhook(stack: Stack, url: str) -> None:
    stack.env["LAZADA_WEBHOOK_URLS"] = url
    stack.env["LAZADA_WEBHOOK_SECRET"] = SECRET


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _delivered(receiver: Receiver, kinds: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each expected type's events once each was answered 2xx (its second delivery)."""
    events = receiver.events()
    done = [d for d in events.values() if len(d) >= 2]
    if sorted(d[0]["type"] for d in done) != sorted(kinds):
        return {}
    return events


@pytest.mark.slow
def test_every_final_work_reaches_a_verifying_receiver_with_a_stable_id(
    stack: Stack, receiver: Receiver
) -> None:
    _with_webhook(stack, receiver.url)
    stack.sandbox.config.image_job_seconds = (0.3, 0.6)
    stack.start_worker()
    skus = ["E-1", "E-2-FAIL", "E-3", "E-4-FAIL"]
    stack.send("lazada.remove_products", skus, key="evented")
    stack.send("lazada.fetch_order", 190)
    stack.send("lazada.fetch_order", 900_000_001)
    stack.send("lazada.migrate_images", ["https://img.example.com/1.jpg"], key="img")
    # The first store of order 190 announces it too (order.created, contract "Order sync").
    kinds = ["removal.finished", "order.created", "order.fetched", "order.failed"]
    kinds += ["image_job.finished"]
    try:
        events = wait_for(lambda: _delivered(receiver, kinds), 90, "each kind delivered")
    except AssertionError:
        print(stack.logs())
        raise

    assert receiver.refused == []
    for deliveries in events.values():
        assert all(d == deliveries[0] for d in deliveries)  # a duplicate is the same event
    removal = receiver.of_type("removal.finished")[0]
    assert removal["account"] == stack.settings.account
    assert removal["data"]["key"] == "evented" and "skus" not in removal["data"]
    assert {s["sku"] for s in removal["data"]["failed_skus"]} == {"E-2-FAIL", "E-4-FAIL"}
    assert removal["data"]["removed"] == 2 and removal["data"]["failed"] == 2
    assert receiver.of_type("order.fetched")[0]["data"]["order_id"] == 190
    assert receiver.of_type("order.created")[0]["data"]["order_id"] == 190
    assert receiver.of_type("order.failed")[0]["data"]["error_code"] == "E016"
    assert receiver.of_type("image_job.finished")[0]["data"]["state"] == "succeeded"
    for delivery in receiver.deliveries:
        assert delivery["headers"]["webhook-id"] == delivery["event"]["id"]

    def all_delivered() -> list[dict[str, Any]]:
        listed = json.loads(_cli(stack, "events", "--json").stdout)
        return listed if all(e["state"] == "delivered" for e in listed) else []

    listed = wait_for(all_delivered, 30, "every event delivered in `events --json`")
    assert sorted(e["type"] for e in listed) == sorted(kinds)
    (hook,) = listed[0]["deliveries"]
    assert hook["target"] == receiver.url and hook["attempts"] == 2
    assert hook["last_status"] == 204 and hook["delivered_at"]

    # Redelivery: the same event, with the same id, once more.
    redelivered = _cli(stack, "events", "redeliver", removal["id"])
    assert redelivered.returncode == 0, redelivered.stderr
    wait_for(lambda: len(receiver.events()[removal["id"]]) == 3, 30, "the redelivery")
    assert SECRET not in stack.logs()


@pytest.mark.slow
def test_a_callback_task_gets_the_event_on_the_queue_it_named(stack: Stack) -> None:
    stack.start_worker()
    queue = f"{stack.settings.queue}-shop"
    stack.send(
        "lazada.remove_products",
        ["C-1", "C-2-FAIL"],
        key="called-back",
        callback="shop.removal_done",
        callback_queue=queue,
    )
    shop = plain_celery(stack.settings.broker_url, stack.settings.broker_transport_options())
    received: list[Any] = []
    with shop.connection_for_read() as connection:
        inbox = connection.SimpleQueue(queue)
        try:
            message = inbox.get(block=True, timeout=90)
            received.append(message)
            message.ack()
        finally:
            inbox.close()
    (message,) = received
    assert message.headers["task"] == "shop.removal_done"
    args, _, _ = message.decode()
    (event,) = args
    assert event["type"] == "removal.finished" and event["id"].startswith("evt_")
    assert event["data"]["key"] == "called-back"
    assert [s["sku"] for s in event["data"]["failed_skus"]] == ["C-2-FAIL"]


@pytest.mark.slow
def test_an_event_committed_before_the_worker_was_killed_still_arrives(stack: Stack) -> None:
    port = _free_port()  # nothing listens there yet: the receiver is down
    receiver_url = f"http://127.0.0.1:{port}/hooks/lazada"
    _with_webhook(stack, receiver_url)
    worker = stack.start_worker()
    stack.send("lazada.remove_products", ["K-1", "K-2"], key="killed")

    def event_row() -> Event | None:
        with stack.sessions() as session:
            return session.scalars(select(Event)).first()

    recorded = wait_for(event_row, 60, "the removal's event row")
    worker.kill()  # kill -9 with the event undelivered
    with stack.sessions() as session:
        assert session.get(Event, recorded.id).state == "pending"
    receiver = Receiver(port=port, fail_first=False)
    try:
        stack.start_worker()
        events = wait_for(receiver.events, 90, "the event after the restart")
        assert list(events) == [recorded.id]
        assert events[recorded.id][0]["data"]["key"] == "killed"
    finally:
        receiver.stop()


def test_a_delivery_failing_until_the_give_up_time_is_dead(
    database_url: str, receiver: Receiver
) -> None:
    receiver.fail_first = False
    settings = replace(
        Settings.from_env(
            {
                "DATABASE_URL": database_url,
                "LAZADA_WEBHOOK_URLS": receiver.url.replace("/hooks", "/refused?token=abc"),
                "LAZADA_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"x" * 32).decode(),
            }
        ),
        webhook_give_up_after=3.0,  # waits of 1 s then 2 s: dead at the second failure
    )
    sessions = sessionmaker(
        core_engine(database_url), expire_on_commit=False
    )  # the services' engine
    with core_transaction(sessions) as connection:
        event_id = record_event(connection, "order.fetched", "acct", {"order_id": 1})
    states = []
    for _ in range(2):
        webhooks.deliver(sessions, settings, lambda *_: None, event_id)
        states.append(_state(sessions, event_id))
        _make_due(sessions, event_id)
    assert states == ["pending", "dead"]
    assert len(receiver.refused) == 2  # answered 400: signed with another secret
    with sessions() as session:
        (delivery,) = session.scalars(select(EventDelivery))
        assert delivery.state == "dead" and delivery.last_status == 400
        assert "abc" not in delivery.target  # the URL's token is not stored in clear


def test_retries_wait_longer_each_time_and_give_up_after_three_days() -> None:
    settings = Settings.from_env({})
    assert settings.webhook_give_up_after == 3 * 86400
    waits = [webhooks.retry_delay(n) for n in range(1, 40)]
    assert all(0.75 <= w <= 1.25 * webhooks.RETRY_CAP for w in waits)
    assert waits[10] > waits[0]
    dead_at = next(n for n in range(1, 1000) if webhooks.gives_up(settings, n))
    assert sum(min(2.0**n, webhooks.RETRY_CAP) for n in range(dead_at)) >= 3 * 86400
    assert sum(min(2.0**n, webhooks.RETRY_CAP) for n in range(dead_at - 1)) < 3 * 86400


def test_callback_task_name_and_queue_are_checked() -> None:
    from worker.inputs import InvalidInput
    from worker.outbox.events import clean_callback

    assert clean_callback("shop.done", "shop") == ("shop.done", "shop")
    assert clean_callback(None, None) == (None, None)
    for bad in ((3, None), ("has space", None), ("ok", "bad queue"), (None, "q")):
        with pytest.raises(InvalidInput):
            clean_callback(*bad)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LAZADA_WEBHOOK_URLS": "http://shop.example/h"}, "no signing secret"),
        ({"LAZADA_WEBHOOK_URLS": "ftp://shop.example/h", "LAZADA_WEBHOOK_SECRET": SECRET}, "http"),
        ({"LAZADA_WEBHOOK_SECRET": "hunter2-not-whsec"}, "whsec_"),
        ({"LAZADA_WEBHOOK_SECRET": "whsec_!!!not-base64!!!"}, "base64"),
        ({"LAZADA_WEBHOOK_SECRET_FILE": "/nonexistent/secret"}, "cannot be read"),
    ],
)
def test_webhook_settings_that_cannot_work_are_refused_without_showing_the_secret(
    env: dict[str, str], needle: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert needle in message and "\n" not in message
    secret = env.get("LAZADA_WEBHOOK_SECRET")
    assert not secret or secret not in message


def test_the_webhook_secret_can_come_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "webhook-secret"
    path.write_text(SECRET + "\n")
    settings = Settings.from_env({"LAZADA_WEBHOOK_SECRET_FILE": str(path)})
    assert settings.webhook_secret == SECRET and SECRET not in repr(settings)


def core_engine(url: str) -> Any:
    from worker.db.engine import get_engine

    return get_engine(url)


def _state(sessions: sessionmaker[Session], event_id: str) -> str:
    with sessions() as session:
        row = session.get(Event, event_id)
        assert row is not None
        return row.state


def _make_due(sessions: sessionmaker[Session], event_id: str) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    with core_transaction(sessions) as connection:
        connection.execute(update(Event).where(Event.id == event_id).values(next_attempt_at=past))
        connection.execute(
            update(EventDelivery)
            .where(EventDelivery.event_id == event_id)
            .values(next_attempt_at=past)
        )


def test_a_removal_event_names_at_most_the_cap_of_failed_skus_and_says_it_was_truncated(
    sessions: sessionmaker[Session], settings: Settings, platforms: Any
) -> None:
    from tests.support.worker_stack import BATCH
    from worker.outbox.events import MAX_FAILED_SKUS

    skus = [f"T-{n:05}-FAIL" for n in range(MAX_FAILED_SKUS + 2 * BATCH)]
    _run_job(sessions, settings, platforms, "big", skus)
    with sessions() as session:
        (event,) = session.scalars(select(Event).where(Event.type == "removal.finished"))
    data = event.data
    assert (data["failed"], data["total"], data["state"]) == (len(skus), len(skus), "done")
    assert data["failed_skus_truncated"] is True
    assert [s["sku"] for s in data["failed_skus"]] == skus[:MAX_FAILED_SKUS]


def test_a_removal_event_with_few_failed_skus_names_them_all_and_is_not_truncated(
    sessions: sessionmaker[Session], settings: Settings, platforms: Any
) -> None:
    from worker.services import documents

    skus = [f"F-{n}" + ("-FAIL" if n % 7 == 0 else "") for n in range(120)]
    _run_job(sessions, settings, platforms, "few", skus)
    with sessions() as session:
        (event,) = session.scalars(select(Event).where(Event.type == "removal.finished"))
        status = documents.removal_job(session, settings.account, "few")
    assert status is not None
    failed = [s for s in status.pop("skus") if s["state"] == "failed"]
    # The event's counts are the status document's, read without loading every SKU.
    assert {k: v for k, v in event.data.items() if not k.startswith("failed_skus")} == status
    assert event.data["failed_skus"] == [
        {"sku": s["sku"], "error_code": s["error_code"], "message": s["message"]} for s in failed
    ]
    assert event.data["failed_skus_truncated"] is False


def _run_job(
    sessions: sessionmaker[Session], settings: Settings, platforms: Any, key: str, skus: list[str]
) -> None:
    """A removal job against the sandbox, its batches delivered in turn as a worker would."""
    from tests.support.worker_stack import BATCH
    from worker.services import removal

    _, queue = removal.create_job(sessions, settings, settings.account, key, skus, BATCH)
    while queue:
        message = queue.pop(0)
        args, kwargs = message.args, message.kwargs
        queue += removal.process_batch(sessions, platforms, settings, *args, **kwargs)


def test_two_webhook_urls_differing_only_in_a_token_each_get_the_event(
    database_url: str, receiver: Receiver
) -> None:
    receiver.fail_first = False
    urls = [f"{receiver.url}?token=first-TOKEN-a1", f"{receiver.url}?token=second-TOKEN-b2"]
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "LAZADA_WEBHOOK_URLS": ",".join(urls),
            "LAZADA_WEBHOOK_SECRET": SECRET,
        }
    )
    sessions = sessionmaker(core_engine(database_url), expire_on_commit=False)
    with core_transaction(sessions) as connection:
        event_id = record_event(connection, "order.fetched", "acct", {"order_id": 1})
    webhooks.deliver(sessions, settings, lambda *_: None, event_id)
    assert len(receiver.events()[event_id]) == 2  # one delivery to each URL
    with sessions() as session:
        targets = list(session.scalars(select(EventDelivery.target)))
    assert len(targets) == 2 and all(t.startswith(mask_url(urls[0])) for t in targets)
    assert not any("TOKEN" in t for t in targets)  # the tokens are not stored in clear
