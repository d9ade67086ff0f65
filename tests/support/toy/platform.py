"""A third platform, the toy: a small signed JSON API, registered only by the tests.

It shows what a new platform takes: a package with a client and a `Platform` (here, one
module), and one `PlatformEntry` registered in worker.platforms.registry. Nothing else of the
worker names it: accounts, the store, the CLI and the services read the registry.

The toy API (served by tests.support.toy.sandbox): every request carries the shop's id as
`shop` and `signature`, the hex HMAC-SHA256 of `METHOD PATH\\n` + body with the shop's secret,
in its query. `POST /v1/products/remove` `{"skus": [...]}` removes every SKU it does not refuse
(`{"removed": [...], "refused": {sku: reason}}`); `GET /v1/orders/ID` is an order or 404;
`GET /v1/orders?since=ISO&until=ISO&offset=N&limit=N[&status=S]` lists whole orders by updated_at
(`status`: `pending` or `shipped`, only the orders under it); `POST /v1/images` `{"urls": [...]}`
starts a job (`{"job": ID}`), `GET /v1/images/ID` is its state.
429 asks for fewer calls; 5xx is worth another try; 401 and 400 are final.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from worker.platforms import http
from worker.platforms.base import (
    Connection,
    Credential,
    Platform,
    PlatformEntry,
    Tokens,
    remove_or_refuse,
)
from worker.platforms.errors import (
    NotFoundError,
    PermanentApiError,
    ThrottledApiError,
    TransientApiError,
    TransportError,
    UnsendableRequest,
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

NAME = "toy"
MAX_SKUS = 20
MAX_URLS = 4
MAX_ANSWER_BYTES = 1024 * 1024


def signature(secret: str, method: str, path: str, body: bytes) -> str:
    """What `X-Toy-Signature` holds for a request."""
    message = f"{method} {path}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class ToyPlatform:
    """One toy shop, in the services' terms."""

    max_skus_per_call = MAX_SKUS
    max_urls_per_call = MAX_URLS
    calls_per_order = 1
    orders_per_page = 25
    ids_per_items_call = 0  # the listing holds whole orders
    order_statuses = ("pending", "shipped")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._base = connection.api_url.rstrip("/")
        self._session = http.session_for(self._base)

    def remove_skus(self, skus: Sequence[str]) -> RemovalOutcome:
        return remove_or_refuse(skus, self._remove)

    def _remove(self, skus: Sequence[str]) -> RemovalOutcome:
        if len(skus) > MAX_SKUS:
            raise UnsendableRequest(f"at most {MAX_SKUS} SKUs a call", action="remove")
        unsendable = {sku: "holds control characters" for sku in skus if not sku.isprintable()}
        if unsendable:
            raise UnsendableRequest(
                "SKUs no request can carry", action="remove", refused=unsendable
            )
        answer = self._call("remove", "POST", "/v1/products/remove", {"skus": list(skus)})
        refused = answer.get("refused", {})
        return RemovalOutcome(
            removed=tuple(sku for sku in answer.get("removed", []) if sku in skus),
            failed={sku: SkuFailure("refused", str(why)) for sku, why in refused.items()},
            not_applied=tuple(
                sku for sku in skus if sku not in refused and sku not in answer.get("removed", [])
            ),
        )

    def list_orders(
        self, after: datetime, before: datetime, offset: int, status: str | None = None
    ) -> OrderPage:
        query = {
            "since": after.isoformat(),
            "until": before.isoformat(),
            "offset": str(offset),
            "limit": str(self.orders_per_page),
        }
        if status is not None:
            query["status"] = status
        rows = self._call("list orders", "GET", "/v1/orders", query=query)["orders"]
        listed = []
        for document in rows:
            order = _order(document)
            listed.append(ListedOrder(order.order_id, order.updated_at, {}, order=order))
        return OrderPage(tuple(listed), len(rows))

    def order_items(self, order_ids: Sequence[int]) -> Mapping[int, list[dict[str, Any]]]:
        raise UnsendableRequest("the toy's listing holds whole orders", action="order items")

    def listed_order(self, listed: ListedOrder, items: Sequence[Mapping[str, Any]] | None) -> Order:
        if listed.order is None:
            raise UnusableOrder(listed.problem or "no order")
        return listed.order

    def get_order(self, order_id: int) -> Order:
        return _order(self._call("get order", "GET", f"/v1/orders/{order_id}")["order"])

    def submit_images(self, urls: Sequence[str]) -> str:
        if len(urls) > MAX_URLS:
            raise UnsendableRequest(f"at most {MAX_URLS} URLs a call", action="submit images")
        return str(self._call("submit images", "POST", "/v1/images", {"urls": list(urls)})["job"])

    def poll_images(self, request_id: str) -> ImageJobStatus:
        answer = self._call("poll images", "GET", f"/v1/images/{request_id}")
        if answer["state"] != "done":
            return ImageJobStatus(finished=False, images=(), errors=())
        return ImageJobStatus(
            finished=True,
            images=tuple(
                ImageResult(url=i["url"], code=i["code"], original_url=i["source"])
                for i in answer["images"]
            ),
            errors=tuple(
                ImageError(original_url=e["source"], message=e["message"]) for e in answer["errors"]
            ),
        )

    def _call(
        self,
        action: str,
        method: Literal["GET", "POST"],
        path: str,
        document: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        connection = self._connection
        if connection.before_call is not None:
            connection.before_call(action)
        body = b"" if document is None else json.dumps(document).encode()
        params = {
            **(query or {}),
            "shop": connection.credentials["shop_id"],
            "signature": signature(connection.secret, method, path, body),
        }
        started = time.monotonic()
        status: int | None = None
        try:
            status, _, data = http.send(
                self._session,
                method,
                self._base + path,
                params=params,
                data=body or None,
                headers={"Content-Type": "application/json"},
                timeouts=(connection.connect_timeout, connection.read_timeout),
                max_bytes=MAX_ANSWER_BYTES,
                started=started,
                scrub=lambda text: text.replace(connection.secret, "***"),
            )
            answer = _answer(action, status, data)
        except http.NoAnswer as exc:
            self._record(action, started, "transport_error", exc.http_status, None, str(exc))
            raise TransportError(str(exc), action=action) from None
        except (TransientApiError, PermanentApiError) as exc:
            outcome = "transport_error" if isinstance(exc, TransportError) else "api_error"
            throttled = isinstance(exc, ThrottledApiError)
            self._record(action, started, outcome, status, exc.code, exc.message, throttled)
            raise
        self._record(action, started, "ok", status, None, "")
        return answer

    def _record(
        self,
        action: str,
        started: float,
        outcome: Literal["ok", "api_error", "transport_error"],
        status: int | None,
        code: str | None,
        message: str,
        throttled: bool = False,
    ) -> None:
        if self._connection.after_call is not None:
            record = CallRecord(
                action, outcome, time.monotonic() - started, status, code, message, throttled
            )
            self._connection.after_call(record)


def _answer(action: str, status: int, data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        raise TransportError(f"not JSON (HTTP {status})", action=action) from None
    if not isinstance(document, dict):
        raise TransportError(f"not a JSON object (HTTP {status})", action=action)
    error = str(document.get("error", ""))
    errors: dict[int, Callable[..., Exception]] = {
        404: NotFoundError,
        429: ThrottledApiError,
        401: PermanentApiError,
        400: PermanentApiError,
    }
    if status == 200 and not error:
        return document
    if status in errors:
        raise errors[status](error or f"HTTP {status}", action=action, code=error or str(status))
    if status >= 500:
        raise TransientApiError(error or f"HTTP {status}", action=action, code=str(status))
    raise TransportError(f"unexpected HTTP {status}", action=action)


def _order(document: dict[str, Any]) -> Order:
    return Order(
        order_id=int(document["id"]),
        order_number=str(document["number"]),
        customer_first_name=str(document["customer"]),
        customer_last_name="",
        payment_method="",
        remarks="",
        delivery_info="",
        price=Decimal(str(document["price"])),
        gift_option=False,
        gift_message="",
        voucher_code="",
        created_at=datetime.fromisoformat(document["created_at"]),
        updated_at=datetime.fromisoformat(document["updated_at"]),
        address_billing={},
        address_shipping={},
        national_registration_number="",
        items_count=int(document["items"]),
        promised_shipping_time="",
        extra_attributes={},
        statuses=tuple(document["statuses"]),
        tax_code="",
        branch_number="",
        raw=document,
    )


def _connect(connection: Connection, tokens: Tokens | None) -> Platform:
    return ToyPlatform(connection)


TOY = PlatformEntry(
    name=NAME,
    description="the toy platform of the tests",
    credentials=(
        Credential("shop_id", "shop id", "the shop's id"),
        Credential("shop_secret", "shop secret", "the shop secret's file", secret=True),
    ),
    connect=_connect,
)
