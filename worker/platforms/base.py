"""The interface the services call: one object per account, shared by a worker's threads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from worker.platforms.errors import UnsendableRequest
from worker.platforms.models import ImageJobStatus, Order, RemovalOutcome, SkuFailure


class Platform(Protocol):
    """One account's API. Each method is one call (`get_order`: `calls_per_order`; a platform
    may re-sign and resend a call once); failures raise worker.platforms.errors, retries belong
    to the caller."""

    @property
    def max_skus_per_call(self) -> int:
        """How many SKUs one `remove_skus` call takes."""

    @property
    def max_urls_per_call(self) -> int:
        """How many image URLs one `submit_images` call takes."""

    @property
    def calls_per_order(self) -> int:
        """How many calls one `get_order` makes: the rate limit reserves them together."""

    def remove_skus(self, skus: Sequence[str]) -> RemovalOutcome:
        """Remove up to `max_skus_per_call` distinct SKUs; the outcome says which went."""

    def get_order(self, order_id: int) -> Order:
        """One order; a `PermanentApiError` when the API does not know it."""

    def submit_images(self, urls: Sequence[str]) -> str:
        """Start migrating up to `max_urls_per_call` images; returns the job's request id."""

    def poll_images(self, request_id: str) -> ImageJobStatus:
        """An image job's state; `finished=False` (or a `TransientApiError`) means later."""


def remove_or_refuse(
    skus: Sequence[str], remove: Callable[[Sequence[str]], RemovalOutcome]
) -> RemovalOutcome:
    """`remove(skus)`; when the request cannot be built because of some SKUs (a SellerSku no
    request can carry), those fail for good before any call and the others are left for the
    next one, so one bad SKU never holds back its batch. Every platform's `remove_skus` goes
    through here."""
    try:
        return remove(skus)
    except UnsendableRequest as exc:
        refused = {sku: why for sku, why in exc.refused.items() if sku in skus}
        if not refused:
            raise
        return RemovalOutcome(
            removed=(),
            failed={sku: SkuFailure(None, f"never sent: {why}") for sku, why in refused.items()},
            not_applied=tuple(sku for sku in dict.fromkeys(skus) if sku not in refused),
            called=False,
        )
