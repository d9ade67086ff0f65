"""The legacy Seller Center as a `worker.platforms.Platform`: its limits and its outcomes."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from worker.platforms.base import remove_or_refuse
from worker.platforms.errors import UnsendableRequest, UnusableOrder
from worker.platforms.models import (
    ImageJobStatus,
    ListedOrder,
    Order,
    OrderPage,
    RemovalOutcome,
    SkuFailure,
)
from worker.platforms.sellercenter.bodies import MAX_SKUS_PER_REMOVAL, MAX_URLS_PER_MIGRATION
from worker.platforms.sellercenter.client import ORDER_STATUSES, SellerCenterClient

__all__ = ["SellerCenterPlatform"]


def _api_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


class SellerCenterPlatform:
    """One legacy account's client, in the services' terms."""

    max_skus_per_call = MAX_SKUS_PER_REMOVAL
    max_urls_per_call = MAX_URLS_PER_MIGRATION
    calls_per_order = 1  # GetOrder
    orders_per_page = 100  # D9
    ids_per_items_call = 0  # D9: a legacy order has no items call
    order_statuses = ORDER_STATUSES

    def __init__(self, client: SellerCenterClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"SellerCenterPlatform({self.client!r})"

    def remove_skus(self, skus: Sequence[str]) -> RemovalOutcome:
        """D4: a SuccessResponse removed every SKU sent; an ErrorResponse naming SKUs removed
        none, failed those named, and left the others to be sent again."""
        return remove_or_refuse(skus, self._remove)

    def _remove(self, skus: Sequence[str]) -> RemovalOutcome:
        result = self.client.remove_products(skus)
        return RemovalOutcome(
            removed=result.removed,
            failed={
                sku: SkuFailure(result.error_code, detail.message)
                for sku, detail in result.failed.items()
            },
            not_applied=result.not_applied,
        )

    def get_order(self, order_id: int) -> Order:
        return self.client.get_order(order_id)

    def list_orders(
        self, after: datetime, before: datetime, offset: int, status: str | None = None
    ) -> OrderPage:
        """D9: the filter times in UTC with an explicit ``+00:00``, whole seconds."""
        rows, count = self.client.get_orders(
            _api_time(after), _api_time(before), offset, self.orders_per_page, status
        )
        return OrderPage(tuple(rows), count)

    def order_items(self, order_ids: Sequence[int]) -> Mapping[int, list[dict[str, Any]]]:
        raise UnsendableRequest("a legacy order has no items call (D9)", action="GetOrders")

    def listed_order(self, listed: ListedOrder, items: Sequence[Mapping[str, Any]] | None) -> Order:
        if listed.order is None:
            raise UnusableOrder(listed.problem or "the listing did not hold the order")
        return listed.order

    def submit_images(self, urls: Sequence[str]) -> str:
        return self.client.migrate_images(urls)

    def poll_images(self, request_id: str) -> ImageJobStatus:
        return self.client.get_response(request_id)
