"""The simulated seller account: what each action does once a request is authenticated."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from worker.sandbox import catalogue, request_bodies
from worker.sandbox.images import MAX_IMAGES_PER_CALL, ImageJob, ImageJobs
from worker.sandbox.order_book import MAX_LIMIT, MAX_OFFSET, OrderBook, parse_api_time
from worker.sandbox.removals import MAX_SKUS_PER_CALL, Removals, failing_skus
from worker.sandbox.replies import Node
from worker.sandbox.sellercenter.config import SandboxConfig
from worker.sandbox.sellercenter.errors import ErrorDetail, SellerCenterErrorAnswer
from worker.sandbox.sellercenter.responses import Success

T = TypeVar("T")
SELLER = ""  # the legacy sandbox serves one seller: its listing is the book's only one
# The values GetOrders takes as `Status`, as the legacy documentation lists them.
LISTING_STATUSES = catalogue.OPEN_STATUSES | catalogue.FINAL_STATUSES


@dataclass(frozen=True)
class ActionSpec:
    """How an action must be called; ``read_only`` ones may run even for a faulted call."""

    method: str
    read_only: bool


ACTIONS: dict[str, ActionSpec] = {
    "GetOrder": ActionSpec("GET", read_only=True),
    "GetOrders": ActionSpec("GET", read_only=True),
    "RemoveProduct": ActionSpec("POST", read_only=False),
    "MigrateImages": ActionSpec("POST", read_only=False),
    "GetResponse": ActionSpec("POST", read_only=True),
}


class SellerCenter:
    """State behind the actions (removed SKUs, image jobs, the order clock); thread-safe."""

    def __init__(self, seed: int) -> None:
        self.started = time.monotonic()
        self.images = ImageJobs(seed)
        self.removals = Removals()
        self.book = OrderBook(seed)

    def call(
        self,
        action: str,
        params: Mapping[str, str],
        body: bytes,
        config: SandboxConfig,
        *,
        apply: bool = True,
    ) -> Success:
        """Run ``action``; with ``apply=False`` only answer as if it had been done (faults)."""
        if action == "GetOrder":
            return self.get_order(params.get("OrderId", ""), config)
        if action == "GetOrders":
            return self.get_orders(params, config)
        if action == "RemoveProduct":
            skus = _payload(request_bodies.seller_skus, body)
            return self.remove_product(skus, config, apply=apply)
        if action == "MigrateImages":
            urls = _payload(request_bodies.image_urls, body)
            return self.migrate_images(urls, config, apply=apply)
        if action == "GetResponse":
            return self.get_response(_payload(request_bodies.request_id, body))
        raise SellerCenterErrorAnswer(8)

    def get_orders(self, params: Mapping[str, str], config: SandboxConfig) -> Success:
        """GetOrders (section 9, D9): ``UpdatedAfter``/``UpdatedBefore`` in ISO 8601 with an
        offset (E017 otherwise), ``Limit`` at most 100 (E019), ``Offset`` at most 4500 (E014),
        ``SortBy=updated_at``, ``SortDirection=ASC``, ``Status`` one of the documented values
        (E036 otherwise, the code LAZOP gives it; an order is under each status it shows);
        dates answered in UTC without an offset."""
        self._refresh_book(config)
        after_text = params.get("UpdatedAfter", "")
        if not after_text:
            raise SellerCenterErrorAnswer(1, "UpdatedAfter")
        after = parse_api_time(after_text)
        before_text = params.get("UpdatedBefore", "")
        before = parse_api_time(before_text) if before_text else None
        if after is None or (before_text and before is None):
            raise SellerCenterErrorAnswer(17)
        limit_text, offset_text = params.get("Limit", "100"), params.get("Offset", "0")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise SellerCenterErrorAnswer(19)
        if not offset_text.isdigit() or int(offset_text) > MAX_OFFSET:
            raise SellerCenterErrorAnswer(14)
        if params.get("SortBy", "updated_at") != "updated_at":
            raise SellerCenterErrorAnswer(74)
        if params.get("SortDirection", "ASC").upper() != "ASC":
            raise SellerCenterErrorAnswer(75)
        status = params.get("Status", "")
        if status and status not in LISTING_STATUSES:
            raise SellerCenterErrorAnswer(36)
        keep = (lambda row: status in self.book.statuses(row, config.seed)) if status else None
        rows = self.book.listing(SELLER, after, before, int(offset_text), int(limit_text), keep)
        orders = [self.book.document(row, config.seed, UTC) for row in rows]
        return Success("Orders", {"Orders": {"Order": orders}})

    def add_orders(self, count: int, config: SandboxConfig, ago: float = 0.0) -> list[int]:
        self._refresh_book(config)
        return self.book.add(SELLER, count, _ago(ago))

    def change_orders(
        self, order_ids: list[int], config: SandboxConfig, ago: float = 0.0
    ) -> list[int]:
        self._refresh_book(config)
        return self.book.change(SELLER, order_ids, _ago(ago))

    def _refresh_book(self, config: SandboxConfig) -> None:
        self.book.populate(SELLER, config.listed_orders, config.listed_days)
        self.book.churn(SELLER, config.order_churn)

    def get_order(self, raw_order_id: str, config: SandboxConfig) -> Success:
        order_id = catalogue.parse_order_id(raw_order_id)
        listed = self.book.get(SELLER, order_id) if order_id is not None else None
        if listed is not None:
            document = self.book.document(listed, config.seed, UTC)
            return Success("Order", {"Orders": {"Order": [document]}})
        if order_id is None or order_id >= config.missing_order_from:
            raise SellerCenterErrorAnswer(16, raw_order_id)
        elapsed = time.monotonic() - self.started
        document = catalogue.order(order_id, config.seed, elapsed, config.order_advance_seconds)
        return Success("Order", {"Orders": {"Order": [document]}})

    def remove_product(self, skus: list[str], config: SandboxConfig, *, apply: bool) -> Success:
        """All or nothing (D4): one SKU matching ``failing_skus`` fails the whole call with E503
        (see :mod:`worker.sandbox.removals`)."""
        if len(skus) > MAX_SKUS_PER_CALL:
            raise SellerCenterErrorAnswer(
                204,
                details=[
                    ErrorDetail(
                        "SellerSku",
                        f"At most {MAX_SKUS_PER_CALL} SellerSkus in one request",
                        str(len(skus)),
                    )
                ],
            )
        failing = failing_skus(skus, config.failing_skus)
        if failing:
            raise SellerCenterErrorAnswer(
                503,
                details=[
                    ErrorDetail("SellerSku", f"SellerSku '{sku}' could not be removed", sku, sku)
                    for sku in failing
                ],
            )
        if apply:
            self.removals.record(skus)
        return Success("Product")

    def migrate_images(self, urls: list[str], config: SandboxConfig, *, apply: bool) -> Success:
        """Starts a job and answers its RequestId in the Head (D5); more than 8 URLs is E011."""
        if len(urls) > MAX_IMAGES_PER_CALL:
            raise SellerCenterErrorAnswer(
                11,
                details=[
                    ErrorDetail(
                        "Url",
                        f"At most {MAX_IMAGES_PER_CALL} images in one request",
                        str(len(urls)),
                    )
                ],
            )
        if not apply:
            return Success("Images", request_id=self.images.new_request_id())
        job = self.images.submit(urls, config.image_job_seconds)
        return Success("Images", request_id=job.request_id)

    def get_response(self, request_id: str) -> Success:
        """D6: empty Body while running, Images/Errors when done, E005 for an unknown id."""
        job = self.images.get(request_id)
        if job is None:
            raise SellerCenterErrorAnswer(
                5, details=[ErrorDetail("RequestId", "Unknown RequestId", request_id)]
            )
        return Success("Images", _response_body(job, time.monotonic()))

    def removal_counts(self) -> Counter[str]:
        return self.removals.counts()


def _response_body(job: ImageJob, now: float) -> Node:
    """GetResponse's Body: empty while running; then Images and/or Errors (empty ones left
    out, so "neither" always means "still running")."""
    if not job.finished(now):
        return {}
    body: Node = {}
    if job.images:
        body["Images"] = {"Image": list(job.images)}
    if job.errors:
        body["Errors"] = {"Error": list(job.errors)}
    return body


def _ago(seconds: float) -> datetime | None:
    return datetime.now(UTC) - timedelta(seconds=seconds) if seconds else None


def _payload(parse: Callable[[bytes], T], body: bytes) -> T:
    """``parse(body)``, a payload it refuses answered as the legacy API does (E030, E005)."""
    try:
        return parse(body)
    except request_bodies.PayloadError as error:
        details = [ErrorDetail(error.field, error.message)] if error.field else []
        raise SellerCenterErrorAnswer(error.code, details=details) from None
