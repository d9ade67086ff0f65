"""Exceptions of the Seller Center client and the one table that maps API codes to them.

Callers catch at the level they care about: ``TransientError`` is worth retrying later,
``PermanentError`` is recorded once and not retried (decision D7).
"""

import re
from collections.abc import Iterable
from dataclasses import replace

from worker.platforms import errors
from worker.platforms.errors import (
    ApiError,
    PermanentApiError,
    ThrottledApiError,
    TransientApiError,
)
from worker.platforms.sellercenter.models import ErrorDetail

__all__ = [
    "AuthenticationError",
    "ClockSkewError",
    "InvalidRequestError",
    "NotFoundError",
    "PermanentError",
    "SellerCenterError",
    "ServiceError",
    "ThrottledError",
    "TransientError",
    "TransportError",
    "UnsendableRequest",
    "classify",
    "code_label",
    "redact",
]

# A proxy error page or a requests exception may echo the signed URL; a signature is a 64-hex run.
_SIGNATURE_PARAM = re.compile(r"(Signature=)[^&\s'\"<>]*", re.IGNORECASE)
_HEX_DIGEST = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
_REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove signatures and the given secrets from ``text`` so it can be shown or logged."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    text = _SIGNATURE_PARAM.sub(r"\1" + _REDACTED, text)
    return _HEX_DIGEST.sub(_REDACTED, text)


def code_label(code: int) -> str:
    """The string form of an API code, as the documentation writes it: E016, E503, 1000."""
    return f"E{code:03d}" if code < 1000 else str(code)


class SellerCenterError(ApiError):
    """Base of all client errors; ``str(e)`` reads like ``GetOrder failed: E016 Invalid ...``.

    ``code`` is the documented label (``"E016"``); ``number`` the API's integer code.
    """

    def __init__(
        self,
        message: str,
        *,
        action: str,
        code: int | None = None,
        details: tuple[ErrorDetail, ...] = (),
        http_status: int | None = None,
    ) -> None:
        super().__init__(
            redact(message), action=action, code=None if code is None else code_label(code)
        )
        self.number = code
        self.details = details
        self.http_status = http_status

    def redact(self, secret: str) -> None:
        """Scrub ``secret`` from the message and details (the client calls this with its key)."""
        if not secret:
            return
        self.message = redact(self.message, (secret,))
        self.details = tuple(_redact_detail(detail, secret) for detail in self.details)
        self.args = (self.message,)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(action={self.action!r}, code={self.code!r}, "
            f"message={self.message!r}, http_status={self.http_status!r})"
        )


def _redact_detail(detail: ErrorDetail, secret: str) -> ErrorDetail:
    def clean(text: str | None) -> str | None:
        return None if text is None else redact(text, (secret,))

    return replace(
        detail,
        field=clean(detail.field),
        message=redact(detail.message, (secret,)),
        value=clean(detail.value),
        seller_sku=clean(detail.seller_sku),
    )


class TransientError(SellerCenterError, TransientApiError):
    """Worth retrying later: the same call may succeed once the service or network recovers."""


class TransportError(TransientError, errors.TransportError):
    """No usable API answer: timeout, connection error, HTTP status other than 200, a body that
    is not a Seller Center envelope (proxy page, empty, truncated), too large or hostile."""


class ThrottledError(TransientError, ThrottledApiError):
    """The API asked us to slow down (E901, E429): back off before the next call."""


class ServiceError(TransientError):
    """The API failed internally (E006, 1000 or E503 without field-level detail)."""


class PermanentError(SellerCenterError, PermanentApiError):
    """Retrying the same call will fail the same way; record it and move on."""


class AuthenticationError(PermanentError):
    """The API refused who we are (E007 signature mismatch, E009 access denied, E010 http)."""


class ClockSkewError(PermanentError):
    """E003 Timestamp has expired, still after one re-signed retry: this machine's clock is off."""


class InvalidRequestError(PermanentError):
    """The API rejected what we sent (bad parameters, field-level errors, any unknown code)."""


class NotFoundError(PermanentError, errors.NotFoundError):
    """The object asked for does not exist (E016 Invalid Order ID)."""


class UnsendableRequest(PermanentError, errors.UnsendableRequest):
    """The request cannot be built from what was given; nothing was sent (see the neutral
    ``UnsendableRequest``: ``refused`` names each value at fault)."""

    def __init__(self, message: str, *, action: str, refused: dict[str, str] | None = None) -> None:
        PermanentError.__init__(self, message, action=action)
        self.refused = dict(refused or {})


# The one table (decision D7). 503 and 1000 depend on ErrorDetail, see classify().
_CLASS_BY_CODE: dict[int, type[SellerCenterError]] = {
    1: InvalidRequestError,  # Parameter %s is mandatory
    2: InvalidRequestError,  # Invalid Version
    3: ClockSkewError,  # Timestamp has expired (the client re-signs and retries once first)
    4: InvalidRequestError,  # Invalid Timestamp format
    5: InvalidRequestError,  # Invalid Request Format (also GetResponse for an unknown RequestId)
    6: ServiceError,  # Unexpected internal error
    7: AuthenticationError,  # Login failed. Signature mismatching
    8: InvalidRequestError,  # Invalid Action
    9: AuthenticationError,  # Access Denied
    10: AuthenticationError,  # Insecure Channel
    11: InvalidRequestError,  # Request too Big
    16: NotFoundError,  # Invalid Order ID
    30: InvalidRequestError,  # Empty Request
    204: InvalidRequestError,  # Too many SKU in one request
    429: ThrottledError,  # Too many requests
    901: ThrottledError,  # Request too frequent / functionality temporarily disabled
}

# Added to the API's own text where it does not say what to check.
_HINT_BY_CODE: dict[int, str] = {
    3: "still after one re-signed retry: check this machine's clock (NTP)",
    7: "likely causes: wrong API key, wrong UserID, or this machine's clock",
    9: "the user lacks the API role for this action",
    10: "the API URL must use https",
}

_CODE_PREFIX = re.compile(r"^\s*E?0*(\d+)\s*:?\s*")


def classify(
    code: int | None,
    *,
    action: str,
    message: str,
    details: tuple[ErrorDetail, ...] = (),
    http_status: int | None = 200,
) -> SellerCenterError:
    """Build the exception for an ``ErrorResponse`` with ``code`` (unknown codes are permanent).

    ``message`` is the API's ErrorMessage; its ``E016:`` prefix is dropped because ``str(e)``
    shows the code itself.
    """
    prefix = _CODE_PREFIX.match(message)
    if prefix is not None and code is not None and int(prefix.group(1)) == code:
        message = message[prefix.end() :]
    message = message.strip() or "no error message"
    if code is not None and code in _HINT_BY_CODE:
        message = f"{message} ({_HINT_BY_CODE[code]})"
    cls: type[SellerCenterError]
    if code == 503:
        # Remove product failed: about named SKUs the request is wrong, otherwise the service.
        names_skus = any(detail.seller_sku for detail in details)
        cls = InvalidRequestError if names_skus else ServiceError
    elif code == 1000:
        # With field-level detail the request itself is wrong; without it the service failed.
        cls = InvalidRequestError if details else ServiceError
    elif code is None:
        cls = InvalidRequestError
    else:
        cls = _CLASS_BY_CODE.get(code, InvalidRequestError)
    return cls(message, action=action, code=code, details=details, http_status=http_status)
