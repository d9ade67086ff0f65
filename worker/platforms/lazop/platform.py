"""The Lazada Open Platform as a `worker.platforms.Platform`: limits, outcomes and tokens.

The account's tokens come from outside (worker.accounts owns storage and the per-account
lock): ``access_token()`` gives the current one; ``on_illegal_token(failed)`` is called once
when a call answers ``IllegalAccessToken``, given the token that failed, and returns a fresh
one after a refresh (or the one another worker just stored). The call is then signed afresh
and sent again, once (L3); a second ``IllegalAccessToken`` is raised.
"""

from collections.abc import Callable, Sequence
from typing import TypeVar

from worker.platforms.base import remove_or_refuse
from worker.platforms.lazop.client import MAX_SKUS_PER_REMOVAL, MAX_URLS_PER_MIGRATION, LazopClient
from worker.platforms.lazop.errors import IllegalAccessToken
from worker.platforms.models import ImageJobStatus, Order, RemovalOutcome

__all__ = ["LazopPlatform"]

T = TypeVar("T")


class LazopPlatform:
    """One LAZOP seller account, in the services' terms."""

    max_skus_per_call = MAX_SKUS_PER_REMOVAL
    max_urls_per_call = MAX_URLS_PER_MIGRATION
    calls_per_order = 2  # L7: the order, then its items

    def __init__(
        self,
        client: LazopClient,
        access_token: Callable[[], str],
        on_illegal_token: Callable[[str], str],
    ) -> None:
        self.client = client
        self._access_token = access_token
        self._on_illegal_token = on_illegal_token

    def __repr__(self) -> str:
        return f"LazopPlatform({self.client!r})"

    def _with_token(self, call: Callable[[str], T]) -> T:
        token = self._access_token()
        try:
            return call(token)
        except IllegalAccessToken:
            fresh = self._on_illegal_token(token)
        return call(fresh)

    def remove_skus(self, skus: Sequence[str]) -> RemovalOutcome:
        """L6: the outcome per SKU as the API reports it."""
        return remove_or_refuse(
            skus,
            lambda some: self._with_token(lambda token: self.client.remove_products(token, some)),
        )

    def get_order(self, order_id: int) -> Order:
        return self._with_token(lambda token: self.client.get_order(token, order_id))

    def submit_images(self, urls: Sequence[str]) -> str:
        return self._with_token(lambda token: self.client.migrate_images(token, urls))

    def poll_images(self, request_id: str) -> ImageJobStatus:
        return self._with_token(lambda token: self.client.get_image_response(token, request_id))
