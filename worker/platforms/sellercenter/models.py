"""Typed results of Seller Center calls: the legacy shapes, and the neutral ones re-exported.

Frozen so a result can be passed between layers without anyone editing it on the way.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from worker.platforms.models import CallRecord, ImageError, ImageJobStatus, ImageResult, Order

__all__ = [
    "CallRecord",
    "ErrorDetail",
    "ImageError",
    "ImageJobStatus",
    "ImageResult",
    "Order",
    "RemoveProductResult",
]


@dataclass(frozen=True)
class ErrorDetail:
    """One ``ErrorResponse/Body/ErrorDetail`` entry: which field (and SKU) the API rejected."""

    field: str | None
    message: str
    value: str | None
    seller_sku: str | None


@dataclass(frozen=True)
class RemoveProductResult:
    """What one RemoveProduct call answered for its SKUs (decision D4), in the legacy terms
    (field-level error details, warnings); the platform turns it into a `RemovalOutcome`.

    Either every SKU was removed, or nothing was applied: ``failed`` holds the SKUs the API named
    with their reason, ``not_applied`` the others, which the caller sends again in a new call.
    """

    removed: tuple[str, ...]
    failed: Mapping[str, ErrorDetail]
    not_applied: tuple[str, ...]
    warnings: tuple[str, ...]
    error_code: str | None = None  # the ErrorResponse's code when SKUs failed ("E503")
