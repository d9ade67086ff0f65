"""The platform specification: what every registered platform does, run against each one's
sandbox over HTTP.

Each platform is reached as the worker reaches it: an account stored through the generic
store (worker.accounts.store.add_account, with the credentials its registry entry names), and
its `Platform` made by worker.accounts.platforms from the registry. The toy platform
(tests.support.toy) is registered here only, with its own sandbox: that it passes the same
specification with no change anywhere else is what shows a platform is one package and one
registry entry.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.orm import Session, sessionmaker

from tests.support.toy.platform import TOY
from tests.support.toy.sandbox import ToyConfig, ToySandbox
from worker.accounts import tokens
from worker.accounts.platforms import Platforms
from worker.accounts.store import add_account
from worker.db.engine import get_engine
from worker.db.schema import ensure_schema
from worker.platforms import ListedOrder, Platform, registry
from worker.platforms.errors import (
    NotFoundError,
    ThrottledApiError,
    TransientApiError,
    UnknownInBatch,
    UnsendableRequest,
)
from worker.platforms.lazop import LazopClient
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.sellercenter import Sandbox, SandboxConfig
from worker.settings import Settings

ACCOUNT = "spec-shop"
KNOWN_ORDER = 4242
UNKNOWN_ORDER = 900_000_001
LISTED = 130  # orders each sandbox's listing holds: more than a page


def images(seconds: float) -> list[str]:
    """Two images whose job takes `seconds`; the second one fails (the sandboxes' conventions)."""
    return [
        f"https://example.com/a.jpg?sandbox_duration={seconds}",
        f"https://example.com/broken.jpg?sandbox_duration={seconds}",
    ]


@dataclass(frozen=True)
class Kind:
    """How the specification reaches one platform: its sandbox, and an account of it."""

    name: str
    start: Callable[[], Any]
    credentials: Callable[[Any], dict[str, str]]
    api_url: Callable[[Any], str]
    removal_counts: Callable[[Any], Counter[str]]
    # Move listed orders one status on, updated now.
    change_orders: Callable[[Any, list[int]], object]
    # Platforms whose sellers authorize the app: store the tokens a consent would give.
    authorize: Callable[[Any, sessionmaker[Session], Settings], None] | None = None


def _lazop_authorize(
    sandbox: LazopSandbox, sessions: sessionmaker[Session], settings: Settings
) -> None:
    with LazopClient(
        sandbox.api_url, sandbox.app_key, sandbox.app_secret, auth_url=sandbox.auth_url
    ) as client:
        grant = client.create_token(sandbox.authorization_code(sandbox.sellers[0]))
    tokens.store_grant(sessions, settings, ACCOUNT, grant)


KINDS = {
    "sellercenter": Kind(
        name="sellercenter",
        start=lambda: Sandbox(
            SandboxConfig(image_job_seconds=(0.0, 0.0), listed_orders=LISTED)
        ).start(),
        credentials=lambda s: {"user_id": s.user_id, "api_key": s.api_key},
        api_url=lambda s: s.url,
        removal_counts=lambda s: Counter(s.removal_counts()),
        change_orders=lambda s, ids: s.change_orders(ids),
    ),
    "lazop": Kind(
        name="lazop",
        start=lambda: LazopSandbox(
            LazopSandboxConfig(image_job_seconds=(0.0, 0.0), listed_orders=LISTED)
        ).start(),
        credentials=lambda s: {
            "app_key": s.app_key,
            "app_secret": s.app_secret,
            "auth_url": s.auth_url,
        },
        api_url=lambda s: s.api_url,
        removal_counts=lambda s: Counter(s.removal_counts()),
        change_orders=lambda s, ids: s.change_orders(s.sellers[0], ids),
        authorize=_lazop_authorize,
    ),
    "toy": Kind(
        name="toy",
        start=lambda: ToySandbox(ToyConfig(listed_orders=LISTED)).start(),
        credentials=lambda s: {"shop_id": s.config.shop_id, "shop_secret": s.config.shop_secret},
        api_url=lambda s: s.url,
        removal_counts=lambda s: Counter(s.removal_counts()),
        change_orders=lambda s, ids: s.change_orders(ids),
    ),
}


@dataclass
class Subject:
    """A platform under the specification, with its sandbox."""

    kind: Kind
    platform: Platform
    sandbox: Any

    def removal_counts(self) -> Counter[str]:
        return self.kind.removal_counts(self.sandbox)


@pytest.fixture
def toy_registered() -> Iterator[None]:
    registry.register(TOY)
    try:
        yield
    finally:
        registry.unregister(TOY.name)


@pytest.fixture(params=sorted(KINDS))
def subject(
    request: pytest.FixtureRequest, tmp_path: Path, toy_registered: None
) -> Iterator[Subject]:
    kind = KINDS[request.param]
    url = f"sqlite:///{tmp_path / 'spec.sqlite3'}"
    ensure_schema(url)
    settings = Settings.from_env(
        {"DATABASE_URL": url, "LAZADA_SECRET_KEY": Fernet.generate_key().decode()}
    )
    sessions = sessionmaker(get_engine(url), expire_on_commit=False)
    sandbox = kind.start()
    try:
        with sessions.begin() as session:
            # A rate far above what a test sends: the limiter never defers a call here.
            add_account(
                session,
                settings,
                ACCOUNT,
                kind.name,
                kind.credentials(sandbox),
                api_url=kind.api_url(sandbox),
                rate_limit=1000,
            )
        if kind.authorize is not None:
            kind.authorize(sandbox, sessions, settings)
        yield Subject(kind, Platforms(sessions, settings)(ACCOUNT), sandbox)
    finally:
        sandbox.stop()


def test_every_platform_of_the_registry_is_under_the_specification() -> None:
    assert set(registry.names()) <= set(KINDS)


def test_skus_the_api_takes_are_each_removed_once(subject: Subject) -> None:
    outcome = subject.platform.remove_skus(["SPEC-1", "SPEC-2", "SPEC-3"])

    assert sorted(outcome.removed) == ["SPEC-1", "SPEC-2", "SPEC-3"]
    assert (outcome.failed, outcome.not_applied, outcome.called) == ({}, (), True)
    assert subject.removal_counts() == {"SPEC-1": 1, "SPEC-2": 1, "SPEC-3": 1}


def test_a_sku_the_api_refuses_fails_with_its_reason_and_every_sku_has_one_outcome(
    subject: Subject,
) -> None:
    sent = ["SPEC-1", "SPEC-FAIL-2", "SPEC-3"]
    outcome = subject.platform.remove_skus(sent)

    assert list(outcome.failed) == ["SPEC-FAIL-2"]
    assert outcome.failed["SPEC-FAIL-2"].message
    assert sorted([*outcome.removed, *outcome.failed, *outcome.not_applied]) == sorted(sent)
    # What the platform says it removed is what the API removed, no more.
    assert subject.removal_counts() == dict.fromkeys(outcome.removed, 1)


def test_a_sku_no_request_can_carry_fails_before_any_call_and_the_others_wait(
    subject: Subject,
) -> None:
    outcome = subject.platform.remove_skus(["SPEC-1", "bad\x00sku"])

    assert (outcome.called, outcome.removed, outcome.not_applied) == (False, (), ("SPEC-1",))
    assert list(outcome.failed) == ["bad\x00sku"]
    assert "never sent" in outcome.failed["bad\x00sku"].message
    assert subject.removal_counts() == {}


def test_more_skus_than_one_call_takes_are_refused_before_sending(subject: Subject) -> None:
    too_many = [f"SPEC-{n}" for n in range(subject.platform.max_skus_per_call + 1)]
    with pytest.raises(UnsendableRequest):
        subject.platform.remove_skus(too_many)
    assert subject.removal_counts() == {}


def test_a_known_order_comes_back_whole_with_aware_times(subject: Subject) -> None:
    order = subject.platform.get_order(KNOWN_ORDER)

    assert order.order_id == KNOWN_ORDER
    assert order.created_at is not None and order.created_at.tzinfo is not None
    assert order.created_at.utcoffset() == UTC.utcoffset(None)
    assert order.statuses
    assert order.items_count >= 1
    json.dumps(order.raw)  # stored as JSON


def test_an_unknown_order_is_not_found(subject: Subject) -> None:
    with pytest.raises(NotFoundError):
        subject.platform.get_order(UNKNOWN_ORDER)


def test_an_image_job_is_unfinished_until_its_time_then_has_images_and_per_image_errors(
    subject: Subject,
) -> None:
    platform = subject.platform
    running = platform.poll_images(platform.submit_images(images(3600)))
    assert (running.finished, running.images, running.errors) == (False, (), ())

    done = platform.poll_images(platform.submit_images(images(0)))
    assert done.finished
    # Every image but the broken one migrated (an Open Platform image does not name its
    # source, decision L8: only its count and new URL are common to all).
    assert len(done.images) == 1
    assert all(image.url.startswith("https://") and image.code for image in done.images)
    assert [error.original_url for error in done.errors] == [images(0)[1]]


def test_a_server_error_is_worth_another_try_and_removes_nothing(subject: Subject) -> None:
    subject.sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["http500"]})
    with pytest.raises(TransientApiError) as caught:
        subject.platform.remove_skus(["SPEC-1"])
    assert not isinstance(caught.value, ThrottledApiError)
    assert subject.removal_counts() == {}


