"""Envelope -> typed models, one function per action.

Works on the normalised tree from ``envelope.py`` so XML and JSON answers read the same. A shape
we cannot use raises ``MalformedResponse``; the client reports that as a transport error.
"""

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from lxml import etree

from worker.platforms.models import ListedOrder
from worker.platforms.sellercenter.envelope import Envelope, MalformedResponse
from worker.platforms.sellercenter.errors import SellerCenterError, classify, code_label
from worker.platforms.sellercenter.models import (
    ErrorDetail,
    ImageError,
    ImageJobStatus,
    ImageResult,
    Order,
    RemoveProductResult,
)

__all__ = [
    "error_details",
    "error_from_envelope",
    "parse_image_job_status",
    "parse_migration_request_id",
    "parse_order",
    "parse_order_page",
    "parse_removal_outcome",
    "snake_case",
]

# Elements that are always lists in ``raw``, even when a response holds only one of them
# (the one-element-list ambiguity JSON answers have, decision D3).
_LIST_ELEMENTS = frozenset(
    {"Order", "Status", "Image", "Error", "ErrorDetail", "WarningDetail", "Warning", "Url"}
)

_ACRONYM_BOUNDARY = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")
_OFFSET = re.compile(r"(?:([+-])(\d{2}):?(\d{2})|Z)$")


@lru_cache(maxsize=1024)  # the same few dozen tags in every order; bounded: tags are input
def snake_case(name: str) -> str:
    """``FirstName`` -> ``first_name``, ``Address1`` -> ``address1``, ``URLPath`` -> ``url_path``"""
    name = _ACRONYM_BOUNDARY.sub(r"\1_\2", name)
    return _WORD_BOUNDARY.sub(r"\1_\2", name).lower()


# --- errors -----------------------------------------------------------------------------------


def error_details(envelope: Envelope) -> tuple[ErrorDetail, ...]:
    """The ``Body/ErrorDetail`` entries of an ErrorResponse (tolerating a ``Details`` wrapper)."""
    found = list(envelope.body.iter("ErrorDetail"))
    return tuple(
        ErrorDetail(
            field=_optional_text(node, "Field"),
            message=_child_text(node, "Message"),
            value=_optional_text(node, "Value"),
            seller_sku=_optional_text(node, "SellerSku"),
        )
        for node in found
    )


def error_from_envelope(envelope: Envelope) -> SellerCenterError:
    """The exception for an ErrorResponse, classified by ``errors.classify``."""
    return classify(
        envelope.error_code,
        action=envelope.action,
        message=envelope.error_message,
        details=error_details(envelope),
        http_status=200,
    )


# --- RemoveProduct ----------------------------------------------------------------------------


def parse_removal_outcome(envelope: Envelope, skus: Sequence[str]) -> RemoveProductResult:
    """Apply decision D4 to the answer of a RemoveProduct call for ``skus``.

    Raises the classified error when the ErrorResponse does not name SKUs of this call.
    """
    if envelope.success:
        return RemoveProductResult(
            removed=tuple(skus), failed={}, not_applied=(), warnings=_warnings(envelope.body)
        )
    in_call = set(skus)
    failed: dict[str, ErrorDetail] = {}
    for detail in error_details(envelope):
        sku = _named_sku(detail)
        if sku is not None and sku in in_call and sku not in failed:
            failed[sku] = detail
    if not failed:
        raise error_from_envelope(envelope)
    return RemoveProductResult(
        removed=(),
        failed=failed,
        not_applied=tuple(sku for sku in skus if sku not in failed),
        warnings=(),
        error_code=None if envelope.error_code is None else code_label(envelope.error_code),
    )


def _named_sku(detail: ErrorDetail) -> str | None:
    # The sandbox and mobly's SDK put the SKU in SellerSku; some answers only in Field/Value.
    if detail.seller_sku:
        return detail.seller_sku
    if detail.field == "SellerSku" and detail.value:
        return detail.value
    return None


