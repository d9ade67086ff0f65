"""HTTP client for the Lazada Open Platform: signing, HTTP, envelopes and errors.

One attempt per call: every retry policy (and the refresh on ``IllegalAccessToken``, L3)
belongs to the layer above. The app secret, access and refresh tokens and the sign never leave
this object: not in the repr, in exceptions, in log lines or in a ``CallRecord`` (L10).
"""

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape

from worker.platforms import http
from worker.platforms.lazop.envelope import Envelope, MalformedResponse, parse_envelope
from worker.platforms.lazop.errors import (
    LazopError,
    LazopThrottledError,
    TransportError,
    UnsendableRequest,
    classify,
    redact,
)
from worker.platforms.lazop.parsing import (
    TokenGrant,
    parse_image_status,
    parse_items_batch,
    parse_order,
    parse_order_page,
    parse_token_grant,
)
from worker.platforms.lazop.signing import ParamValue, prepare, sign
from worker.platforms.models import (
    CallRecord,
    ImageJobStatus,
    ListedOrder,
    Order,
    RemovalOutcome,
    SkuFailure,
)
from worker.urls import mask_url

__all__ = ["AUTH_URL", "GATEWAYS", "LazopClient"]

logger = logging.getLogger("worker.platforms.lazop")

AUTH_URL = "https://auth.lazada.com/rest"
GATEWAYS: Mapping[str, str] = {  # decision L9: each venture's gateway
    "sg": "https://api.lazada.sg/rest",
    "my": "https://api.lazada.com.my/rest",
    "th": "https://api.lazada.co.th/rest",
    "vn": "https://api.lazada.vn/rest",
    "ph": "https://api.lazada.com.ph/rest",
    "id": "https://api.lazada.co.id/rest",
}
MAX_SKUS_PER_REMOVAL = 50
MAX_URLS_PER_MIGRATION = 8
MAX_ORDERS_PER_PAGE = 100  # L11
MAX_ORDERS_PER_ITEMS_CALL = 50  # L13
# L11: the values `/orders/get` takes as `status` (it has no `all`), as its documentation lists
# them; a second with more orders than the offsets reach is read once under each.
ORDER_STATUSES: tuple[str, ...] = (
    "unpaid",
    "pending",
    "packed",
    "topack",
    "toship",
    "ready_to_ship",
    "shipping",
    "shipped",
    "delivered",
    "failed_delivery",
    "failed",
    "canceled",
    "returned",
    "shipped_back",
    "lost",
    "lost_by_3pl",
    "damaged_by_3pl",
)
# L11: filter times are written in the venture's offset.
VENTURE_OFFSETS: Mapping[str, int] = {"sg": 8, "my": 8, "ph": 8, "th": 7, "vn": 7, "id": 7}

T = TypeVar("T")
Method = Literal["GET", "POST"]

_FORM = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}


