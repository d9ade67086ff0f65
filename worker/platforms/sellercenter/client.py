"""HTTP client for the legacy Seller Center API.

One attempt per call, except that E003 (timestamp expired) is re-signed and sent once more
(decision D2); every other retry policy belongs to the worker above, which sees a
``TransientError`` or ``PermanentError``. The API key never leaves this object: it is not in the
repr, in exceptions, in log lines or in the ``CallRecord`` given to ``after_call``.
"""

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal, Self, TypeVar
from urllib.parse import urlsplit

from worker.platforms import http
from worker.platforms.models import ListedOrder
from worker.platforms.sellercenter.bodies import (
    get_response_body,
    migration_body,
    removal_body,
)
from worker.platforms.sellercenter.envelope import Envelope, MalformedResponse, parse_envelope
from worker.platforms.sellercenter.errors import (
    ClockSkewError,
    SellerCenterError,
    ThrottledError,
    TransportError,
    UnsendableRequest,
    redact,
)
from worker.platforms.sellercenter.models import (
    CallRecord,
    ImageJobStatus,
    Order,
    RemoveProductResult,
)
from worker.platforms.sellercenter.parsing import (
    error_from_envelope,
    parse_image_job_status,
    parse_migration_request_id,
    parse_order,
    parse_order_page,
    parse_removal_outcome,
)
from worker.platforms.sellercenter.signing import canonical_query, format_timestamp, sign
from worker.urls import mask_url

__all__ = ["SellerCenterClient"]

logger = logging.getLogger("worker.platforms.sellercenter")