def test_an_api_that_asks_for_fewer_calls_raises_a_throttled_error(subject: Subject) -> None:
    subject.platform.get_order(KNOWN_ORDER)  # the call that uses up the sandbox's rate
    subject.sandbox.configure({"rate_limit": 0.001})
    with pytest.raises(ThrottledApiError):
        for _ in range(3):
            subject.platform.get_order(KNOWN_ORDER)


def test_the_platforms_limits_are_what_a_call_takes(subject: Subject) -> None:
    platform = subject.platform
    assert platform.max_skus_per_call >= 1 and platform.max_urls_per_call >= 1
    assert platform.calls_per_order >= 1
    skus = [f"SPEC-{n}" for n in range(platform.max_skus_per_call)]
    assert sorted(platform.remove_skus(skus).removed) == sorted(skus)


def test_the_listing_pages_every_order_once_by_updated_at_and_makes_whole_orders(
    subject: Subject,
) -> None:
    platform = subject.platform
    now = datetime.now(UTC).replace(microsecond=0)
    listed = []
    offset = 0
    while True:
        page = platform.list_orders(now - timedelta(days=4), now, offset)
        listed += page.orders
        offset += page.rows
        if page.rows < platform.orders_per_page:
            break
    assert len({row.order_id for row in listed}) == len(listed) == LISTED
    moments = [row.updated_at for row in listed]
    assert all(m is not None and m.utcoffset() == timedelta(0) for m in moments)
    assert moments == sorted(moments)  # type: ignore[type-var]
    first = listed[0]
    items = None
    if platform.ids_per_items_call:
        ids = [row.order_id for row in listed[: platform.ids_per_items_call]]
        found = platform.order_items(ids)
        assert set(found) == set(ids)
        items = found[first.order_id]
        assert all(str(item["order_id"]) == str(first.order_id) for item in items)
        with pytest.raises(UnknownInBatch):
            platform.order_items([*ids[:3], UNKNOWN_ORDER])
    order = platform.listed_order(first, items)
    assert order.order_id == first.order_id and order.updated_at == first.updated_at
    json.dumps(order.raw)