class _RedactSecrets(logging.Filter):
    """urllib3 logs each request line at DEBUG; a GET's carries access_token and sign."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = redact(record.getMessage())
            record.args = ()
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactSecrets())


def _base_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL, got {mask_url(url)!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must not carry a query or fragment; the client signs it")
    return url.rstrip("/")


class LazopClient:
    """Signs, sends and interprets LAZOP calls for one app; safe to share between threads.

    ``api_url`` is the venture gateway (``GATEWAYS[country]`` or any URL, e.g. Daraz or a
    sandbox); token calls go to ``auth_url`` only (L9). Seller calls take the access token as
    an argument, so one client serves every seller of the app.
    """

    def __init__(
        self,
        api_url: str,
        app_key: str,
        app_secret: str,
        *,
        auth_url: str = AUTH_URL,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        before_call: Callable[[str], None] | None = None,
        after_call: Callable[[CallRecord], None] | None = None,
        max_response_bytes: int = 8 * 1024 * 1024,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._api_url = _base_url(api_url, "api_url")
        self._auth_url = _base_url(auth_url, "auth_url")
        if not app_key:
            raise ValueError("app_key must not be empty")
        if not app_secret:
            raise ValueError("app_secret must not be empty")
        if connect_timeout <= 0 or read_timeout <= 0 or max_response_bytes <= 0:
            raise ValueError("timeouts and max_response_bytes must be positive")
        self._app_key = app_key
        self._app_secret = app_secret
        self._timeouts = (connect_timeout, read_timeout)
        self._before_call = before_call
        self._after_call = after_call
        self._max_bytes = max_response_bytes
        self._clock = clock or (lambda: datetime.now(UTC))
        self._session = http.session_for(self._api_url)

    def __repr__(self) -> str:
        return (
            f"LazopClient(api_url={mask_url(self._api_url)!r}, "
            f"auth_url={mask_url(self._auth_url)!r}, "
            f"app_key={self._app_key!r})"
        )

    def close(self) -> None:
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

    # --- tokens (L3) ----------------------------------------------------------------------------

    def create_token(self, code: str) -> TokenGrant:
        """Exchange a consent page's authorization code for the seller's first token pair."""
        if not code:
            raise UnsendableRequest("the authorization code is empty", action="/auth/token/create")
        return self._call(
            "/auth/token/create", "POST", {"code": code}, None, _success(parse_token_grant), code
        )

    def refresh_token(self, refresh_token: str) -> TokenGrant:
        """A new pair; the old refresh token may stop working at once (store the new first)."""
        if not refresh_token:
            raise UnsendableRequest("the refresh token is empty", action="/auth/token/refresh")
        return self._call(
            "/auth/token/refresh",
            "POST",
            {"refresh_token": refresh_token},
            None,
            _success(parse_token_grant),
            refresh_token,
        )

    # --- operations -----------------------------------------------------------------------------

    def remove_products(self, access_token: str, skus: Sequence[str]) -> RemovalOutcome:
        """L6: remove up to 50 SellerSkus; SKUs named in ``detail`` fail, the rest go again."""
        action = "/product/remove"
        sku_list = list(skus)
        if len(sku_list) > MAX_SKUS_PER_REMOVAL:
            raise UnsendableRequest(
                f"at most {MAX_SKUS_PER_REMOVAL} SKUs per call, got {len(sku_list)}", action=action
            )
        refused = {
            sku: "a SellerSku must be a non-empty text without control characters"
            for sku in sku_list
            if not isinstance(sku, str) or not sku.strip() or http.CONTROL_CHARS.search(sku)
        }
        if refused or not sku_list:
            raise UnsendableRequest(
                "no SKU to remove" if not sku_list else f"{len(refused)} SKU(s) cannot be sent",
                action=action,
                refused=refused,
            )
        payload = json.dumps(sku_list, ensure_ascii=False, separators=(",", ":"))
        return self._call(
            action,
            "POST",
            {"seller_sku_list": payload},
            access_token,
            lambda envelope: _removal_outcome(envelope, sku_list, action),
        )

    def get_order(self, access_token: str, order_id: int) -> Order:
        """L7: the order and its items (two calls); ``NotFoundError`` (16) if unknown."""
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
            raise UnsendableRequest(
                f"order_id must be a positive int, got {order_id!r}", action="/order/get"
            )
        params: dict[str, ParamValue] = {"order_id": str(order_id)}
        order = self._call("/order/get", "GET", params, access_token, _success(lambda e: e))
        items = self._call("/order/items/get", "GET", params, access_token, _success(lambda e: e))
        try:
            return parse_order(order, items, order_id)
        except MalformedResponse as exc:
            raise TransportError(f"order answer unusable: {exc}", action="/order/get") from None

    def list_orders(
        self,
        access_token: str,
        after: str,
        before: str,
        offset: int,
        limit: int,
        status: str | None = None,
    ) -> tuple[list[ListedOrder], int]:
        """L11: one page of ``/orders/get`` by ``updated_at`` ascending, every status unless
        `status` (one of `ORDER_STATUSES`) is given; the filter times as given (the venture's
        offset, whole seconds). The rows and their count."""
        params: dict[str, ParamValue] = {
            "update_after": after,
            "update_before": before,
            "sort_by": "updated_at",
            "sort_direction": "ASC",
            "offset": str(offset),
            "limit": str(limit),
        }
        if status is not None:
            params["status"] = status
        return self._call("/orders/get", "GET", params, access_token, _success(parse_order_page))

    def orders_items(
        self, access_token: str, order_ids: Sequence[int]
    ) -> dict[int, list[dict[str, Any]]]:
        """L13: ``/orders/items/get`` for at most 50 orders, ``order_ids`` written as a JSON
        array of numbers; each order's items by the id the answer names."""
        if not 0 < len(order_ids) <= MAX_ORDERS_PER_ITEMS_CALL:
            raise UnsendableRequest(
                f"1 to {MAX_ORDERS_PER_ITEMS_CALL} order ids a call, got {len(order_ids)}",
                action="/orders/items/get",
            )
        listed = json.dumps([int(order_id) for order_id in order_ids], separators=(",", ":"))
        params: dict[str, ParamValue] = {"order_ids": listed}
        return self._call(
            "/orders/items/get", "GET", params, access_token, _success(parse_items_batch)
        )

    def migrate_images(self, access_token: str, urls: Sequence[str]) -> str:
        """L8: start migrating up to 8 image URLs; returns the top-level ``batch_id``."""
        action = "/images/migrate"
        url_list = list(urls)
        if not url_list or len(url_list) > MAX_URLS_PER_MIGRATION:
            raise UnsendableRequest(
                f"1 to {MAX_URLS_PER_MIGRATION} image URLs per call, got {len(url_list)}",
                action=action,
            )
        refused = {
            url: "an image URL must be a non-empty text without control characters"
            for url in url_list
            if not isinstance(url, str) or not url.strip() or http.CONTROL_CHARS.search(url)
        }
        if refused:
            raise UnsendableRequest(
                f"{len(refused)} URL(s) cannot be sent", action=action, refused=refused
            )
        payload = (
            '<?xml version="1.0" encoding="UTF-8" ?><Request><Images>'
            + "".join(f"<Url>{escape(url)}</Url>" for url in url_list)
            + "</Images></Request>"
        )
        return self._call(action, "POST", {"payload": payload}, access_token, _success(_batch_id))

    def get_image_response(self, access_token: str, batch_id: str) -> ImageJobStatus:
        """L8: ``finished=False`` for both "still running" forms (empty data, code 1000)."""
        if not batch_id:
            raise UnsendableRequest("batch_id is empty", action="/image/response/get")

        def interpret(envelope: Envelope) -> ImageJobStatus:
            if envelope.code == "1000":
                return ImageJobStatus(finished=False, images=(), errors=())
            return _success(parse_image_status)(envelope)

        return self._call(
            "/image/response/get", "GET", {"batch_id": batch_id}, access_token, interpret
        )

    # --- one call -------------------------------------------------------------------------------

    def _call(
        self,
        api_path: str,
        method: Method,
        extra: Mapping[str, ParamValue],
        access_token: str | None,
        interpret: Callable[[Envelope], T],
        *call_secrets: str,
    ) -> T:
        secrets = (self._app_secret, *(s for s in (access_token, *call_secrets) if s))
        if self._before_call is not None:
            self._before_call(api_path)
        base = self._auth_url if api_path.startswith("/auth/") else self._api_url
        millis = int(self._clock().timestamp() * 1000)
        try:
            params = prepare(
                {
                    "app_key": self._app_key,
                    "timestamp": str(millis),
                    "sign_method": "sha256",
                    "access_token": access_token,
                    **extra,
                }
            )
        except TypeError as exc:
            raise UnsendableRequest(str(exc), action=api_path) from None
        params["sign"] = sign(api_path, params, self._app_secret)
        started = time.monotonic()
        status: int | None = None
        try:
            status, content_type, data = self._send(api_path, method, base, params, started)
            if status == 429:
                raise LazopThrottledError(
                    f"HTTP 429, {_describe(api_path, content_type, data)}",
                    action=api_path,
                    http_status=429,
                )
            if status != 200:
                raise TransportError(
                    f"HTTP {status}, {_describe(api_path, content_type, data)}",
                    action=api_path,
                    http_status=status,
                )
            try:
                envelope = parse_envelope(data)
                result = interpret(envelope)
            except MalformedResponse as exc:
                raise TransportError(
                    f"{exc}; HTTP {status}, {_describe(api_path, content_type, data)}",
                    action=api_path,
                    http_status=status,
                ) from None
        except LazopError as exc:
            exc.action = exc.action or api_path
            exc.redact(secrets)
            outcome: Literal["api_error", "transport_error"] = (
                "transport_error" if isinstance(exc, TransportError) else "api_error"
            )
            throttled = isinstance(exc, LazopThrottledError)
            self._record(api_path, outcome, started, status, exc.code, str(exc), throttled)
            raise
        if envelope.success:
            self._record(api_path, "ok", started, status, None, "ok")
        else:  # an error the operation turned into a result (remove's detail, a running job)
            error = _error(envelope, api_path)
            error.redact(secrets)
            self._record(
                api_path,
                "api_error",
                started,
                status,
                error.code,
                str(error),
                isinstance(error, LazopThrottledError),
            )
        return result

    def _send(
        self, api_path: str, method: Method, base: str, params: Mapping[str, str], started: float
    ) -> tuple[int, str, bytes]:
        """Send the signed parameters (L1: GET query, POST form body); read a capped answer."""
        form = method == "POST"
        try:
            return http.send(
                self._session,
                method,
                base + api_path,
                params=None if form else params,
                data=urlencode(params).encode("ascii") if form else None,
                headers=_FORM if form else None,
                timeouts=self._timeouts,
                max_bytes=self._max_bytes,
                started=started,
                scrub=redact,
            )
        except http.NoAnswer as exc:
            raise TransportError(str(exc), action=api_path, http_status=exc.http_status) from None

    def _record(
        self,
        action: str,
        outcome: Literal["ok", "api_error", "transport_error"],
        started: float,
        status: int | None,
        error_code: str | None,
        message: str,
        throttled: bool = False,
    ) -> None:
        duration = time.monotonic() - started
        logger.debug("%s -> %s, HTTP %s in %.3fs: %s", action, outcome, status, duration, message)
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


