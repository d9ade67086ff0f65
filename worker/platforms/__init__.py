"""The platform seam: what the services need of a marketplace API, in neutral terms.

A platform (the legacy Seller Center, the Lazada Open Platform) is a package of its own that
implements `Platform` (worker.platforms.base) and raises the errors of worker.platforms.errors;
the services above know only this package. Knows nothing of Celery or the database.
"""

from worker.platforms.base import Platform
from worker.platforms.errors import (
    AccountParked,
    ApiError,
    AuthorizationLostError,
    PermanentApiError,
    ThrottledApiError,
    TransientApiError,
    UnknownInBatch,
    UnusableOrder,
)
from worker.platforms.models import (
    CallRecord,
    ImageError,
    ImageJobStatus,
    ImageResult,
    ListedOrder,
    Order,
    OrderPage,
    RemovalOutcome,
    SkuFailure,
)

__all__ = [
    "AccountParked",
    "ApiError",
    "AuthorizationLostError",
    "CallRecord",
    "ImageError",
    "ImageJobStatus",
    "ImageResult",
    "ListedOrder",
    "Order",
    "OrderPage",
    "PermanentApiError",
    "Platform",
    "RemovalOutcome",
    "SkuFailure",
    "ThrottledApiError",
    "TransientApiError",
    "UnknownInBatch",
    "UnusableOrder",
]
