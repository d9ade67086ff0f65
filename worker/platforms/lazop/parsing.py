"""LAZOP answers in the services' neutral terms: orders (L7), image jobs (L8), tokens (L3).

Tolerant of the alternatives seen in the documentation and SDKs (numbers as strings or
numbers, ISO dates as well as LAZOP's ``2014-10-15 18:36:05 +0800``); anything else is
MalformedResponse.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from worker.platforms.lazop.envelope import Envelope, MalformedResponse
from worker.platforms.models import (
    ImageError,
    ImageJobStatus,
    ImageResult,
    ListedOrder,
    Order,
    TokenGrant,
)

__all__ = [
    "TokenGrant",
    "order_from_data",
    "parse_image_status",
    "parse_items_batch",
    "parse_order",
    "parse_order_page",
    "parse_token_grant",
]

_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise MalformedResponse(f"expected a scalar, got {type(value).__name__}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# L3: a lifetime that cannot be read (missing, null, text, negative, beyond any real token's)
# must not lose a pair the server has already rotated to. The access token is then taken to
# live an hour, so it is refreshed early (a quarter before) rather than used past its end;
# the refresh token a day, so the account shows as expiring and a person looks, rather than
# trusting a lifetime nobody could read.
UNREADABLE_ACCESS_SECONDS = 3600
UNREADABLE_REFRESH_SECONDS = 86400
_LONGEST_LIFETIME = 10 * 366 * 86400  # seconds; more is no token's lifetime


def _lifetime(document: Mapping[str, Any], name: str, unreadable: int) -> int:
    """Seconds as a number or its text (``604800``, ``"604800"``, ``"604800.0"``); `unreadable`
    for anything else. Never raises: a token answer's pair is kept whatever its lifetimes say."""
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        return unreadable
    try:
        seconds = Decimal(str(value).strip())
    except InvalidOperation:
        return unreadable
    if not seconds.is_finite() or not 0 <= seconds <= _LONGEST_LIFETIME:
        return unreadable
    return int(seconds)


def parse_token_grant(envelope: Envelope) -> TokenGrant:
    """L3: the pair, its lifetimes (a safe default for one that cannot be read) and the
    seller; MalformedResponse only when a token itself is missing."""
    document = envelope.document
    access = _text(document.get("access_token"))
    refresh = _text(document.get("refresh_token"))
    if not access or not refresh:
        raise MalformedResponse("token answer without access_token or refresh_token")
    users_value = document.get("country_user_info", document.get("country_user_info_list"))
    users = tuple(
        {str(key): _text(value) for key, value in user.items()}
        for user in (users_value if isinstance(users_value, list) else [])
        if isinstance(user, dict)
    )
    return TokenGrant(
        access_token=access,
        refresh_token=refresh,
        expires_in=_lifetime(document, "expires_in", UNREADABLE_ACCESS_SECONDS),
        refresh_expires_in=_lifetime(document, "refresh_expires_in", UNREADABLE_REFRESH_SECONDS),
        country=_text(document.get("country")),
        account=_text(document.get("account")),
        seller_id=users[0].get("seller_id", "") if users else "",
        country_user_info=users,
    )


def _datetime(value: Any, name: str) -> datetime | None:
    text = _text(value).strip()
    if not text:
        return None
    for form in _DATE_FORMATS:
        try:
            moment = datetime.strptime(text, form)
        except ValueError:
            continue
        # No offset at all: LAZOP's examples are +0800 (the Southeast Asian ventures' time).
        if moment.tzinfo is None:
            moment = datetime.strptime(text + " +0800", _DATE_FORMATS[0])
        return moment.astimezone(UTC)
    raise MalformedResponse(f"{name} is not a date: {text!r}")


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {
        str(key): _text(item) for key, item in value.items() if not isinstance(item, (dict, list))
    }