def _warnings(body: etree._Element) -> tuple[str, ...]:
    texts: list[str] = []
    for node in body.iter("WarningDetail", "Warning"):
        if len(node) == 0:
            if node.text and node.text.strip():
                texts.append(node.text.strip())
            continue
        message = _child_text(node, "Message")
        where = " ".join(
            part for part in (_child_text(node, "Field"), _child_text(node, "SellerSku")) if part
        )
        value = _child_text(node, "Value")
        text = f"{where}: {message}" if where else message
        texts.append(f"{text} ({value})" if value else text)
    return tuple(text for text in texts if text)


# --- GetOrder ---------------------------------------------------------------------------------


def parse_order(envelope: Envelope, order_id: int) -> Order:
    """The order ``order_id`` from a GetOrder SuccessResponse (``Body/Orders/Order``)."""
    nodes = list(envelope.body.iter("Order"))
    if not nodes:
        raise MalformedResponse("GetOrder answer has no Orders/Order")
    node = next((n for n in nodes if _child_text(n, "OrderId") == str(order_id)), None)
    if node is None:
        raise MalformedResponse(
            f"GetOrder answer holds order {_child_text(nodes[0], 'OrderId')!r}, not {order_id}"
        )
    return _order(node, order_id, _zone_of(envelope.timestamp))


def parse_order_page(envelope: Envelope) -> tuple[list[ListedOrder], int]:
    """D9: GetOrders' ``Body/Orders/Order`` as listing rows (whatever the one-or-many shape),
    each order read as GetOrder's, and how many rows the answer held. A row whose time or
    fields cannot be read keeps its problem (its order fails alone); a row without a usable
    OrderId cannot be named, and makes the answer unusable."""
    zone = _zone_of(envelope.timestamp)
    listed = []
    nodes = list(envelope.body.iterfind("Orders/Order"))
    for node in nodes:
        text = _child_text(node, "OrderId")
        if not text.isdigit() or not 0 < int(text) < 2**63:
            raise MalformedResponse(f"GetOrders answer has an order without an id: {text[:30]!r}")
        order_id = int(text)
        updated_text = _child_text(node, "UpdatedAt")
        updated = _body_datetime(updated_text, zone)
        if updated is None:
            problem = f"UpdatedAt is not a date: {updated_text[:40]!r}"
            listed.append(ListedOrder(order_id, None, {}, problem=problem))
            continue
        try:
            order = _order(node, order_id, zone)
        except MalformedResponse as exc:
            listed.append(ListedOrder(order_id, updated, {}, problem=str(exc)))
            continue
        listed.append(ListedOrder(order_id, updated, {}, order=order))
    return listed, len(nodes)


def _order(node: etree._Element, order_id: int, zone: timezone) -> Order:
    return Order(
        order_id=order_id,
        order_number=_child_text(node, "OrderNumber"),
        customer_first_name=_child_text(node, "CustomerFirstName"),
        customer_last_name=_child_text(node, "CustomerLastName"),
        payment_method=_child_text(node, "PaymentMethod"),
        remarks=_child_text(node, "Remarks"),
        delivery_info=_child_text(node, "DeliveryInfo"),
        price=_decimal(_child_text(node, "Price"), "Price"),
        gift_option=_child_text(node, "GiftOption").lower() in ("1", "true", "yes"),
        gift_message=_child_text(node, "GiftMessage"),
        voucher_code=_child_text(node, "VoucherCode"),
        created_at=_body_datetime(_child_text(node, "CreatedAt"), zone),
        updated_at=_body_datetime(_child_text(node, "UpdatedAt"), zone),
        address_billing=_flat_fields(node.find("AddressBilling")),
        address_shipping=_flat_fields(node.find("AddressShipping")),
        national_registration_number=_child_text(node, "NationalRegistrationNumber"),
        items_count=_int(_child_text(node, "ItemsCount"), "ItemsCount"),
        promised_shipping_time=_child_text(node, "PromisedShippingTime"),
        extra_attributes=_extra_attributes(node.find("ExtraAttributes")),
        statuses=tuple(
            text for status in node.iterfind("Statuses/Status") if (text := _own_text(status))
        ),
        tax_code=_child_text(node, "TaxCode"),
        branch_number=_child_text(node, "BranchNumber"),
        raw=_plain(node),
    )


