"""The console in headless Chromium, beside a real worker on the embedded broker and SQLite:
what an operator sees and what each button does."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import select

from tests.support.lazop import SELLER, start_sandbox
from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from tests.web.conftest import Served
from tests.web.pages import job, job_in, screenshot
from worker.accounts.store import add_account
from worker.db.models import Account, Event, EventDelivery, ImageJob, Order, OrderSync

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True),
]


def _lazop_account(stack: Stack, sandbox: Any, name: str) -> None:
    """An Open Platform account of the sandbox's app, not yet authorized (parked)."""
    with stack.sessions.begin() as session:
        add_account(
            session,
            stack.settings,
            name,
            "lazop",
            {
                "app_key": sandbox.app_key,
                "app_secret": sandbox.app_secret,
                "auth_url": sandbox.auth_url,
            },
            api_url=sandbox.api_url,
        )


def _count(stack: Stack, model: Any) -> int:
    with stack.sessions() as session:
        return len(session.scalars(select(model.id)).all())


def _row(stack: Stack, name: str) -> Account:
    with stack.sessions() as session:
        return session.scalars(select(Account).where(Account.name == name)).one()


def test_the_overview_shows_a_parked_account_and_a_running_job(
    stack: Stack, console: Served, page: Any
) -> None:
    sandbox = start_sandbox()
    try:
        _lazop_account(stack, sandbox, "shop-th")
        stack.sandbox.configure({"latency": 1.0})
        stack.start_worker()
        stack.send("lazada.fetch_order", 1001)
        stack.send("lazada.migrate_images", ["https://img.example.com/a.jpg"], key="imgs")
        wait_for(lambda: _count(stack, Order) and _count(stack, ImageJob), 60, "order, image")
        stack.send("lazada.remove_products", [f"RUN-{n}" for n in range(3000)], key="running")
        job_in(stack, stack.settings.account, "running", "running")
        page.goto(console.url + "/")
        parked = page.locator("section.alert")
        assert "shop-th" in parked.inner_text()
        assert "needs_authorization" in parked.inner_text()
        running = page.locator("section", has_text="Running removal jobs")
        assert "running" in running.inner_text()
        screenshot(page, "overview")
        page.get_by_role("link", name="running", exact=True).click()
        assert page.url.startswith(console.url + "/jobs/")
        screenshot(page, "job-running")
        page.goto(console.url + "/accounts")
        screenshot(page, "accounts")
        for path, name in (("/orders", "orders"), ("/image-jobs", "image-jobs")):
            page.goto(console.url + path)
            assert page.locator("table tr").count() > 1  # a row beside the header
            screenshot(page, name)
    finally:
        sandbox.stop()


def test_cancel_stops_a_running_job(stack: Stack, console: Served, page: Any) -> None:
    account = stack.settings.account
    stack.sandbox.configure({"latency": 1.0})
    stack.start_worker()
    stack.send("lazada.remove_products", [f"C-{n}" for n in range(3000)], key="to-cancel")
    job_in(stack, account, "to-cancel", "running")
    page.goto(f"{console.url}/jobs/{account}/to-cancel")
    page.click("button:has-text('Cancel')")
    notice = page.locator(".notice").inner_text()
    assert "SKUs cancelled" in notice
    done = job_in(stack, account, "to-cancel", "done")
    assert done["cancelled"] > 0 and done["removed"] < 3000
    removed = stack.sandbox.removal_counts()
    assert sum(removed.values()) == done["removed"]  # nothing cancelled was sent
    page.goto(f"{console.url}/jobs/{account}/to-cancel")
    assert "cancelled" in page.locator("dl.facts").inner_text()


def test_retry_sends_the_failed_skus_again(stack: Stack, console: Served, page: Any) -> None:
    account = stack.settings.account
    skus = [f"R-{n}" + ("-FAIL" if n % 10 == 0 else "") for n in range(120)]
    stack.start_worker()
    stack.send("lazada.remove_products", skus, key="to-retry")
    first = job_in(stack, account, "to-retry", "done")
    assert first["failed"] == 12
    page.goto(f"{console.url}/jobs/{account}/to-retry")
    assert "Why SKUs failed" in page.content()
    rows = page.locator("table tr").all_inner_texts()
    assert "failed" in rows[1]  # failed SKUs first
    screenshot(page, "job-failed")
    page.goto(f"{console.url}/failures?account={account}")
    assert "R-0-FAIL" in page.locator("table").inner_text()
    screenshot(page, "failures")
    page.goto(f"{console.url}/jobs/{account}/to-retry")
    stack.sandbox.config.failing_skus = ()  # the seller fixed them
    page.click("button:has-text('Retry failed SKUs')")
    assert "12 failed SKUs are sent again" in page.locator(".notice").inner_text()

    def retried() -> dict | None:
        found = job(stack, account, "to-retry")
        return found if found and found["state"] == "done" and not found["failed"] else None

    again = wait_for(retried, 120, "the retried job done")
    assert again["removed"] == 120
    assert max(stack.sandbox.removal_counts().values()) == 1
    page.goto(f"{console.url}/jobs?account={account}&state=done")
    assert "to-retry" in page.locator("table").inner_text()
    screenshot(page, "jobs")


