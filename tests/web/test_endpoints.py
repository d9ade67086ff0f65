"""The console without a browser: /metrics against the documents, the push receiver's
signatures, the password and the Host check, and bad input on pages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import Client

from tests.support.worker_stack import BATCH
from worker.accounts.platforms import PlatformFor
from worker.accounts.store import add_account
from worker.broker.dispatch import Message
from worker.db.engine import core_transaction
from worker.db.heartbeats import beat, database_now
from worker.db.models import Account, ApiCall, Order, OrderSync, WorkerHeartbeat
from worker.services import documents, removal
from worker.settings import Settings
from worker.web import listings
from worker.web.app import Console


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The tests' settings with a key for stored secrets (PostgreSQL makes no key file)."""
    return replace(settings, secret_key=Fernet.generate_key().decode())


APP_KEY, APP_SECRET = "100123", "push-secret-of-the-app"
SELLER_ID = "200100300"


def _console(settings: Settings, sent: list[Message], **options: str | None) -> Client:
    public_url = options.pop("public_url", None) or "http://127.0.0.1:8700"
    return Client(Console(settings, public_url, options.get("password"), send=sent.append))


def _run(
    sessions: sessionmaker[Session], platforms: PlatformFor, settings: Settings, messages: list
) -> None:
    queue = list(messages)
    while queue:
        message = queue.pop(0)
        if message.countdown:
            time.sleep(message.countdown)
        queue += removal.process_batch(
            sessions, platforms, settings, *message.args, slot=message.slot, **message.kwargs
        )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_parse_as_prometheus_text_and_agree_with_the_documents(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = settings.account
    skus = [f"M-{n}" + ("-FAIL" if n % 7 == 0 else "") for n in range(130)]
    _, messages = removal.create_job(sessions, settings, account, "done-job", skus, BATCH)
    _run(sessions, platforms, settings, messages)
    removal.create_job(sessions, settings, account, "waiting", ["W-1", "W-2", "W-3"], BATCH)
    # Under way: its first batch called (SKU rows, one failed), its second holding its SKUs.
    monkeypatch.setattr(removal, "RUNNER_SECONDS", 0.0)  # a task does one batch
    halfway = [f"H-{n}" + ("-FAIL" if n == 3 else "") for n in range(BATCH + 5)]
    _, messages = removal.create_job(sessions, settings, account, "halfway", halfway, BATCH)
    removal.process_batch(sessions, platforms, settings, *messages[0].args)
    synced_through = datetime.now(UTC) - timedelta(minutes=10)
    with sessions.begin() as session:
        session.add(OrderSync(account=account, synced_through=synced_through))
        session.add(OrderSync(account="never-synced"))
    with core_transaction(sessions) as connection:
        beat(connection, "live-worker", "worker")
        beat(connection, "beat", "beat")  # beat's row is not a worker
        beat(connection, "gone-worker", "worker")
        connection.execute(
            WorkerHeartbeat.__table__.update()
            .where(WorkerHeartbeat.__table__.c.worker_id == "gone-worker")
            .values(beat_at=database_now(61))
        )

    answer = _console(settings, []).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")  # widely read
    samples = _samples(answer.get_data(as_text=True))

    with sessions() as session:
        keys = ("done-job", "waiting", "halfway")
        jobs = [documents.removal_job(session, account, k) for k in keys]
    by_state: dict[str, int] = {}
    for job in jobs:
        assert job is not None
        for sku in job["skus"]:
            by_state[sku["state"]] = by_state.get(sku["state"], 0) + 1
    for state, count in by_state.items():
        labels = (("account", account), ("state", state))
        assert samples[("lazada_removal_skus", labels)] == count, state
    assert samples[("lazada_removal_jobs", (("account", account), ("state", "done")))] == 1
    assert samples[("lazada_removal_jobs", (("account", account), ("state", "pending")))] == 1
    assert samples[("lazada_removal_jobs", (("account", account), ("state", "running")))] == 1
    assert by_state["pending"] == 3 + 5 and by_state["failed"] == 19 + 1
    assert samples[("lazada_work_due", (("kind", "removal"),))] == 2  # waiting, and halfway's
    assert samples[("lazada_accounts", (("state", "ready"),))] == 1  # the environment's
    with sessions() as session:
        recorded = session.execute(
            select(ApiCall.account, ApiCall.outcome, func.count()).group_by(
                ApiCall.account, ApiCall.outcome
            )
        ).all()
    assert sum(count for _, _, count in recorded) >= 3
    calls = {labels: v for (name, labels), v in samples.items() if name == "lazada_api_calls_total"}
    assert calls == {
        (("account", account), ("outcome", outcome)): count for account, outcome, count in recorded
    }
    assert samples[("lazada_workers_alive", ())] == 1  # the one within 60 s of the clock
    lag = samples[("lazada_order_sync_lag_seconds", (("account", account),))]
    assert lag >= 600 and lag < (datetime.now(UTC) - synced_through).total_seconds() + 1
    lagging = {labels for name, labels in samples if name == "lazada_order_sync_lag_seconds"}
    assert lagging == {(("account", account),)}  # no sync point, no lag


@pytest.mark.parametrize("state", [None, "failed", "pending", "removed", "cancelled"])
def test_the_job_page_reads_its_skus_a_page_at_a_time_in_the_documents_order(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    monkeypatch: pytest.MonkeyPatch,
    state: str | None,
) -> None:
    # The first batch called (SKU rows, some failed), the next two holding their SKUs: the
    # pages cross from rows to held SKUs, failed ones first.
    monkeypatch.setattr(removal, "RUNNER_SECONDS", 0.0)  # a task does one batch
    skus = [f"P-{n}" + ("-FAIL" if n % 7 == 3 else "") for n in range(2 * BATCH + 20)]
    _, messages = removal.create_job(sessions, settings, settings.account, "paged", skus, BATCH)
    removal.process_batch(sessions, platforms, settings, *messages[0].args)
    with sessions() as session:
        document = documents.removal_job(session, settings.account, "paged")
        assert document is not None
        wanted = [s for s in document["skus"] if state is None or s["state"] == state]
        wanted = [s for s in wanted if s["state"] == "failed"] + [
            s for s in wanted if s["state"] != "failed"
        ]
        shown: list[dict] = []
        number, more = 1, True
        while more:
            page = listings.job_page(session, settings.account, "paged", state, number)
            assert page is not None
            assert len(page.skus) <= listings.PAGE_SIZE
            shown += page.skus
            number, more = number + 1, page.more
    assert shown == wanted
    assert {k: page.job[k] for k in ("removed", "failed", "pending", "total")} == {
        k: document[k] for k in ("removed", "failed", "pending", "total")
    }
    failed = [s for s in document["skus"] if s["state"] == "failed"]
    assert page.reasons == documents.failure_reasons(failed)


def _push_account(settings: Settings, sessions: sessionmaker[Session], name: str) -> None:
    with sessions.begin() as session:
        add_account(
            session,
            settings,
            name,
            "lazop",
            {"app_key": APP_KEY, "app_secret": APP_SECRET, "country": "sg"},
        )
        row = session.query(Account).filter_by(name=name).one()
        row.seller_id = SELLER_ID


def _push(client: Client, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Authorization"] = signature
    return client.post("/lazada/push", data=body, headers=headers).status_code


def _signed(body: bytes, secret: str = APP_SECRET) -> str:
    return hmac.new(secret.encode(), APP_KEY.encode() + body, hashlib.sha256).hexdigest()


def _order_message(order_id: int, seller_id: str = SELLER_ID) -> bytes:
    return json.dumps(
        {
            "message_type": 0,
            "seller_id": seller_id,
            "site": "lazada_sg",
            "timestamp": int(time.time()),
            "data": {
                "trade_order_id": str(order_id),
                "trade_order_line_id": "1",
                "order_status": "pending",
                "status_update_time": int(time.time()),
            },
        }
    ).encode()


@pytest.fixture
def pushed(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[tuple[Client, list]]:
    _push_account(settings, sessions, "shop-sg")
    sent: list[Message] = []
    yield _console(settings, sent), sent


def test_a_verified_trade_order_push_enqueues_one_fetch_for_the_sellers_account(
    pushed: tuple[Client, list[Message]],
) -> None:
    client, sent = pushed
    body = _order_message(5551234)
    assert _push(client, body, _signed(body)) == 200
    assert _push(client, body, _signed(body).upper()) == 200  # L15: either case; a duplicate
    assert [(m.task, m.args, m.kwargs) for m in sent] == [
        ("lazada.fetch_order", (5551234,), {"account": "shop-sg"})
    ]


def test_a_push_for_an_order_whose_fetch_is_due_and_sent_enqueues_nothing_more(
    pushed: tuple[Client, list[Message]], sessions: sessionmaker[Session]
) -> None:
    client, sent = pushed
    now = datetime.now(UTC)
    with sessions.begin() as session:
        for order_id, dispatched_until in [(5551240, now + timedelta(minutes=5)), (5551241, None)]:
            session.add(
                Order(
                    account="shop-sg",
                    order_id=order_id,
                    state="pending",
                    statuses=[],
                    next_attempt_at=now - timedelta(seconds=1),
                    dispatched_until=dispatched_until,
                )
            )
    for order_id in (5551240, 5551241):
        body = _order_message(order_id)
        assert _push(client, body, _signed(body)) == 200
    # The first one's message is on the broker; the second one's was never sent.
    assert [m.args for m in sent] == [(5551241,)]


def test_a_push_with_a_bad_or_missing_signature_is_refused_and_enqueues_nothing(
    pushed: tuple[Client, list[Message]],
) -> None:
    client, sent = pushed
    body = _order_message(5551235)
    assert _push(client, body, None) == 401
    assert _push(client, body, "") == 401
    assert _push(client, body, _signed(body, "another-secret")) == 401
    assert _push(client, body + b" ", _signed(body)) == 401  # the body changed on the way
    assert sent == []


def test_a_push_for_a_seller_of_no_stored_account_is_acknowledged_and_ignored(
    pushed: tuple[Client, list[Message]],
) -> None:
    client, sent = pushed
    body = _order_message(5551236, seller_id="999")
    assert _push(client, body, _signed(body)) == 200
    assert sent == []


def test_pages_need_the_password_when_one_is_set_and_machine_endpoints_do_not(
    settings: Settings,
) -> None:
    client = _console(settings, [], password="s3cret", public_url="https://ops.example.com")
    assert client.get("/", headers={"Host": "ops.example.com"}).status_code == 401
    wrong = base64.b64encode(b"admin:nope").decode()
    right = base64.b64encode(b"admin:s3cret").decode()
    headers = {"Host": "ops.example.com", "Authorization": f"Basic {wrong}"}
    assert client.get("/", headers=headers).status_code == 401
    headers["Authorization"] = f"Basic {right}"
    page = client.get("/", headers=headers)
    assert page.status_code == 200
    assert "s3cret" not in page.get_data(as_text=True)
    assert client.get("/metrics", headers={"Host": "ops.example.com"}).status_code == 200


def test_pages_answer_only_for_loopback_or_the_public_urls_host(settings: Settings) -> None:
    client = _console(settings, [], public_url="https://ops.example.com")
    for host in ("127.0.0.1:8700", "localhost", "[::1]:8700", "ops.example.com"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example.net", "evil.example.net:8700", "ops.example.com.evil.net"):
        assert client.get("/", headers={"Host": host}).status_code == 400, host
    assert client.get("/metrics", headers={"Host": "evil.example.net"}).status_code == 200


def test_bad_filters_and_pages_are_400_with_a_message(settings: Settings) -> None:
    client = _console(settings, [])
    for path, words in (
        ("/jobs?state=stuck", "state 'stuck' is not one of"),
        ("/jobs?page=0", "page must be a whole number"),
        ("/orders?page=x", "page must be a whole number"),
        ("/orders?account=nobody", "no account named 'nobody'"),
        ("/orders/acct/not-a-number", "no account named"),
        ("/image-jobs?state=%00", "is not one of"),
        ("/failures?kind=x", "kind 'x' is not one of"),
    ):
        answer = client.get(path)
        assert answer.status_code == 400, path
        assert words in html.unescape(answer.get_data(as_text=True)), path


def test_a_forged_or_missing_oauth_state_is_400_and_stores_nothing(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    _push_account(settings, sessions, "shop-sg")
    client = _console(settings, [])
    for query in ("?code=0_abc&state=forged", "?code=0_abc", ""):
        answer = client.get("/oauth/callback" + query)
        assert answer.status_code == 400
        assert answer.headers["Referrer-Policy"] == "no-referrer"
    with sessions() as session:
        row = session.query(Account).filter_by(name="shop-sg").one()
        assert row.access_token is None and row.state == "needs_authorization"


def test_healthz_is_200_with_each_check_when_the_database_and_broker_answer(
    settings: Settings,
) -> None:
    answer = _console(settings, []).get("/healthz", headers={"Host": "anything.example"})
    assert answer.status_code == 200
    body = json.loads(answer.get_data(as_text=True))
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
    }


def _post_form(client: Client, path: str, form: dict[str, str]) -> tuple[int, str, str]:
    """A button's POST the way a browser sends it: the page's token cookie, then the form."""
    client.get(path)
    token = client.get_cookie("lw_csrf")
    assert token is not None
    answer = client.post(form.pop("action"), data={**form, "csrf": token.value})
    notice = client.get_cookie("lw_notice")
    return answer.status_code, answer.headers.get("Location", ""), notice.value if notice else ""


def test_sync_orders_now_sends_the_sync_message_and_says_whether_one_was_running(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    account = settings.account
    sent: list[Message] = []
    client = _console(settings, sent)
    path = f"/accounts/{quote(account, safe='')}"
    form = {"action": "/accounts/sync-orders", "account": account}
    status, location, notice = _post_form(client, path, dict(form))
    assert (status, location) == (303, path)
    assert "was started" in notice
    assert [(m.task, m.args, m.kwargs) for m in sent] == [
        ("lazada.sync_orders", (), {"account": account})  # what `sync-orders` sends
    ]
    with sessions.begin() as session:
        session.add(OrderSync(account=account, run_until=datetime.now(UTC)))
    status, location, notice = _post_form(client, path, dict(form))
    assert status == 303 and "another will follow it" in notice
    assert len(sent) == 2

    refused = client.post("/accounts/sync-orders", data={"account": account, "csrf": "forged"})
    assert refused.status_code == 403
    status, _, _ = _post_form(client, path, {**form, "account": "nobody"})
    assert status == 400
    assert len(sent) == 2


def test_sync_orders_now_says_nothing_was_started_when_the_broker_does_not_take_it(
    settings: Settings,
) -> None:
    def refused(message: Message) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    client = Client(Console(settings, "http://127.0.0.1:8700", send=refused))
    path = f"/accounts/{quote(settings.account, safe='')}"
    client.get(path)
    token = client.get_cookie("lw_csrf")
    assert token is not None
    answer = client.post(
        "/accounts/sync-orders", data={"account": settings.account, "csrf": token.value}
    )
    assert answer.status_code == 503
    assert "nothing was started" in html.unescape(answer.get_data(as_text=True))
    assert client.get_cookie("lw_notice") is None  # no notice that a sync was started
