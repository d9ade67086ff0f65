"""The simulated app and its sellers: what each LAZOP endpoint does once a call is signed.

Orders come from the shared catalogue (the legacy sandbox's deterministic orders and lifecycles),
drawn per seller and rewritten in LAZOP's snake_case JSON (L7). Image jobs are the shared jobs,
answered in LAZOP's shape (L8). Removals follow the shared rules, counted per seller (L6).
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from worker.sandbox import catalogue, request_bodies
from worker.sandbox.images import MAX_IMAGES_PER_CALL, ImageJobs
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.lazop.errors import LazopErrorAnswer
from worker.sandbox.lazop.tokens import Authority, Grant
from worker.sandbox.order_book import (
    MAX_ITEMS_IDS,
    MAX_LIMIT,
    MAX_OFFSET,
    OrderBook,
    parse_api_time,
)
from worker.sandbox.removals import MAX_SKUS_PER_CALL, Removals, failing_skus
from worker.sandbox.replies import Node

ORDER_OFFSET = " +0800"
"""LAZOP writes order times as ``2014-10-15 18:36:05 +0800``."""
VENTURE_ZONE = timezone(timedelta(hours=8))
"""The sandbox's venture (sg): listed orders' times are written in its offset."""
LISTING_STATUSES = frozenset(
    {
        "unpaid",
        "pending",
        "packed",
        "topack",
        "toship",
        "ready_to_ship",
        "shipping",
        "shipped",
        "delivered",
        "failed_delivery",
        "failed",
        "canceled",
        "returned",
        "shipped_back",
        "lost",
        "lost_by_3pl",
        "damaged_by_3pl",
    }
)
"""The values ``/orders/get`` takes as ``status``, as its documentation lists them."""
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Answer:
    """A successful endpoint's result: ``data`` and any top-level fields."""

    data: Any = None
    top_level: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Endpoint:
    method: str | None  # None: GET or POST
    seller_api: bool  # needs an access_token; False for /auth/token/*
    changes_state: bool


API_ENDPOINTS: dict[str, Endpoint] = {
    "/product/remove": Endpoint("POST", True, True),
    "/order/get": Endpoint("GET", True, False),
    "/order/items/get": Endpoint("GET", True, False),
    "/orders/get": Endpoint("GET", True, False),
    "/orders/items/get": Endpoint("GET", True, False),
    "/images/migrate": Endpoint("POST", True, True),
    "/image/response/get": Endpoint("GET", True, False),
}
AUTH_ENDPOINTS: dict[str, Endpoint] = {
    "/auth/token/create": Endpoint(None, False, True),
    "/auth/token/refresh": Endpoint(None, False, True),
}


def seller_id(seller: str) -> str:
    """A stable numeric id for a seller name, as LAZOP's country_user_info carries."""
    return str(100_000_000 + zlib.crc32(seller.encode("utf-8")) % 900_000_000)