def _extra_attributes(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    text = _text(value).strip()
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _flag(value: Any) -> bool:
    return _text(value).strip().lower() in ("1", "true", "yes")


def parse_order(order_envelope: Envelope, items_envelope: Envelope, order_id: int) -> Order:
    """L7: ``/order/get``'s data with ``/order/items/get``'s list under ``raw["items"]``."""
    data = order_envelope.data
    if not isinstance(data, dict):
        raise MalformedResponse("order answer without a data object")
    if _text(data.get("order_id")) != str(order_id):
        raise MalformedResponse(f"answer is for order {data.get('order_id')!r}, not {order_id}")
    items = items_envelope.data
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise MalformedResponse("order items answer without a data list of objects")
    return order_from_data(data, items, order_id)


def parse_order_page(envelope: Envelope) -> tuple[list[ListedOrder], int]:
    """L11: ``/orders/get``'s ``data.orders`` as listing rows, and how many rows it held
    (``count`` and ``countTotal`` are not read: their meanings are not settled). A row
    whose ``updated_at`` cannot be read is kept with its problem (its order fails alone); a
    row without a usable ``order_id`` cannot be named, and makes the answer unusable."""
    data = envelope.data
    if not isinstance(data, dict):
        raise MalformedResponse("orders answer without a data object")
    rows = data.get("orders")
    if rows is None:
        rows = []
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise MalformedResponse("orders answer without a list of order objects")
    listed = []
    for row in rows:
        order_id = _order_id(row.get("order_id"))
        try:
            updated = _datetime(row.get("updated_at"), "updated_at")
            problem = None if updated is not None else "updated_at is empty"
        except MalformedResponse as exc:
            updated, problem = None, str(exc)
        listed.append(ListedOrder(order_id, updated, _plain(row), problem=problem))
    return listed, len(rows)


def parse_items_batch(envelope: Envelope) -> dict[int, list[dict[str, Any]]]:
    """L13: ``/orders/items/get``'s ``data``, each entry's items under the ``order_id`` it
    names (never by its position)."""
    data = envelope.data
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise MalformedResponse("order items answer without a data list of objects")
    found: dict[int, list[dict[str, Any]]] = {}
    for entry in data:
        items = entry.get("order_items")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise MalformedResponse("order items entry without a list of order_items")
        found[_order_id(entry.get("order_id"))] = [_plain(item) for item in items]
    return found


def _order_id(value: Any) -> int:
    text = _text(value).strip()
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise MalformedResponse(f"order_id is not an order id: {text[:30]!r}")
    return int(text)


def order_from_data(data: dict[str, Any], items: list[Any], order_id: int) -> Order:
    """An order from its fields (``/order/get``'s data, or a listing row) and its items."""
    try:
        price = Decimal(_text(data.get("price")) or "0")
    except InvalidOperation:
        raise MalformedResponse(f"price is not a decimal: {data.get('price')!r}") from None
    if not price.is_finite():
        raise MalformedResponse("price is not a finite decimal")
    statuses = data.get("statuses")
    try:
        items_count = int(_text(data.get("items_count")) or len(items))
    except ValueError:
        raise MalformedResponse("items_count is not a number") from None
    raw = {**data, "items": [dict(item) for item in items]}
    return Order(
        order_id=order_id,
        order_number=_text(data.get("order_number")),
        customer_first_name=_text(data.get("customer_first_name")),
        customer_last_name=_text(data.get("customer_last_name")),
        payment_method=_text(data.get("payment_method")),
        remarks=_text(data.get("remarks")),
        delivery_info=_text(data.get("delivery_info")),
        price=price,
        gift_option=_flag(data.get("gift_option")),
        gift_message=_text(data.get("gift_message")),
        voucher_code=_text(data.get("voucher_code")),
        created_at=_datetime(data.get("created_at"), "created_at"),
        updated_at=_datetime(data.get("updated_at"), "updated_at"),
        address_billing=_address(data.get("address_billing")),
        address_shipping=_address(data.get("address_shipping")),
        national_registration_number=_text(data.get("national_registration_number")),
        items_count=items_count,
        promised_shipping_time=_text(
            data.get("promised_shipping_times", data.get("promised_shipping_time"))
        ),
        extra_attributes=_extra_attributes(data.get("extra_attributes")),
        statuses=tuple(_text(s) for s in statuses) if isinstance(statuses, list) else (),
        tax_code=_text(data.get("tax_code")),
        branch_number=_text(data.get("branch_number")),
        raw=_plain(raw),
    )


def _plain(value: Any) -> Any:
    """Decimals (from the JSON parser) as strings, so ``raw`` stores as JSON."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def parse_image_status(envelope: Envelope) -> ImageJobStatus:
    """L8: neither a non-empty ``images`` nor ``errors`` list means still running."""
    data = envelope.data
    if data is None or data == "" or data == []:
        data = {}
    if not isinstance(data, dict):
        raise MalformedResponse("image response data is not an object")
    images = data.get("images") or []
    errors = data.get("errors") or []
    if not isinstance(images, list) or not isinstance(errors, list):
        raise MalformedResponse("image response images/errors are not lists")
    if not images and not errors:
        return ImageJobStatus(finished=False, images=(), errors=())
    results = []
    for image in images:
        if not isinstance(image, dict) or not _text(image.get("url")):
            raise MalformedResponse("an image without a url")
        results.append(
            ImageResult(
                url=_text(image.get("url")),
                code=_text(image.get("hash_code")),
                original_url=_text(image.get("original_url")),
            )
        )
    failures = []
    for error in errors:
        if not isinstance(error, dict):
            raise MalformedResponse("an image error that is not an object")
        failures.append(
            ImageError(
                original_url=_text(error.get("original_url")),
                message=_text(error.get("msg") or error.get("message")) or "image failed",
            )
        )
    return ImageJobStatus(finished=True, images=tuple(results), errors=tuple(failures))