def test_redeliver_sends_an_event_again(stack: Stack, console: Served, page: Any) -> None:
    stack.start_worker()
    stack.send(
        "lazada.remove_products", ["E-1", "E-2"], key="evented", callback="shop.removals_done"
    )
    job_in(stack, stack.settings.account, "evented", "done")

    def delivered() -> EventDelivery | None:
        with stack.sessions() as session:
            found = session.scalars(select(EventDelivery)).first()
        return found if found is not None and found.state == "delivered" else None

    first = wait_for(delivered, 60, "the event delivered")
    page.goto(console.url + "/events")
    screenshot(page, "events")
    page.click("button:has-text('Redeliver')")
    assert "pending again" in page.locator(".notice").inner_text()

    def delivered_again() -> EventDelivery | None:
        # A redelivery starts a fresh series of attempts (its count starts again): delivered
        # again is a later delivered_at.
        found = delivered()
        if found is None or found.delivered_at is None or first.delivered_at is None:
            return None
        return found if found.delivered_at > first.delivered_at else None

    wait_for(delivered_again, 60, "the event delivered again")
    with stack.sessions() as session:
        assert session.scalars(select(Event.state)).one() == "delivered"


def test_a_post_without_the_forms_token_changes_nothing(
    stack: Stack, console: Served, page: Any
) -> None:
    account = stack.settings.account
    stack.sandbox.configure({"latency": 1.0})
    stack.start_worker()
    stack.send("lazada.remove_products", [f"T-{n}" for n in range(3000)], key="kept")
    job_in(stack, account, "kept", "running")
    page.goto(f"{console.url}/jobs/{account}/kept")  # the page sets the token's cookie
    form = {"account": account, "key": "kept"}
    missing = page.request.post(console.url + "/jobs/cancel", form=form)
    assert missing.status == 403
    wrong = page.request.post(console.url + "/jobs/cancel", form={**form, "csrf": "forged"})
    assert wrong.status == 403
    # Another site's form: the browser does not send the SameSite=Lax cookie with it.
    plain = requests.post(console.url + "/jobs/cancel", data={**form, "csrf": "x"}, timeout=10)
    assert plain.status_code == 403
    current = job(stack, account, "kept")
    assert current is not None and current["cancelled"] == 0 and current["state"] == "running"


def test_connect_goes_through_the_consent_page_and_the_parked_work_resumes(
    stack: Stack, console: Served, page: Any
) -> None:
    sandbox = start_sandbox()
    try:
        _lazop_account(stack, sandbox, "shop-th")
        stack.start_worker()
        stack.send("lazada.remove_products", ["P-1", "P-2"], key="parked", account="shop-th")
        callbacks: list[str] = []
        page.on("request", lambda r: callbacks.append(r.url) if "/oauth/callback" in r.url else 0)
        page.goto(console.url + "/accounts/shop-th")
        screenshot(page, "account-parked")
        page.click("button:has-text('Connect')")
        assert page.url.startswith(sandbox.auth_url.removesuffix("/rest") + "/oauth/authorize")
        screenshot(page, "sandbox-consent")
        page.click(f"button:has-text('Authorize as {SELLER}')")
        assert page.url == console.url + "/accounts/shop-th"  # the code left the address bar
        assert "is connected" in page.locator(".notice").inner_text()
        assert "ready" in page.locator("dl.facts").inner_text()
        screenshot(page, "account-connected")
        done = job_in(stack, "shop-th", "parked", "done")
        assert done["removed"] == 2

        stored = _row(stack, "shop-th").access_token
        assert len(callbacks) == 1
        reload = page.goto(callbacks[0])  # a reload, or the link in a second tab
        assert reload is not None and reload.status == 400
        assert "unknown, used or expired" in page.content()
        forged = page.goto(console.url + "/oauth/callback?code=0_abc&state=forged")
        assert forged is not None and forged.status == 400
        assert _row(stack, "shop-th").access_token == stored
        assert sum(1 for c in sandbox.calls() if c.action == "/auth/token/create") == 1
    finally:
        sandbox.stop()


def test_a_reconnect_by_another_seller_is_refused_and_the_tokens_kept(
    stack: Stack, console: Served, page: Any
) -> None:
    sandbox = start_sandbox()
    try:
        _lazop_account(stack, sandbox, "shop-th")
        page.goto(console.url + "/accounts/shop-th")
        page.click("button:has-text('Connect')")
        page.click(f"button:has-text('Authorize as {SELLER}')")
        before = _row(stack, "shop-th")
        page.click("button:has-text('Reconnect')")
        answer = None
        with page.expect_navigation() as navigation:
            page.click("button:has-text('Authorize as seller-b')")
        answer = navigation.value
        assert answer is not None and answer.status == 409
        assert "nothing was stored" in page.content()
        screenshot(page, "reconnect-other-seller")
        after = _row(stack, "shop-th")
        assert (after.seller_id, after.access_token) == (before.seller_id, before.access_token)
    finally:
        sandbox.stop()


def test_sync_orders_now_stores_the_sellers_orders_and_shows_the_sync_point(
    stack: Stack, console: Served, page: Any
) -> None:
    account = stack.settings.account
    added = stack.sandbox.add_orders(3, ago=120)
    stack.start_worker()
    address = f"{console.url}/accounts/{quote(account, safe='')}"
    page.goto(address)
    facts = page.locator("dl.facts").inner_text()
    assert "orders synced through\t-" in facts or "orders synced through\n-" in facts
    page.click("button:has-text('Sync orders now')")
    assert page.url == address  # redirected after the POST
    assert "was started" in page.locator(".notice").inner_text()

    def synced() -> OrderSync | None:
        with stack.sessions() as session:
            row = session.scalars(select(OrderSync).where(OrderSync.account == account)).first()
        return row if row is not None and row.synced_through is not None else None

    try:
        row = wait_for(synced, 120, "the account's orders synced")
    except AssertionError:
        print(stack.logs())
        raise
    with stack.sessions() as session:
        stored = set(session.scalars(select(Order.order_id).where(Order.account == account)))
    assert set(added) <= stored
    page.goto(address)
    facts = page.locator("dl.facts").inner_text()
    assert row.synced_through is not None
    assert row.synced_through.isoformat()[:19].replace("T", " ") in facts
    screenshot(page, "account-synced")