class OpenPlatform:
    """State behind the endpoints (tokens, removals, image jobs); thread-safe."""

    def __init__(self, seed: int) -> None:
        self.started = time.monotonic()
        self.authority = Authority()
        self.images = ImageJobs(seed)
        self.removals = Removals()
        self.book = OrderBook(seed)
        self._image_owner: dict[str, str] = {}
        self._polls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def call(
        self,
        path: str,
        seller: str | None,
        params: Mapping[str, str],
        config: LazopSandboxConfig,
        *,
        apply: bool,
    ) -> Answer:
        """Run the endpoint at ``path``; with ``apply=False`` only answer as if done (faults)."""
        if path == "/auth/token/create":
            code = _required(params, "code")
            if not apply:  # a truncated answer: the code stays usable
                raise LazopErrorAnswer("ServiceTimeout")
            grant = self.authority.create(
                code, config.access_token_seconds, config.refresh_token_seconds
            )
            return Answer(top_level=_token_answer(grant, config, "country_user_info", int))
        if path == "/auth/token/refresh":
            refresh = _required(params, "refresh_token")
            if not apply:
                raise LazopErrorAnswer("ServiceTimeout")
            grant = self.authority.refresh(refresh, config.access_token_seconds)
            # Numbers as strings here, as some of the docs' examples show them.
            return Answer(top_level=_token_answer(grant, config, "country_user_info_list", str))
        assert seller is not None
        if path == "/product/remove":
            return self.remove(seller, _sku_list(params), config, apply=apply)
        if path == "/order/get":
            return Answer(self.order(seller, _order_id(params, config), config))
        if path == "/order/items/get":
            return Answer(self.items(seller, _order_id(params, config), config))
        if path == "/orders/get":
            return Answer(self.list_orders(seller, params, config))
        if path == "/orders/items/get":
            return Answer(self.list_items(seller, params, config))
        if path == "/images/migrate":
            return self.migrate(seller, params, config, apply=apply)
        if path == "/image/response/get":
            return self.image_response(seller, _required(params, "batch_id"), config)
        raise LazopErrorAnswer("InvalidApiPath", path)

    # -- products ------------------------------------------------------------------------------

    def remove(
        self, seller: str, skus: list[str], config: LazopSandboxConfig, *, apply: bool
    ) -> Answer:
        """L6: one SKU matching ``failing_skus`` fails the call with 503 naming it in
        ``detail``; nothing is applied then. Removing a removed SKU again succeeds."""
        if len(skus) > MAX_SKUS_PER_CALL:
            raise LazopErrorAnswer(
                "204",
                detail=[
                    {
                        "field": "seller_sku_list",
                        "message": f"At most {MAX_SKUS_PER_CALL} SellerSkus in one request",
                        "value": str(len(skus)),
                    }
                ],
            )
        failing = failing_skus(skus, config.failing_skus)
        if failing:
            raise LazopErrorAnswer(
                config.removal_error_code,
                detail=[
                    {
                        "field": "seller_sku_list",
                        "message": config.answer_text or f"SellerSku '{sku}' could not be removed",
                        "seller_sku": sku,
                    }
                    for sku in failing
                ],
            )
        if apply:
            self.removals.record(skus, seller)
        return Answer({})

    def removal_counts(self, seller: str | None = None) -> Counter[str]:
        return self.removals.counts(seller)

    # -- orders --------------------------------------------------------------------------------

    def order(self, seller: str, order_id: int, config: LazopSandboxConfig) -> dict[str, Any]:
        document = self._rewrite(self._legacy_order(seller, order_id, config))
        if config.answer_text:
            document["customer_first_name"] = config.answer_text
        return document

    def _rewrite(self, legacy: Node) -> dict[str, Any]:
        """A legacy order document in LAZOP's snake_case JSON (L7)."""
        document: dict[str, Any] = {}
        for name, value in legacy.items():
            document[_snake(name)] = value
        for name in ("address_billing", "address_shipping"):
            address = document[name]
            document[name] = (
                {_snake(key): text for key, text in address.items()}
                if isinstance(address, dict)
                else {}
            )
        statuses = legacy.get("Statuses")
        listed = statuses.get("Status", []) if isinstance(statuses, dict) else []
        document["statuses"] = [listed] if isinstance(listed, str) else list(listed)
        for name in ("created_at", "updated_at"):
            document[name] = f"{document[name]}{ORDER_OFFSET}" if document[name] else ""
        document["gift_option"] = document.get("gift_option") == "1"
        document["items_count"] = int(str(document.get("items_count") or 0))
        document["promised_shipping_times"] = ""
        return document

    def items(self, seller: str, order_id: int, config: LazopSandboxConfig) -> list[Any]:
        """Each unit its own item (as Lazada's order items answer lists them)."""
        order = self.order(seller, order_id, config)
        count = order["items_count"]
        statuses = order["statuses"] or ["pending"]
        price = round(float(order["price"]) / max(count, 1), 2)
        return [
            {
                "order_item_id": str(order_id * 100 + index),
                "order_id": str(order_id),
                "sku": f"SKU-{order_id}-{index % 3}",
                "shop_sku": f"{order_id}_{index % 3}-SG",
                "sku_id": str(order_id * 10 + index % 3),
                "name": f"Sandbox product {index % 3} ✓",
                "item_price": f"{price:.2f}",
                "paid_price": f"{price:.2f}",
                "currency": "SGD",
                "status": statuses[index % len(statuses)],
                "created_at": order["created_at"],
                "updated_at": order["updated_at"],
            }
            for index in range(count)
        ]

    def list_orders(
        self, seller: str, params: Mapping[str, str], config: LazopSandboxConfig
    ) -> dict[str, Any]:
        """``/orders/get`` (section 10): by ``updated_at`` or ``created_at`` ascending or
        descending; the filters' times in the API's shape (17 otherwise), ``limit`` at most 100
        (19), ``offset`` at most 4500 (14), ``status`` one of the documented values (36
        otherwise; an order is under each status its items have). Only the ``update_*``
        filters and the ``updated_at`` sort are served; the others answer as the API does for
        a bad value."""
        self._refresh_book(seller, config)
        after_text = params.get("update_after", "")
        if not after_text:
            raise LazopErrorAnswer("MissingParameter", "update_after")
        after = parse_api_time(after_text)
        before_text = params.get("update_before", "")
        before = parse_api_time(before_text) if before_text else None
        if after is None or (before_text and before is None):
            raise LazopErrorAnswer("17")
        limit = _number(params.get("limit", "10"), "19")
        offset = _number(params.get("offset", "0"), "14")
        if not 1 <= limit <= MAX_LIMIT:
            raise LazopErrorAnswer("19")
        if offset > MAX_OFFSET:
            raise LazopErrorAnswer("14")
        if params.get("sort_by", "updated_at") != "updated_at":
            raise LazopErrorAnswer("74")
        if params.get("sort_direction", "ASC").upper() != "ASC":
            raise LazopErrorAnswer("75")
        status = params.get("status", "")
        if status and status not in LISTING_STATUSES:
            raise LazopErrorAnswer("36")
        seed = self._seed(seller, config)
        keep = (lambda row: status in self.book.statuses(row, seed)) if status else None
        rows = self.book.listing(seller, after, before, offset, limit, keep)
        orders = [self._listed_document(seller, row, config) for row in rows]
        # Numbers as strings, as some answers write them; `count` is this page's.
        return {"count": str(len(orders)), "countTotal": self.book.count(seller), "orders": orders}

    def list_items(
        self, seller: str, params: Mapping[str, str], config: LazopSandboxConfig
    ) -> list[Any]:
        """``/orders/items/get``: ``order_ids`` a JSON array of numbers (56), at most 50 (38),
        each an order of the seller's listing (37); answered in no promised order."""
        self._refresh_book(seller, config)
        try:
            ids = json.loads(_required(params, "order_ids"))
        except ValueError:
            raise LazopErrorAnswer("56") from None
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise LazopErrorAnswer("56")
        if len(ids) > MAX_ITEMS_IDS:
            raise LazopErrorAnswer("38")
        answer = []
        for order_id in dict.fromkeys(ids):
            if self.book.get(seller, order_id) is None or self.book.items_refused(seller, order_id):
                raise LazopErrorAnswer("37", str(order_id))
            order = self.order(seller, order_id, config)
            answer.append(
                {
                    "order_id": order_id,
                    "order_number": order["order_number"],
                    "order_items": self.items(seller, order_id, config),
                }
            )
        answer.sort(key=lambda entry: zlib.crc32(str(entry["order_id"]).encode()))
        return answer

    def add_orders(
        self, seller: str, count: int, config: LazopSandboxConfig, ago: float = 0.0
    ) -> list[int]:
        self._refresh_book(seller, config)
        return self.book.add(seller, count, _ago(ago))

    def change_orders(
        self, seller: str, order_ids: list[int], config: LazopSandboxConfig, ago: float = 0.0
    ) -> list[int]:
        self._refresh_book(seller, config)
        return self.book.change(seller, order_ids, _ago(ago))

    def _refresh_book(self, seller: str, config: LazopSandboxConfig) -> None:
        self.book.populate(seller, config.listed_orders, config.listed_days)
        self.book.churn(seller, config.order_churn)

    def _listed_document(self, seller: str, row: Any, config: LazopSandboxConfig) -> dict[str, Any]:
        legacy = self.book.document(row, self._seed(seller, config), VENTURE_ZONE)
        return self._rewrite(legacy)

    def _seed(self, seller: str, config: LazopSandboxConfig) -> int:
        return config.seed + zlib.crc32(seller.encode("utf-8"))

    def _legacy_order(self, seller: str, order_id: int, config: LazopSandboxConfig) -> Node:
        listed = self.book.get(seller, order_id)
        if listed is not None:
            return self.book.document(listed, self._seed(seller, config), VENTURE_ZONE)
        if order_id >= config.missing_order_from:
            raise LazopErrorAnswer("16")
        seed = config.seed + zlib.crc32(seller.encode("utf-8"))
        elapsed = time.monotonic() - self.started
        return catalogue.order(order_id, seed, elapsed, 60.0)

    # -- images --------------------------------------------------------------------------------

    def migrate(
        self, seller: str, params: Mapping[str, str], config: LazopSandboxConfig, *, apply: bool
    ) -> Answer:
        payload = _required(params, "payload").encode("utf-8")
        try:
            urls = request_bodies.image_urls(payload)
        except request_bodies.PayloadError as error:  # E030/E005: the same codes here
            raise LazopErrorAnswer(str(error.code)) from None
        if len(urls) > MAX_IMAGES_PER_CALL:
            raise LazopErrorAnswer(
                "5", detail=[{"field": "payload", "message": "At most 8 images"}]
            )
        if not apply:
            return Answer(top_level={"batch_id": self.images.new_request_id()})
        job = self.images.submit(urls, config.image_job_seconds)
        with self._lock:
            self._image_owner[job.request_id] = seller
        return Answer(top_level={"batch_id": config.migrate_batch_id or job.request_id})

    def image_response(self, seller: str, batch_id: str, config: LazopSandboxConfig) -> Answer:
        """L8: still running is empty ``data`` or code 1000 (in turn with "both")."""
        job = self.images.get(batch_id)
        with self._lock:
            owner = self._image_owner.get(batch_id)
            self._polls[batch_id] += 1
            polls = self._polls[batch_id]
        if job is None or owner != seller:
            raise LazopErrorAnswer(
                "5", detail=[{"field": "batch_id", "message": "Unknown batch_id"}]
            )
        if not job.finished(time.monotonic()):
            running = config.running_answer
            if running == "1000" or (running == "both" and polls % 2 == 0):
                raise LazopErrorAnswer("1000")
            return Answer({})
        data: dict[str, Any] = {}
        if job.images:
            data["images"] = [
                {"url": image["Url"], "hash_code": image["Code"]} for image in job.images
            ]
        if job.errors:
            data["errors"] = [
                {"field": "Url", "msg": error["Message"], "original_url": error["OriginalUrl"]}
                for error in job.errors
            ]
        return Answer(data)


