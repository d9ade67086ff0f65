"""Client for the Lazada Open Platform (LAZOP; also Daraz): signing, HTTP, parsing, errors.

Knows nothing of Celery or the database; the worker above owns retries, tokens' storage and
persistence. It follows decisions L1-L10 (docs/decisions.md).
"""

from worker.platforms.lazop.client import AUTH_URL, GATEWAYS, LazopClient
from worker.platforms.lazop.errors import (
    AuthorizationLost,
    ErrorDetail,
    IllegalAccessToken,
    LazopError,
    LazopPermanentError,
    LazopThrottledError,
    LazopTransientError,
    NotFoundError,
    TransportError,
    UnsendableRequest,
    classify,
)
from worker.platforms.lazop.parsing import TokenGrant
from worker.platforms.lazop.platform import LazopPlatform
from worker.platforms.lazop.signing import sign, string_to_sign

__all__ = [
    "AUTH_URL",
    "GATEWAYS",
    "AuthorizationLost",
    "ErrorDetail",
    "IllegalAccessToken",
    "LazopClient",
    "LazopError",
    "LazopPermanentError",
    "LazopPlatform",
    "LazopThrottledError",
    "LazopTransientError",
    "NotFoundError",
    "TokenGrant",
    "TransportError",
    "UnsendableRequest",
    "classify",
    "sign",
    "string_to_sign",
]