def _listed(platform: Platform, status: str | None = None) -> list[ListedOrder]:
    """The listing of the last four days, paged to its end."""
    now = datetime.now(UTC).replace(microsecond=0)
    listed: list[ListedOrder] = []
    offset = 0
    while True:
        page = platform.list_orders(now - timedelta(days=4), now, offset, status)
        listed += page.orders
        offset += page.rows
        if page.rows < platform.orders_per_page:
            return listed


def test_the_listing_under_each_status_holds_the_orders_under_it_and_together_every_order(
    subject: Subject,
) -> None:
    platform = subject.platform
    ids = [row.order_id for row in _listed(platform)]
    subject.kind.change_orders(subject.sandbox, ids[: LISTED // 2])  # some orders move on
    everything = {row.order_id for row in _listed(platform)}
    under = {status: _listed(platform, status) for status in platform.order_statuses}

    assert set().union(*({row.order_id for row in rows} for rows in under.values())) == everything
    held = [status for status, rows in under.items() if rows]
    assert len(held) >= 2 and all(len(under[status]) < len(everything) for status in held)
    for status in held:
        rows = under[status]
        assert len({row.order_id for row in rows}) == len(rows)
        items: dict[int, Any] = {}
        step = platform.ids_per_items_call
        for start in range(0, len(rows), step) if step else ():
            items.update(platform.order_items([row.order_id for row in rows[start : start + step]]))
        for row in rows:
            assert status in platform.listed_order(row, items.get(row.order_id)).statuses


def test_the_listing_reads_only_the_window_it_is_given(subject: Subject) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    page = subject.platform.list_orders(now + timedelta(seconds=5), now + timedelta(hours=1), 0)
    assert (page.orders, page.rows) == ((), 0)