class _RedactSignatures(logging.Filter):
    """urllib3 logs each request's URL at DEBUG, Signature included: scrub it first."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = redact(record.getMessage())
            record.args = ()
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactSignatures())

T = TypeVar("T")

# D9: the values GetOrders takes as `Status`, as the legacy documentation lists them; a second
# with more orders than the offsets reach is read once under each.
ORDER_STATUSES: tuple[str, ...] = (
    "pending",
    "ready_to_ship",
    "shipped",
    "delivered",
    "failed",
    "canceled",
    "returned",
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SellerCenterClient:
    """Signs, sends and interprets Seller Center calls; safe to share between threads."""

    def __init__(
        self,
        api_url: str,
        user_id: str,
        api_key: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        response_format: Literal["XML", "JSON"] = "XML",
        before_call: Callable[[str], None] | None = None,
        after_call: Callable[[CallRecord], None] | None = None,
        max_response_bytes: int = 8 * 1024 * 1024,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"api_url must be an http(s) URL, got {mask_url(api_url)!r}")
        if parts.query or parts.fragment:
            raise ValueError("api_url must not carry a query or fragment; the client signs it")
        if not user_id:
            raise ValueError("user_id must not be empty")
        if not api_key:
            raise ValueError("api_key must not be empty")
        if response_format not in ("XML", "JSON"):
            raise ValueError(f"response_format must be 'XML' or 'JSON', got {response_format!r}")
        if connect_timeout <= 0 or read_timeout <= 0 or max_response_bytes <= 0:
            raise ValueError("timeouts and max_response_bytes must be positive")
        self._base_url = api_url if parts.path else api_url + "/"
        self._user_id = user_id
        self._api_key = api_key
        self._timeouts = (connect_timeout, read_timeout)
        self._format = response_format
        self._before_call = before_call
        self._after_call = after_call
        self._max_bytes = max_response_bytes
        self._clock = clock or _utc_now
        self._session = http.session_for(self._base_url)

    def __repr__(self) -> str:
        return (
            f"SellerCenterClient(api_url={mask_url(self._base_url)!r}, user_id={self._user_id!r}, "
            f"response_format={self._format!r})"
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- operations ---------------------------------------------------------------------------

    def remove_products(self, skus: Sequence[str]) -> RemoveProductResult:
        """Remove up to 50 SellerSkus in one call; see ``RemoveProductResult`` for partial
        failure."""
        body = removal_body(skus)
        sku_list = list(skus)
        return self._call(
            "RemoveProduct",
            "POST",
            {},
            body,
            lambda envelope: parse_removal_outcome(envelope, sku_list),
        )

    def get_order(self, order_id: int) -> Order:
        """Fetch one order; ``NotFoundError`` (E016) when the API does not know it."""
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
            raise UnsendableRequest(
                f"order_id must be a positive int, got {order_id!r}", action="GetOrder"
            )
        return self._call(
            "GetOrder",
            "GET",
            {"OrderId": str(order_id)},
            None,
            lambda envelope: parse_order(_success(envelope), order_id),
        )

    def get_orders(
        self, after: str, before: str, offset: int, limit: int, status: str | None = None
    ) -> tuple[list[ListedOrder], int]:
        """D9: one page of GetOrders by ``updated_at`` ascending, every status unless `status`
        (one of `ORDER_STATUSES`) is given; the filter times as given (ISO 8601 with an
        offset). The rows and how many the answer held."""
        params = {
            "UpdatedAfter": after,
            "UpdatedBefore": before,
            "SortBy": "updated_at",
            "SortDirection": "ASC",
            "Offset": str(offset),
            "Limit": str(limit),
        }
        if status is not None:
            params["Status"] = status
        return self._call("GetOrders", "GET", params, None, lambda e: parse_order_page(_success(e)))

    def migrate_images(self, urls: Sequence[str]) -> str:
        """Start migrating up to 8 image URLs; returns the RequestId to poll with GetResponse."""
        return self._call(
            "MigrateImages",
            "POST",
            {},
            migration_body(urls),
            lambda envelope: parse_migration_request_id(_success(envelope)),
        )

    def get_response(self, request_id: str) -> ImageJobStatus:
        """Poll an image job; ``finished=False`` (or a ``TransientError``) means ask again later."""
        return self._call(
            "GetResponse",
            "POST",
            {},
            get_response_body(request_id),
            lambda envelope: parse_image_job_status(_success(envelope)),
        )

    # --- one call: E003 re-signed once, everything else raised ---------------------------------

    def _call(
        self,
        action: str,
        method: Literal["GET", "POST"],
        extra_params: dict[str, str],
        body: bytes | None,
        interpret: Callable[[Envelope], T],
    ) -> T:
        try:
            return self._attempt(action, method, extra_params, body, interpret)
        except ClockSkewError:
            # The timestamp was stale (a request queued too long, a clock step): sign afresh.
            logger.debug("%s: E003 timestamp expired, re-signing once", action)
        return self._attempt(action, method, extra_params, body, interpret)

    def _attempt(
        self,
        action: str,
        method: Literal["GET", "POST"],
        extra_params: dict[str, str],
        body: bytes | None,
        interpret: Callable[[Envelope], T],
    ) -> T:
        if self._before_call is not None:
            self._before_call(action)
        params = {
            "Action": action,
            "Timestamp": format_timestamp(self._clock()),
            "UserID": self._user_id,
            "Version": "1.0",
            **extra_params,
        }
        if self._format == "JSON":
            params["Format"] = "JSON"
        query = canonical_query(params)
        url = f"{self._base_url}?{query}&Signature={sign(params, self._api_key)}"
        loggable_url = f"{mask_url(self._base_url)}?{query}"
        started = time.monotonic()
        status: int | None = None
        try:
            status, content_type, data = self._send(action, method, url, body, started)
            if status != 200:
                raise TransportError(
                    f"HTTP {status}, {http.describe(content_type, data)}",
                    action=action,
                    http_status=status,
                )
            try:
                envelope = parse_envelope(data, action)
                result = interpret(envelope)
            except MalformedResponse as exc:
                raise TransportError(
                    f"{exc}; HTTP {status}, {http.describe(content_type, data)}",
                    action=action,
                    http_status=status,
                ) from None
        except SellerCenterError as exc:
            exc.redact(self._api_key)
            outcome: Literal["ok", "api_error", "transport_error"] = (
                "transport_error" if isinstance(exc, TransportError) else "api_error"
            )
            throttled = isinstance(exc, ThrottledError)
            self._record(
                action, outcome, started, status, exc.code, str(exc), loggable_url, throttled
            )
            raise
        if envelope.success:
            self._record(action, "ok", started, status, None, "ok", loggable_url)
        else:  # an ErrorResponse the operation turned into a result (RemoveProduct, D4)
            error = error_from_envelope(envelope)
            message = redact(str(error), (self._api_key,))
            throttled = isinstance(error, ThrottledError)
            self._record(
                action, "api_error", started, status, error.code, message, loggable_url, throttled
            )
        return result

    def _send(
        self,
        action: str,
        method: Literal["GET", "POST"],
        url: str,
        body: bytes | None,
        started: float,
    ) -> tuple[int, str, bytes]:
        """Send ``url`` exactly as signed and read at most ``max_response_bytes`` of the answer."""
        try:
            return http.send(
                self._session,
                method,
                url,
                data=body,
                headers={"Content-Type": "text/xml; charset=UTF-8"} if body is not None else None,
                timeouts=self._timeouts,
                max_bytes=self._max_bytes,
                started=started,
                scrub=self._scrub,
            )
        except http.NoAnswer as exc:
            raise TransportError(str(exc), action=action, http_status=exc.http_status) from None

    def _scrub(self, text: str) -> str:
        return redact(text, (self._api_key,))

    def _record(
        self,
        action: str,
        outcome: Literal["ok", "api_error", "transport_error"],
        started: float,
        status: int | None,
        error_code: str | None,
        message: str,
        loggable_url: str,
        throttled: bool = False,
    ) -> None:
        duration = time.monotonic() - started
        logger.debug(
            "%s %s -> %s, HTTP %s in %.3fs: %s",
            action,
            loggable_url,
            outcome,
            status,
            duration,
            message,
        )
        if self._after_call is not None:
            self._after_call(
                CallRecord(
                    action=action,
                    outcome=outcome,
                    duration_s=duration,
                    http_status=status,
                    error_code=error_code,
                    message=message,
                    throttled=throttled,
                )
            )


def _success(envelope: Envelope) -> Envelope:
    if not envelope.success:
        raise error_from_envelope(envelope)
    return envelope