def _token_answer(
    grant: Grant, config: LazopSandboxConfig, users_field: str, number: type[int] | type[str]
) -> dict[str, Any]:
    now = time.monotonic()
    user = {
        "country": "sg",
        "seller_id": seller_id(grant.seller),
        "user_id": seller_id(grant.seller),
        "short_code": "SG" + seller_id(grant.seller)[:6],
    }
    answer: dict[str, Any] = {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_in": number(max(0, int(grant.access_expires - now))),
        "refresh_expires_in": number(max(0, int(grant.refresh_expires - now))),
        "country": "sg",
        "account": f"{grant.seller}@sandbox.lazada-worker.test",
        "account_platform": "seller_center",
        users_field: [user],
    }
    if config.token_answer == "no_refresh_token":  # noqa: S105 (a knob value, not a secret)
        del answer["refresh_token"]
    if config.token_expires_in == "missing":  # noqa: S105 (a knob value, not a secret)
        del answer["expires_in"]
    elif config.token_expires_in:
        answer["expires_in"] = json.loads(config.token_expires_in)
    return answer


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise LazopErrorAnswer("MissingParameter", name)
    return value


def _sku_list(params: Mapping[str, str]) -> list[str]:
    raw = _required(params, "seller_sku_list")
    try:
        skus = json.loads(raw)
    except ValueError:
        raise LazopErrorAnswer(
            "5", detail=[{"field": "seller_sku_list", "message": "Not JSON"}]
        ) from None
    if not isinstance(skus, list) or not all(isinstance(sku, str) and sku for sku in skus):
        raise LazopErrorAnswer(
            "5", detail=[{"field": "seller_sku_list", "message": "A JSON array of strings"}]
        )
    if not skus:
        raise LazopErrorAnswer("30")
    return skus


def _order_id(params: Mapping[str, str], config: LazopSandboxConfig) -> int:
    order_id = catalogue.parse_order_id(_required(params, "order_id"))
    if order_id is None:
        raise LazopErrorAnswer("16")
    return order_id


def _number(text: str, code: str) -> int:
    if not text.isdigit():
        raise LazopErrorAnswer(code)
    return int(text)


def _ago(seconds: float) -> datetime | None:
    return datetime.now(UTC) - timedelta(seconds=seconds) if seconds else None


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()
