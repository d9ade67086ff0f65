"""The Lazada Open Platform as a `worker.platforms.Platform`: limits, outcomes and tokens.

The account's tokens come from outside (worker.accounts owns storage and the per-account
lock): ``access_token()`` gives the current one; ``on_illegal_token(failed)`` is called once
when a call answers ``IllegalAccessToken``, given the token that failed, and returns a fresh
one after a refresh (or the one another worker just stored). The call is then signed afresh
and sent again, once (L3); a second ``IllegalAccessToken`` is raised.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from worker.platforms.base import remove_or_refuse
from worker.platforms.errors import UnusableOrder
from worker.platforms.lazop.client import (
    MAX_ORDERS_PER_ITEMS_CALL,
    MAX_ORDERS_PER_PAGE,
    MAX_SKUS_PER_REMOVAL,
    MAX_URLS_PER_MIGRATION,
    ORDER_STATUSES,
    LazopClient,
)
from worker.platforms.lazop.envelope import MalformedResponse
from worker.platforms.lazop.errors import IllegalAccessToken
from worker.platforms.lazop.parsing import order_from_data
from worker.platforms.models import ImageJobStatus, ListedOrder, Order, OrderPage, RemovalOutcome

__all__ = ["LazopPlatform"]

T = TypeVar("T")


class LazopPlatform:
    """One LAZOP seller account, in the services' terms."""

    max_skus_per_call = MAX_SKUS_PER_REMOVAL
    max_urls_per_call = MAX_URLS_PER_MIGRATION
    calls_per_order = 2  # L7: the order, then its items
    orders_per_page = MAX_ORDERS_PER_PAGE
    ids_per_items_call = MAX_ORDERS_PER_ITEMS_CALL
    order_statuses = ORDER_STATUSES

    def __init__(
        self,
        client: LazopClient,
        access_token: Callable[[], str],
        on_illegal_token: Callable[[str], str],
        venture_offset: int = 8,
    ) -> None:
        self.client = client
        self._zone = timezone(timedelta(hours=venture_offset))
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

    def list_orders(
        self, after: datetime, before: datetime, offset: int, status: str | None = None
    ) -> OrderPage:
        """L11: the filter times in the venture's offset, whole seconds, as the API wants
        them (``2024-03-01T10:00:00+08:00``)."""
        since, until = self._api_time(after), self._api_time(before)
        rows, count = self._with_token(
            lambda token: self.client.list_orders(
                token, since, until, offset, MAX_ORDERS_PER_PAGE, status
            )
        )
        return OrderPage(tuple(rows), count)

    def order_items(self, order_ids: Sequence[int]) -> Mapping[int, list[dict[str, Any]]]:
        return self._with_token(lambda token: self.client.orders_items(token, order_ids))

    def listed_order(self, listed: ListedOrder, items: Sequence[Mapping[str, Any]] | None) -> Order:
        if listed.problem is not None:
            raise UnusableOrder(listed.problem)
        try:
            return order_from_data(dict(listed.raw), list(items or []), listed.order_id)
        except MalformedResponse as exc:
            raise UnusableOrder(str(exc)) from None

    def _api_time(self, moment: datetime) -> str:
        return moment.astimezone(self._zone).replace(microsecond=0).isoformat()

    def submit_images(self, urls: Sequence[str]) -> str:
        return self._with_token(lambda token: self.client.migrate_images(token, urls))

    def poll_images(self, request_id: str) -> ImageJobStatus:
        return self._with_token(lambda token: self.client.get_image_response(token, request_id))
