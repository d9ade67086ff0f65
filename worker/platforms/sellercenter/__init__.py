"""Client for the legacy Lazada Seller Center API: signing, HTTP, parsing and errors.

Knows nothing of Celery or the database; the worker above owns retries and persistence.
"""

from worker.platforms.sellercenter.client import SellerCenterClient
from worker.platforms.sellercenter.errors import (
    AuthenticationError,
    ClockSkewError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    SellerCenterError,
    ServiceError,
    ThrottledError,
    TransientError,
    TransportError,
    UnsendableRequest,
    classify,
    code_label,
)
from worker.platforms.sellercenter.models import (
    CallRecord,
    ErrorDetail,
    ImageError,
    ImageJobStatus,
    ImageResult,
    Order,
    RemoveProductResult,
)
from worker.platforms.sellercenter.platform import SellerCenterPlatform
from worker.platforms.sellercenter.signing import canonical_query, sign

__all__ = [
    "AuthenticationError",
    "CallRecord",
    "ClockSkewError",
    "ErrorDetail",
    "ImageError",
    "ImageJobStatus",
    "ImageResult",
    "InvalidRequestError",
    "NotFoundError",
    "Order",
    "PermanentError",
    "RemoveProductResult",
    "SellerCenterClient",
    "SellerCenterError",
    "SellerCenterPlatform",
    "ServiceError",
    "ThrottledError",
    "TransientError",
    "TransportError",
    "UnsendableRequest",
    "canonical_query",
    "classify",
    "code_label",
    "sign",
]