def _describe(api_path: str, content_type: str, data: bytes) -> str:
    """What came back, for an error's text; a token endpoint's body is never quoted (L10): it
    may hold a new pair the call's own secrets do not include, so redaction cannot catch it."""
    if not api_path.startswith("/auth/"):
        return http.describe(content_type, data)
    media_type = content_type.split(";", 1)[0].strip() or "no content type"
    return f"{media_type} body of {len(data)} bytes (a token answer: not quoted)"


def _error(envelope: Envelope, action: str) -> LazopError:
    return classify(
        envelope.code,
        action=action,
        message=envelope.message,
        error_type=envelope.error_type,
        request_id=envelope.request_id,
        detail=envelope.detail,
    )


def _success(parse: Callable[[Envelope], T]) -> Callable[[Envelope], T]:
    """``parse`` for a success envelope; an error envelope raises its classified exception."""

    def interpret(envelope: Envelope) -> T:
        if not envelope.success:
            raise _error(envelope, "")
        return parse(envelope)

    return interpret


def _batch_id(envelope: Envelope) -> str:
    batch_id = envelope.document.get("batch_id")
    if isinstance(batch_id, bool) or not isinstance(batch_id, (str, int)) or not str(batch_id):
        raise MalformedResponse("migrate answer without a top-level batch_id")
    return str(batch_id)


def _removal_outcome(envelope: Envelope, skus: list[str], action: str) -> RemovalOutcome:
    """L6: success removed all; an error naming SKUs in ``detail`` applied nothing."""
    if envelope.success:
        return RemovalOutcome(removed=tuple(skus), failed={}, not_applied=())
    sent = set(skus)
    failed: dict[str, SkuFailure] = {}
    for detail in envelope.detail:
        for named in (detail.seller_sku, detail.value):
            if named in sent and named not in failed:
                failed[named] = SkuFailure(envelope.code, detail.message or envelope.message)
    if not failed:
        raise _error(envelope, action)
    return RemovalOutcome(
        removed=(),
        failed=failed,
        not_applied=tuple(sku for sku in dict.fromkeys(skus) if sku not in failed),
    )
