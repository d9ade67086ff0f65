"""Answers holding values a database cannot store as given: a lone surrogate (a JSON escape
`\\ud800` decodes to one; neither SQLite nor PostgreSQL takes it in text), an error code longer
than its column. What can be made storable is stored (escaped, cut to its column); an answer
that still cannot be stored fails its work once, without a second call. The LAZOP sandbox
answers them over HTTP (its knobs `answer_text`, `removal_error_code`, `migrate_batch_id`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.outbox.test_events import SECRET, Receiver
from tests.support import lazop
from worker.accounts.platforms import PlatformFor
from worker.broker.dispatch import Message
from worker.db.audit import record_call
from worker.db.engine import core_transaction, get_engine
from worker.db.models import ApiCall, Event, Failure, ImageJob, Order
from worker.db.schema import ensure_schema
from worker.db.storable import CODE_WIDTH
from worker.outbox import webhooks
from worker.outbox.events import record_event
from worker.platforms.lazop import LazopClient
from worker.platforms.lazop.platform import LazopPlatform
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.services import documents, images, orders, removal, sweepers
from worker.settings import Settings

LONE = "bad \ud800 text"  # what json.loads makes of "bad \\ud800 text"
LONG_CODE = "E" * 100


@pytest.fixture
def lazop_sandbox() -> Iterator[LazopSandbox]:
    sandbox = LazopSandbox(LazopSandboxConfig(image_job_seconds=(0.0, 0.0)), port=0)
    yield from lazop.started(sandbox)


@pytest.fixture
def lazop_platforms(lazop_sandbox: LazopSandbox) -> Iterator[PlatformFor]:
    """Every account's platform: an Open Platform seller of the sandbox, audited as a worker's
    calls are."""
    with LazopClient(
        lazop_sandbox.api_url,
        lazop_sandbox.app_key,
        lazop_sandbox.app_secret,
        auth_url=lazop_sandbox.auth_url,
        read_timeout=10.0,
        after_call=record_call,
    ) as client:
        seller = lazop.authorize(lazop_sandbox, client, lazop.SELLER)
        platform = LazopPlatform(client, seller.access_token, seller.on_illegal_token)
        yield lambda _account: platform


def _calls(sandbox: LazopSandbox, action: str) -> int:
    return len([c for c in sandbox.calls() if c.action == action])


def _events(sessions: sessionmaker[Session], kind: str) -> list[Event]:
    with sessions() as session:
        return list(session.scalars(select(Event).where(Event.type == kind)))


def _sendable(event: Event) -> bool:
    """The event's body as a webhook sends it: UTF-8 JSON."""
    json.dumps(event.data, ensure_ascii=False).encode("utf-8")
    return True


def test_a_removal_failure_answered_with_a_lone_surrogate_and_a_long_code_is_stored_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop_platforms: PlatformFor,
    lazop_sandbox: LazopSandbox,
) -> None:
    lazop_sandbox.configure({"answer_text": LONE, "removal_error_code": LONG_CODE})
    _, messages = removal.create_job(
        sessions, settings, settings.account, "u", ["U-1", "U-FAIL"], 50
    )
    _run(sessions, lazop_platforms, settings, messages)

    # The failing call, then one for the SKU it did not apply: no call repeated.
    assert _calls(lazop_sandbox, "/product/remove") == 2
    with sessions() as session:
        job = documents.removal_job(session, settings.account, "u")
        assert job is not None and (job["removed"], job["failed"]) == (1, 1)
        (failed,) = [s for s in job["skus"] if s["state"] == "failed"]
        assert failed["error_code"] == LONG_CODE[:CODE_WIDTH]
        assert failed["message"] == "bad \\ud800 text"
        (failure,) = session.scalars(select(Failure))
        assert failure.error_code == LONG_CODE[:CODE_WIDTH]
        codes = set(session.scalars(select(ApiCall.error_code)))
        assert codes == {None, LONG_CODE[:CODE_WIDTH]}
    (event,) = _events(sessions, "removal.finished")
    assert _sendable(event)


def test_an_order_answered_with_a_lone_surrogate_is_stored_and_its_event_can_be_sent(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop_platforms: PlatformFor,
    lazop_sandbox: LazopSandbox,
) -> None:
    lazop_sandbox.configure({"answer_text": LONE})
    messages = orders.fetch_order(
        sessions, lazop_platforms, settings, settings.account, 4711, "request-1"
    )
    assert messages == []
    assert _calls(lazop_sandbox, "/order/get") == 1
    with sessions() as session:
        (order,) = session.scalars(select(Order))
        assert (order.state, order.customer_first_name) == ("fetched", "bad \\ud800 text")
        assert order.raw["customer_first_name"] == "bad \\ud800 text"
    (event,) = _events(sessions, "order.fetched")
    assert _sendable(event)