def _zone_of(head_timestamp: str) -> timezone:
    # Body datetimes have no offset; they are in the zone of Head/Timestamp, else UTC.
    found = _OFFSET.search(head_timestamp.strip())
    if found is None or found.group(1) is None:
        return UTC
    minutes = int(found.group(2)) * 60 + int(found.group(3))
    if minutes >= 24 * 60:
        return UTC
    sign = -1 if found.group(1) == "-" else 1
    return timezone(sign * timedelta(minutes=minutes))


def _body_datetime(text: str, zone: timezone) -> datetime | None:
    """``2015-03-24 16:09:22`` in ``zone`` -> aware UTC; empty or zero dates -> None."""
    if not text or text.startswith("0000"):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MalformedResponse(f"{name} is not a number: {text[:40]!r}") from None
    if not value.is_finite():
        raise MalformedResponse(f"{name} is not a finite number: {text[:40]!r}")
    return value


def _int(text: str, name: str) -> int:
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise MalformedResponse(f"{name} is not an integer: {text[:40]!r}") from None


def _flat_fields(node: etree._Element | None) -> dict[str, str]:
    if node is None:
        return {}
    return {snake_case(child.tag): _own_text(child) for child in _elements(node)}


def _extra_attributes(node: etree._Element | None) -> dict[str, Any]:
    if node is None:
        return {}
    if len(node):  # structured in the answer already
        return _plain(node)
    text = _own_text(node)
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return {"raw": text}
    return parsed if isinstance(parsed, dict) else {"raw": text}


# --- MigrateImages / GetResponse --------------------------------------------------------------


def parse_migration_request_id(envelope: Envelope) -> str:
    """The job id of a MigrateImages SuccessResponse (``Head/RequestId``, decision D5)."""
    if not envelope.request_id:
        raise MalformedResponse("MigrateImages answer has no Head/RequestId")
    return envelope.request_id


def parse_image_job_status(envelope: Envelope) -> ImageJobStatus:
    """Decision D6: a Body without ``Images`` and ``Errors`` means the job is still running."""
    body = envelope.body
    images_nodes = body.findall("Images")
    errors_nodes = body.findall("Errors")
    if not images_nodes and not errors_nodes:
        return ImageJobStatus(finished=False, images=(), errors=())
    images = tuple(
        ImageResult(
            url=_child_text(node, "Url"),
            code=_child_text(node, "Code"),
            original_url=_child_text(node, "OriginalUrl"),
        )
        for parent in images_nodes
        for node in parent.iterfind("Image")
        if _has_content(node)
    )
    errors = tuple(
        ImageError(
            # LAZOP's successor names these Field/Msg; accept both spellings.
            original_url=_child_text(node, "OriginalUrl") or _child_text(node, "Field"),
            message=_child_text(node, "Message") or _child_text(node, "Msg"),
        )
        for parent in errors_nodes
        for node in parent.iterfind("Error")
        if _has_content(node)
    )
    return ImageJobStatus(finished=True, images=images, errors=errors)


# --- tree helpers -----------------------------------------------------------------------------


def _elements(node: etree._Element) -> list[etree._Element]:
    return [child for child in node if isinstance(child.tag, str)]


def _own_text(node: etree._Element) -> str:
    return (node.text or "").strip()


def _child_text(node: etree._Element, tag: str) -> str:
    child = node.find(tag)
    return "" if child is None else _own_text(child)


def _optional_text(node: etree._Element, tag: str) -> str | None:
    # Absent and empty are the same to callers: ``<SellerSku/>`` names no SKU.
    child = node.find(tag)
    return (_own_text(child) or None) if child is not None else None


def _has_content(node: etree._Element) -> bool:
    return bool(_own_text(node)) or any(_own_text(child) for child in _elements(node))


def _plain(node: etree._Element) -> dict[str, Any]:
    """An element as a JSON-able dict with snake_case keys; repeated names become lists."""
    result: dict[str, Any] = {}
    for child in _elements(node):
        key = snake_case(child.tag)
        value: Any = _plain(child) if _elements(child) else _own_text(child)
        if child.tag in _LIST_ELEMENTS:
            result.setdefault(key, []).append(value)
        elif key in result:
            previous = result[key]
            result[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[key] = value
    return result
