"""The simulated seller account: what each action does once a request is authenticated."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from worker.sandbox import catalogue, request_bodies
from worker.sandbox.config import SandboxConfig
from worker.sandbox.errors import ApiError, ErrorDetail
from worker.sandbox.images import ImageJobs
from worker.sandbox.responses import Success

MAX_SKUS_PER_CALL = 50
MAX_IMAGES_PER_CALL = 8
_ORDER_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class ActionSpec:
    """How an action must be called; ``read_only`` ones may run even for a faulted call."""

    method: str
    read_only: bool


ACTIONS: dict[str, ActionSpec] = {
    "GetOrder": ActionSpec("GET", read_only=True),
    "RemoveProduct": ActionSpec("POST", read_only=False),
    "MigrateImages": ActionSpec("POST", read_only=False),
    "GetResponse": ActionSpec("POST", read_only=True),
}


class SellerCenter:
    """State behind the actions (removed SKUs, image jobs, the order clock); thread-safe."""

    def __init__(self, seed: int) -> None:
        self.started = time.monotonic()
        self.images = ImageJobs(seed)
        self._removals: Counter[str] = Counter()
        self._lock = threading.Lock()

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
        if action == "RemoveProduct":
            return self.remove_product(request_bodies.seller_skus(body), config, apply=apply)
        if action == "MigrateImages":
            return self.migrate_images(request_bodies.image_urls(body), config, apply=apply)
        if action == "GetResponse":
            return self.get_response(request_bodies.request_id(body))
        raise ApiError(8)

    def get_order(self, raw_order_id: str, config: SandboxConfig) -> Success:
        if not _ORDER_ID.fullmatch(raw_order_id) or int(raw_order_id) <= 0:
            raise ApiError(16, raw_order_id)
        order_id = int(raw_order_id)
        if order_id >= config.missing_order_from:
            raise ApiError(16, raw_order_id)
        elapsed = time.monotonic() - self.started
        document = catalogue.order(order_id, config.seed, elapsed, config.order_advance_seconds)
        return Success("Order", {"Orders": {"Order": [document]}})

    def remove_product(self, skus: list[str], config: SandboxConfig, *, apply: bool) -> Success:
        """All or nothing (D4): one SKU matching ``failing_skus`` fails the whole call with E503.

        Each SellerSku occurrence counts as one removal, so a SKU sent twice (in one call or in
        two) shows up in :meth:`removal_counts`. Removing a removed SKU again succeeds.
        """
        if len(skus) > MAX_SKUS_PER_CALL:
            raise ApiError(
                204,
                details=[
                    ErrorDetail(
                        "SellerSku",
                        f"At most {MAX_SKUS_PER_CALL} SellerSkus in one request",
                        str(len(skus)),
                    )
                ],
            )
        failing = [
            sku
            for sku in dict.fromkeys(skus)
            if any(fnmatchcase(sku, pattern) for pattern in config.failing_skus)
        ]
        if failing:
            raise ApiError(
                503,
                details=[
                    ErrorDetail("SellerSku", f"SellerSku '{sku}' could not be removed", sku, sku)
                    for sku in failing
                ],
            )
        if apply:
            with self._lock:
                self._removals.update(skus)
        return Success("Product")

    def migrate_images(self, urls: list[str], config: SandboxConfig, *, apply: bool) -> Success:
        """Starts a job and answers its RequestId in the Head (D5); more than 8 URLs is E011."""
        if len(urls) > MAX_IMAGES_PER_CALL:
            raise ApiError(
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
            raise ApiError(5, details=[ErrorDetail("RequestId", "Unknown RequestId", request_id)])
        return Success("Images", job.body(time.monotonic()))

    def removal_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._removals)

    def removal_summary(self) -> tuple[int, int, int]:
        """(distinct SKUs removed, removals in all, SKUs removed more than once)."""
        with self._lock:
            twice = sum(1 for count in self._removals.values() if count > 1)
            return len(self._removals), sum(self._removals.values()), twice
