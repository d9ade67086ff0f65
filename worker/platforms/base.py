"""The interface the services call: one object per account, shared by a worker's threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.platforms.models import ImageJobStatus, Order, RemovalOutcome


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
