"""The interface the services call: one object per account, shared by a worker's threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.platforms.models import ImageJobStatus, Order, RemovalOutcome


class Platform(Protocol):
    """One account's API. Each method is one call (a platform may re-sign and resend it once);
    failures raise worker.platforms.errors, retries belong to the caller."""

    @property
    def max_skus_per_call(self) -> int:
        """How many SKUs one `remove_skus` call takes."""

    @property
    def max_urls_per_call(self) -> int:
        """How many image URLs one `submit_images` call takes."""

    def remove_skus(self, skus: Sequence[str]) -> RemovalOutcome:
        """Remove up to `max_skus_per_call` distinct SKUs; the outcome says which went."""

    def get_order(self, order_id: int) -> Order:
        """One order; a `PermanentApiError` when the API does not know it."""

    def submit_images(self, urls: Sequence[str]) -> str:
        """Start migrating up to `max_urls_per_call` images; returns the job's request id."""

    def poll_images(self, request_id: str) -> ImageJobStatus:
        """An image job's state; `finished=False` (or a `TransientApiError`) means later."""