def test_an_answer_no_rule_can_store_fails_its_work_once_and_is_never_called_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop_platforms: PlatformFor,
    lazop_sandbox: LazopSandbox,
) -> None:
    # The API answers every submit with the same batch_id: the second job cannot be recorded
    # under an id another job of the account holds.
    lazop_sandbox.configure({"migrate_batch_id": "the-same-batch"})
    urls = [f"https://img.example.com/{n}.jpg" for n in range(16)]
    _, messages = images.start_migration(sessions, settings, settings.account, "m", urls, 8)
    for message in messages:
        images.advance(sessions, lazop_platforms, settings, *message.args)

    assert _calls(lazop_sandbox, "/images/migrate") == 2
    with sessions() as session:
        jobs = list(session.scalars(select(ImageJob).order_by(ImageJob.id)))
        assert [(j.request_id, j.state) for j in jobs] == [
            ("the-same-batch", "pending"),
            (None, "failed"),
        ]
        assert jobs[1].lease_until is None
        assert (jobs[1].message or "").startswith("the answer could not be stored: ")
        (failure,) = session.scalars(select(Failure))
        assert failure.kind == "image_job" and failure.attempts == 1
    assert len(_events(sessions, "image_job.finished")) == 1
    # Nothing of the failed job is due: no sweep sends it, and its message does nothing.
    swept = sweepers.sweep_image_jobs(sessions, settings)
    assert all(m.args != (jobs[1].id,) for m in swept)
    assert images.advance(sessions, lazop_platforms, settings, jobs[1].id) == []
    assert _calls(lazop_sandbox, "/images/migrate") == 2


def test_an_event_of_work_holding_a_lone_surrogate_is_delivered(database_url: str) -> None:
    receiver = Receiver(fail_first=False)
    try:
        settings = Settings.from_env(
            {
                "DATABASE_URL": database_url,
                "LAZADA_WEBHOOK_URLS": receiver.url,
                "LAZADA_WEBHOOK_SECRET": SECRET,
            }
        )
        sessions = sessionmaker(get_engine(database_url), expire_on_commit=False)
        with core_transaction(sessions) as connection:
            # A document read back from a JSON column written before its values were made
            # storable may hold a lone surrogate.
            event_id = record_event(
                connection, "order.fetched", "acct", {"customer_first_name": LONE}
            )
        webhooks.deliver(sessions, settings, lambda *_: None, event_id)
        (delivered,) = receiver.events()[event_id]
        assert delivered["data"] == {"customer_first_name": "bad \\ud800 text"}
        with sessions() as session:
            assert session.get(Event, event_id).state == "delivered"  # type: ignore[union-attr]
    finally:
        receiver.stop()


def _run(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    messages: list[Message],
) -> None:
    """Run removal messages, and those they return, as a worker would."""
    for _ in range(20):
        if not messages:
            return
        following: list[Message] = []
        for message in messages:
            time.sleep(message.countdown or 0)  # the broker's countdown, not an assertion
            following += removal.process_batch(sessions, platforms, settings, *message.args)
        messages = following
    raise AssertionError("the job's messages never ran out")


def test_an_event_stored_before_its_data_was_made_storable_is_still_delivered(
    tmp_path: Path,
) -> None:
    # SQLite keeps the JSON text as written; a document recorded before the storable rules
    # holds a lone surrogate as its escape, and reads back holding the surrogate itself.
    database_url = f"sqlite:///{tmp_path}/events.sqlite3"
    receiver = Receiver(fail_first=False)
    try:
        settings = Settings.from_env(
            {
                "DATABASE_URL": database_url,
                "LAZADA_WEBHOOK_URLS": receiver.url,
                "LAZADA_WEBHOOK_SECRET": SECRET,
            }
        )
        ensure_schema(database_url)
        engine = get_engine(database_url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with core_transaction(sessions) as connection:
            event_id = record_event(connection, "order.fetched", "acct", {"note": "fine"})
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE events SET data = ? WHERE id = ?",
                (json.dumps({"customer_first_name": LONE}), event_id),
            )

        webhooks.deliver(sessions, settings, lambda *_: None, event_id)

        (delivered,) = receiver.events()[event_id]
        assert delivered["data"] == {"customer_first_name": "bad \\ud800 text"}
        with sessions() as session:
            assert session.get(Event, event_id).state == "delivered"  # type: ignore[union-attr]
    finally:
        receiver.stop()
