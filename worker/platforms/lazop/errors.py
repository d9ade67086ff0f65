"""Exceptions of the LAZOP client and the one table that maps API codes to them (L2, L4, L5).

Codes are the API's strings (``"ApiCallLimit"``, ``"16"``); the API's message is kept.
``IllegalAccessToken`` is the call-time refresh trigger (L3); ``AuthorizationLost`` means a
person must authorize the seller again (L4). Both are permanent for the call that got them.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from worker.platforms import errors
from worker.platforms.errors import (
    ApiError,
    AuthorizationLostError,
    PermanentApiError,
    ThrottledApiError,
    TransientApiError,
)

__all__ = [
    "AuthorizationLost",
    "ErrorDetail",
    "IllegalAccessToken",
    "LazopError",
    "LazopPermanentError",
    "LazopThrottledError",
    "LazopTransientError",
    "NotFoundError",
    "TransportError",
    "UnknownInBatch",
    "UnsendableRequest",
    "classify",
    "redact",
]

_REDACTED = "[redacted]"
# A requests exception or a proxy page may echo a signed URL or form body.
_SECRET_PARAM = re.compile(
    r"((?:access_token|refresh_token|sign|code|app_secret)=)[^&\s'\"<>]*", re.IGNORECASE
)
_HEX_DIGEST = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove tokens, signatures and the given secrets from ``text`` (L10)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    text = _SECRET_PARAM.sub(r"\1" + _REDACTED, text)
    return _HEX_DIGEST.sub(_REDACTED, text)


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of an error's ``detail`` list (L2): which value was wrong, and why."""

    field: str
    message: str
    value: str = ""
    seller_sku: str = ""


class LazopError(ApiError):
    """Base of the client's errors; ``str(e)`` reads ``/order/get failed: 16 Invalid Order ID``."""

    def __init__(
        self,
        message: str,
        *,
        action: str,
        code: str | None = None,
        error_type: str = "",
        request_id: str = "",
        detail: tuple[ErrorDetail, ...] = (),
        http_status: int | None = None,
    ) -> None:
        super().__init__(redact(message), action=action, code=code)
        self.error_type = error_type
        self.request_id = request_id
        self.detail = detail
        self.http_status = http_status

    def redact(self, secrets: Iterable[str]) -> None:
        """Scrub ``secrets`` from the message and detail (the client calls this with its own)."""
        kept = tuple(secrets)
        self.message = redact(self.message, kept)
        self.detail = tuple(
            ErrorDetail(
                redact(d.field, kept),
                redact(d.message, kept),
                redact(d.value, kept),
                redact(d.seller_sku, kept),
            )
            for d in self.detail
        )
        self.args = (self.message,)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(action={self.action!r}, code={self.code!r}, "
            f"message={self.message!r}, http_status={self.http_status!r})"
        )


class LazopTransientError(LazopError, TransientApiError):
    """Worth retrying later: the same call may succeed once the service or network recovers."""


class TransportError(LazopTransientError, errors.TransportError):
    """No usable API answer: timeout, connection error, HTTP status other than 200, a body that
    is not a LAZOP envelope (proxy page, empty, truncated, not an object), too large or hostile."""


class LazopThrottledError(LazopTransientError, ThrottledApiError):
    """The API asked for fewer calls (ApiCallLimit, 901, HTTP 429): back off at least 1 s."""


class LazopPermanentError(LazopError, PermanentApiError):
    """Retrying the same call fails the same way: record it once and move on."""


class IllegalAccessToken(LazopPermanentError):
    """The access token is invalid or expired: refresh once and send the call again (L3)."""


class AuthorizationLost(LazopPermanentError, AuthorizationLostError):
    """The refresh token or code no longer works: the seller must authorize the app again."""


class NotFoundError(LazopPermanentError, errors.NotFoundError):
    """The object asked for does not exist (16: Invalid Order ID)."""


class UnknownInBatch(LazopPermanentError, errors.UnknownInBatch):
    """One of several order ids is not the seller's (37: the order items of several orders)."""


class UnsendableRequest(LazopPermanentError, errors.UnsendableRequest):
    """The request cannot be built from what was given; nothing was sent (see the neutral
    ``UnsendableRequest``: ``refused`` names each value at fault)."""

    def __init__(self, message: str, *, action: str, refused: dict[str, str] | None = None) -> None:
        LazopPermanentError.__init__(self, message, action=action)
        self.refused = dict(refused or {})


# The one table (L5); every code not named here is permanent.
THROTTLED_CODES = frozenset({"ApiCallLimit", "901", "SYS_REQUEST_TOO_FAST", "TRAFFIC_CONTROL"})
TRANSIENT_CODES = frozenset(
    {
        "ServiceTimeout",
        "1000",
        "6",
        "21",
        "INTERNAL_SYSTEM_ERROR",
        "UnknownRuntimeException",
        "HttpConnectError",
        "BIZ_DEGRADATION_ERROR",
    }
)
AUTHORIZATION_LOST_CODES = frozenset({"IllegalRefreshToken", "InvalidCode"})
_CLASS_BY_CODE: dict[str, type[LazopError]] = {
    **dict.fromkeys(THROTTLED_CODES, LazopThrottledError),
    **dict.fromkeys(TRANSIENT_CODES, LazopTransientError),
    **dict.fromkeys(AUTHORIZATION_LOST_CODES, AuthorizationLost),
    "IllegalAccessToken": IllegalAccessToken,
    "16": NotFoundError,
    "37": UnknownInBatch,
}
_HINT_BY_CODE: dict[str, str] = {
    "IncompleteSignature": "the signature did not match: check the app secret",
    "OPEN_API_TIMESTAMP_INVALID": "the timestamp was refused: check this machine's clock (NTP)",
    "APP_KEY_INVALID": "check the app key",
    "IllegalRefreshToken": "the seller must authorize the app again",
    "InvalidCode": "the authorization code is used or expired: get a new one from the consent page",
    "InvalidApiPath": "the app may lack this API, or the URL is not a LAZOP gateway",
}


def classify(
    code: str,
    *,
    action: str,
    message: str,
    error_type: str = "",
    request_id: str = "",
    detail: tuple[ErrorDetail, ...] = (),
    http_status: int | None = 200,
) -> LazopError:
    """The exception for an error envelope with ``code`` (classified by code, not ``type``)."""
    text = message.strip() or "no error message"
    if code in _HINT_BY_CODE:
        text = f"{text} ({_HINT_BY_CODE[code]})"
    cls = _CLASS_BY_CODE.get(code, LazopPermanentError)
    return cls(
        text,
        action=action,
        code=code,
        error_type=error_type,
        request_id=request_id,
        detail=detail,
        http_status=http_status,
    )
