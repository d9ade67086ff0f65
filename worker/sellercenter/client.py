"""HTTP client for the legacy Seller Center API.

One attempt per call, except that E003 (timestamp expired) is re-signed and sent once more
(decision D2); every other retry policy belongs to the worker above, which sees a
``TransientError`` or ``PermanentError``. The API key never leaves this object: it is not in the
repr, in exceptions, in log lines or in the ``CallRecord`` given to ``after_call``.
"""

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from types import TracebackType
from typing import Literal, Self, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from worker.sellercenter.bodies import (
    get_response_body,
    migration_body,
    removal_body,
)
from worker.sellercenter.envelope import Envelope, MalformedResponse, parse_envelope
from worker.sellercenter.errors import (
    ClockSkewError,
    SellerCenterError,
    ThrottledError,
    TransportError,
    UnsendableRequest,
    redact,
)
from worker.sellercenter.models import CallRecord, ImageJobStatus, Order, RemovalOutcome
from worker.sellercenter.parsing import (
    error_from_envelope,
    parse_image_job_status,
    parse_migration_request_id,
    parse_order,
    parse_removal_outcome,
)
from worker.sellercenter.signing import canonical_query, format_timestamp, sign

__all__ = ["SellerCenterClient"]

logger = logging.getLogger("worker.sellercenter")


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

_POOL_SIZE = 32  # one client is shared by the worker's threads
_CHUNK_BYTES = 64 * 1024
_PREVIEW_CHARS = 120
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_OS_ERROR = re.compile(r"\[Errno [^\]]+\][^'\")]*")


def _user_agent() -> str:
    try:
        version = metadata.version("lazada-worker")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"lazada-worker/{version}"


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
            raise ValueError(f"api_url must be an http(s) URL, got {api_url!r}")
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
        self._session = requests.Session()
        # No urllib3 retries: a retried POST could remove SKUs twice behind the worker's back.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        # requests reads the environment again on every request (proxies, CA bundle, ~/.netrc),
        # a large share of a call's CPU (bench/cost.py, bench/RESULTS.md). Read it once,
        # here; calls are signed, so no netrc credentials are wanted.
        self._session.trust_env = False
        self._session.proxies = get_environ_proxies(self._base_url)
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self._session.verify = ca_bundle or True
        self._session.headers["User-Agent"] = _user_agent()

    def __repr__(self) -> str:
        return (
            f"SellerCenterClient(api_url={self._base_url!r}, user_id={self._user_id!r}, "
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

    def remove_products(self, skus: Sequence[str]) -> RemovalOutcome:
        """Remove up to 50 SellerSkus in one call; see ``RemovalOutcome`` for partial failure."""
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
        loggable_url = f"{self._base_url}?{query}"
        started = time.monotonic()
        status: int | None = None
        try:
            status, content_type, data = self._send(action, method, url, body, started)
            if status != 200:
                raise TransportError(
                    f"HTTP {status}, {_describe(content_type, data)}",
                    action=action,
                    http_status=status,
                )
            try:
                envelope = parse_envelope(data, action)
                result = interpret(envelope)
            except MalformedResponse as exc:
                raise TransportError(
                    f"{exc}; HTTP {status}, {_describe(content_type, data)}",
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
        headers = {"Content-Type": "text/xml; charset=UTF-8"} if body is not None else {}
        # read_timeout bounds each socket read, not the whole body; this deadline, checked
        # between chunks, also stops a body that keeps trickling in for minutes.
        deadline = started + sum(self._timeouts)
        try:
            response = self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=self._timeouts,
                stream=True,
                allow_redirects=False,
            )
        except requests.ConnectTimeout:
            raise TransportError(
                f"no answer: connect timed out after {self._timeouts[0]}s", action=action
            ) from None
        except requests.Timeout:
            raise TransportError(
                f"no answer: read timed out after {self._timeouts[1]}s", action=action
            ) from None
        except requests.RequestException as exc:
            raise TransportError(
                f"no answer: {_exception_text(exc, self._api_key)}", action=action
            ) from None
        with response:
            status = response.status_code
            content_type = response.headers.get("Content-Type", "")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self._max_bytes:
                raise TransportError(
                    f"response larger than {self._max_bytes} bytes (Content-Length {declared})",
                    action=action,
                    http_status=status,
                )
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in response.iter_content(_CHUNK_BYTES):
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise TransportError(
                            f"response larger than {self._max_bytes} bytes",
                            action=action,
                            http_status=status,
                        )
                    if time.monotonic() > deadline:
                        raise TransportError(
                            f"timed out reading the body after {size} bytes",
                            action=action,
                            http_status=status,
                        )
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise TransportError(
                    f"connection broken while reading the body after {size} bytes "
                    f"({_exception_text(exc, self._api_key)})",
                    action=action,
                    http_status=status,
                ) from None
        return status, content_type, b"".join(chunks)

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


def _describe(content_type: str, data: bytes) -> str:
    """Say what came back, briefly: ``text/html body: '<html>...'...`` (control chars dropped)."""
    media_type = content_type.split(";", 1)[0].strip()
    if not data:
        return f"empty {media_type} body" if media_type else "empty body"
    media_type = media_type or "no content type"
    head = data[: _PREVIEW_CHARS * 4]
    text = _CONTROL_CHARS.sub(" ", head.decode("utf-8", "replace")).strip()
    preview = text[:_PREVIEW_CHARS]
    more = "..." if len(text) > _PREVIEW_CHARS or len(data) > len(head) else ""
    return f"{media_type} body: {preview!r}{more} ({len(data)} bytes)"


def _exception_text(exc: BaseException, api_key: str) -> str:
    """The useful part of a requests exception: ``[Errno 111] Connection refused`` and the like."""
    # requests wraps urllib3's MaxRetryError, whose .reason is the real cause.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = _CONTROL_CHARS.sub(" ", str(reason if reason is not None else exc))
    found = _OS_ERROR.search(text)
    if found is not None:
        return found.group(0).strip()
    # Otherwise the text may quote the URL, Signature included; redact() strips it.
    return f"{type(exc).__name__}: {redact(text, (api_key,))[:200]}"
